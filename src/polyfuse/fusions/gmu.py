"""Gated Multimodal Unit (Arevalo, Solorio, Montes-y-Gómez & González, 2017, "Gated Multimodal
Units for Information Fusion"), generalised from two modalities to M with a softmax gate."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import by_name, ordered, present, select
from polyfuse.registry import FUSIONS


@FUSIONS.register("gmu")
class GMUFusion(nn.Module):
    """Gated Multimodal Unit: a softmax gate over modalities mixes their tanh projections.

    h_m = tanh(W_m x_m); gates z = softmax over modalities of a linear map of the concatenated
    inputs; fused = sum_m z_m h_m, then Dropout -> Linear to ``output_dim``.

    Absent modalities enter the gate's input as zeros and get -inf gate logits, so their weight is
    exactly zero; rows with every modality absent fuse to zeros. ``modality_weights()`` gives the
    gates z of the last forward pass.

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Width of each h_m.
        dropout: Dropout before the output projection.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        self.output_dim = output_dim or hidden_dim
        self.norms = nn.ModuleDict({m: nn.LayerNorm(in_dims[m]) for m in self.names})
        self.hidden = nn.ModuleDict({m: nn.Linear(in_dims[m], hidden_dim) for m in self.names})
        self.gate = nn.Linear(sum(in_dims[m] for m in self.names), len(self.names))
        self.proj_out = nn.Sequential(nn.Dropout(dropout), nn.Linear(hidden_dim, self.output_dim))
        self._weights: Tensor | None = None  # [B, M] gates of the last forward pass

    def gates(self, xs: list[Tensor], keep: Tensor) -> Tensor:
        """Softmax gates [B, M] over the present modalities (zeros in all-absent rows)."""
        logits = self.gate(torch.cat(xs, dim=1))  # [B, M]
        logits = torch.where(keep, logits, torch.full_like(logits, float("-inf")))
        anyone = keep.any(dim=1, keepdim=True)  # [B, 1]
        logits = torch.where(anyone, logits, torch.zeros_like(logits))  # no all -inf rows
        return torch.softmax(logits, dim=1) * keep.to(logits.dtype)  # [B, M]

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        xs, hs, keeps = [], [], []
        for m in self.names:
            x = embeddings[m]  # [B, D_m]
            keep = present(mask, m, x)  # [B, 1]
            x = select(keep, self.norms[m](select(keep, x, x.new_zeros(()))), x.new_zeros(()))
            xs.append(x)
            hs.append(torch.tanh(self.hidden[m](x)))  # [B, d]
            keeps.append(keep)
        z = self.gates(xs, torch.cat(keeps, dim=1))  # [B, M]
        self._weights = z.detach()
        fused = (z.unsqueeze(-1) * torch.stack(hs, dim=1)).sum(dim=1)  # [B, d]
        return self.proj_out(fused)  # type: ignore[no-any-return]  # [B, output_dim]

    def modality_weights(self) -> dict[str, Tensor] | None:
        """Modality -> [B] gate z_m of the last forward pass (0 where absent); None before any."""
        return by_name(self.names, self._weights)

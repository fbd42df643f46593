"""Decision-level (late) fusion: one small expert per modality, combined after the fact.

Late fusion as contrasted with early fusion by Snoek, Worring & Smeulders, 2005, "Early versus
Late Fusion in Semantic Video Analysis"; the learned weights and stacking variants are the
weighted-vote and stacked-generalisation combiners of Wolpert, 1992, "Stacked Generalization".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import by_name, ordered, present, select
from polyfuse.registry import FUSIONS

COMBINES = ("mean", "learned", "stacking")


@FUSIONS.register("late")
class LateFusion(nn.Module):
    """Decision-level fusion: one expert per modality, combined by a mean, learned weights or stacking.

    Each modality goes through its own MLP "expert" to an ``output_dim`` vector; the experts'
    outputs are then combined by ``combine``:

    * ``"mean"``: the mean over present modalities; its weights are fixed during training, but
      ``polyfuse.train.weights.fit_modality_weights`` may set them afterwards on held-out data
      (then a softmax over per-modality logits, as for ``"learned"``);
    * ``"learned"``: a softmax over learned per-modality weights, renormalised over the present
      modalities of each row;
    * ``"stacking"``: the concatenation of every expert's output (zeros where absent) and a
      presence indicator, through a Linear layer.

    Because ``mean`` and ``learned`` are convex combinations, a linear head on top of them gives
    exactly the same weighted average of per-modality head logits, ``W (sum_m w_m z_m) + b =
    sum_m w_m (W z_m + b)``: this is classic late fusion of per-modality decisions, kept inside the
    fusion contract so the rest of the model is unchanged. Rows with every modality absent give
    zeros (``mean``, ``learned``) or the stacking layer's bias. With ``mean`` and ``learned``,
    ``modality_weights()`` gives each modality's weight in each row of the last forward pass
    (stacking has no such weights: None).

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of each expert's output and of the fused vector (default ``hidden_dim``).
        hidden_dim: Hidden width of each expert.
        dropout: Dropout inside each expert.
        combine: One of ``"mean"``, ``"learned"``, ``"stacking"``.
        num_heads: Accepted for the shared vocabulary; unused.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        combine: str = "mean",
        num_heads: int | None = None,
    ) -> None:
        super().__init__()
        if combine not in COMBINES:
            raise ValueError(f"combine must be one of {COMBINES}, not {combine!r}")
        self.names = ordered(in_dims)
        self.combine = combine
        self.output_dim = output_dim or hidden_dim
        self.experts = nn.ModuleDict({m: self._expert(in_dims[m], hidden_dim, dropout) for m in self.names})
        # Per-modality weight logits: trained with "learned"; fixed with "mean" (zeros: a plain mean
        # until fit_modality_weights sets them); unused by "stacking".
        self.logits = nn.Parameter(torch.zeros(len(self.names)), requires_grad=combine == "learned")
        width = len(self.names) * (self.output_dim + 1)
        self.stack = nn.Linear(width, self.output_dim) if combine == "stacking" else None
        self._weights: Tensor | None = None  # [B, M] of the last forward pass ("mean", "learned")

    def _expert(self, in_dim: int, hidden_dim: int, dropout: float) -> nn.Module:
        return nn.Sequential(
            nn.LayerNorm(in_dim),
            nn.Linear(in_dim, hidden_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(hidden_dim, self.output_dim),
        )

    def expert_outputs(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Per-modality outputs [B, M, output_dim] (zeros where absent) and presence [B, M]."""
        outs, keep = [], []
        for m in self.names:
            x = embeddings[m]  # [B, D_m]
            here = present(mask, m, x)  # [B, 1]
            y = self.experts[m](select(here, x, x.new_zeros(())))  # [B, output_dim]
            outs.append(select(here, y, y.new_zeros(())))
            keep.append(here)
        return torch.stack(outs, dim=1), torch.cat(keep, dim=1)

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        outs, here = self.expert_outputs(embeddings, mask)  # [B, M, D], [B, M]
        if self.stack is not None:
            flat = torch.cat([outs, here.unsqueeze(-1).to(outs.dtype)], dim=2).flatten(1)
            return self.stack(flat)  # type: ignore[no-any-return]  # [B, output_dim]
        fused, weights = self.mix(outs, here, self.logits)
        self._weights = weights.detach()
        return fused

    @staticmethod
    def mix(outs: Tensor, here: Tensor, logits: Tensor) -> tuple[Tensor, Tensor]:
        """Expert outputs [B, M, D] averaged with weights softmax(logits) renormalised over each row's
        present modalities [B, M]: the fused vector [B, D] and the weights [B, M] (all absent: zeros)."""
        weights = torch.exp(logits - logits.max()) * here.to(outs.dtype)  # [B, M]
        weights = weights / weights.sum(dim=1, keepdim=True).clamp_min(1e-12)
        return (weights.unsqueeze(-1) * outs).sum(dim=1), weights

    def modality_weights(self) -> dict[str, Tensor] | None:
        """Modality -> [B] weight of its expert in the last forward pass; None for ``stacking`` or
        before any forward pass."""
        return by_name(self.names, self._weights)

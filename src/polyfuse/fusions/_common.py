"""Helpers shared by fusions: a fixed modality order, masking of absent embeddings, modality tokens,
per-row modality weights."""

from __future__ import annotations

from collections.abc import Iterable

import torch
from torch import Tensor, nn


def ordered(names: Iterable[str]) -> list[str]:
    """Modalities in sorted order, so results never depend on the order of dict keys."""
    return sorted(names)


def present(mask: dict[str, Tensor], name: str, like: Tensor) -> Tensor:
    """Bool [B, 1] presence of ``name``; a modality missing from ``mask`` counts as present."""
    if name not in mask:
        return torch.ones(like.shape[0], 1, dtype=torch.bool, device=like.device)
    return mask[name].to(device=like.device, dtype=torch.bool).reshape(-1, 1)


def used_tokens(
    name: str, embeddings: dict[str, Tensor], mask: dict[str, Tensor], valid: dict[str, Tensor] | None
) -> tuple[Tensor, Tensor]:
    """A token-level fusion's view of one modality: its tokens [B, T, D] (a 2-D embedding is one
    token) with unused ones zeroed, and which are used [B, T]: present and, where ``valid`` gives
    them, valid (text padding is not). Zeroed before any maths: not even NaN reaches values or
    gradients."""
    x = embeddings[name]
    x = x.unsqueeze(1) if x.dim() == 2 else x  # [B, T, D]
    used = present(mask, name, x).expand(x.shape[0], x.shape[1])  # [B, T]
    given = (valid or {}).get(name)
    if given is not None:
        used = used & given.to(device=x.device, dtype=torch.bool)
    return torch.where(used.unsqueeze(-1), x, x.new_zeros(())), used


def select(keep: Tensor, value: Tensor, fallback: Tensor) -> Tensor:
    """``value`` where ``keep`` else ``fallback``; a selection, not a product, so NaN or large
    values in an absent embedding cannot leak into the output or its gradients."""
    return torch.where(keep, value, fallback.to(value.dtype).expand_as(value))


def renormalise(weights: Tensor, keep: Tensor) -> Tensor:
    """Non-negative ``weights`` [B, M] rescaled to sum to 1 over the present modalities of each row
    (``keep`` [B, M]); absent modalities get 0, and rows with none present are all 0, not NaN."""
    w = torch.where(keep, weights, weights.new_zeros(()))
    return w / w.sum(dim=1, keepdim=True).clamp(min=1e-12)


def by_name(names: list[str], weights: Tensor | None) -> dict[str, Tensor] | None:
    """Modality -> column of ``weights`` [B, M] (columns in the order of ``names``)."""
    if weights is None:
        return None
    return {m: weights[:, i] for i, m in enumerate(names)}


class ModalityTokens(nn.Module):
    """One token per modality: its embedding projected to ``dim`` plus a learned type embedding.

    Absent embeddings are replaced by zeros (a selection) before the projection, so token-based
    fusions (attention, perceiver, graph) only need to mask the returned presence.
    """

    def __init__(self, in_dims: dict[str, int], dim: int) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        self.proj = nn.ModuleDict({m: nn.Linear(in_dims[m], dim) for m in self.names})
        self.type_embed = nn.Parameter(torch.randn(len(self.names), dim) * 0.02)  # [M, d]

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Tokens [B, M, d] and presence [B, M] (bool), modalities in sorted order."""
        tokens, keep = [], []
        for i, m in enumerate(self.names):
            x = embeddings[m]  # [B, D_m]
            here = present(mask, m, x)  # [B, 1]
            tokens.append(self.proj[m](select(here, x, x.new_zeros(()))) + self.type_embed[i])
            keep.append(here)
        return torch.stack(tokens, dim=1), torch.cat(keep, dim=1)


class ModalityProjection(nn.Module):
    """Per-modality LayerNorm + Linear to width ``hidden_dim``; absent rows come out as zeros.

    The norm puts embeddings of very different scales on an equal footing before they are added.
    """

    def __init__(self, in_dims: dict[str, int], hidden_dim: int) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        self.norms = nn.ModuleDict({m: nn.LayerNorm(in_dims[m]) for m in self.names})
        self.projs = nn.ModuleDict({m: nn.Linear(in_dims[m], hidden_dim) for m in self.names})

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> tuple[Tensor, Tensor]:
        """Stacked projections [B, M, d] (zeros where absent) and presence [B, M] in sorted order."""
        hs, keeps = [], []
        for m in self.names:
            x = embeddings[m]  # [B, D_m]
            keep = present(mask, m, x)  # [B, 1]
            # Zero absent rows before any maths, so not even NaN reaches values or gradients.
            h = self.projs[m](self.norms[m](select(keep, x, x.new_zeros(()))))  # [B, d]
            hs.append(select(keep, h, h.new_zeros(())))
            keeps.append(keep)
        return torch.stack(hs, dim=1), torch.cat(keeps, dim=1)  # [B, M, d], [B, M]

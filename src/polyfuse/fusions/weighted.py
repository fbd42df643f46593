"""Fusion by a weighted average of projected embeddings, with fixed or learned modality weights.

Weighted late fusion as surveyed by Atrey, Hossain, El Saddik & Kankanhalli, 2010, "Multimodal
Fusion for Multimedia Analysis: A Survey"; the learned variant keeps one softmax logit per modality,
the scalar modality weighting of e.g. Wang, Tran & Feiszli, 2020, "What Makes Training Multi-Modal
Classification Networks Hard?".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import ModalityProjection, by_name, ordered, renormalise
from polyfuse.registry import FUSIONS


def row_weights(weights: Tensor, keep: Tensor) -> Tensor:
    """``weights`` [M] renormalised over the present modalities of each row: [B, M]."""
    w = weights.to(keep.device).unsqueeze(0).expand(keep.shape[0], -1)  # [B, M]
    return renormalise(w, keep)  # absent modalities weigh nothing; all absent: zeros, not NaN


class _WeightedFusion(nn.Module):
    """Project each modality, average with per-modality weights, then ReLU -> Linear."""

    def __init__(
        self, in_dims: dict[str, int], output_dim: int | None, hidden_dim: int, dropout: float
    ) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        self.output_dim = output_dim or hidden_dim
        self.project = ModalityProjection(in_dims, hidden_dim)
        self.proj_out = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, self.output_dim))
        self._weights: Tensor | None = None  # [B, M] of the last forward pass

    def base_weights(self) -> Tensor:
        """Weights [M] in sorted modality order, before renormalising over the present ones."""
        raise NotImplementedError

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        h, keep = self.project(embeddings, mask)  # [B, M, d], [B, M]
        w = row_weights(self.base_weights().to(h.dtype), keep)  # [B, M]
        self._weights = w.detach()
        fused = (w.unsqueeze(-1) * h).sum(dim=1)  # [B, d]; absent rows of h are zeros
        return self.proj_out(fused)  # type: ignore[no-any-return]  # [B, output_dim]

    def modality_weights(self) -> dict[str, Tensor] | None:
        """Modality -> [B] weight it had in each row of the last forward pass (the base weights
        renormalised over the row's present modalities); None before any forward pass."""
        return by_name(self.names, self._weights)


@FUSIONS.register("weighted_fixed")
class WeightedFixedFusion(_WeightedFusion):
    """Weighted average with user-given, fixed weights (renormalised over present modalities).

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Width every modality is projected to before averaging.
        dropout: Dropout before the output projection.
        weights: Modality -> non-negative weight, one for every modality (default: all equal).
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        weights: dict[str, float] | None = None,
    ) -> None:
        super().__init__(in_dims, output_dim, hidden_dim, dropout)
        weights = dict(weights) if weights is not None else dict.fromkeys(self.names, 1.0)
        missing = sorted(set(self.names) - set(weights))
        unknown = sorted(set(weights) - set(self.names))
        if missing or unknown:
            raise ValueError(f"weights must name exactly {self.names}; missing {missing}, unknown {unknown}")
        if any(weights[m] < 0 for m in self.names):
            raise ValueError(f"weights must be non-negative, got {weights}")
        self.weights: Tensor
        self.register_buffer("weights", torch.tensor([float(weights[m]) for m in self.names]))  # [M]

    def base_weights(self) -> Tensor:
        return self.weights


@FUSIONS.register("weighted_learned")
class WeightedLearnedFusion(_WeightedFusion):
    """Weighted average of projected embeddings with learned softmax weights.

    Weighted average with weights softmax(logits), one learned logit per modality, renormalised
    over the present modalities (the same as a softmax over the present modalities' logits).

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Width every modality is projected to before averaging.
        dropout: Dropout before the output projection.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.1,
    ) -> None:
        super().__init__(in_dims, output_dim, hidden_dim, dropout)
        self.logits = nn.Parameter(torch.zeros(len(self.names)))  # [M], equal weights at start

    def base_weights(self) -> Tensor:
        return torch.softmax(self.logits, dim=0)  # [M]

"""Multi-level fusion: early, feature-level and decision-level representations side by side.

Combining fusion at several depths follows Vielzeuf, Lechervy, Pateux & Jurie, 2018, "CentralNet:
a Multilayer Approach for Multimodal Fusion"; the levels are the early/late taxonomy of
Baltrušaitis, Ahuja & Morency, 2019, "Multimodal Machine Learning: A Survey and Taxonomy".
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.fusions.attention import AttentionFusion
from polyfuse.fusions.concat import ConcatFusion
from polyfuse.fusions.late import LateFusion
from polyfuse.registry import FUSIONS


@FUSIONS.register("hierarchical")
class HierarchicalFusion(nn.Module):
    """Early, feature-level and decision-level fusions side by side, then projected.

    Run three fusions built from the other registered classes, each to width ``hidden_dim``:

    * early: ``ConcatFusion`` (normalised embeddings concatenated, absent ones replaced by a learned
      "missing" vector);
    * feature-level: a one-layer ``AttentionFusion`` ([CLS] attention pooling over modality tokens);
    * decision-level: ``LateFusion`` with ``combine="mean"`` (per-modality experts averaged).

    Their outputs are concatenated and projected to ``output_dim``. Each level honours the masks,
    so the whole does too.

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Width of each level's output.
        num_heads: Attention heads of the feature level.
        dropout: Dropout in every level and after the final projection.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        num_heads: int = 4,
        dropout: float = 0.1,
    ) -> None:
        super().__init__()
        self.output_dim = output_dim or hidden_dim
        self.early = ConcatFusion(in_dims, output_dim=hidden_dim, dropout=dropout)
        self.feature = AttentionFusion(
            in_dims,
            output_dim=hidden_dim,
            hidden_dim=hidden_dim,
            num_heads=num_heads,
            num_layers=1,
            dropout=dropout,
        )
        self.decision = LateFusion(in_dims, output_dim=hidden_dim, hidden_dim=hidden_dim, dropout=dropout)
        self.proj = nn.Sequential(
            nn.LayerNorm(3 * hidden_dim),
            nn.Linear(3 * hidden_dim, self.output_dim),
            nn.ReLU(),
            nn.Dropout(dropout),
        )

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        levels = [level(embeddings, mask) for level in (self.early, self.feature, self.decision)]
        return self.proj(torch.cat(levels, dim=1))  # type: ignore[no-any-return]  # [B, output_dim]

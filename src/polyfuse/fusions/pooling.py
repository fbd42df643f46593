"""Fusion by pooling projected embeddings: a sum or a masked mean over the present modalities.

The additive "late fusion" baselines of Baltrušaitis, Ahuja & Morency, 2019, "Multimodal Machine
Learning: A Survey and Taxonomy"; the masked mean is the permutation-invariant pooling of Zaheer et
al., 2017, "Deep Sets", taken over modalities.
"""

from __future__ import annotations

from torch import Tensor, nn

from polyfuse.fusions._common import ModalityProjection, ordered
from polyfuse.registry import FUSIONS


class _PoolingFusion(nn.Module):
    """Project each modality, pool over modalities (subclasses decide how), then ReLU -> Linear."""

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
        self.project = ModalityProjection(in_dims, hidden_dim)
        self.proj_out = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, self.output_dim))

    def pool(self, h: Tensor, keep: Tensor) -> Tensor:
        raise NotImplementedError

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        h, keep = self.project(embeddings, mask)  # [B, M, d], [B, M]
        return self.proj_out(self.pool(h, keep))  # type: ignore[no-any-return]  # [B, output_dim]


@FUSIONS.register("sum")
class SumFusion(_PoolingFusion):
    """Sum of the projected embeddings of the present modalities (all absent: zeros).

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Width every modality is projected to before the sum.
        dropout: Dropout before the output projection.
    """

    def pool(self, h: Tensor, keep: Tensor) -> Tensor:
        return h.sum(dim=1)  # [B, d]; absent rows are already zero


@FUSIONS.register("mean")
class MeanFusion(_PoolingFusion):
    """Mean of the projected embeddings over the present modalities only (all absent: zeros).

    Unlike the sum, the scale does not grow with the number of modalities present.

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Width every modality is projected to before the mean.
        dropout: Dropout before the output projection.
    """

    def pool(self, h: Tensor, keep: Tensor) -> Tensor:
        count = keep.sum(dim=1, keepdim=True).clamp(min=1).to(h.dtype)  # [B, 1]
        return h.sum(dim=1) / count  # [B, d]

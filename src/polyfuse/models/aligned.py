"""A model whose modalities share one embedding space: encoders, a projection head per modality,
a learned temperature, and (for masked-modality reconstruction) a predictor per modality.

It is a ``MultimodalModel`` without fusion or heads, so everything that runs encoders over an
encoded table (frozen-encoder caches, batching, presence masks) works on it unchanged. ``aligned``
gives each modality's unit-length embedding in the shared space; after pre-training, its encoders
are what ``fit(init_from=...)`` starts from.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.data.batch import Batch
from polyfuse.models.multimodal import MultimodalModel

INIT_TEMPERATURE = 0.07  # CLIP's initial temperature (logit scale 1 / 0.07)
MAX_LOGIT_SCALE = 100.0  # CLIP clips the learned scale here
HIDDEN = 256  # width of a projection head's hidden layer


def projection_head(in_dim: int, dim: int) -> nn.Module:
    """Encoder output -> the shared space: a one-hidden-layer MLP (SimCLR's head; LiT trains only these
    on locked towers)."""
    return nn.Sequential(nn.Linear(in_dim, HIDDEN), nn.GELU(), nn.Linear(HIDDEN, dim))


class NoFusion(nn.Module):
    """Stands in for a fusion: an aligned model compares modalities, it never fuses them."""

    output_dim = 0

    def forward(self, *args: object, **kwargs: object) -> Tensor:
        raise RuntimeError("an aligned model has no fusion: use aligned(batch)")


class AlignedModel(MultimodalModel):
    """Encoders -> projection heads -> unit vectors in one ``dim``-wide space."""

    def __init__(self, encoders: dict[str, nn.Module], dim: int = 128, predictors: bool = False):
        super().__init__(encoders, NoFusion(), {})
        self.dim = dim
        self.projections = nn.ModuleDict(
            {m: projection_head(int(enc.output_dim), dim) for m, enc in encoders.items()}  # type: ignore[arg-type]
        )
        self.logit_scale = nn.Parameter(torch.tensor(math.log(1 / INIT_TEMPERATURE)))
        self.predictors = nn.ModuleDict(
            {m: projection_head(dim, dim) for m in encoders} if predictors else {}
        )

    def scale(self) -> Tensor:
        """The contrastive logits' scale (1 / temperature), at most ``MAX_LOGIT_SCALE``."""
        return self.logit_scale.exp().clamp(max=MAX_LOGIT_SCALE)

    def aligned(self, batch: Batch) -> dict[str, Tensor]:
        """Modality -> unit-length embeddings [B, dim] in the shared space, for the modalities the batch
        carries (absent rows included: read ``batch.mask``)."""
        names = [m for m in self.encoders if m in batch.inputs or m in batch.cached]
        return {m: self.project(m, e) for m, e in self.embed(batch, names).items()}

    def project(self, modality: str, embedding: Tensor) -> Tensor:
        return F.normalize(self.projections[modality](embedding), dim=-1)

"""Late fusion by concatenation (Baltrušaitis, Ahuja & Morency, 2019, "Multimodal Machine
Learning: A Survey and Taxonomy"; the "early/late fusion" baseline of most multimodal work)."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import ordered, present, select
from polyfuse.registry import FUSIONS


@FUSIONS.register("concat")
class ConcatFusion(nn.Module):
    """Concatenation of normalised embeddings, then Linear + ReLU + Dropout.

    Normalise each embedding, swap absent ones for a learned "missing" vector, concatenate
    in sorted modality order, then Linear + ReLU + Dropout.

    The per-modality LayerNorm puts embeddings of very different scales (a pretrained text model,
    a CNN trained from scratch) on an equal footing before they are mixed.

    ``norm=False, project=False`` is plain concatenation (MultiBench's ``Concat``), for parity runs:
    no parameters at all, absent embeddings become zeros.

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (ignored without ``project``: the sum of the sizes).
        dropout: Dropout after the projection.
        norm: LayerNorm each embedding first.
        project: Linear + ReLU + Dropout after the concatenation.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int = 256,
        dropout: float = 0.1,
        norm: bool = True,
        project: bool = True,
    ) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        width = sum(in_dims.values())
        self.output_dim = output_dim if project else width
        self.norms = nn.ModuleDict(
            {m: nn.LayerNorm(in_dims[m]) if norm else nn.Identity() for m in self.names}
        )
        learned = self.names if project else []  # plain concatenation has no parameter at all
        self.missing = nn.ParameterDict({m: nn.Parameter(torch.zeros(in_dims[m])) for m in learned})
        self.proj = (
            nn.Sequential(nn.Linear(width, output_dim), nn.ReLU(), nn.Dropout(dropout))
            if project
            else nn.Identity()
        )

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        parts = []
        for m in self.names:
            x = embeddings[m]  # [B, D_m]
            keep = present(mask, m, x)  # [B, 1]
            # Zero absent rows before the norm too, so even their gradients stay finite.
            x = self.norms[m](select(keep, x, x.new_zeros(())))
            parts.append(select(keep, x, self.missing[m] if m in self.missing else x.new_zeros(())))
        return self.proj(torch.cat(parts, dim=1))  # type: ignore[no-any-return]  # [B, output_dim]

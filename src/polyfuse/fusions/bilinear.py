"""Fusion by multiplicative interactions (Jayakumar, Czarnecki, Menick, Schwarz, Rae, Osindero,
Teh, Harley & Pascanu, 2020, "Multiplicative Interactions and Where to Find Them"): a linear term
plus a low-rank bilinear term for every pair of modalities."""

from __future__ import annotations

from itertools import combinations

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import ordered, present, select
from polyfuse.registry import FUSIONS


@FUSIONS.register("bilinear")
class BilinearFusion(nn.Module):
    """Linear terms plus low-rank pairwise multiplicative interactions between modalities.

    h = W [x_1; ...; x_M] + sum over pairs (a, b), a < b in sorted order, of
    (U_ab x_a) * (V_ab x_b); then ReLU -> Dropout -> Linear to ``output_dim``.

    Each input is LayerNorm-ed first so the products stay on a sane scale. An absent modality
    enters the linear term as zeros and drops every pair term it is part of.

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Width of h (and the rank of each bilinear term).
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
        self.pairs = list(combinations(self.names, 2))
        self.norms = nn.ModuleDict({m: nn.LayerNorm(in_dims[m]) for m in self.names})
        self.linear = nn.Linear(sum(in_dims[m] for m in self.names), hidden_dim)
        self.left = nn.ModuleDict({f"{a}|{b}": nn.Linear(in_dims[a], hidden_dim) for a, b in self.pairs})
        self.right = nn.ModuleDict({f"{a}|{b}": nn.Linear(in_dims[b], hidden_dim) for a, b in self.pairs})
        self.proj_out = nn.Sequential(nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden_dim, self.output_dim))

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        xs, keeps = {}, {}
        for m in self.names:
            x = embeddings[m]  # [B, D_m]
            keep = present(mask, m, x)  # [B, 1]
            xs[m] = select(keep, self.norms[m](select(keep, x, x.new_zeros(()))), x.new_zeros(()))
            keeps[m] = keep
        h = self.linear(torch.cat([xs[m] for m in self.names], dim=1))  # [B, d]
        for a, b in self.pairs:
            term = self.left[f"{a}|{b}"](xs[a]) * self.right[f"{a}|{b}"](xs[b])  # [B, d]
            h = h + select(keeps[a] & keeps[b], term, term.new_zeros(()))
        return self.proj_out(h)  # type: ignore[no-any-return]  # [B, output_dim]

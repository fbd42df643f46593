"""Low-rank Multimodal Fusion (Liu, Shen, Lakshminarasimhan, Liang, Zadeh & Morency, 2018,
"Efficient Low-rank Multimodal Fusion with Modality-Specific Factors"): the tensor fusion's weight
decomposed into ``rank`` factors per modality, so the outer product is never built."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from polyfuse.fusions._common import ordered, present, select
from polyfuse.registry import FUSIONS


@FUSIONS.register("lmf")
class LMFFusion(nn.Module):
    """Low-rank multimodal fusion: the tensor fusion computed with modality-specific low-rank factors.

    f_m = [x_m; 1] W_m with W_m of shape [rank, D_m + 1, output_dim]; fused = sum over rank of
    w_r * prod_m f_m[r] + bias, then Dropout.

    An absent modality keeps only the constant 1 of [x_m; 1], so its factor contributes just the
    last row of W_m, exactly as in the tensor fusion. Inputs are LayerNorm-ed first unless
    ``norm=False`` (MultiBench's ``LowRankTensorFusion`` has no norm).

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Default output size.
        dropout: Dropout on the fused vector.
        rank: Number of factors per modality.
        norm: LayerNorm each embedding first.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        rank: int = 8,
        norm: bool = True,
    ) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        self.output_dim = output_dim or hidden_dim
        self.norms = nn.ModuleDict(
            {m: nn.LayerNorm(in_dims[m]) if norm else nn.Identity() for m in self.names}
        )
        self.factors = nn.ParameterDict(
            {m: nn.Parameter(torch.empty(rank, in_dims[m] + 1, self.output_dim)) for m in self.names}
        )
        for m in self.names:
            nn.init.xavier_normal_(self.factors[m])
        self.rank_weights = nn.Parameter(torch.empty(1, rank))
        nn.init.xavier_normal_(self.rank_weights)
        self.bias = nn.Parameter(torch.zeros(self.output_dim))
        self.drop = nn.Dropout(dropout)

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        product: Tensor | None = None
        for m in self.names:
            x = embeddings[m]  # [B, D_m]
            keep = present(mask, m, x)  # [B, 1]
            x = select(keep, self.norms[m](select(keep, x, x.new_zeros(()))), x.new_zeros(()))
            x = nn.functional.pad(x, (0, 1), value=1.0)  # [B, D_m + 1]; absent: only the 1
            f = torch.einsum("bd,rdo->bro", x, self.factors[m])  # [B, rank, output_dim]
            product = f if product is None else product * f
        assert product is not None
        fused = torch.einsum("r,bro->bo", self.rank_weights[0], product) + self.bias  # [B, output_dim]
        return self.drop(fused)  # type: ignore[no-any-return]

"""Tensor Fusion Network (Zadeh, Chen, Poria, Cambria & Morency, 2017, "Tensor Fusion Network for
Multimodal Sentiment Analysis"): the outer product of every modality's [z_m; 1]."""

from __future__ import annotations

from torch import Tensor, nn

from polyfuse.fusions._common import ordered, present, select
from polyfuse.registry import FUSIONS

MAX_TENSOR_FEATURES = 100_000  # (tensor_dim + 1) ** M is kept at or under this


def fit_tensor_dim(tensor_dim: int, num_modalities: int, limit: int = MAX_TENSOR_FEATURES) -> int:
    """The largest dim <= ``tensor_dim`` with (dim + 1) ** M <= ``limit``; ValueError if none >= 1."""
    dim = tensor_dim
    while dim >= 1 and (dim + 1) ** num_modalities > limit:
        dim -= 1
    if dim < 1:
        raise ValueError(
            f"tensor fusion of {num_modalities} modalities needs at least 2**{num_modalities} features, "
            f"over the limit of {limit}; use 'lmf' (its low-rank form) instead"
        )
    return dim


@FUSIONS.register("tensor")
class TensorFusion(nn.Module):
    """Tensor fusion (TFN): the outer product of every modality's [z_m; 1].

    z_m = ReLU(W_m x_m) of size ``tensor_dim``; the flattened outer product of all [z_m; 1]
    holds every unimodal, bimodal, ..., M-modal interaction; then Dropout -> Linear -> ReLU.

    An absent modality's vector is [0, ..., 0, 1]: only the constant, so exactly the terms without
    it survive. With many modalities ``tensor_dim`` shrinks so that (tensor_dim + 1) ** M stays at
    most ``MAX_TENSOR_FEATURES``.

    Args:
        in_dims: Modality -> embedding size.
        output_dim: Size of the fused vector (default ``hidden_dim``).
        hidden_dim: Default output size.
        dropout: Dropout on the outer product.
        tensor_dim: Size of each z_m before the constant 1 is appended.
    """

    def __init__(
        self,
        in_dims: dict[str, int],
        output_dim: int | None = None,
        hidden_dim: int = 128,
        dropout: float = 0.1,
        tensor_dim: int = 16,
    ) -> None:
        super().__init__()
        self.names = ordered(in_dims)
        self.output_dim = output_dim or hidden_dim
        self.tensor_dim = fit_tensor_dim(tensor_dim, len(self.names))
        self.norms = nn.ModuleDict({m: nn.LayerNorm(in_dims[m]) for m in self.names})
        self.projs = nn.ModuleDict({m: nn.Linear(in_dims[m], self.tensor_dim) for m in self.names})
        features = (self.tensor_dim + 1) ** len(self.names)
        self.proj_out = nn.Sequential(nn.Dropout(dropout), nn.Linear(features, self.output_dim), nn.ReLU())

    def forward(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor:
        product: Tensor | None = None
        for m in self.names:
            x = embeddings[m]  # [B, D_m]
            keep = present(mask, m, x)  # [B, 1]
            z = self.projs[m](self.norms[m](select(keep, x, x.new_zeros(())))).relu()  # [B, t]
            z = select(keep, z, z.new_zeros(()))  # absent: zeros, so [z; 1] is the constant alone
            z = nn.functional.pad(z, (0, 1), value=1.0)  # [B, t + 1]
            # [B, F] x [B, t + 1] -> [B, F * (t + 1)]
            product = z if product is None else (product.unsqueeze(2) * z.unsqueeze(1)).flatten(1)
        assert product is not None
        return self.proj_out(product)  # type: ignore[no-any-return]  # [B, output_dim]

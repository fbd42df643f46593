"""The fusion contract.

A fusion combines one embedding per modality into one vector per row::

    forward(embeddings: dict[str, Tensor[B, D_m]], mask: dict[str, Tensor[B] bool]) -> Tensor[B, D]

Constructors take ``in_dims: dict[str, int]`` (modality -> embedding size) and keyword options from
the shared vocabulary (``output_dim``, ``hidden_dim``, ``dropout``, ``num_heads``). The module has
an ``output_dim`` attribute. Absent modalities (mask False) must not influence the output, rows
where every modality is absent must still give finite values, and the result must not depend on
the order of the dict's keys.

Token-level fusions set the class attribute ``wants_tokens = True``. The model then builds them with
``in_dims`` holding each encoder's ``token_dim`` and calls::

    forward(embeddings: dict[str, Tensor[B, T_m, D_m] | Tensor[B, D_m]], mask,
            tokens_valid: dict[str, Tensor[B, T_m] bool] | None = None) -> Tensor[B, D]

A 2-D embedding counts as a sequence of one valid token (encoders without ``forward_tokens``, and
the plain contract above), so a token-level fusion also honours the plain contract.

Attention-like fusions also offer ``modality_weights() -> dict[str, Tensor[B]] | None``: how much
each modality counted in each row of the last forward pass, summing to 1 over the present
modalities of a row (0 for absent ones; every weight 0 in a row with none present).
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Fusion(Protocol):
    output_dim: int

    def __call__(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor: ...


class TokenFusion(Protocol):
    output_dim: int
    wants_tokens: bool

    def __call__(
        self,
        embeddings: dict[str, Tensor],
        mask: dict[str, Tensor],
        tokens_valid: dict[str, Tensor] | None = None,
    ) -> Tensor: ...


class WeighsModalities(Protocol):
    def modality_weights(self) -> dict[str, Tensor] | None: ...

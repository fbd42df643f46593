"""The fusion contract.

A fusion combines one embedding per modality into one vector per row::

    forward(embeddings: dict[str, Tensor[B, D_m]], mask: dict[str, Tensor[B] bool]) -> Tensor[B, D]

Constructors take ``in_dims: dict[str, int]`` (modality -> embedding size) and keyword options from
the shared vocabulary (``output_dim``, ``hidden_dim``, ``dropout``, ``num_heads``). The module has
an ``output_dim`` attribute. Absent modalities (mask False) must not influence the output, rows
where every modality is absent must still give finite values, and the result must not depend on
the order of the dict's keys.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Fusion(Protocol):
    output_dim: int

    def __call__(self, embeddings: dict[str, Tensor], mask: dict[str, Tensor]) -> Tensor: ...

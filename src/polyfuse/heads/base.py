"""The head contract: ``forward(Tensor[B, D]) -> logits [B, num_outputs]``.

Heads are registered under the task they serve ("multiclass", "binary", "multilabel",
"regression") and are built as ``HEADS.build(task, in_dim=..., num_outputs=..., hidden_dim=...,
dropout=...)``. Each also turns logits into what a user reads with ``predict(logits)``:
class probabilities (multiclass, softmax), a positive-class probability [B] (binary, sigmoid),
per-label probabilities (multilabel, sigmoid) or values (regression, identity). Losses are
separate modules in ``polyfuse.losses``.
"""

from __future__ import annotations

from typing import Protocol

from torch import Tensor


class Head(Protocol):
    task: str
    num_outputs: int

    def __call__(self, x: Tensor) -> Tensor: ...

    def predict(self, logits: Tensor) -> Tensor: ...

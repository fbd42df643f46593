"""Linear or one-hidden-layer MLP heads, one subclass per task.

All heads share the same body; they differ only in how logits become what a user reads.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from polyfuse.registry import HEADS


class TaskHead(nn.Module):
    """``in_dim`` features -> ``num_outputs`` logits.

    Args:
        in_dim: Size of the fused embedding.
        num_outputs: Number of logits (classes; 1 for binary and single-target regression).
        hidden_dim: Width of one hidden layer; 0 means a single linear layer.
        dropout: Dropout applied to the input (and the hidden layer).
        activation: Of the hidden layer: "relu", "gelu" or "leaky_relu".
        negative_slope: Slope of "leaky_relu" for negative inputs (MultiBench's heads use 0.2).
    """

    task: str = ""

    def __init__(
        self,
        in_dim: int,
        num_outputs: int,
        hidden_dim: int = 0,
        dropout: float = 0.1,
        activation: str = "relu",
        negative_slope: float = 0.2,
    ) -> None:
        super().__init__()
        acts: dict[str, Callable[[], nn.Module]] = {
            "relu": nn.ReLU,
            "gelu": nn.GELU,
            "leaky_relu": lambda: nn.LeakyReLU(negative_slope),
        }
        if activation not in acts:
            raise ValueError(f"unknown activation {activation!r}; choose from {sorted(acts)}")
        self.in_dim = in_dim
        self.num_outputs = num_outputs
        if hidden_dim > 0:
            self.net: nn.Module = nn.Sequential(
                nn.Dropout(dropout),
                nn.Linear(in_dim, hidden_dim),
                acts[activation](),
                nn.Dropout(dropout),
                nn.Linear(hidden_dim, num_outputs),
            )
        else:
            self.net = nn.Sequential(nn.Dropout(dropout), nn.Linear(in_dim, num_outputs))

    def forward(self, x: Tensor) -> Tensor:
        return self.net(x)  # type: ignore[no-any-return]  # [B, num_outputs]

    def predict(self, logits: Tensor) -> Tensor:
        """Logits -> what a user reads (overridden per task)."""
        raise NotImplementedError


@HEADS.register("multiclass")
class MulticlassHead(TaskHead):
    """One class out of ``num_outputs``; ``predict`` gives softmax probabilities [B, K]."""

    task = "multiclass"

    def predict(self, logits: Tensor) -> Tensor:
        return torch.softmax(logits, dim=-1)  # [B, K]


@HEADS.register("binary")
class BinaryHead(TaskHead):
    """Yes/no; ``predict`` gives the positive-class probability [B]."""

    task = "binary"

    def __init__(self, in_dim: int, num_outputs: int = 1, **options: Any) -> None:
        if num_outputs != 1:
            raise ValueError(f"a binary head has one output, got num_outputs={num_outputs}")
        super().__init__(in_dim, num_outputs, **options)  # hidden_dim, dropout, activation, ...

    def predict(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits.reshape(logits.shape[0]))  # [B]


@HEADS.register("multilabel")
class MultilabelHead(TaskHead):
    """Several independent yes/no labels; ``predict`` gives per-label probabilities [B, K]."""

    task = "multilabel"

    def predict(self, logits: Tensor) -> Tensor:
        return torch.sigmoid(logits)  # [B, K]


@HEADS.register("regression")
class RegressionHead(TaskHead):
    """Real-valued targets; ``predict`` returns the values ([B] for a single target)."""

    task = "regression"

    def predict(self, logits: Tensor) -> Tensor:
        return logits.squeeze(-1) if self.num_outputs == 1 else logits  # [B] or [B, K]

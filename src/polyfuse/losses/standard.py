"""Standard losses as modules with one signature: ``forward(logits, target) -> scalar``.

They accept the shapes the heads and the batches produce (binary and single-target regression
logits are [B, 1] while targets are [B]), so training code never reshapes per task.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.registry import LOSSES

_DEFAULTS = {"multiclass": "cross_entropy", "binary": "bce", "multilabel": "bce", "regression": "mse"}


def default_loss(task: str) -> str:
    """Name in ``LOSSES`` of the usual loss for a task ("multiclass" -> "cross_entropy", ...)."""
    try:
        return _DEFAULTS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(sorted(_DEFAULTS))}") from None


def _like(target: Tensor, logits: Tensor) -> Tensor:
    # [B] targets against [B, 1] logits: give the target the logits' shape.
    return target.to(logits.dtype).reshape(logits.shape)


@LOSSES.register("cross_entropy")
class CrossEntropyLoss(nn.Module):
    """Multiclass cross-entropy on logits [B, K] and class indices [B].

    Args:
        label_smoothing: Mass spread uniformly over the classes (0 disables).
    """

    def __init__(self, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(logits, target.long().reshape(-1), label_smoothing=self.label_smoothing)


@LOSSES.register("bce")
class BCELoss(nn.Module):
    """Binary cross-entropy with logits, for binary ([B] vs [B, 1]) and multilabel ([B, K]) targets.

    Args:
        pos_weight: Optional weight of positive examples (a float for every label).
    """

    def __init__(self, pos_weight: float | None = None) -> None:
        super().__init__()
        self.pos_weight = pos_weight

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        weight = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        return F.binary_cross_entropy_with_logits(logits, _like(target, logits), pos_weight=weight)


@LOSSES.register("mse")
class MSELoss(nn.Module):
    """Mean squared error for regression (logits [B, 1] vs targets [B], or [B, K] vs [B, K])."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(logits, _like(target, logits))

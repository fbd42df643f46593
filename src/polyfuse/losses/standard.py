"""Standard losses as modules with one signature: ``forward(logits, target) -> scalar``.

They accept the shapes the heads and the batches produce (binary and single-target regression
logits are [B, 1] while targets are [B]), so training code never reshapes per task.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from polyfuse.registry import LOSSES

_DEFAULTS = {"multiclass": "cross_entropy", "binary": "bce", "multilabel": "bce", "regression": "mse"}
SMOOTHED = ("multiclass", "binary", "multilabel")  # the tasks whose losses take label_smoothing


def default_loss(task: str) -> str:
    """Name in ``LOSSES`` of the usual loss for a task ("multiclass" -> "cross_entropy", ...)."""
    try:
        return _DEFAULTS[task]
    except KeyError:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(sorted(_DEFAULTS))}") from None


def training_losses(tasks: dict[str, str], label_smoothing: float = 0.0) -> dict[str, nn.Module]:
    """Label -> the usual loss of its task (``default_loss``), classification losses with
    ``label_smoothing``."""
    return {
        label: LOSSES.build(
            default_loss(task), **({"label_smoothing": label_smoothing} if task in SMOOTHED else {})
        )
        for label, task in tasks.items()
    }


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
        label_smoothing: Targets move this share of the way toward 0.5 (0 disables): 1 becomes
            1 - s / 2 and 0 becomes s / 2, as two-class cross-entropy smoothing would make them.
    """

    def __init__(self, pos_weight: float | None = None, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.pos_weight = pos_weight
        self.label_smoothing = label_smoothing

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        weight = None if self.pos_weight is None else logits.new_tensor(self.pos_weight)
        soft = _like(target, logits) * (1 - self.label_smoothing) + self.label_smoothing / 2
        return F.binary_cross_entropy_with_logits(logits, soft, pos_weight=weight)


@LOSSES.register("mse")
class MSELoss(nn.Module):
    """Mean squared error for regression (logits [B, 1] vs targets [B], or [B, K] vs [B, K])."""

    def forward(self, logits: Tensor, target: Tensor) -> Tensor:
        return F.mse_loss(logits, _like(target, logits))

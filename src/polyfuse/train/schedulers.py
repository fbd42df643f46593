"""Learning-rate schedules by name: ``TrainConfig.scheduler`` is a key of ``SCHEDULERS``.

Each entry is a factory ``(optimizer, cfg) -> LRScheduler | None``. Lightning steps the scheduler once
per epoch, after validation, so epoch ``e`` (from 0) trains at the schedule's ``e``-th value; None
keeps the optimizer's learning rate constant.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import CosineAnnealingLR, LambdaLR, LRScheduler

from polyfuse.config import TrainConfig
from polyfuse.registry import SCHEDULERS


@SCHEDULERS.register("none")
def constant(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LRScheduler | None:
    """No schedule: every epoch trains at ``cfg.lr``."""
    return None


@SCHEDULERS.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LRScheduler | None:
    """Cosine annealing over ``max_epochs`` (Loshchilov & Hutter, 2017, "SGDR: Stochastic Gradient
    Descent with Warm Restarts", without restarts): epoch ``e`` trains at lr (1 + cos(pi e / E)) / 2
    with E = max_epochs."""
    return CosineAnnealingLR(optimizer, T_max=max(1, cfg.max_epochs))


@SCHEDULERS.register("linear_warmup_cosine")
def linear_warmup_cosine(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> LRScheduler | None:
    """A linear warmup over the first W epochs, then cosine annealing over the other E - W.

    With E = max_epochs and W = ``warmup_epochs(E)``, epoch ``e`` (from 0) trains at lr times
    (e + 1) / (W + 1) for e < W, then (1 + cos(pi (e - W) / (E - W))) / 2: the rate rises to lr at
    epoch W and then decays as ``cosine`` does over E - W epochs. Warmup keeps the first updates
    small while Adam's moment estimates are still noisy (Goyal et al., 2017, "Accurate, Large
    Minibatch SGD: Training ImageNet in 1 Hour"; Liu et al., 2020, "On the Variance of the Adaptive
    Learning Rate and Beyond").
    """
    epochs = max(1, cfg.max_epochs)
    warmup = warmup_epochs(epochs)

    def factor(epoch: int) -> float:
        if epoch < warmup:
            return (epoch + 1) / (warmup + 1)
        return (1 + math.cos(math.pi * (epoch - warmup) / (epochs - warmup))) / 2

    return LambdaLR(optimizer, factor)


def warmup_epochs(max_epochs: int) -> int:
    """Warmup length of ``linear_warmup_cosine``: a tenth of the epochs (rounded down), at least one,
    and none when there is a single epoch."""
    return min(max(1, max_epochs // 10), max_epochs - 1)

"""Learning-rate schedules by name: ``TrainConfig.scheduler`` is a key of ``SCHEDULERS``.

Each entry is a factory ``(optimizer, cfg) -> LRScheduler | ReduceLROnPlateau | None``. Lightning steps
the scheduler once per epoch, after validation, so epoch ``e`` (from 0) trains at the schedule's
``e``-th value; None keeps the optimizer's learning rate constant; ``plateau`` follows ``val_loss``.
"""

from __future__ import annotations

import math

import torch
from torch.optim.lr_scheduler import (
    CosineAnnealingLR,
    ExponentialLR,
    LambdaLR,
    LRScheduler,
    ReduceLROnPlateau,
    StepLR,
)

from polyfuse.config import TrainConfig
from polyfuse.registry import SCHEDULERS

Schedule = LRScheduler | ReduceLROnPlateau | None


@SCHEDULERS.register("none")
def constant(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Schedule:
    """No schedule: every epoch trains at ``cfg.lr``."""
    return None


@SCHEDULERS.register("cosine")
def cosine(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Schedule:
    """Cosine annealing over ``max_epochs`` (Loshchilov & Hutter, 2017, "SGDR: Stochastic Gradient
    Descent with Warm Restarts", without restarts): epoch ``e`` trains at lr (1 + cos(pi e / E)) / 2
    with E = max_epochs."""
    return CosineAnnealingLR(optimizer, T_max=max(1, cfg.max_epochs))


@SCHEDULERS.register("linear_warmup_cosine")
def linear_warmup_cosine(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Schedule:
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


@SCHEDULERS.register("one_cycle")
def one_cycle(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Schedule:
    """The one-cycle policy over ``max_epochs`` (Smith & Topin, 2019, "Super-Convergence: Very Fast
    Training of Neural Networks Using Large Learning Rates"), per epoch: the rate rises from lr / 25
    to lr over the first 30% of the epochs (cosine; none with two epochs or fewer), then falls to
    lr / 25 / 10^4 in the last epoch (cosine): torch's ``OneCycleLR`` shape with its defaults."""
    epochs = max(1, cfg.max_epochs)
    rise = max(0, min(round(0.3 * epochs), epochs - 2))  # the last epoch always ends the fall
    start, end = 1 / 25, 1 / 25 / 1e4

    def factor(epoch: int) -> float:
        if epoch < rise:
            return start + (1 - start) * (1 - math.cos(math.pi * epoch / rise)) / 2
        fall = max(1, epochs - 1 - rise)
        t = min(1.0, (epoch - rise) / fall)
        return end + (1 - end) * (1 + math.cos(math.pi * t)) / 2

    return LambdaLR(optimizer, factor)


@SCHEDULERS.register("step")
def step(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Schedule:
    """Step decay: the rate is divided by 10 after each third of ``max_epochs`` (He et al., 2016,
    "Deep Residual Learning for Image Recognition", trained that way)."""
    return StepLR(optimizer, step_size=max(1, cfg.max_epochs // 3), gamma=0.1)


@SCHEDULERS.register("exponential")
def exponential(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Schedule:
    """Exponential decay: each epoch multiplies the rate by the same factor, so that it reaches
    lr / 100 after ``max_epochs`` epochs."""
    return ExponentialLR(optimizer, gamma=0.01 ** (1 / max(1, cfg.max_epochs)))


@SCHEDULERS.register("plateau")
def plateau(optimizer: torch.optim.Optimizer, cfg: TrainConfig) -> Schedule:
    """Reduce on plateau: halve the rate when ``val_loss`` has not improved for half of ``patience``
    epochs (at least one), so it drops before early stopping would end the run."""
    return ReduceLROnPlateau(optimizer, mode="min", factor=0.5, patience=max(1, cfg.patience // 2))

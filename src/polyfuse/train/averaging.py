"""Weight averaging: validation, the kept epoch and the saved model read an exponential moving
average (EMA) of the weights instead of the last step's (``TrainConfig.ema``), or the equal-weight
average of the epochs' weights from an epoch on (stochastic weight averaging, ``swa_start``).

Polyak & Juditsky (SIAM J. Control Optim. 1992) averaging in its exponential form, as timm's model
EMA and AutoGluon-Multimodal's checkpoint averaging use it: after every optimiser step,

    avg <- decay * avg + (1 - decay) * current

over the trainable parameters and the floating-point buffers (batch-norm statistics), starting from
the weights after the first step. Small validation splits make the epoch-to-epoch scores of plain
weights noisy (a learning rate that still moves the weights a lot at the chosen epoch); the average
moves smoothly, so the kept epoch is less a matter of luck. Measured (``benchmarks/weighting``, 10
seeds): with two labels, it narrowed the regression label's seed-to-seed spread threefold and kept it
within 1 point of its single-label model; it did not close the class label's gap.

The average lives beside the model: before each validation pass it is swapped in (so the logged
scores and ``BestWeights``' copy are the average's), and the training weights come back before the
next training epoch. ``decay`` is per step: 0.98 averages over about the last 50 steps.
"""

from __future__ import annotations

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback
from torch import Tensor


def averaged_tensors(module: torch.nn.Module) -> dict[str, Tensor]:
    """The state entries an average follows: trainable parameters and floating-point buffers (frozen
    weights never change, so copying them each step would be pure cost)."""
    trainable = {name: p for name, p in module.named_parameters() if p.requires_grad}
    buffers = {name: b for name, b in module.named_buffers() if b.dtype.is_floating_point}
    return trainable | buffers


def _model(pl_module: L.LightningModule) -> torch.nn.Module:
    """The trained model inside the Lightning task (``MultimodalTask.model``)."""
    model = pl_module.model
    assert isinstance(model, torch.nn.Module)
    return model


class _SwappedAverage(Callback):
    """An average of ``pl_module.model``'s weights that validation reads: swapped in before each
    validation pass (once there is one), the training weights swapped back before the next epoch."""

    def __init__(self) -> None:
        self.average: dict[str, Tensor] | None = None
        self._training: dict[str, Tensor] | None = None  # the live weights while the average is in

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if self.average is None or self._training is not None:
            return
        live = averaged_tensors(_model(pl_module))
        with torch.no_grad():
            self._training = {name: t.detach().clone() for name, t in live.items()}
            for name, t in live.items():
                t.copy_(self.average[name])

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.restore(pl_module)

    def restore(self, pl_module: L.LightningModule) -> None:
        """Put the training weights back (after a validation pass swapped the average in)."""
        if self._training is None:
            return
        live = averaged_tensors(_model(pl_module))
        with torch.no_grad():
            for name, t in live.items():
                t.copy_(self._training[name])
        self._training = None


class WeightEMA(_SwappedAverage):
    """Keeps an exponential moving average of ``pl_module.model``'s weights and validates with it."""

    def __init__(self, decay: float) -> None:
        if not 0.0 < decay < 1.0:
            raise ValueError(f"ema decay must be in (0, 1), got {decay}")
        super().__init__()
        self.decay = decay

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: object) -> None:
        live = averaged_tensors(_model(pl_module))
        with torch.no_grad():
            if self.average is None:
                self.average = {name: t.detach().clone() for name, t in live.items()}
                return
            names = list(live)
            torch._foreach_lerp_(
                [self.average[n] for n in names], [live[n].detach() for n in names], 1 - self.decay
            )


class WeightSWA(_SwappedAverage):
    """Stochastic weight averaging (Izmailov, Podoprikhin, Garipov, Vetrov & Wilson, UAI 2018,
    "Averaging Weights Leads to Wider Optima and Better Generalization"): the equal-weight average of
    the weights at the end of each epoch from epoch ``start`` (from 0) on; earlier epochs validate
    their own weights. The learning rate keeps ``TrainConfig.scheduler``'s schedule (the paper
    holds it constant or cycles it from the start), and batch-norm statistics are averaged with the
    weights, like the EMA's, instead of being recomputed with a pass over the training rows."""

    def __init__(self, start: int) -> None:
        if start < 0:
            raise ValueError(f"swa_start must be an epoch (0 or more), got {start}")
        super().__init__()
        self.start = start
        self.count = 0  # epochs averaged so far

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.current_epoch >= self.start and self._training is None:
            live = averaged_tensors(_model(pl_module))
            with torch.no_grad():
                if self.average is None:
                    self.average = {name: t.detach().clone() for name, t in live.items()}
                else:
                    names = list(live)
                    weight = 1 / (self.count + 1)  # a running mean: avg + (w - avg) / (n + 1)
                    torch._foreach_lerp_(
                        [self.average[n] for n in names], [live[n].detach() for n in names], weight
                    )
            self.count += 1
        super().on_validation_epoch_start(trainer, pl_module)


def weight_averaging(ema: float, swa_start: int | None) -> list[Callback]:
    """The averaging callback ``TrainConfig`` asks for (``ema`` or ``swa_start``), if any."""
    if ema > 0 and swa_start is not None:
        raise ValueError("choose one weight average: ema or swa_start, not both")
    if ema > 0:
        return [WeightEMA(ema)]
    return [] if swa_start is None else [WeightSWA(swa_start)]

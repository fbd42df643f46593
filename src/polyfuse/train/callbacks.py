"""Lightning callbacks: named ones that ``TrainConfig.callbacks`` switches on, and search pruning.

``CALLBACKS`` maps a name to a factory ``(cfg: TrainConfig) -> Callback``; ``train_model`` adds the
callbacks named in ``cfg.callbacks`` to the trainer, after its own (best weights, early stopping).
A callback that needs runtime arguments, such as ``EpochReporter`` (it reports to a caller's
function), is not registered: code passes it to ``train_model(callbacks=...)``.
"""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Callback

from polyfuse.config import TrainConfig
from polyfuse.registry import CALLBACKS


class EpochReporter(Callback):
    """Reports the monitored validation score after each epoch; stops training when told to.

    ``report(epoch, score) -> bool`` returns True to stop (an optuna pruner's verdict, for example),
    so this callback needs no knowledge of who is listening.
    """

    def __init__(self, monitor: str, report: Callable[[int, float], bool]):
        self.monitor, self.report = monitor, report
        self.stopped_early = False

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking or self.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[self.monitor])
        if self.report(trainer.current_epoch, score):
            self.stopped_early = True
            trainer.should_stop = True


class LearningRateLog(Callback):
    """Logs each epoch's learning rate as ``lr`` (``lr_1``, ``lr_2`` ... for further parameter groups).

    The rate is read when the training epoch starts, so it is the one that epoch trained at, and
    logged with the validation metrics, so that it lands in the same row as them in the fit's history
    and in ``metrics.csv`` (Lightning's ``LearningRateMonitor`` writes to the logger only, and needs one).
    """

    def __init__(self) -> None:
        self.rates: list[float] = []

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.rates = [float(group["lr"]) for group in trainer.optimizers[0].param_groups]

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for i, rate in enumerate(self.rates):
            pl_module.log("lr" if i == 0 else f"lr_{i}", rate, on_step=False, on_epoch=True)


@CALLBACKS.register("lr_monitor")
def lr_monitor(cfg: TrainConfig) -> Callback:
    """Each epoch's learning rate in the history and ``metrics.csv`` (``LearningRateLog``)."""
    return LearningRateLog()

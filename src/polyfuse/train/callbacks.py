"""Small Lightning callbacks used outside plain fitting (search pruning)."""

from __future__ import annotations

from collections.abc import Callable

import lightning as L
from lightning.pytorch.callbacks import Callback


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

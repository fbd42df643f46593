"""Lightning callbacks: named ones that ``TrainConfig.callbacks`` switches on, and search pruning.

``CALLBACKS`` maps a name to a factory ``(cfg: TrainConfig) -> Callback``; ``train_model`` adds the
callbacks named in ``cfg.callbacks`` to the trainer, after its own (best weights, early stopping).
A callback that needs runtime arguments, such as ``EpochReporter`` (it reports to a caller's
function), is not registered: code passes it to ``train_model(callbacks=...)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, cast

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback

from polyfuse.config import TrainConfig
from polyfuse.models.multimodal import MultimodalModel
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


class ModalityGradientShare(Callback):
    """Logs each modality's share of the encoders' gradient as ``grad_share_<modality>`` per epoch.

    A diagnostic of modality imbalance: when a fused model leans on its easiest modality, the other
    encoders receive little gradient and stop learning (the gradient view behind OGM-GE; Peng et al.,
    CVPR 2022, "Balanced Multimodal Learning via On-the-fly Gradient Modulation"). A step's gradient
    norm of each encoder is taken before the optimizer step (before any clipping), summed over the
    epoch's steps, and divided by the sum over encoders, so the shares of an epoch add up to 1; a
    frozen encoder's share is 0. Logged with the validation metrics, so the shares land in the
    epoch's row of the fit's history and of ``metrics.csv``.
    """

    def __init__(self) -> None:
        self.sums: dict[str, torch.Tensor] = {}  # modality -> summed step norms, on the model's device

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.sums = {}

    def on_before_optimizer_step(
        self, trainer: L.Trainer, pl_module: L.LightningModule, optimizer: Any
    ) -> None:
        model = cast(MultimodalModel, pl_module.model)  # MultimodalTask's
        for name, encoder in model.encoders.items():
            grads = [p.grad for p in encoder.parameters() if p.grad is not None]
            if grads:  # no host sync here: the norms stay on the device until the epoch's end
                norm = torch.nn.utils.get_total_norm(grads)
                self.sums[name] = self.sums[name] + norm if name in self.sums else norm
            else:
                self.sums.setdefault(name, torch.zeros(()))

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        sums = {name: float(value) for name, value in self.sums.items()}
        total = sum(sums.values())
        if trainer.sanity_checking or total == 0:
            return
        for name, value in sums.items():
            pl_module.log(f"grad_share_{name}", value / total, on_step=False, on_epoch=True)


@CALLBACKS.register("modality_grad_share")
def modality_grad_share(cfg: TrainConfig) -> Callback:
    """Each modality's share of the encoders' gradient norm per epoch (``ModalityGradientShare``)."""
    return ModalityGradientShare()

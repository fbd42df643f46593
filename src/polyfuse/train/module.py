"""The LightningModule that trains a MultimodalModel: losses, modality dropout, validation metric."""

from __future__ import annotations

from typing import Any

import lightning as L
import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig, TrainConfig
from polyfuse.data.batch import Batch
from polyfuse.eval.metrics import LOWER_IS_BETTER, compute_metrics, primary_metric
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import BALANCERS, SCHEDULERS
from polyfuse.train.dropout import drop_modalities, epoch_rates, uses_modality_dropout
from polyfuse.train.optimizers import make_optimizer

__all__ = ["MultimodalTask", "drop_modalities", "monitor_for", "summed_loss"]


class MultimodalTask(L.LightningModule):
    """Trains ``model`` on the sum of one loss per label head."""

    def __init__(
        self, model: MultimodalModel, heads: list[HeadConfig], losses: dict[str, nn.Module], cfg: TrainConfig
    ):
        super().__init__()
        self.model = model
        self.head_cfgs = heads
        self.losses = nn.ModuleDict(losses)
        self.cfg = cfg
        self.balancer = BALANCERS.get(cfg.balance)(model, heads, dict(losses))  # None: plain training
        self.dropout_rates = epoch_rates(cfg, model.modalities, 0)  # this epoch's, per modality
        self._val_outputs: list[dict[str, Tensor]] = []
        self._val_targets: list[dict[str, Tensor]] = []

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.model(batch)

    def _loss(self, logits: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        return summed_loss(self.losses, logits, targets)

    def on_train_epoch_start(self) -> None:
        self.dropout_rates = epoch_rates(self.cfg, self.model.modalities, self.current_epoch)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if any(rate > 0 for rate in self.dropout_rates.values()):
            batch = drop_modalities(batch, self.dropout_rates)
        loss = (
            self._loss(self.model(batch), batch.targets) if self.balancer is None else self._balanced(batch)
        )
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch))
        return loss

    def _balanced(self, batch: Batch) -> Tensor:
        """The (weighted) fused loss plus the balancer's, from one pass through the encoders."""
        assert self.balancer is not None
        inputs, valid = self.model.fusion_inputs(batch)
        logits = self.model.classify(self.model.fuse_inputs(inputs, valid, batch.mask))
        fused = self.balancer.fused_weight * self._loss(logits, batch.targets)
        return fused + self.balancer.loss(inputs, valid, batch.mask, batch.targets)

    def on_after_backward(self) -> None:
        if self.balancer is not None:
            self.balancer.after_backward(self.model, self.current_epoch)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self.model(batch)
        self.log(
            "val_loss", self._loss(logits, batch.targets), on_epoch=True, prog_bar=True, batch_size=len(batch)
        )
        label = self.head_cfgs[0].label  # the only label read at the epoch's end
        self._val_outputs.append({label: self.model.readable({label: logits[label]})[label].float().cpu()})
        self._val_targets.append({label: batch.targets[label].cpu()})

    def on_validation_epoch_end(self) -> None:
        if self.balancer is not None and not self.trainer.sanity_checking:
            for name, value in self.balancer.epoch_end(self.model, self.current_epoch).items():
                self.log(name, value, on_epoch=True)
        if uses_modality_dropout(self.cfg) and not self.trainer.sanity_checking:
            for name, rate in self.dropout_rates.items():  # the rates this epoch trained with
                self.log(f"modality_dropout_{name}", rate, on_epoch=True)
        if not self._val_outputs:
            return
        head = self.head_cfgs[0]  # the first label drives early stopping and checkpointing
        out = torch.cat([o[head.label] for o in self._val_outputs]).numpy()
        y = torch.cat([t[head.label] for t in self._val_targets]).numpy()
        name = primary_metric(head.task)
        self.log(f"val_{name}", float(compute_metrics(head.task, y, out)[name]), prog_bar=True)
        self._val_outputs.clear()
        self._val_targets.clear()

    def configure_optimizers(self) -> Any:
        extra = [] if self.balancer is None else list(self.balancer.parameters())  # after the model's
        params = [p for p in [*self.model.parameters(), *extra] if p.requires_grad]
        opt = make_optimizer(self.cfg.optimizer, params, self.cfg.lr, self.cfg.weight_decay)
        sched = SCHEDULERS.get(self.cfg.scheduler)(opt, self.cfg)
        return opt if sched is None else {"optimizer": opt, "lr_scheduler": sched}


def summed_loss(losses: Any, logits: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
    """The training objective: the sum over labels of each head's loss (``losses``: label -> loss)."""
    first = next(iter(logits.values()))
    return sum((losses[k](logits[k], targets[k]) for k in logits), torch.zeros((), device=first.device))


def monitor_for(task: str) -> tuple[str, str]:
    """(logged name, mode) of the validation metric that early stopping watches."""
    name = primary_metric(task)
    return f"val_{name}", "min" if name in LOWER_IS_BETTER else "max"

"""The LightningModule that trains a MultimodalModel: losses, modality dropout, validation metric.

With several labels, their losses combine by ``TrainConfig.loss_weighting`` (``LOSS_WEIGHTINGS``; the
plain sum by default), and the validation score that early stopping and the kept epoch read is
``val_score``: ``eval.selection.selection_score``, the mean over labels of each label's
higher-is-better value metric (accuracy, macro F1 for multilabel, R² for regression), the same score
``fit``'s final-model choice uses; each label's value is also logged, as ``val_<label>_<metric>``.
With one label the score is that label's primary metric (``val_accuracy``, ``val_mse`` ...).
"""

from __future__ import annotations

from typing import Any

import lightning as L
import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.config import HeadConfig, LabelSpec, TrainConfig
from polyfuse.data.batch import Batch
from polyfuse.errors import PolyfuseError
from polyfuse.eval.metrics import LOWER_IS_BETTER, compute_metrics, primary_metric
from polyfuse.eval.probe import metric_value, value_metric
from polyfuse.eval.selection import SCORE, selection_score, validation_metric
from polyfuse.fusions.gates import LR_SCALE as GATE_LR_SCALE
from polyfuse.fusions.gates import gate_parameters, l0_penalty
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import BALANCERS, LOSS_WEIGHTINGS
from polyfuse.train.alignment import SequenceAlignment
from polyfuse.train.augment import augment_batch, augment_plan, model_kinds
from polyfuse.train.dropout import drop_modalities, epoch_rates, uses_modality_dropout
from polyfuse.train.mixup import mixed_loss
from polyfuse.train.optimizers import make_optimizer, with_scheduler
from polyfuse.train.regularisation import l1_penalty
from polyfuse.train.weighting.base import Shared, shared_parameters

__all__ = ["MultimodalTask", "drop_modalities", "monitor_for", "summed_loss"]


class MultimodalTask(L.LightningModule):
    """Trains ``model`` on one loss per label head, summed or combined by ``cfg.loss_weighting``."""

    def __init__(
        self, model: MultimodalModel, heads: list[HeadConfig], losses: dict[str, nn.Module], cfg: TrainConfig
    ):
        super().__init__()
        self.model = model
        self.head_cfgs = heads
        self.losses = nn.ModuleDict(losses)
        self.cfg = cfg
        self.balancer = BALANCERS.get(cfg.balance)(model, heads, dict(losses))  # None: plain training
        self.weighting = LOSS_WEIGHTINGS.get(cfg.loss_weighting)(model, heads)  # None: the plain sum
        self.dropout_rates = epoch_rates(cfg, model.modalities, 0)  # this epoch's, per modality
        self.alignment = SequenceAlignment(model) if cfg.align_sequences > 0 else None
        # modality -> augmentations; fit checked the option against the whole table
        self.augmentation = augment_plan(cfg.augment, model_kinds(model), strict=False)
        if cfg.mixup > 0 and (self.balancer is not None or self.weighting is not None):
            raise PolyfuseError(
                "mixup mixes the plain summed loss: use it with balance none and loss_weighting sum"
            )
        self._val_outputs: list[dict[str, Tensor]] = []
        self._val_targets: list[dict[str, Tensor]] = []

    def forward(self, batch: Batch) -> dict[str, Tensor]:
        return self.model(batch)

    def _loss(self, logits: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
        return summed_loss(self.losses, logits, targets)

    def on_train_epoch_start(self) -> None:
        self.dropout_rates = epoch_rates(self.cfg, self.model.modalities, self.current_epoch)

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        if self.augmentation:
            batch = augment_batch(batch, self.model, self.augmentation, self.cfg.seed, self.global_step)
        if any(rate > 0 for rate in self.dropout_rates.values()):
            batch = drop_modalities(batch, self.dropout_rates)
        if self.cfg.mixup > 0:
            generator = torch.Generator().manual_seed(self.cfg.seed * 1_000_003 + self.global_step)
            loss = mixed_loss(self.model, self.losses, batch, self.cfg.mixup, generator)
        elif self.balancer is None and self.weighting is None:
            loss = self._loss(self.model(batch), batch.targets)
        else:
            loss = self._combined(batch)
        if self.alignment is not None:
            aligned = self.alignment(batch)
            self.log("train_align_loss", aligned, on_step=False, on_epoch=True, batch_size=len(batch))
            loss = loss + self.cfg.align_sequences * aligned
        if self.cfg.feature_gates != "none":  # the gates' expected L0 norm, from this step's pass
            loss = loss + self.cfg.feature_gate_l0 * l0_penalty(self.model).to(loss.device)
        if self.cfg.l1 > 0:
            loss = loss + self.cfg.l1 * l1_penalty(self.model).to(loss.device)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch))
        return loss

    def _combined(self, batch: Batch) -> Tensor:
        """The labels' losses combined by the loss weighting (else summed), weighed by the balancer,
        plus the balancer's own loss, from one pass through the encoders.

        A balancer's per-label losses of its own (unimodal heads) take the weighting's label weights
        (``LossWeighting.label_weights``, mean 1); PCGrad projects the fused heads' gradients only.
        """
        inputs, valid = self.model.fusion_inputs(batch)
        fused = self.model.fuse_inputs(inputs, valid, batch.mask)  # [B, D]
        per_label = label_losses(self.losses, self.model.classify(fused), batch.targets)
        if self.weighting is None:
            loss = sum(per_label.values(), torch.zeros((), device=fused.device))
        else:
            loss = self.weighting.combine(per_label, Shared(fused, shared_parameters(self.model)))
        if self.balancer is None:
            return loss
        self.balancer.label_weights = None if self.weighting is None else self.weighting.label_weights()
        self.balancer.see_batch(batch)
        extra = self.balancer.loss(inputs, valid, batch.mask, batch.targets)
        return self.balancer.fused_weight * loss + extra

    def on_after_backward(self) -> None:
        if self.balancer is not None:
            self.balancer.after_backward(self.model, self.current_epoch)

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        logits = self.model(batch)
        self.log(
            "val_loss", self._loss(logits, batch.targets), on_epoch=True, prog_bar=True, batch_size=len(batch)
        )
        readable = self.model.readable(logits)
        self._val_outputs.append({h.label: readable[h.label].float().cpu() for h in self.head_cfgs})
        self._val_targets.append({h.label: batch.targets[h.label].cpu() for h in self.head_cfgs})

    def on_validation_epoch_end(self) -> None:
        if not self.trainer.sanity_checking:
            extra = {} if self.balancer is None else self.balancer.epoch_end(self.model, self.current_epoch)
            extra |= {} if self.weighting is None else self.weighting.epoch_end()
            for name, value in extra.items():
                self.log(name, value, on_epoch=True)
        if uses_modality_dropout(self.cfg) and not self.trainer.sanity_checking:
            for name, rate in self.dropout_rates.items():  # the rates this epoch trained with
                self.log(f"modality_dropout_{name}", rate, on_epoch=True)
        if not self._val_outputs:
            return
        labels = [h.label for h in self.head_cfgs]
        out = {k: torch.cat([o[k] for o in self._val_outputs]).numpy() for k in labels}
        y = {k: torch.cat([t[k] for t in self._val_targets]).numpy() for k in labels}
        for name, value in validation_scores(self.head_cfgs, y, out).items():
            self.log(name, value, prog_bar=name == monitor_for(self.head_cfgs)[0])
        self._val_outputs.clear()
        self._val_targets.clear()

    def configure_optimizers(self) -> Any:
        extra = [  # after the model's
            *([] if self.balancer is None else self.balancer.parameters()),
            *([] if self.weighting is None else self.weighting.parameters()),
            *([] if self.alignment is None else self.alignment.parameters()),
        ]
        gated = {id(p) for p in gate_parameters(self.model)}
        params: list[Any] = [
            p for p in [*self.model.parameters(), *extra] if p.requires_grad and id(p) not in gated
        ]
        if gated:  # feature gates learn faster (fusions.gates.LR_SCALE): a parameter group of their own
            gates = [p for p in gate_parameters(self.model) if p.requires_grad]
            params = [{"params": params}, {"params": gates, "lr": self.cfg.lr * GATE_LR_SCALE}]
        opt = make_optimizer(self.cfg.optimizer, params, self.cfg.lr, self.cfg.weight_decay)
        return with_scheduler(opt, self.cfg)


def label_losses(losses: Any, logits: dict[str, Tensor], targets: dict[str, Tensor]) -> dict[str, Tensor]:
    """Label -> its head's loss (``losses``: label -> loss module)."""
    return {k: losses[k](logits[k], targets[k]) for k in logits}


def summed_loss(losses: Any, logits: dict[str, Tensor], targets: dict[str, Tensor]) -> Tensor:
    """The sum over labels of each head's loss (``losses``: label -> loss): the training objective of
    ``loss_weighting="sum"`` and the logged ``val_loss``."""
    first = next(iter(logits.values()))
    return sum(label_losses(losses, logits, targets).values(), torch.zeros((), device=first.device))


def validation_scores(
    heads: list[HeadConfig], targets: dict[str, np.ndarray], outputs: dict[str, np.ndarray]
) -> dict[str, float]:
    """What validation logs each epoch (name -> value): with one label, its primary metric
    (``val_accuracy``, ``val_mse`` ...); with several, ``val_score`` (``selection_score``: the mean of
    the labels' value metrics) and each label's value metric as ``val_<label>_<metric>``."""
    if len(heads) == 1:
        head = heads[0]
        name = primary_metric(head.task)
        metrics = compute_metrics(head.task, targets[head.label], outputs[head.label])
        return {f"val_{name}": float(metrics[name])}
    specs = [LabelSpec(h.label, h.task) for h in heads]
    scores = {
        f"val_{h.label}_{value_metric(h.task)}": metric_value(h.task, targets[h.label], outputs[h.label])
        for h in heads
    }
    return {f"val_{SCORE}": selection_score(specs, targets, outputs), **scores}


def monitor_for(heads: list[HeadConfig]) -> tuple[str, str]:
    """(logged name, mode) of the validation score that early stopping and the kept epoch follow:
    ``val_score`` (max) with several labels, else the label's primary metric (``validation_metric``)."""
    name = validation_metric([h.task for h in heads])
    return f"val_{name}", "min" if name in LOWER_IS_BETTER else "max"

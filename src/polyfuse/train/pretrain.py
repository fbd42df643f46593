"""Pre-training without labels: the Lightning task that aligns modalities in one space.

Each training step embeds the batch's rows in every modality (``AlignedModel.aligned``) and
minimises the mean of CLIP's symmetric InfoNCE over the chosen pairs of modalities, plus
``masked_weight`` times the masked-modality reconstruction loss (``losses.contrastive``). Each
epoch's validation pass embeds the whole validation split and logs, per pair and direction, the
Recall@1 of retrieving each row's partner among all validation rows; their mean,
``val_recall_at_1``, picks the kept epoch and stops training early.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch
from torch import Tensor

from polyfuse.config import TrainConfig
from polyfuse.data.batch import Batch, EncodedTable
from polyfuse.eval.retrieval import pair_scores
from polyfuse.losses.contrastive import Pair, masked_reconstruction, pair_losses
from polyfuse.models.aligned import AlignedModel
from polyfuse.train import check_names
from polyfuse.train.loop import cache_frozen_outputs, run_task
from polyfuse.train.optimizers import trainable_setup

MONITOR = "val_recall_at_1"


@dataclass
class PretrainResult:
    epochs: int
    best_epoch: int
    best_recall_at_1: float | None  # the kept epoch's mean validation Recall@1 over pairs and directions
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


class PretrainTask(L.LightningModule):
    """Contrastive alignment of ``pairs`` (+ masked-modality reconstruction) for an ``AlignedModel``."""

    def __init__(
        self,
        model: AlignedModel,
        pairs: list[Pair],
        cfg: TrainConfig,
        masked_weight: float = 0.0,
        val_groups: list[Any] | None = None,
    ):
        super().__init__()
        self.model = model
        self.val_groups = val_groups
        self.pairs = pairs
        self.cfg = cfg
        self.masked_weight = masked_weight
        self._val: list[tuple[dict[str, Tensor], dict[str, Tensor]]] = []

    def objective(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor], dict[str, Tensor]]:
        """The step's loss, its parts (``nce_<a>_<b>``, ``masked``) and the batch's embeddings."""
        z = self.model.aligned(batch)
        present = {m: batch.mask[m].bool() for m in z}
        per_pair = pair_losses(z, present, self.pairs, self.model.scale())
        parts = {f"nce_{a}_{b}": loss for (a, b), loss in per_pair.items()}
        if per_pair:
            loss = torch.stack(list(per_pair.values())).mean()
        else:  # no row holds a pair: a zero that is still in the graph, so the step runs
            loss = sum((v.sum() * 0 for v in z.values()), torch.zeros((), device=self.device))
        if self.masked_weight > 0:
            parts["masked"] = masked_reconstruction(z, present, self.model.predictors)
            loss = loss + self.masked_weight * parts["masked"]
        return loss, parts, z

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, parts, _ = self.objective(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch))
        for name, value in parts.items():
            self.log(f"train_{name}", value, on_step=False, on_epoch=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, _, z = self.objective(batch)
        self.log("val_loss", loss, on_epoch=True, prog_bar=True, batch_size=len(batch))
        self._val.append(({m: v.float().cpu() for m, v in z.items()}, {m: batch.mask[m].cpu() for m in z}))

    def on_validation_epoch_end(self) -> None:
        if not self._val:
            return
        z = {m: torch.cat([part[0][m] for part in self._val]) for m in self._val[0][0]}
        present = {m: torch.cat([part[1][m] for part in self._val]).bool() for m in z}
        self._val.clear()
        recalls = pair_recalls(z, present, self.pairs, self.val_groups)
        for name, value in recalls.items():
            self.log(f"val_{name}", value)
        self.log(MONITOR, sum(recalls.values()) / max(1, len(recalls)), prog_bar=True)

    def configure_optimizers(self) -> Any:
        return trainable_setup(self.model, self.cfg)


def pair_recalls(
    z: dict[str, Tensor], present: dict[str, Tensor], pairs: list[Pair], groups: list[Any] | None = None
) -> dict[str, float]:
    """``recall_at_1_<query>_to_<gallery>`` for both directions of each pair, over the rows holding both
    (a match: the same row, or with ``groups`` one row per row, a row of the same group)."""
    scores = pair_scores(z, present, pairs, groups, ks=(1,))
    return {f"recall_at_1_{d.replace('->', '_to_')}": v["recall_at_1"] for d, v in scores.items()}


def pretrain_model(
    model: AlignedModel,
    pairs: list[Pair],
    train: EncodedTable,
    val: EncodedTable,
    cfg: TrainConfig,
    masked_weight: float = 0.0,
    val_groups: list[Any] | None = None,
) -> PretrainResult:
    """Align ``model``'s modalities on ``train`` (validation: ``val``, its rows' ``val_groups`` telling
    which match), keeping the best epoch's weights."""
    check_names(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    start = time.perf_counter()
    cache_frozen_outputs(model, [train, val])
    task = PretrainTask(model, pairs, cfg, masked_weight, val_groups)
    best, trainer = run_task(task, train, val, cfg, (MONITOR, "max"))
    model.cpu().eval()
    return PretrainResult(
        epochs=trainer.current_epoch,
        best_epoch=best.best_epoch,
        best_recall_at_1=best.best,
        seconds=time.perf_counter() - start,
        history=best.history,
    )

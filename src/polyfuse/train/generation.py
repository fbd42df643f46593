"""Training a text generator (captioning, generative question answering): the Lightning task.

Each step feeds the target words after a begin token (teacher forcing) and minimises the
cross-entropy of each next word and of the end token (``LABEL_SMOOTHING``, as in the Transformer
paper). Each epoch's validation pass logs that loss and the share of target words predicted
exactly (``val_word_accuracy``); the lowest validation loss picks the kept epoch and stops
training early.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import lightning as L
import torch.nn.functional as F
from torch import Tensor

from polyfuse.config import TrainConfig
from polyfuse.data.batch import Batch, EncodedTable
from polyfuse.models.generator import TextGenerator
from polyfuse.train import check_names
from polyfuse.train.loop import cache_frozen_outputs, run_task
from polyfuse.train.optimizers import trainable_setup

MONITOR = "val_loss"
LABEL_SMOOTHING = 0.1
TARGET = "text"  # key of the target word ids [N, L] in an encoded table's targets


@dataclass
class GenerationResult:
    epochs: int
    best_epoch: int
    best_loss: float | None
    seconds: float
    history: list[dict[str, float]] = field(default_factory=list)


class GenerationTask(L.LightningModule):
    """Next-word cross-entropy for a ``TextGenerator`` on ``batch.targets[TARGET]``."""

    def __init__(self, model: TextGenerator, cfg: TrainConfig):
        super().__init__()
        self.model = model
        self.cfg = cfg

    def objective(self, batch: Batch, smoothing: float) -> tuple[Tensor, Tensor]:
        """The batch's mean next-word loss and its share of target words predicted exactly."""
        logits, wanted = self.model.logits(batch, batch.targets[TARGET])
        loss = F.cross_entropy(logits.transpose(1, 2), wanted, ignore_index=0, label_smoothing=smoothing)
        real = wanted != 0
        accuracy = (logits.argmax(-1)[real] == wanted[real]).float().mean()
        return loss, accuracy

    def training_step(self, batch: Batch, batch_idx: int) -> Tensor:
        loss, _ = self.objective(batch, LABEL_SMOOTHING)
        self.log("train_loss", loss, on_step=False, on_epoch=True, prog_bar=True, batch_size=len(batch))
        return loss

    def validation_step(self, batch: Batch, batch_idx: int) -> None:
        loss, accuracy = self.objective(batch, 0.0)
        self.log(MONITOR, loss, on_epoch=True, prog_bar=True, batch_size=len(batch))
        self.log("val_word_accuracy", accuracy, on_epoch=True, batch_size=len(batch))

    def configure_optimizers(self) -> Any:
        return trainable_setup(self.model, self.cfg)


def train_generator(
    model: TextGenerator, train: EncodedTable, val: EncodedTable, cfg: TrainConfig
) -> GenerationResult:
    """Train ``model`` to write each row's ``targets[TARGET]`` from its inputs, keeping the epoch with
    the lowest validation loss."""
    check_names(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    start = time.perf_counter()
    cache_frozen_outputs(model, [train, val])
    best, trainer = run_task(GenerationTask(model, cfg), train, val, cfg, (MONITOR, "min"))
    model.cpu().eval()
    return GenerationResult(
        epochs=trainer.current_epoch,
        best_epoch=best.best_epoch,
        best_loss=best.best,
        seconds=time.perf_counter() - start,
        history=best.history,
    )

"""Fit one MultimodalModel with Lightning: seeded, early stopping, best weights, CSV metrics."""

from __future__ import annotations

import copy
import dataclasses
import logging
import time
import warnings
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, EarlyStopping

from polyfuse.config import HeadConfig, TrainConfig
from polyfuse.data.batch import EncodedTable, gather, row_chunks
from polyfuse.models.multimodal import MultimodalModel, pack_tokens, pad_tokens
from polyfuse.registry import CALLBACKS
from polyfuse.train import check_names
from polyfuse.train.allocator import reuse_freed_memory
from polyfuse.train.averaging import weight_averaging
from polyfuse.train.balancers.base import held_out_split
from polyfuse.train.module import MultimodalTask, monitor_for

# Validation batches: larger than training ones (no gradients kept), but bounded so that large
# inputs (112x112 spectrograms) do not make validation the memory peak of a run.
VAL_BATCH = 512


@dataclass
class TrainResult:
    epochs: int  # epochs run
    best_epoch: int  # epoch whose weights were kept
    best_score: float | None  # validation metric of the kept weights
    monitor: str  # name of that metric
    seconds: float  # wall-clock training time
    history: list[dict[str, float]] = field(default_factory=list)  # per-epoch logged metrics
    modality_weights: dict[str, float] | None = None  # set by cfg.fit_modality_weights


class BestWeights(Callback):
    """Keeps the weights of the best validation epoch in memory (no pickle checkpoint on disk).

    Epochs that tie on the monitored score (a small validation split saturates: 10 rows all right
    for many epochs) are told apart by the validation loss, the lower kept: without it the first
    epoch to reach the score wins, often the least trained one.
    """

    def __init__(self, monitor: str, mode: str):
        self.monitor, self.mode = monitor, mode
        self.best: float | None = None
        self.best_loss = float("inf")
        self.best_epoch = -1
        self.state: dict[str, torch.Tensor] | None = None
        self.history: list[dict[str, float]] = []

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        logged = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.history.append({"epoch": trainer.current_epoch, **logged})
        score = logged.get(self.monitor)
        if score is None:
            return
        loss = logged.get("val_loss", float("inf"))
        better = self.best is None or (score > self.best if self.mode == "max" else score < self.best)
        if better or (score == self.best and loss < self.best_loss):
            self.best, self.best_loss, self.best_epoch = score, loss, trainer.current_epoch
            self.state = {k: v.detach().to("cpu", copy=True) for k, v in pl_module.state_dict().items()}

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        # Lightning reduces the epoch's training metrics after its validation pass: until now the row
        # held the previous epoch's train_loss. Complete this epoch's row with its own.
        if self.history and self.history[-1]["epoch"] == trainer.current_epoch:
            metrics = trainer.callback_metrics.items()
            self.history[-1].update({k: float(v) for k, v in metrics if k.startswith("train_")})


def train_model(
    model: MultimodalModel,
    heads: list[HeadConfig],
    losses: dict[str, torch.nn.Module],
    train: EncodedTable,
    val: EncodedTable,
    cfg: TrainConfig,
    log_dir: Path | None = None,
    callbacks: list[Callback] | None = None,
    teachers: dict[str, MultimodalModel] | None = None,
) -> TrainResult:
    """Train ``model`` in place and load the weights of its best validation epoch.

    ``callbacks`` are added to the Lightning trainer (e.g. ``EpochReporter`` for search pruning), after
    the ones ``cfg.callbacks`` names (``CALLBACKS``). ``teachers`` (modality -> trained
    single-modality model) serve a balancing strategy that ``wants_teachers``; without them such a
    strategy's teachers are trained here first (``train_teachers``).
    """
    check_names(cfg)
    L.seed_everything(cfg.seed, workers=True, verbose=False)
    start = time.perf_counter()
    cache_frozen_outputs(model, [train, val])
    task = MultimodalTask(model, heads, losses, cfg)
    if task.balancer is not None and task.balancer.wants_teachers:
        if teachers is None:
            teachers = train_teachers(model, heads, losses, train, val, cfg)
        task.balancer.use_teachers(model, teachers, train)
        L.seed_everything(cfg.seed, workers=True, verbose=False)
    monitor, mode = monitor_for(heads)
    rows = _training_rows(task, train, cfg.seed)
    best, trainer = run_task(task, train, val, cfg, (monitor, mode), log_dir, callbacks, rows)
    if task.balancer is not None:
        task.balancer.release()
    model.cpu().eval()
    weights = _fit_weights(model, losses, val, cfg)
    return TrainResult(
        epochs=trainer.current_epoch,
        best_epoch=best.best_epoch,
        best_score=best.best,
        monitor=monitor,
        seconds=time.perf_counter() - start,
        history=best.history,
        modality_weights=weights,
    )


def train_teachers(
    model: MultimodalModel,
    heads: list[HeadConfig],
    losses: dict[str, torch.nn.Module],
    train: EncodedTable,
    val: EncodedTable,
    cfg: TrainConfig,
) -> dict[str, MultimodalModel]:
    """One single-modality model per trainable modality of ``model``, each trained on its modality's
    columns of ``train`` with ``cfg`` (no balancing, no modality dropout): a copy of ``model``'s
    encoder as it is now, a concat fusion and fresh heads, like ``fit``'s baselines."""
    from polyfuse.config import without_modality_dropout
    from polyfuse.models.build import fusion_input_dim
    from polyfuse.registry import FUSIONS, HEADS

    solo = dataclasses.replace(without_modality_dropout(cfg), balance="none", fit_modality_weights=False)
    teachers = {}
    for name in model.modalities:
        if model.is_cacheable(name):  # frozen: nothing to teach
            continue
        encoder = copy.deepcopy(model.encoders[name])
        fusion = FUSIONS.build("concat", in_dims={name: fusion_input_dim(encoder, False)})
        built = {
            h.label: HEADS.build(h.task, in_dim=fusion.output_dim, num_outputs=h.num_outputs, **h.params)
            for h in heads
        }
        teacher = MultimodalModel({name: encoder}, fusion, built)
        train_model(teacher, heads, losses, train.select([name]), val.select([name]), solo)
        teachers[name] = teacher
    return teachers


def run_task(
    task: L.LightningModule,
    train: EncodedTable,
    val: EncodedTable,
    cfg: TrainConfig,
    monitored: tuple[str, str],
    log_dir: Path | None = None,
    callbacks: list[Callback] | None = None,
    training_rows: list[int] | None = None,
) -> tuple[BestWeights, L.Trainer]:
    """Fit ``task`` on batches of ``train`` (its ``training_rows``, default all), validating on ``val``
    each epoch: early stopping and the kept weights follow the logged ``monitored`` (name, mode), with
    ``cfg``'s callbacks and weight averaging; the best epoch's weights are loaded into ``task``."""
    monitor, mode = monitored
    best = BestWeights(monitor, mode)
    with reuse_freed_memory(), _quiet_lightning():  # glibc keeps freed activations for the next step
        stop = EarlyStopping(monitor, mode=mode, patience=cfg.patience)
        named = [CALLBACKS.get(name)(cfg) for name in cfg.callbacks]
        averaging = weight_averaging(cfg.ema, cfg.swa_start)  # before best: it swaps the average in
        trainer = _trainer(cfg, [*averaging, best, stop, *named, *(callbacks or [])], log_dir)
        gathers = _Gather(train, training_rows), _Gather(val)
        train_loader = _loader(gathers[0], cfg.batch_size, cfg.seed, shuffle=True)
        trainer.fit(task, train_loader, _loader(gathers[1], eval_batch_size(cfg)))
    for gather_rows in gathers:  # Lightning objects outlive the fit (callbacks keep the task's bound
        gather_rows.release()  # methods): the tables must not, so that callers can free them
    if best.state is not None:
        task.load_state_dict(best.state)
    return best, trainer


def _fit_weights(
    model: MultimodalModel, losses: dict[str, torch.nn.Module], val: EncodedTable, cfg: TrainConfig
) -> dict[str, float] | None:
    """``cfg.fit_modality_weights``: the late fusion's weights fit on ``val`` (None if not asked, or
    if the fusion has no such weights, as in a sweep over fusions; logged then)."""
    from polyfuse.train.weights import can_fit_weights, fit_modality_weights

    if not cfg.fit_modality_weights:
        return None
    if not can_fit_weights(model):
        logging.getLogger(__name__).info("fit_modality_weights: this fusion has no modality weights; skipped")
        return None
    return fit_modality_weights(model, val, losses, eval_batch_size(cfg))


def eval_batch_size(cfg: TrainConfig) -> int:
    """Rows per validation / evaluation batch: ``cfg.eval_batch_size``, else min(512, 4 x batch_size)."""
    return cfg.eval_batch_size or min(VAL_BATCH, 4 * cfg.batch_size)


def _trainer(cfg: TrainConfig, callbacks: list[Callback], log_dir: Path | None) -> L.Trainer:
    from lightning.pytorch.loggers import CSVLogger

    logger: Any = CSVLogger(str(log_dir), name="", version="") if log_dir else False
    return L.Trainer(
        max_epochs=cfg.max_epochs,
        max_time=timedelta(seconds=cfg.time_limit_s) if cfg.time_limit_s else None,
        accelerator=cfg.accelerator,
        devices=1,
        precision=cfg.precision,  # type: ignore[arg-type]
        gradient_clip_val=cfg.grad_clip_norm,  # None: no clipping
        accumulate_grad_batches=cfg.accumulate_grad_batches,
        gradient_clip_algorithm="norm",
        callbacks=callbacks,
        logger=logger,
        enable_checkpointing=False,
        enable_model_summary=False,
        enable_progress_bar=cfg.progress,
        log_every_n_steps=1,
        num_sanity_val_steps=0,
        deterministic=False,
    )


def _training_rows(task: MultimodalTask, train: EncodedTable, seed: int) -> list[int] | None:
    """The rows of ``train`` the model trains on: all of them (None), or, for a balancing strategy
    that estimates on held-out training rows (``Balancer.holdout``), the others; the strategy gets
    the held-out rows and a sample of as many training rows. The validation split is never used."""
    balancer = task.balancer
    if balancer is None or balancer.holdout <= 0:
        return None
    kept, held = held_out_split(len(train), balancer.holdout, seed)
    if not held:
        return None
    balancer.use_rows(train.subset(kept[: len(held)]), train.subset(held))
    return kept


def _loader(
    rows: _Gather, batch_size: int, seed: int = 0, shuffle: bool = False
) -> torch.utils.data.DataLoader:
    """Batches are gathers from the in-memory table: no per-sample Python work, no workers."""
    generator = torch.Generator().manual_seed(seed)
    return torch.utils.data.DataLoader(
        range(rows.rows),  # type: ignore[arg-type]
        batch_size=batch_size,
        shuffle=shuffle,
        generator=generator,
        collate_fn=rows,
    )


class _Gather:
    """A loader's collate function: the batch of the given row indices, until ``release``.

    With ``index``, the loader's row i is the table's row ``index[i]`` (a subset, without a copy).
    """

    def __init__(self, table: EncodedTable, index: list[int] | None = None):
        self.table: EncodedTable | None = table
        self.index = index
        self.rows = len(table) if index is None else len(index)

    def __call__(self, rows: list[int]) -> Any:
        assert self.table is not None, "the loader's table was released after training"
        return self.table.take(rows if self.index is None else [self.index[i] for i in rows])

    def release(self) -> None:
        self.table = None


# Largest token cache, in values (1 GiB of float32): tokens are far bigger than embeddings (a
# frozen MiniLM gives up to 128 x 384 values per row), so a large table computes them on the fly.
TOKEN_CACHE_LIMIT = 2**28


@torch.no_grad()
def cache_frozen_outputs(model: MultimodalModel, tables: list[EncodedTable], batch_size: int = 256) -> None:
    """Run each frozen encoder once per table and store its outputs in ``table.cached``.

    A frozen pretrained encoder (e.g. MiniLM) costs most of a step on CPU; its output never
    changes, so computing it once turns every later epoch into work on the trainable parts only.
    For a token-level fusion the cache holds tokens and their validity, packed as [N, T, D + 1]
    (``pack_tokens``); a cache of the other kind (left by a model with another fusion) is replaced.
    Which encoders count as frozen: ``MultimodalModel.cacheable_modalities``.
    """
    for name in model.cacheable_modalities():
        enc = model.encoders[name].eval()
        as_tokens = model.caches_tokens(name)
        for table in tables:
            cached = table.cached.get(name)
            if name not in table.inputs or (
                cached is not None and model.cache_fits(name, cached, 3 if as_tokens else 2)
            ):
                continue
            # one batch of this modality's inputs at a time, never a copy of the whole table
            chunks = (gather(table.inputs[name], rows) for rows in row_chunks(len(table), batch_size))
            out = _frozen_tokens(enc, chunks) if as_tokens else torch.cat([enc(x) for x in chunks])
            if out is not None:  # None: too big to keep, the fusion's tokens are computed on the fly
                table.cached[name] = out


def _frozen_tokens(enc: torch.nn.Module, chunks: Iterable[Any]) -> torch.Tensor | None:
    """Packed tokens [N, T, D + 1] of ``enc`` over the chunks, or None past TOKEN_CACHE_LIMIT."""
    parts, values = [], 0
    for x in chunks:
        tokens, valid = enc.forward_tokens(x)  # type: ignore[operator]  # [n, T_i, D], [n, T_i]
        values += tokens.numel()
        if values > TOKEN_CACHE_LIMIT:
            return None
        parts.append((tokens, valid))
    tokens, valid = pad_tokens(parts)  # [N, T, D], [N, T]
    return pack_tokens(tokens, valid) if tokens.numel() <= TOKEN_CACHE_LIMIT else None


@contextmanager
def _quiet_lightning() -> Iterator[None]:
    """Silences Lightning's start-up chatter (GPU availability, worker hints); keeps the progress bar."""
    names = ("lightning.pytorch", "lightning.fabric", "pytorch_lightning")
    levels = {name: logging.getLogger(name).level for name in names}
    for name in names:
        logging.getLogger(name).setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # frozen backbones
            warnings.filterwarnings("ignore", message=".*LeafSpec.*")
            yield
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)

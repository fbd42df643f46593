"""One benchmark run in this process: train, test, time the epochs and the bare compute, peak memory.

    python -m benchmarks.avmnist.run --variant avmnist --model multibench_late_fusion --seed 0 --epochs 2

Prints one JSON object (the results row) as its last line.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import resource
import time
from collections.abc import Iterable, Iterator
from typing import TYPE_CHECKING, Any

import lightning as L
import torch

from benchmarks.avmnist.models import MODELS, BenchModel

if TYPE_CHECKING:
    from polyfuse.models.multimodal import MultimodalModel


class EpochTimer(L.Callback):
    """Wall-clock seconds of each training epoch, its validation included."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


class LastWeights(L.Callback):
    """The weights of the last epoch, kept before the loop loads those of the best validation epoch."""

    def __init__(self, model: torch.nn.Module) -> None:
        self.model = model
        self.state: dict[str, torch.Tensor] = {}

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.state = {k: v.detach().clone() for k, v in self.model.state_dict().items()}


def run(
    variant: str, model_name: str, seed: int, epochs: int, arrays: Any = None, bare: bool = True
) -> dict[str, Any]:
    """Train ``model_name`` on ``variant``: its cached full build, or ``arrays`` from ``load_arrays``.

    ``bare``: also time one bare-compute epoch (a property of the model, not of the seed: the driver
    measures it on the first seed only).
    """
    from benchmarks.common import code_version
    from polyfuse.config import HeadConfig, TrainConfig
    from polyfuse.data.datasets.avmnist import encoded_splits, load_splits
    from polyfuse.train.loop import eval_batch_size, train_model

    bench = MODELS[model_name]
    commit = code_version()  # the code this run imported (a commit during the run must not show)

    def splits(*names: str) -> dict[str, Any]:
        if arrays is None:
            return load_splits(variant, splits=names, modalities=bench.modalities)
        loaded = encoded_splits(arrays)
        return {k: loaded[k].select(list(bench.modalities)) for k in names}

    tables = splits("train", "val")  # the test split is read after training: a lower memory peak
    cfg = TrainConfig(
        max_epochs=epochs, patience=epochs + 1, seed=seed, accelerator="cpu", progress=False, **bench.train
    )
    torch.manual_seed(seed)
    model = bench.build()
    timer, last = EpochTimer(), LastWeights(model)
    heads = [HeadConfig("digit", "multiclass", 10)]
    result = train_model(
        model,
        heads,
        {"digit": torch.nn.CrossEntropyLoss()},
        tables["train"],
        tables["val"],
        cfg,
        callbacks=[timer, last],
    )
    train_rows = len(tables["train"])
    del tables  # the training data leaves memory before the test split comes in
    gc.collect()  # the trainer's loaders referenced the tables through reference cycles
    test = splits("test")["test"]
    accuracy = accuracy_on(model, test, eval_batch_size(cfg))  # the best validation epoch's weights
    model.load_state_dict(last.state)  # the last epoch's, without validation's choice or weight fitting
    accuracy_last = accuracy_on(model, test, eval_batch_size(cfg))
    del test
    peak_rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # before the bare run's copies
    seconds = sum(timer.seconds) / len(timer.seconds)
    return {
        "variant": variant,
        "model": model_name,
        "epochs": epochs,
        "seed": seed,
        "test_accuracy": round(float(accuracy), 4),
        "test_accuracy_last": round(float(accuracy_last), 4),
        "best_epoch": result.best_epoch,
        "seconds_per_epoch": round(seconds, 2),
        "bare_compute_seconds_per_epoch": round(bare_epoch(bench, cfg, splits("train", "val")), 2)
        if bare
        else None,
        "peak_rss_mb": round(peak_rss_mb),
        "samples_per_second": round(train_rows / seconds),
        "params": sum(p.numel() for p in model.parameters()),
        "threads": torch.get_num_threads(),
        "load_1min": round(os.getloadavg()[0], 2),  # other work on the machine shows here
        "commit": commit,
        "modality_weights": json.dumps(result.modality_weights) if result.modality_weights else None,
    }


def accuracy_on(model: MultimodalModel, test: Any, batch_size: int) -> float:
    from polyfuse.eval.metrics import compute_metrics
    from polyfuse.models.inference import predict_table

    proba = predict_table(model, test, batch_size)["digit"].numpy()  # in batches, as validation
    return float(compute_metrics("multiclass", test.targets["digit"].numpy(), proba)["accuracy"])


def bare_epoch(bench: BenchModel, cfg: Any, tables: dict[str, Any]) -> float:
    """One epoch of forward + backward + optimizer steps (and the validation forward passes) over
    batches gathered in memory beforehand: the compute floor the training loop is compared with."""
    from polyfuse.train.allocator import reuse_freed_memory
    from polyfuse.train.loop import eval_batch_size

    torch.manual_seed(cfg.seed)
    model, opt = trainable(bench, cfg)
    val = tables["val"]
    batches = list(shuffled_batches(tables["train"], cfg.batch_size, cfg.seed))
    step = eval_batch_size(cfg)  # the batches the timed loop validates with
    val_batches = [val.take(list(range(i, min(i + step, len(val))))) for i in range(0, len(val), step)]
    with reuse_freed_memory():  # as the training loop
        start = time.perf_counter()
        train_steps(model, opt, batches)
        model.eval()
        with torch.no_grad():
            for batch in val_batches:
                model(batch)
        return time.perf_counter() - start


def trainable(bench: BenchModel, cfg: Any) -> tuple[torch.nn.Module, Any]:
    """A fresh model of ``bench`` in training mode and its optimizer under ``cfg``."""
    from polyfuse.train.optimizers import make_optimizer

    model = bench.build().train()
    return model, make_optimizer(cfg.optimizer, list(model.parameters()), cfg.lr, cfg.weight_decay)


def shuffled_batches(table: Any, batch_size: int, seed: int) -> Iterator[Any]:
    """The rows of ``table`` in a random order seeded by ``seed``, ``batch_size`` at a time, each
    batch gathered as it is asked for."""
    order = torch.randperm(len(table), generator=torch.Generator().manual_seed(seed)).tolist()
    return (table.take(order[i : i + batch_size]) for i in range(0, len(order), batch_size))


def train_steps(model: torch.nn.Module, opt: Any, batches: Iterable[Any]) -> None:
    """Forward, cross-entropy backward and optimizer step over each batch of digits; the phases are
    named for torch.profiler (``benchmarks.avmnist.profile``)."""
    loss_fn = torch.nn.CrossEntropyLoss()
    for batch in batches:
        opt.zero_grad()
        with torch.profiler.record_function("forward"):
            logits = model(batch)["digit"]
        with torch.profiler.record_function("backward"):
            loss_fn(logits, batch.targets["digit"]).backward()
        with torch.profiler.record_function("optimizer"):
            opt.step()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--variant", default="avmnist")
    parser.add_argument("--model", default="multibench_late_fusion", choices=sorted(MODELS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--no-bare", action="store_true", help="skip the bare-compute epoch")
    args = parser.parse_args()
    print(json.dumps(run(args.variant, args.model, args.seed, args.epochs, bare=not args.no_bare)))


if __name__ == "__main__":
    main()

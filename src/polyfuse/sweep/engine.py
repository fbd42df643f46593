"""One comparison run: the data prepared once per encoder choice (``Workspace``), a run trained and
tested on it (``train_run``), its leaderboard row. ``session.Session`` keeps the board and the best
run; ``runner`` (the grid) and ``search`` (optuna) drive it.
"""

from __future__ import annotations

import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from polyfuse.config import (
    CompareOptions,
    FusionConfig,
    ModelConfig,
    Schema,
    TrainConfig,
    without_modality_dropout,
)
from polyfuse.data.batch import EncodedTable
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.schema import infer_schema
from polyfuse.data.split import split_indices
from polyfuse.eval.metrics import LOWER_IS_BETTER, primary_metric
from polyfuse.eval.selection import validation_metric
from polyfuse.fitting import (
    FitRequest,
    Prepared,
    Trained,
    choose_encoders,
    gated_fusion,
    prepare,
    train_and_test,
)
from polyfuse.reporting import Reporter
from polyfuse.sweep.grid import DEFAULT_FUSIONS, NO_BALANCE, RunSpec, build_grid, modality_subsets

# Inference latency is timed on at most this many test rows (every encoder run, no cache).
LATENCY_ROWS = 128


@dataclass(kw_only=True)
class CompareRequest(CompareOptions):
    """What to compare, as data: the search options (``CompareOptions``), what to train, and ``fit``,
    everything a single fit takes (label, roles, training)."""

    fit: FitRequest
    fusions: list[str] = field(default_factory=lambda: list(DEFAULT_FUSIONS))
    encoder_choices: dict[str, list[str]] = field(default_factory=dict)  # modality -> encoders to try
    balances: list[str] = field(default_factory=lambda: [NO_BALANCE])  # strategies for 2+ modalities
    subsets: list[list[str]] | None = None  # modality subsets; None: every non-empty subset
    seeds: list[int] = field(default_factory=lambda: [0])


class Workspace:
    """The data of a comparison, encoded once per encoder assignment and shared by its runs."""

    def __init__(self, frame: pd.DataFrame, base_dir: Path, req: CompareRequest):
        from polyfuse.train.dropout import check_dropout

        fit = req.fit
        self.frame, self.base_dir, self.fit = frame, base_dir, fit
        self.schema: Schema = infer_schema(
            frame, fit.label, base_dir, declared=fit.roles, split_column=fit.split_column
        )
        check_dropout(fit.train, self.schema.modalities)  # before any preprocessing
        self.defaults, _ = choose_encoders(self.schema, fit)
        self.choices = {
            m: req.encoder_choices.get(m) or [self.defaults[m].name] for m in self.schema.modalities
        }
        self.splits = split_indices(
            frame, self.schema, fit.train.seed, fit.train.val_fraction, fit.train.test_fraction
        )
        self.metric = primary_metric(self.schema.labels[0].task)  # the test metric reported
        # What runs are chosen by: the first label's metric, or selection_score with several labels
        self.val_metric = validation_metric([s.task for s in self.schema.labels])
        self._prepared: dict[tuple[tuple[str, str], ...], Prepared] = {}

    def prepared(self, spec: RunSpec) -> Prepared:
        """Preprocessing for the run's encoders (other modalities keep their first choice)."""
        assignment = {m: c[0] for m, c in self.choices.items()} | dict(spec.encoders)
        key = tuple(sorted(assignment.items()))
        if key not in self._prepared:
            # A default encoder keeps its default freezing (the offline MiniLM stays frozen, so
            # its outputs are computed once) unless the user said otherwise.
            freeze = {m: d.freeze for m, d in self.defaults.items() if assignment[m] == d.name}
            request = dataclasses.replace(
                self.fit, encoders={**self.fit.encoders, **assignment}, freeze={**freeze, **self.fit.freeze}
            )
            self._prepared[key] = prepare(self.frame, self.base_dir, request, self.schema, self.splits)
        return self._prepared[key]


def check_balances(names: list[str]) -> None:
    """Fail before any data work on an unknown balancing strategy (the registry's ``KeyError``), or on
    one name given where a list is expected (``TypeError``)."""
    import polyfuse.train  # noqa: F401  (registers the strategies)
    from polyfuse.registry import BALANCERS

    if isinstance(names, str):
        raise TypeError(f"balances is a list of names, e.g. [{names!r}]")
    for name in names:
        BALANCERS.get(name)


def default_grid(ws: Workspace, req: CompareRequest) -> list[RunSpec]:
    subsets = (
        [tuple(m for m in ws.schema.modalities if m in s) for s in req.subsets]
        if req.subsets
        else modality_subsets(ws.schema.modalities, max_size=req.max_modalities)
    )
    return build_grid(subsets, req.fusions, ws.choices, req.seeds, req.balances)


@dataclass
class RunOutput:
    """A trained run with everything needed to save it as a model directory."""

    trained: Trained
    config: ModelConfig
    train: TrainConfig
    pre: Preprocessor
    tables: dict[str, EncodedTable]


def train_run(
    ws: Workspace,
    spec: RunSpec,
    base: TrainConfig,
    time_left: float | None,
    callbacks: list[Any] | None = None,
) -> RunOutput:
    """Train one run on the shared encoded splits and test it."""
    prep = ws.prepared(spec)
    subset = list(spec.modalities)
    config = ModelConfig(
        {m: prep.encoders[m] for m in subset},
        gated_fusion(FusionConfig(spec.fusion, dict(spec.fusion_params)), base),
        prep.heads,
    )
    overrides: dict[str, Any] = {
        "seed": spec.seed,
        "progress": False,
        "baselines": False,
        "ensemble": "off",
        "balance": spec.balance,
        **dict(spec.train_params),
    }
    if time_left is not None:
        overrides["time_limit_s"] = max(1.0, min(time_left, base.time_limit_s or time_left))
    cfg = dataclasses.replace(base, **overrides)
    if len(subset) == 1:
        cfg = without_modality_dropout(cfg)
    tables = {k: t.select(subset) for k, t in prep.tables.items()}
    trained = train_and_test(config, prep.pre, tables, cfg, None, Reporter(False), spec.run_id, callbacks)
    _share_cache(prep.tables, tables)
    return RunOutput(trained, config, cfg, prep.pre, tables)


def _share_cache(parents: dict[str, EncodedTable], children: dict[str, EncodedTable]) -> None:
    """Frozen encoders' outputs computed in one run serve every later run on the same tables."""
    for split, child in children.items():
        for name, value in child.cached.items():
            parents[split].cached.setdefault(name, value)


@torch.no_grad()
def latency_ms(model: Any, table: EncodedTable, rows: int = LATENCY_ROWS) -> float:
    """Inference milliseconds per row on up to ``rows`` test rows, in one batch, every encoder run."""
    from polyfuse.models.inference import predict_table

    sample = table.subset(list(range(min(rows, len(table)))))
    sample.cached = {}  # no precomputed shortcuts: a served model runs every encoder
    start = time.perf_counter()
    predict_table(model, sample, batch_size=rows)
    return 1000 * (time.perf_counter() - start) / len(sample)


def result_row(spec: RunSpec, metric: str, trained: Trained, latency: float) -> dict[str, Any]:
    summary = trained.summary
    return {
        **spec.row(),
        "status": "ok",
        "metric": metric,
        **{f"test_{k}": v for k, v in trained.test.items() if isinstance(v, (int, float))},
        "val_score": next(iter(summary["val"].values())),
        "params": summary["params"],
        "trainable_params": summary["trainable_params"],
        "train_seconds": summary["train_seconds"],
        "epochs": summary["epochs"],
        "best_epoch": summary["best_epoch"],
        "latency_ms": round(latency, 4),
        "error": "",
    }


def better(a: float | None, b: float | None, metric: str) -> bool:
    """Is validation score ``a`` better than ``b`` (None: nothing yet)?"""
    if a is None or a != a:
        return False
    if b is None:
        return True
    return a < b if metric in LOWER_IS_BETTER else a > b


def limit_threads() -> int:
    """One run at a time, with at most one intra-op thread per core this process may use.

    Two torch processes with a thread per core each on 2 cores ran ~10x slower than one: a
    comparison never trains runs side by side, and never uses more threads than cores.
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    torch.set_num_threads(max(1, min(torch.get_num_threads(), cores)))
    return torch.get_num_threads()

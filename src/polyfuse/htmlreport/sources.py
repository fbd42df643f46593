"""Reading a run directory (compare, model or explain) into one ``RunData`` for the section builders.

What is read from where (the formats are specified in docs/format.md):

* compare directory: ``compare.json``, ``summary.csv`` (or a summary computed from ``leaderboard.csv``),
  ``leaderboard.csv``, ``runs/*/history.csv``; its ``best/`` model and ``explain/`` folder as below.
* model directory: ``metrics.json``, ``preprocessor.json`` (class names), ``logs/metrics.csv``; its
  ``explain/`` folder when present.
* explain directory: ``explain.json``, ``shapley.json``, ``shapley_per_sample.csv`` and the PNG files;
  the model it sits in (``MODEL/explain`` or ``COMPARE/explain``) for the overview.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from polyfuse.errors import PolyfuseError
from polyfuse.eval.metrics import LOWER_IS_BETTER, PRIMARY
from polyfuse.eval.subsets import read_compare_json
from polyfuse.formats import EXPLAIN_FORMAT, MODEL_FORMAT, read_versioned

CONFIG_KEYS = ["modalities", "n_modalities", "fusion", "encoders"]


@dataclass
class RunData:
    """Everything the report can show; each part is None / empty when its files are absent."""

    root: Path
    kind: str  # "compare", "model" or "explain": what the user pointed at
    compare: dict[str, Any] | None = None  # compare.json
    leaderboard: pd.DataFrame | None = None  # leaderboard.csv, one row per run
    summary: pd.DataFrame | None = None  # summary.csv, one row per configuration, best first
    histories: dict[str, pd.DataFrame] = field(default_factory=dict)  # run_id -> runs/<id>/history.csv
    model_dir: Path | None = None
    metrics: dict[str, Any] | None = None  # the best / only model's metrics.json
    classes: list[str] | None = None  # class names of its first label (preprocessor.json)
    label_classes: dict[str, list[str]] = field(default_factory=dict)  # every label's (classification)
    log: pd.DataFrame | None = None  # logs/metrics.csv reduced to one row per epoch
    explain_dir: Path | None = None
    explain: dict[str, Any] | None = None  # explain.json
    shapley: dict[str, Any] | None = None  # shapley.json
    shapley_per_sample: pd.DataFrame | None = None

    @property
    def metric(self) -> str:
        """The primary metric: compare's, else the model task's, else explain's, else accuracy."""
        if self.compare and self.compare.get("metric"):
            return str(self.compare["metric"])
        if self.metrics and self.metrics.get("task") in PRIMARY:
            return PRIMARY[self.metrics["task"]]
        for source in (self.explain, self.shapley):
            if source and source.get("metric"):
                return str(source["metric"])
        return "accuracy"

    @property
    def labels(self) -> list[str]:
        """Every label the run predicts, first first: from explain.json's or the test metrics'
        per-label blocks with several labels, else the one label named."""
        several = (self.explain or {}).get("labels") or ((self.metrics or {}).get("test") or {}).get(
            "by_label"
        )
        if isinstance(several, dict) and several:
            return [str(k) for k in several]
        for source in (self.compare, self.metrics, self.explain):
            if source and source.get("label"):
                return [str(source["label"])]
        return []

    @property
    def higher_is_better(self) -> bool:
        if self.compare and "higher_is_better" in self.compare:
            return bool(self.compare["higher_is_better"])
        return self.metric not in LOWER_IS_BETTER


def load_run(path: str | Path) -> RunData:
    """Find out what kind of directory ``path`` is and read every part the report can use."""
    root = Path(path)
    if not root.is_dir():
        raise PolyfuseError(f"{root} is not a directory")
    model: Path | None
    if is_compare_dir(root):
        run = RunData(root, "compare")
        _read_compare(run, root)
        model, explain = root / "best", root / "explain"
    elif is_model_dir(root):
        run, model, explain = RunData(root, "model"), root, root / "explain"
    elif is_explain_dir(root):
        run, model, explain = RunData(root, "explain"), _model_of_explain(root), root
    else:
        raise PolyfuseError(
            f"{root} is not a polyfuse directory: expected a compare directory (leaderboard.csv), "
            "a model directory (config.json, metrics.json) or an explain directory (explain.json)"
        )
    if model is not None and is_model_dir(model):
        _read_model(run, model)
    if is_explain_dir(explain):
        _read_explain(run, explain)
    return run


def is_compare_dir(path: Path) -> bool:
    return any((path / name).is_file() for name in ("leaderboard.csv", "summary.csv", "compare.json"))


def is_model_dir(path: Path) -> bool:
    return (path / "config.json").is_file() or (path / "metrics.json").is_file()


def is_explain_dir(path: Path) -> bool:
    return (path / "explain.json").is_file() or (path / "shapley.json").is_file()


def _model_of_explain(path: Path) -> Path | None:
    """The model an explain folder describes when it sits where explain/compare put it."""
    parent = path.parent
    if is_model_dir(parent):
        return parent
    if is_compare_dir(parent) and is_model_dir(parent / "best"):
        return parent / "best"
    return None


def float_items(mapping: Any) -> dict[str, float]:
    """The numeric items of a flat mapping as floats (anything else, or a non-mapping, is left out)."""
    if not isinstance(mapping, dict):
        return {}
    return {
        str(k): float(v)
        for k, v in mapping.items()
        if isinstance(v, (int, float)) and not isinstance(v, bool)
    }


def read_json(path: Path) -> dict[str, Any]:
    try:
        value = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise PolyfuseError(f"cannot read {path}: {err}") from err
    if not isinstance(value, dict):
        raise PolyfuseError(f"{path} should hold a JSON object")
    return value


def read_csv(path: Path) -> pd.DataFrame | None:
    if not path.is_file():
        return None
    try:
        return pd.read_csv(path, keep_default_na=False, na_values=[""])
    except (OSError, ValueError) as err:
        raise PolyfuseError(f"cannot read {path}: {err}") from err


def _read_compare(run: RunData, root: Path) -> None:
    run.compare = read_compare_json(root) or None
    run.leaderboard = read_csv(root / "leaderboard.csv")
    if run.compare is None and run.leaderboard is not None and "metric" in run.leaderboard:
        run.compare = {"metric": str(run.leaderboard["metric"].iloc[0])}
    summary = read_csv(root / "summary.csv")
    if summary is None and run.leaderboard is not None:
        summary = summarize(run.leaderboard, run.metric)
    run.summary = sort_summary(summary, run.metric, run.higher_is_better) if summary is not None else None
    for history in sorted((root / "runs").glob("*/history.csv")):
        frame = read_csv(history)
        if frame is not None and len(frame):
            run.histories[history.parent.name] = frame


def summarize(leaderboard: pd.DataFrame, metric: str) -> pd.DataFrame | None:
    """Mean / std of the test metric per configuration, for a compare that has no summary.csv yet."""
    column = f"test_{metric}"
    ok = leaderboard[leaderboard["status"] == "ok"] if "status" in leaderboard else leaderboard
    if ok.empty or column not in ok or not set(CONFIG_KEYS) <= set(ok):
        return None
    optional = {c: (c, "mean") for c in ("params", "latency_ms") if c in ok}
    if "train_seconds" in ok:
        optional["train_seconds_mean"] = ("train_seconds", "mean")
    grouped = ok.groupby(CONFIG_KEYS, sort=False, dropna=False)
    summary = grouped.agg(
        seeds=(column, "count"),
        **{f"{metric}_mean": (column, "mean"), f"{metric}_std": (column, "std")},
        **optional,
    ).reset_index()
    summary[f"{metric}_std"] = summary[f"{metric}_std"].fillna(0.0)
    return summary


def sort_summary(summary: pd.DataFrame, metric: str, higher_is_better: bool) -> pd.DataFrame:
    column = f"{metric}_mean"
    if column not in summary:
        raise PolyfuseError(f"summary.csv has no {column} column (columns: {list(summary.columns)})")
    ordered = summary.sort_values(column, ascending=not higher_is_better, kind="stable", na_position="last")
    return ordered.reset_index(drop=True)


def _read_model(run: RunData, folder: Path) -> None:
    run.model_dir = folder
    if (folder / "config.json").is_file():
        read_versioned(folder / "config.json", MODEL_FORMAT)  # refuse a model directory of a newer format
    run.metrics = read_json(folder / "metrics.json") if (folder / "metrics.json").is_file() else None
    if (folder / "preprocessor.json").is_file():
        labels = read_json(folder / "preprocessor.json").get("schema", {}).get("labels") or [{}]
        classes = labels[0].get("classes")
        run.classes = [str(c) for c in classes] if classes else None
        run.label_classes = {
            str(spec["column"]): [str(c) for c in spec["classes"]]
            for spec in labels
            if spec.get("column") and spec.get("classes")
        }
    log = read_csv(folder / "logs" / "metrics.csv")
    run.log = epoch_rows(log) if log is not None and "epoch" in log else None


def epoch_rows(log: pd.DataFrame) -> pd.DataFrame:
    """Lightning's CSVLogger writes train and validation values on separate rows: one row per epoch."""
    values = log.drop(columns=[c for c in ("step",) if c in log])
    return values.groupby("epoch", sort=True).last().reset_index()


def _read_explain(run: RunData, folder: Path) -> None:
    run.explain_dir = folder
    run.explain = (
        read_versioned(folder / "explain.json", EXPLAIN_FORMAT)
        if (folder / "explain.json").is_file()
        else None
    )
    run.shapley = read_json(folder / "shapley.json") if (folder / "shapley.json").is_file() else None
    if run.shapley is None and run.explain and isinstance(run.explain.get("shapley"), dict):
        run.shapley = run.explain["shapley"]  # explain.json carries a copy of shapley.json
    run.shapley_per_sample = read_csv(folder / "shapley_per_sample.csv")

"""Shapley values over retrained modality subsets, read from a compare directory.

v(S) is the mean test metric (over seeds) of subset S's best fusion, from DIR/summary.csv (or
DIR/leaderboard.csv). v(empty) is the metric of the best constant prediction on the test labels:
the majority class (for accuracy, the majority-class rate) or the mean value for regression.
Values are in the compare's metric; for a lower-is-better metric (MSE) a negative value is a
reduction of the error.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.errors import PolyfuseError
from polyfuse.eval.metrics import LOWER_IS_BETTER, compute_metrics
from polyfuse.eval.shapley import coalitions, shapley_from_values
from polyfuse.formats import COMPARE_FORMAT, read_versioned


@dataclass
class SubsetScores:
    metric: str  # the compare's metric (e.g. "accuracy")
    higher_is_better: bool
    modalities: list[str]  # every modality the compare covered
    best: dict[frozenset[str], dict[str, Any]]  # subset -> {"metric": best mean, "fusion": its fusion}


def read_compare_json(folder: Path) -> dict[str, Any]:
    """compare.json of a comparison directory ({} when absent), its format version checked."""
    path = folder / "compare.json"
    return read_versioned(path, COMPARE_FORMAT) if path.is_file() else {}


def subset_scores(folder: str | Path) -> SubsetScores:
    """The best configuration's mean test metric of every modality subset in a compare directory."""
    folder = Path(folder)
    info = read_compare_json(folder)
    if (folder / "summary.csv").is_file():
        frame = pd.read_csv(folder / "summary.csv")
        metric = info.get("metric") or _metric_from_columns(frame)
        scores = frame[["modalities", "fusion", f"{metric}_mean"]].rename(columns={f"{metric}_mean": "score"})
    elif (folder / "leaderboard.csv").is_file():
        frame = pd.read_csv(folder / "leaderboard.csv")
        frame = frame[frame["status"] == "ok"] if "status" in frame else frame
        metric = info.get("metric") or str(frame["metric"].iloc[0])
        keys = ["modalities", "fusion"] + (["encoders"] if "encoders" in frame else [])
        scores = frame.groupby(keys, dropna=False)[f"test_{metric}"].mean().reset_index()
        scores = scores.rename(columns={f"test_{metric}": "score"})
    else:
        raise PolyfuseError(f"{folder} has neither summary.csv nor leaderboard.csv (not a compare directory)")
    higher = bool(info.get("higher_is_better", metric not in LOWER_IS_BETTER))
    best: dict[frozenset[str], dict[str, Any]] = {}
    for row in scores.dropna(subset=["score"]).itertuples(index=False):
        subset = frozenset(str(row.modalities).split("+"))
        score = float(row.score)
        old = best.get(subset)
        if old is None or (score > old["metric"] if higher else score < old["metric"]):
            best[subset] = {"metric": score, "fusion": str(row.fusion)}
    names = info.get("modalities") or sorted(set().union(*best)) if best else []
    return SubsetScores(metric, higher, [str(m) for m in names], best)


def _metric_from_columns(frame: pd.DataFrame) -> str:
    other = {"train_seconds_mean", "val_score_mean"}
    names = [c[: -len("_mean")] for c in frame.columns if c.endswith("_mean") and c not in other]
    if not names:
        raise PolyfuseError("summary.csv has no <metric>_mean column")
    return names[0]


def constant_metric(task: str, metric: str, y: np.ndarray, num_classes: int) -> float | None:
    """``metric`` of the best constant prediction on labels ``y``; None if the task lacks it."""
    if task == "multiclass":
        output: np.ndarray = np.zeros((len(y), num_classes))
        output[:, np.bincount(y.astype(int), minlength=num_classes).argmax()] = 1.0
    elif task == "binary":
        output = np.full(len(y), float(y.astype(int).mean() >= 0.5))
    elif task == "multilabel":
        output = np.tile((y.astype(int).mean(axis=0) >= 0.5).astype(float), (len(y), 1))
    else:
        output = np.full(len(y), float(np.mean(y)))
    value = compute_metrics(task, y, output).get(metric)
    return float(value) if isinstance(value, (int, float)) else None


def subset_shapley(folder: str | Path, task: str, y: np.ndarray, num_classes: int) -> dict[str, Any]:
    """Keys for shapley.json: "subsets" (modality -> value) with its metric, coalitions and v(empty),
    or "subsets_note" saying why it could not be computed.

    Args:
        folder: The compare directory.
        task: The label's task.
        y: Encoded test labels (for v(empty)); the compare's test rows should be the same.
        num_classes: Classes of a multiclass label.
    """
    scores = subset_scores(folder)
    metric, best, names = scores.metric, scores.best, scores.modalities
    empty = constant_metric(task, metric, y, num_classes)
    missing = [sorted(c) for c in coalitions(names) if c and c not in best]
    if not names or missing or empty is None:
        why = f"subsets without results: {missing[:3]}" if missing else f"no constant baseline for {metric}"
        return {"subsets_note": f"no Shapley over retrained subsets ({why})"}
    value = {c: best[c]["metric"] for c in coalitions(names) if c}
    value[frozenset()] = empty
    return {
        "subsets": {m: float(v) for m, v in shapley_from_values(value, names).items()},
        "subsets_metric": metric,
        "subsets_higher_is_better": scores.higher_is_better,
        "subsets_empty": {"metric": empty, "rule": "best constant prediction on the test labels"},
        "subsets_coalitions": [
            {
                "modalities": [m for m in names if m in c],
                "metric": value[c],
                "fusion": best[c]["fusion"] if c else None,
            }
            for c in coalitions(names)
        ],
    }

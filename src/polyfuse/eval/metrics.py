"""Task metrics as plain dicts of floats (JSON-ready).

Classification: accuracy, macro and weighted precision / recall / F1, one-vs-rest ROC-AUC and the
confusion matrix. Regression: MAE, MSE, RMSE and R². Inputs are numpy arrays of encoded targets
(class indices, 0/1 indicators or values) and model outputs (probabilities or values).
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np

# The metric each task is ranked by (higher is better unless listed in LOWER_IS_BETTER).
PRIMARY = {"multiclass": "accuracy", "binary": "accuracy", "multilabel": "f1_macro", "regression": "mse"}
LOWER_IS_BETTER = {"mse", "mae", "rmse"}


def compute_metrics(task: str, y_true: np.ndarray, output: np.ndarray) -> dict[str, Any]:
    """Metrics for one label column.

    Args:
        task: "multiclass", "binary", "multilabel" or "regression".
        y_true: class indices [N] (multiclass), 0/1 [N] (binary), 0/1 [N, K] (multilabel) or
            values [N] (regression).
        output: probabilities [N, K] (multiclass), positive-class probability [N] (binary),
            per-label probabilities [N, K] (multilabel) or predicted values [N] (regression).
    """
    if task == "multiclass":
        return _multiclass(y_true.astype(int), output)
    if task == "binary":
        proba = np.stack([1 - output, output], axis=1)
        return _multiclass(y_true.astype(int), proba)
    if task == "multilabel":
        return _multilabel(y_true.astype(int), output)
    if task == "regression":
        return _regression(y_true.astype(float), output.astype(float))
    raise ValueError(f"unknown task {task!r}")


def _multiclass(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    from sklearn import metrics as skm

    pred = proba.argmax(axis=1)
    labels = np.arange(proba.shape[1])
    out: dict[str, Any] = {"accuracy": float(skm.accuracy_score(y, pred))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, labels=labels, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    out["roc_auc"] = _roc_auc(y, proba)
    out["confusion_matrix"] = skm.confusion_matrix(y, pred, labels=labels).tolist()
    return out


def _roc_auc(y: np.ndarray, proba: np.ndarray) -> float | None:
    """One-vs-rest macro ROC-AUC over the classes present in ``y`` (None if undefined)."""
    from sklearn.metrics import roc_auc_score

    present = np.unique(y)
    if len(present) < 2:
        return None
    if proba.shape[1] == 2:
        return float(roc_auc_score(y, proba[:, 1]))
    cols = proba[:, present]
    cols = cols / np.clip(cols.sum(axis=1, keepdims=True), 1e-12, None)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return float(roc_auc_score(y, cols, multi_class="ovr", labels=present))


def _multilabel(y: np.ndarray, proba: np.ndarray) -> dict[str, Any]:
    from sklearn import metrics as skm

    pred = (proba >= 0.5).astype(int)
    out: dict[str, Any] = {"subset_accuracy": float(skm.accuracy_score(y, pred))}
    for avg in ("macro", "weighted"):
        p, r, f, _ = skm.precision_recall_fscore_support(y, pred, average=avg, zero_division=0)
        out.update({f"precision_{avg}": float(p), f"recall_{avg}": float(r), f"f1_{avg}": float(f)})
    # Undefined when some label column has a single class in this split (sklearn returns NaN).
    single = any(len(np.unique(y[:, j])) < 2 for j in range(y.shape[1]))
    out["roc_auc"] = None if single else float(skm.roc_auc_score(y, proba, average="macro"))
    return out


def _regression(y: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    err = pred - y
    mse = float(np.mean(err**2))
    var = float(np.var(y))
    return {
        "mae": float(np.mean(np.abs(err))),
        "mse": mse,
        "rmse": mse**0.5,
        "r2": 1.0 - mse / var if var > 0 else 0.0,
    }


def primary_metric(task: str) -> str:
    return PRIMARY[task]


def is_better(metric: str, new: float, old: float) -> bool:
    return new < old if metric in LOWER_IS_BETTER else new > old

"""compute_metrics on small hand-checked examples, against scikit-learn where it has the metric."""

from __future__ import annotations

import json

import numpy as np
import pytest
from sklearn import metrics as skm

from polyfuse.eval.metrics import LOWER_IS_BETTER, PRIMARY, compute_metrics, is_better, primary_metric


def _proba(pred: list[int], k: int) -> np.ndarray:
    """Probabilities [N, K] whose argmax is ``pred``, with distinct values so ROC-AUC is informative."""
    rng = np.random.default_rng(0)
    p = rng.uniform(0.0, 0.2, (len(pred), k))
    p[np.arange(len(pred)), pred] += 0.6
    return p / p.sum(axis=1, keepdims=True)


def test_multiclass_known_example():
    y = np.array([0, 0, 1, 1, 2, 2])
    pred = [0, 1, 1, 1, 2, 0]
    proba = _proba(pred, 3)
    m = compute_metrics("multiclass", y, proba)
    assert m["accuracy"] == pytest.approx(4 / 6)
    # Per class F1: 0 -> P 1/2 R 1/2 = 0.5; 1 -> P 2/3 R 1 = 0.8; 2 -> P 1 R 1/2 = 2/3.
    assert m["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, average="macro"))
    assert m["f1_weighted"] == pytest.approx(skm.f1_score(y, pred, average="weighted"))
    assert m["precision_macro"] == pytest.approx((0.5 + 2 / 3 + 1.0) / 3)
    assert m["recall_macro"] == pytest.approx((0.5 + 1.0 + 0.5) / 3)
    assert m["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, multi_class="ovr"))
    json.dumps(m)  # plain JSON-ready values (no numpy scalars)


def test_multiclass_class_absent_from_targets():
    # Four classes, class 3 never the truth: the matrix keeps every class, ROC-AUC uses the present ones.
    y = np.array([0, 1, 2, 0, 1, 2])
    pred = [0, 1, 2, 3, 1, 2]
    proba = _proba(pred, 4)
    m = compute_metrics("multiclass", y, proba)
    assert m["accuracy"] == pytest.approx(5 / 6)
    assert np.array(m["confusion_matrix"]).shape == (4, 4) and m["confusion_matrix"][0][3] == 1
    assert m["f1_macro"] == pytest.approx(skm.f1_score(y, pred, labels=[0, 1, 2, 3], average="macro"))
    renormalised = proba[:, :3] / proba[:, :3].sum(axis=1, keepdims=True)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, renormalised, multi_class="ovr"))


def test_binary_known_example():
    y = np.array([0, 1, 1, 0])
    p = np.array([0.2, 0.7, 0.4, 0.1])  # predicted classes 0, 1, 0, 0
    m = compute_metrics("binary", y, p)
    assert m["accuracy"] == pytest.approx(0.75)
    assert m["confusion_matrix"] == [[2, 0], [1, 1]]
    assert m["roc_auc"] == pytest.approx(1.0)  # every positive scores above every negative
    # Class 1: P 1 R 1/2 -> F1 2/3; class 0: P 2/3 R 1 -> F1 0.8.
    assert m["f1_macro"] == pytest.approx((2 / 3 + 0.8) / 2)


def test_binary_threshold_is_one_half():
    m = compute_metrics("binary", np.array([1, 0]), np.array([0.51, 0.49]))
    assert m["accuracy"] == 1.0


def test_multilabel_known_example():
    y = np.array([[1, 0], [0, 1], [1, 1]])
    proba = np.array([[0.9, 0.2], [0.3, 0.8], [0.6, 0.4]])  # predictions [1,0], [0,1], [1,0]
    m = compute_metrics("multilabel", y, proba)
    assert m["subset_accuracy"] == pytest.approx(2 / 3)
    # Label 0: perfect (F1 1); label 1: P 1 R 1/2 (F1 2/3).
    assert m["f1_macro"] == pytest.approx((1 + 2 / 3) / 2)
    assert m["roc_auc"] == pytest.approx(skm.roc_auc_score(y, proba, average="macro"))
    json.dumps(m)


def test_regression_exact_values():
    y = np.array([1.0, 2.0, 3.0, 4.0])
    pred = np.array([1.5, 2.0, 2.0, 5.0])  # errors 0.5, 0, -1, 1
    m = compute_metrics("regression", y, pred)
    assert m["mae"] == pytest.approx(0.625)
    assert m["mse"] == pytest.approx(0.5625)
    assert m["rmse"] == pytest.approx(0.75)
    assert m["r2"] == pytest.approx(1 - 0.5625 / 1.25)  # var(y) = 1.25
    assert m["r2"] == pytest.approx(skm.r2_score(y, pred))
    perfect = compute_metrics("regression", y, y.copy())
    assert perfect["mse"] == 0.0 and perfect["r2"] == 1.0


@pytest.mark.parametrize(
    ("task", "y", "output"),
    [
        ("multiclass", np.array([2, 2, 2]), _proba([2, 0, 2], 3)),
        ("binary", np.array([1, 1, 1]), np.array([0.9, 0.2, 0.6])),
        ("multilabel", np.array([[1, 0], [1, 1], [1, 0]]), np.array([[0.9, 0.1], [0.8, 0.7], [0.3, 0.2]])),
    ],
)
def test_roc_auc_is_none_with_a_single_class(task, y, output):
    m = compute_metrics(task, y, output)
    assert m["roc_auc"] is None
    json.dumps(m)


def test_primary_metrics_and_direction():
    assert {task: primary_metric(task) for task in PRIMARY} == {
        "multiclass": "accuracy",
        "binary": "accuracy",
        "multilabel": "f1_macro",
        "regression": "mse",
    }
    assert "mse" in LOWER_IS_BETTER and "accuracy" not in LOWER_IS_BETTER
    assert is_better("mse", 0.1, 0.2) and not is_better("mse", 0.3, 0.2)
    assert is_better("accuracy", 0.9, 0.8) and not is_better("accuracy", 0.7, 0.8)


def test_unknown_task_raises():
    with pytest.raises(ValueError, match="unknown task 'ranking'"):
        compute_metrics("ranking", np.array([0]), np.array([0.0]))

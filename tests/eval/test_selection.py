"""Model selection on validation: the multi-label score and Caruana's greedy ensemble."""

from __future__ import annotations

import numpy as np
import pytest

from polyfuse.config import LabelSpec
from polyfuse.eval.selection import greedy_ensemble, selection_score

KIND = LabelSpec("kind", "multiclass", ["a", "b", "c"])
PRICE = LabelSpec("price", "regression")


def _onehot(pred: np.ndarray, k: int = 3, confidence: float = 0.8) -> np.ndarray:
    out = np.full((len(pred), k), (1 - confidence) / (k - 1))
    out[np.arange(len(pred)), pred] = confidence
    return out


def test_selection_score_is_the_mean_of_accuracy_and_r2():
    y = {"kind": np.array([0, 1, 2, 0]), "price": np.array([1.0, 2.0, 3.0, 4.0])}
    out = {"kind": _onehot(np.array([0, 1, 2, 1])), "price": np.array([1.0, 2.0, 3.0, 5.0])}
    r2 = 1 - (1 / 4) / np.var(y["price"])  # one error of 1 over four rows
    assert selection_score([KIND, PRICE], y, out) == pytest.approx((0.75 + r2) / 2)


def test_complementary_models_mix_and_never_score_below_the_best_member():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 600)
    # Each model is right on its own half of the rows and guesses elsewhere (a less confident guess).
    first, second = y.copy(), y.copy()
    first[300:], second[:300] = rng.integers(0, 3, 300), rng.integers(0, 3, 300)
    candidates = {
        "first": {"kind": np.where(np.arange(600)[:, None] < 300, _onehot(first), _onehot(first, 3, 0.4))},
        "second": {
            "kind": np.where(np.arange(600)[:, None] >= 300, _onehot(second), _onehot(second, 3, 0.4))
        },
    }
    chosen = greedy_ensemble(candidates, [KIND], {"kind": y})
    assert set(chosen.weights) == {"first", "second"}
    assert sum(chosen.weights.values()) == pytest.approx(1.0)
    assert chosen.score >= max(chosen.member_scores.values()) + 0.2  # each alone: about 2/3 right
    assert chosen.score > 0.95


def test_a_model_that_is_right_everywhere_is_kept_alone():
    y = np.array([0, 1, 2] * 50)
    candidates = {"weak": {"kind": _onehot((y + 1) % 3)}, "strong": {"kind": _onehot(y)}}
    chosen = greedy_ensemble(candidates, [KIND], {"kind": y})
    assert chosen.weights == {"strong": 1.0} and chosen.score == 1.0
    assert chosen.member_scores == {"weak": 0.0, "strong": 1.0}


def test_a_model_counts_only_on_the_rows_where_it_is_present():
    y = np.array([0, 1, 2] * 100)
    half = np.arange(300) < 150
    # "partial" has its modality on the first half only (elsewhere its output is its wrong guess for an
    # absent input); "full" is right on the second half and wrong on the first.
    partial = np.where(half[:, None], _onehot(y), _onehot((y + 1) % 3, 3, 0.99))
    full = np.where(half[:, None], _onehot((y + 2) % 3, 3, 0.9), _onehot(y))
    candidates = {"full": {"kind": full}, "partial": {"kind": partial}}
    chosen = greedy_ensemble(candidates, [KIND], {"kind": y}, present={"partial": half})
    assert chosen.score == 1.0 and set(chosen.weights) == {"full", "partial"}
    # Averaging the absent guesses in, no weighting fixes both halves (partial's share must be above
    # 0.55 for the first and below 0.42 for the second).
    blind = greedy_ensemble(candidates, [KIND], {"kind": y})
    assert blind.score < 1.0

"""Choosing among trained models on validation: one score over every label, and a greedy ensemble.

``selection_score`` ranks models with several labels by every label: the mean over labels of each
label's higher-is-better value metric (accuracy, macro F1 for multilabel, R² for regression; see
``probe.value_metric``), so that no label's scale dominates. Training reads the same score: with
several labels, early stopping and the kept epoch follow ``val_score`` (``validation_metric``).
``greedy_ensemble`` is ensemble
selection (Caruana, Niculescu-Mizil, Crew & Ksikes, ICML 2004, "Ensemble Selection from Libraries
of Models"), the final model of AutoGluon: starting from nothing, each round adds the model (with
replacement) whose inclusion gives the best averaged prediction; the weights are the counts of the
best round so far, so the ensemble's validation score is never below its best member's.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from polyfuse.config import LabelSpec
from polyfuse.eval.metrics import primary_metric
from polyfuse.eval.probe import metric_value

SCORE = "score"  # the validation metric's name with several labels: selection_score

ROUNDS = 25  # AutoGluon's default ensemble size

Outputs = dict[str, np.ndarray]  # label -> predictions (probabilities or values) of every row


def selection_score(specs: list[LabelSpec], targets: Outputs, outputs: Outputs) -> float:
    """The mean over labels of each label's value metric (higher is better)."""
    return float(np.mean([metric_value(s.task, targets[s.column], outputs[s.column]) for s in specs]))


def validation_metric(tasks: list[str]) -> str:
    """The name (without ``val_``) of the validation score that early stopping, the kept epoch and
    ``compare``'s choice of run read, for a model with labels of these ``tasks``: the label's primary
    metric with one label (``accuracy``, ``mse`` ...), ``SCORE`` (``selection_score``, higher is
    better) with several."""
    return SCORE if len(tasks) > 1 else primary_metric(tasks[0])


@dataclass
class Selection:
    weights: dict[str, float]  # model name -> weight (only the chosen ones; they sum to 1)
    score: float  # the weighted average's selection_score on the rows it was chosen on
    member_scores: dict[str, float]  # every candidate's own selection_score


def greedy_ensemble(
    candidates: dict[str, Outputs], specs: list[LabelSpec], targets: Outputs, rounds: int = ROUNDS
) -> Selection:
    """Caruana's ensemble selection with replacement over ``candidates`` (name -> outputs).

    Ties go to the candidate listed first, and a round must improve on the best so far to count,
    so the smallest ensemble reaching the best score is kept (a single model when none helps).
    """
    if not candidates:
        raise ValueError("no models to choose from")
    names = list(candidates)
    own = {n: selection_score(specs, targets, candidates[n]) for n in names}
    counts = dict.fromkeys(names, 0)
    total: Outputs = {
        s.column: np.zeros_like(candidates[names[0]][s.column], dtype=np.float64) for s in specs
    }
    best_score, best_counts = -np.inf, dict(counts)
    for size in range(1, rounds + 1):
        scores = {n: selection_score(specs, targets, _mean(total, candidates[n], size)) for n in names}
        pick = max(names, key=lambda n: (scores[n], -names.index(n)))
        counts[pick] += 1
        total = {k: total[k] + candidates[pick][k] for k in total}
        if scores[pick] > best_score:
            best_score, best_counts = scores[pick], dict(counts)
    used = sum(best_counts.values())
    weights = {n: c / used for n, c in best_counts.items() if c}
    return Selection(weights, float(best_score), own)


def _mean(total: Outputs, added: Outputs, size: int) -> Outputs:
    """The average of ``size`` models: ``total`` holds the sum of the first ``size - 1``."""
    return {k: (total[k] + added[k]) / size for k in total}

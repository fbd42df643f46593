"""Choosing among trained models on validation: one score over every label, and a greedy ensemble.

``selection_score`` ranks models with several labels by every label: the mean over labels of each
label's higher-is-better value metric (accuracy, macro F1 for multilabel, R² for regression; see
``probe.value_metric``), so that no label's scale dominates. Training reads the same score: with
several labels, early stopping and the kept epoch follow ``val_score`` (``validation_metric``).
``greedy_ensemble`` is ensemble
selection (Caruana, Niculescu-Mizil, Crew & Ksikes, ICML 2004, "Ensemble Selection from Libraries
of Models"), the final model of AutoGluon: starting from nothing, each round adds the model (with
replacement) whose inclusion gives the best averaged prediction; the weights are the counts of the
best round so far, so the ensemble's validation score is never below its best member's (where a
member lacks its modalities on some rows and so does not vote there, it can be: ``fitting.choose_final``
then keeps the best model alone).
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
    candidates: dict[str, Outputs],
    specs: list[LabelSpec],
    targets: Outputs,
    rounds: int = ROUNDS,
    present: dict[str, np.ndarray] | None = None,
) -> Selection:
    """Caruana's ensemble selection with replacement over ``candidates`` (name -> outputs).

    ``present`` (name -> bool [N]) says on which rows a candidate counts: the average of a row is
    over the candidates present there, as the assembled ensemble computes it
    (``models.ensemble.EnsembleFusion``: a model without any of its modalities in a row does not
    vote). Ties go to the candidate listed first, and a round must improve on the best so far to
    count, so the smallest ensemble reaching the best score is kept (a single model when none helps).
    """
    if not candidates:
        raise ValueError("no models to choose from")
    names = list(candidates)
    rows = len(targets[specs[0].column])
    here = {n: (present or {}).get(n, np.ones(rows, dtype=bool)).astype(np.float64) for n in names}
    own = {n: selection_score(specs, targets, candidates[n]) for n in names}
    counts = dict.fromkeys(names, 0)
    total = _Sum(
        {s.column: np.zeros_like(candidates[names[0]][s.column], dtype=np.float64) for s in specs}, 0.0
    )
    best_score, best_counts = -np.inf, dict(counts)
    for _ in range(rounds):
        scores = {n: selection_score(specs, targets, total.add(candidates[n], here[n]).mean()) for n in names}
        pick = max(names, key=lambda n: (scores[n], -names.index(n)))
        counts[pick] += 1
        total = total.add(candidates[pick], here[pick])
        if scores[pick] > best_score:
            best_score, best_counts = scores[pick], dict(counts)
    used = sum(best_counts.values())
    weights = {n: c / used for n, c in best_counts.items() if c}
    return Selection(weights, float(best_score), own)


@dataclass
class _Sum:
    """Outputs summed over the chosen models, each counted on the rows where it is present."""

    outputs: Outputs  # label -> sum of present models' outputs
    count: np.ndarray | float  # [N] models counted per row

    def add(self, outputs: Outputs, here: np.ndarray) -> _Sum:
        summed = {
            k: v + outputs[k] * (here if v.ndim == 1 else here[:, None]) for k, v in self.outputs.items()
        }
        return _Sum(summed, self.count + here)

    def mean(self) -> Outputs:
        count = np.maximum(self.count, 1e-12)
        return {k: v / (count if v.ndim == 1 else count[:, None]) for k, v in self.outputs.items()}

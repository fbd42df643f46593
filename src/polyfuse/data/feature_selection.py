"""Static selection of tabular columns (``TrainConfig.select_features``, ``--select-features K``).

Keeps the K tabular (numeric and categorical) columns that tell the most about the labels, ranked on
the training rows only, by one of two scores (``TrainConfig.select_features_by``):

- ``mutual_info`` (default): the mutual information between each column and each label
  (k-nearest-neighbour estimates: Kraskov, Stögbauer & Grassberger, 2004; Ross, 2014; scikit-learn's
  ``mutual_info_classif`` / ``mutual_info_regression``); it sees one column at a time.
- ``permutation``: permutation importance (Breiman, 2001, "Random Forests"; scikit-learn's
  ``permutation_importance``) of a quick gradient-boosted tree model fitted on three quarters of the
  training rows and scored on the other quarter: how much the model's accuracy (R² for a regression
  label) falls when a column's values are shuffled. It sees columns that only help together, at a
  few seconds' cost; a negative importance counts as 0.

Each label's scores are divided by that label's largest, so that labels of different scales count
alike, then averaged over the labels. Multilabel labels are left out of
the ranking (no single class per row). The dropped columns leave the schema (listed as ignored), so
the preprocessor, the model and every saved file know only the kept ones; a table that still has
the dropped columns predicts as before, ignoring them.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.config import InputSpec, LabelSpec, Schema
from polyfuse.data.errors import SchemaError

PERMUTATION_REPEATS = 5  # shuffles per column
PERMUTATION_HELD_OUT = 0.25  # share of the training rows the permutation model is scored on
PERMUTATION_ROWS = 20_000  # training rows the permutation model sees at most (a random sample)


def select_columns(
    frame: pd.DataFrame,
    schema: Schema,
    train_rows: np.ndarray,
    k: int,
    seed: int = 0,
    method: str = "mutual_info",
) -> tuple[Schema, dict[str, Any]]:
    """The schema with only the ``k`` best tabular columns by ``method`` (a ``SCORERS`` name), and
    what was kept (``metrics.json``'s ``feature_selection``: method, kept and dropped columns in
    order, each column's score)."""
    tabular = [spec for spec in schema.inputs if spec.kind == "tabular"]
    columns = [c for spec in tabular for c in spec.columns]
    if not columns:
        raise SchemaError(
            "select_features needs tabular (numeric or categorical) columns; this table has none"
        )
    if k < 1:
        raise SchemaError(f"select_features must keep at least one column, got {k}")
    if method not in SCORERS:
        raise SchemaError(f"select_features_by must be one of {sorted(SCORERS)}, got {method!r}")
    rows = frame.iloc[train_rows]
    scores = column_scores(rows, columns, schema.labels, schema.roles, seed, method)
    ranked = sorted(columns, key=lambda c: (-scores[c], columns.index(c)))
    kept = set(ranked[:k])
    record = {
        "method": method,
        "kept": [c for c in ranked if c in kept],
        "dropped": [c for c in ranked if c not in kept],
        "scores": {c: round(scores[c], 6) for c in ranked},
    }
    return _without(schema, [c for c in columns if c not in kept]), record


def column_scores(
    rows: pd.DataFrame,
    columns: list[str],
    labels: list[LabelSpec],
    roles: dict[str, str],
    seed: int,
    method: str = "mutual_info",
) -> dict[str, float]:
    """Column -> mean over labels of its score for the label (``SCORERS[method]``), as a share of the
    best column's (0..1)."""
    x, discrete = _matrix(rows, columns, roles)
    per_label = []
    for spec in labels:
        if spec.task == "multilabel":
            continue
        y = rows[spec.column]
        known = y.notna().to_numpy()
        regression = spec.task == "regression"
        target = y[known].astype(float).to_numpy() if regression else pd.Categorical(y[known]).codes
        score = np.clip(SCORERS[method](x[known], target, discrete, regression, seed), 0.0, None)
        per_label.append(score / score.max() if score.max() > 0 else score)
    if not per_label:
        raise SchemaError("select_features ranks columns by a classification or regression label; none here")
    mean = np.mean(per_label, axis=0)
    return {c: float(v) for c, v in zip(columns, mean, strict=True)}


def mutual_info_scores(
    x: np.ndarray, y: np.ndarray, discrete: np.ndarray, regression: bool, seed: int
) -> np.ndarray:
    """Each column's mutual information with ``y`` (nats)."""
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    score = mutual_info_regression if regression else mutual_info_classif
    return np.asarray(score(x, y, discrete_features=discrete, random_state=seed))


def permutation_scores(
    x: np.ndarray, y: np.ndarray, discrete: np.ndarray, regression: bool, seed: int
) -> np.ndarray:
    """Each column's permutation importance for a quick tree model: the held-out score's mean fall
    (accuracy, or R²) over ``PERMUTATION_REPEATS`` shuffles of the column. Category codes are read
    as numbers, which trees split as well as categories."""
    from sklearn.ensemble import HistGradientBoostingClassifier, HistGradientBoostingRegressor
    from sklearn.inspection import permutation_importance
    from sklearn.model_selection import train_test_split
    from threadpoolctl import threadpool_limits

    if len(x) > PERMUTATION_ROWS:  # a sample is enough to rank columns
        rows = np.random.default_rng(seed).choice(len(x), PERMUTATION_ROWS, replace=False)
        x, y = x[rows], y[rows]
    x_fit, x_held, y_fit, y_held = train_test_split(x, y, test_size=PERMUTATION_HELD_OUT, random_state=seed)
    model = (HistGradientBoostingRegressor if regression else HistGradientBoostingClassifier)(
        max_iter=100, random_state=seed
    )
    with threadpool_limits(limits=1):  # small trees: OpenMP threads cost more than they save (15x here)
        model.fit(x_fit, y_fit)
        found = permutation_importance(
            model, x_held, y_held, n_repeats=PERMUTATION_REPEATS, random_state=seed
        )
    return np.asarray(found.importances_mean)


# select_features_by name -> (x [N, C], y [N], discrete [C], regression, seed) -> score [C] per column
SCORERS = {"mutual_info": mutual_info_scores, "permutation": permutation_scores}


def _matrix(rows: pd.DataFrame, columns: list[str], roles: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    """Columns as numbers: numeric ones with missing values at the median, categorical ones (their
    schema role) as codes, missing values a code of their own; and which columns are discrete."""
    parts, discrete = [], []
    for c in columns:
        if roles.get(c) == "categorical":
            parts.append(pd.Categorical(rows[c].astype("string")).codes.astype(float))
        else:
            values = pd.to_numeric(rows[c], errors="coerce")
            parts.append(values.fillna(values.median() if values.notna().any() else 0.0).to_numpy(float))
        discrete.append(roles.get(c) == "categorical")
    return np.stack(parts, axis=1), np.array(discrete)


def _without(schema: Schema, dropped: list[str]) -> Schema:
    """``schema`` with ``dropped`` out of its tabular inputs (an input left with none is removed) and
    listed as ignored."""
    gone = set(dropped)
    inputs: list[InputSpec] = []
    for spec in schema.inputs:
        if spec.kind != "tabular":
            inputs.append(spec)
        elif [c for c in spec.columns if c not in gone]:
            inputs.append(dataclasses.replace(spec, columns=[c for c in spec.columns if c not in gone]))
    return dataclasses.replace(schema, inputs=inputs, ignored=[*schema.ignored, *dropped])

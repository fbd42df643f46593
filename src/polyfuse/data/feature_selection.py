"""Static selection of tabular columns (``TrainConfig.select_features``, ``--select-features K``).

Keeps the K tabular (numeric and categorical) columns that share the most information with the
labels, ranked on the training rows only: the mutual information between each column and each label
(k-nearest-neighbour estimates: Kraskov, Stögbauer & Grassberger, 2004; Ross, 2014; scikit-learn's
``mutual_info_classif`` / ``mutual_info_regression``), divided by that label's largest so that labels
of different scales count alike, then averaged over the labels. Multilabel labels are left out of
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

METHOD = "mutual_info"


def select_columns(
    frame: pd.DataFrame, schema: Schema, train_rows: np.ndarray, k: int, seed: int = 0
) -> tuple[Schema, dict[str, Any]]:
    """The schema with only the ``k`` best tabular columns, and what was kept (``metrics.json``'s
    ``feature_selection``: method, kept and dropped columns in order, each column's score)."""
    tabular = [spec for spec in schema.inputs if spec.kind == "tabular"]
    columns = [c for spec in tabular for c in spec.columns]
    if not columns:
        raise SchemaError(
            "select_features needs tabular (numeric or categorical) columns; this table has none"
        )
    if k < 1:
        raise SchemaError(f"select_features must keep at least one column, got {k}")
    rows = frame.iloc[train_rows]
    scores = column_scores(rows, columns, schema.labels, schema.roles, seed)
    ranked = sorted(columns, key=lambda c: (-scores[c], columns.index(c)))
    kept = set(ranked[:k])
    record = {
        "method": METHOD,
        "kept": [c for c in ranked if c in kept],
        "dropped": [c for c in ranked if c not in kept],
        "scores": {c: round(scores[c], 6) for c in ranked},
    }
    return _without(schema, [c for c in columns if c not in kept]), record


def column_scores(
    rows: pd.DataFrame, columns: list[str], labels: list[LabelSpec], roles: dict[str, str], seed: int
) -> dict[str, float]:
    """Column -> mean over labels of its mutual information with the label, as a share of the best
    column's (0..1)."""
    from sklearn.feature_selection import mutual_info_classif, mutual_info_regression

    x, discrete = _matrix(rows, columns, roles)
    per_label = []
    for spec in labels:
        if spec.task == "multilabel":
            continue
        y = rows[spec.column]
        known = y.notna().to_numpy()
        if spec.task == "regression":
            mi = mutual_info_regression(
                x[known], y[known].astype(float), discrete_features=discrete, random_state=seed
            )
        else:
            codes = pd.Categorical(y[known]).codes
            mi = mutual_info_classif(x[known], codes, discrete_features=discrete, random_state=seed)
        per_label.append(mi / mi.max() if mi.max() > 0 else mi)
    if not per_label:
        raise SchemaError("select_features ranks columns by a classification or regression label; none here")
    mean = np.mean(per_label, axis=0)
    return {c: float(v) for c, v in zip(columns, mean, strict=True)}


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

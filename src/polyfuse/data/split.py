"""Train / validation / test splits: the user's split column, or a seeded stratified split."""

from __future__ import annotations

import numpy as np
import pandas as pd

from polyfuse.config import Schema
from polyfuse.data.errors import SchemaError
from polyfuse.data.labels import missing
from polyfuse.data.schema import SPLIT_VALUES

SPLITS = ("train", "val", "test")


def split_indices(
    df: pd.DataFrame,
    schema: Schema,
    seed: int,
    val_fraction: float = 0.15,
    test_fraction: float = 0.15,
) -> dict[str, np.ndarray]:
    """Positional row indices of the train, val and test splits.

    With ``schema.split_column`` its values decide (``valid``/``validation`` mean ``val``; rows with
    an empty split cell are left out). Otherwise rows are split at random, stratified by the first
    classification label when every class is large enough, unstratified when not.

    Returns:
        ``{"train": int64 [n_train], "val": [n_val], "test": [n_test]}``, each sorted.
    """
    if schema.split_column:
        return _from_column(df[schema.split_column])
    from sklearn.model_selection import train_test_split

    positions = np.arange(len(df))
    strata = _strata(df, schema)
    rest, test = _cut(positions, strata, test_fraction, seed, train_test_split)
    rest_strata = strata[rest] if strata is not None else None
    val_share = val_fraction / (1.0 - test_fraction) if test_fraction < 1 else 0.0
    train, val = _cut(rest, rest_strata, val_share, seed + 1, train_test_split)
    return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}


def _from_column(column: pd.Series) -> dict[str, np.ndarray]:
    names = column.astype(str).str.strip().str.lower().where(column.notna(), "")
    unknown = sorted(set(names) - set(SPLIT_VALUES) - {"", "nan"})
    if unknown:
        raise SchemaError(
            f"split column {column.name!r} has values {unknown}; "
            "expected train, val (or valid, validation) and test"
        )
    canonical = names.map(SPLIT_VALUES).to_numpy()
    return {name: np.flatnonzero(canonical == name).astype(np.int64) for name in SPLITS}


def _strata(df: pd.DataFrame, schema: Schema) -> np.ndarray | None:
    spec = next((s for s in schema.labels if s.task in ("multiclass", "binary")), None)
    if spec is None:
        return None
    values = df[spec.column]
    strata = values.astype(str).where(~missing(values), "<missing>").to_numpy()
    return strata


def _cut(
    positions: np.ndarray, strata: np.ndarray | None, fraction: float, seed: int, splitter: object
) -> tuple[np.ndarray, np.ndarray]:
    n_out = int(round(fraction * len(positions)))
    if n_out == 0 or len(positions) - n_out == 0:
        return positions, positions[:0]
    stratify = strata if strata is not None and _stratifiable(strata, n_out, len(positions)) else None
    keep, out = splitter(positions, test_size=n_out, random_state=seed, stratify=stratify)  # type: ignore[operator]
    return np.asarray(keep, dtype=np.int64), np.asarray(out, dtype=np.int64)


def _stratifiable(strata: np.ndarray, n_out: int, n: int) -> bool:
    _, counts = np.unique(strata, return_counts=True)
    # sklearn needs 2+ rows per class and at least one row per class on each side.
    return bool(counts.min() >= 2 and n_out >= len(counts) and n - n_out >= len(counts))

"""Tabular: numeric and categorical columns together -> one dict of tensors.

Numbers are standardised with training mean / std, a missing number becomes 0 with a 1 in its
missing-indicator column; categories become codes 1..K in sorted training order, 0 for missing or
unseen values.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from polyfuse.config import InputSpec, Schema
from polyfuse.data.errors import DataError
from polyfuse.data.modalities.base import Encoded
from polyfuse.data.modalities.modality import BadValue, Column, Field, Modality, Rule
from polyfuse.data.table import missing_mask
from polyfuse.registry import MODALITIES, PROCESSORS

NUMERIC, CATEGORICAL = "numeric", "categorical"  # its two column roles


class TabularModality(Modality):
    """Numeric and categorical columns, grouped into one input: an MLP, permutation importance."""

    kind = "tabular"
    default_augmentation = ("gaussian_noise", "feature_dropout")  # data.augmentations.tabular
    roles = (NUMERIC, CATEGORICAL)
    grouped = True
    default_encoder = "tabular_mlp"
    attribution = "permutation"

    def rules(self) -> list[tuple[int, Rule]]:
        # Numbers first; strings that are mostly numbers come after file paths (ranks 30, 40), and
        # categories after long text (rank 60).
        return [(10, _numeric_dtype), (50, _numeric_strings), (70, _few_values)]

    def processor(self, spec: InputSpec, schema: Schema, options: dict[str, Any]) -> Any:
        options = dict(options)
        options.setdefault(CATEGORICAL, [c for c in spec.columns if schema.roles.get(c) == CATEGORICAL])
        return super().processor(spec, schema, options)

    def detail(self, series: pd.Series, role: str, base_dir: str | Path | None) -> str:
        missing = int(missing_mask(series).sum())
        values = series.dropna()
        if role == NUMERIC:
            numbers = pd.to_numeric(values, errors="coerce")
            return f"mean {numbers.mean():.3g}, std {numbers.std():.3g}, {missing} missing"
        return f"{values.astype(str).nunique()} categories, {missing} missing"

    def fields(self, spec: InputSpec, processor: Any) -> list[Field]:
        categories = processor.categories
        return [
            Field(c, spec.name, CATEGORICAL, categories.get(c))
            if c in categories
            else Field(c, spec.name, NUMERIC)
            for c in spec.columns
        ]

    def field_type(self, field: Field) -> str:
        return "number" if field.kind == NUMERIC else "string"

    def decode(self, field: Field, value: Any, limits: Any) -> Any:
        return _number(value) if field.kind == NUMERIC else _category(field, value)

    def example(self, field: Field) -> Any:
        if field.kind == NUMERIC:
            return 0.0
        return field.categories[0] if field.categories else None

    def field_schema(self, field: Field, limits: Any, multipart: bool) -> dict[str, Any]:
        if field.kind == NUMERIC:
            return {"type": "number"}
        return {"type": "string", **({"enum": field.categories} if field.categories is not None else {})}

    def form(self, field: Field, limits: Any) -> dict[str, Any]:
        return {"input": "number"} if field.kind == NUMERIC else {"input": "select"}


MODALITIES.register("tabular")(TabularModality())  # one instance per kind


def _numeric_dtype(column: Column) -> str | None:
    series = column.series
    return NUMERIC if pd.api.types.is_bool_dtype(series) or pd.api.types.is_numeric_dtype(series) else None


def _numeric_strings(column: Column) -> str | None:
    # At least 90% numbers: the odd bad cell then raises a DataError naming it.
    return NUMERIC if pd.to_numeric(column.strings, errors="coerce").notna().mean() >= 0.9 else None


def _few_values(column: Column) -> str | None:
    return CATEGORICAL if column.strings.nunique() <= max(20, 0.05 * len(column.series)) else None


def _number(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadValue(f"expected a number, got {type(value).__name__}")
    try:
        number = float(value)
    except (ValueError, OverflowError):  # OverflowError: a JSON integer of hundreds of digits
        raise BadValue(f"expected a number, got {str(value)[:40]!r}") from None
    if not math.isfinite(number):
        raise BadValue("expected a finite number")
    return number


def _category(field: Field, value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise BadValue(f"expected a category, got {type(value).__name__}")
    key = category_key(value)
    if field.categories is not None and key not in field.categories:
        known = ", ".join(field.categories[:20]) + (" ..." if len(field.categories) > 20 else "")
        raise BadValue(f"unknown category {key[:40]!r}; known: {known}")
    return key


@PROCESSORS.register("tabular")
class TabularProcessor:
    """Standardise numbers and code categories.

    Args:
        columns: All columns of the group.
        categorical: The columns among them that are categorical (the rest are numeric).
        mean: Per numeric column, learnt by ``fit``.
        std: Per numeric column, learnt by ``fit``.
        categories: Per categorical column, its sorted training values as text (code = index + 1).
    """

    kind = "tabular"

    def __init__(
        self,
        columns: list[str],
        categorical: list[str] | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
        categories: dict[str, list[str]] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.categorical = [c for c in self.columns if c in set(categorical or [])]
        self.numeric = [c for c in self.columns if c not in set(self.categorical)]
        self.mean = mean
        self.std = std
        self.categories = categories or {}
        self._codes = {c: {v: i + 1 for i, v in enumerate(vals)} for c, vals in self.categories.items()}

    def fit(self, frame: pd.DataFrame, base_dir: Path) -> None:
        numbers, _, _ = self._numbers(frame)  # bad cells are NaN here; transform reports them
        with np.errstate(all="ignore"):
            mean = np.nan_to_num(np.nanmean(numbers, axis=0)) if len(numbers) else np.zeros(len(self.numeric))
            std = np.nan_to_num(np.nanstd(numbers, axis=0)) if len(numbers) else np.ones(len(self.numeric))
        self.mean = [float(m) for m in mean]
        self.std = [float(s) if s > 1e-12 else 1.0 for s in std]
        for column in self.categorical:
            texts = _category_text(frame[column])
            self.categories[column] = sorted(set(t for t in texts if t is not None))
        self._codes = {c: {v: i + 1 for i, v in enumerate(vals)} for c, vals in self.categories.items()}

    def _numbers(self, frame: pd.DataFrame) -> tuple[np.ndarray, np.ndarray, list[DataError]]:
        """Numeric columns as float64 [N, n_num] with NaN for missing, the missing mask and bad cells."""
        numbers = np.full((len(frame), len(self.numeric)), np.nan)
        absent = np.ones((len(frame), len(self.numeric)), dtype=bool)
        errors: dict[int, DataError] = {}
        for j, column in enumerate(self.numeric):
            series = frame[column]
            absent[:, j] = missing_mask(series)
            values = pd.to_numeric(series.map(_as_number), errors="coerce").to_numpy(dtype=np.float64)
            bad = np.isnan(values) & ~absent[:, j] | np.isinf(values)
            for i in np.flatnonzero(bad):
                errors.setdefault(int(i), _bad_number(series, int(i), column))
            numbers[:, j] = np.where(absent[:, j] | bad, np.nan, values)
        return numbers, absent, [errors[i] for i in sorted(errors)]

    def transform(self, frame: pd.DataFrame, base_dir: Path) -> Encoded:
        numbers, absent, errors = self._numbers(frame)
        mean = np.asarray(self.mean if self.mean is not None else [0.0] * len(self.numeric))
        std = np.asarray(self.std if self.std is not None else [1.0] * len(self.numeric))
        scaled = np.nan_to_num((numbers - mean) / std, nan=0.0)  # [N, n_num]
        codes = np.zeros((len(frame), len(self.categorical)), dtype=np.int64)  # [N, n_cat]
        cat_absent = np.ones_like(codes, dtype=bool)
        for j, column in enumerate(self.categorical):
            lookup = self._codes.get(column, {})
            texts = _category_text(frame[column])
            codes[:, j] = [lookup.get(t, 0) if t is not None else 0 for t in texts]
            cat_absent[:, j] = [t is None for t in texts]
        present = ~np.concatenate([absent, cat_absent], axis=1).all(axis=1)
        values = {
            "numeric": torch.from_numpy(scaled.astype(np.float32)),
            "numeric_missing": torch.from_numpy(absent.astype(np.float32)),
            "categorical": torch.from_numpy(codes),
        }
        return Encoded(values=values, present=torch.from_numpy(present), errors=errors)

    def column_slices(self) -> list[tuple[str, list[tuple[str, int]]]]:
        """[(column, [(tensor key, index), ...])]: the slices of ``transform``'s tensors that hold each
        column (a number moves with its missing flag), for permutation importance."""
        numbers = [(c, [("numeric", j), ("numeric_missing", j)]) for j, c in enumerate(self.numeric)]
        return numbers + [(c, [("categorical", k)]) for k, c in enumerate(self.categorical)]

    def encoder_kwargs(self) -> dict[str, Any]:
        return {
            "num_numeric": len(self.numeric),
            "cardinalities": [len(self.categories.get(c, [])) + 1 for c in self.categorical],
        }

    def state(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "categorical": self.categorical,
            "mean": self.mean,
            "std": self.std,
            "categories": self.categories,
        }


def _as_number(value: Any) -> Any:
    if isinstance(value, (bool, np.bool_)):
        return float(value)
    if isinstance(value, str):
        return value.strip() if value.strip() else np.nan
    return value


def _bad_number(series: pd.Series, i: int, column: str) -> DataError:
    return DataError(f"expected a number, got '{series.iloc[i]}'", series.index[i], column)


def _category_text(series: pd.Series) -> list[str | None]:
    """Cells as category keys: 3, 3.0 and "3" are one category; missing cells are None."""
    absent = missing_mask(series)
    return [None if gone else category_key(value) for value, gone in zip(series, absent, strict=True)]


def category_key(value: Any) -> str:
    """A present cell's category key (what ``categories`` lists): 3, 3.0 and "3" are all "3"."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value).strip()

"""Label encoders: class values <-> indices, regression targets <-> standardised floats.

Targets are encoded as:
* multiclass: int64 [N] class index (classes sorted);
* binary: float32 [N], 1.0 for ``classes[1]`` (the larger of the two sorted values);
* multilabel: float32 [N, K] multi-hot; cells are lists or ``|``-delimited strings;
* regression: float32 [N], standardised with the training mean and std.
Rows with a missing label get NaN (or -1 for multiclass) and are reported by ``missing``.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polyfuse.config import LabelSpec
from polyfuse.data.errors import DataError
from polyfuse.data.table import missing_mask

MULTILABEL_SEP = "|"


class LabelEncoder:
    """Encode and decode one label column."""

    def __init__(
        self, column: str, task: str, classes: list[Any] | None = None, mean: float = 0.0, std: float = 1.0
    ) -> None:
        self.column = column
        self.task = task
        self.classes = list(classes or [])
        self.mean = float(mean)
        self.std = float(std)
        self._index = {_key(c): i for i, c in enumerate(self.classes)}

    @classmethod
    def from_spec(cls, spec: LabelSpec) -> LabelEncoder:
        return cls(spec.column, spec.task, spec.classes)

    def fit(self, series: pd.Series) -> LabelEncoder:
        """Learn the sorted classes (or the mean and std) from training rows."""
        values = series[~missing_mask(series)]
        if self.task == "regression":
            numbers = _numbers(values, self.column)
            self.mean = float(numbers.mean()) if len(numbers) else 0.0
            std = float(numbers.std()) if len(numbers) > 1 else 1.0
            self.std = std if std > 1e-12 else 1.0
        else:
            items = [v for cell in values for v in _cells(cell, self.task)]
            self.classes = _sorted_unique(items)
        self._index = {_key(c): i for i, c in enumerate(self.classes)}
        return self

    @property
    def num_outputs(self) -> int:
        return 1 if self.task in ("binary", "regression") else len(self.classes)

    def encode(self, series: pd.Series) -> tuple[Tensor, list[DataError]]:
        """Targets for the given rows and an error per row with an unknown label value."""
        absent = missing_mask(series)
        if self.task == "regression":
            numbers = pd.to_numeric(series, errors="coerce").to_numpy(dtype=np.float64)
            errors = [
                DataError(f"expected a number, got {v!r}", row, self.column)
                for row, v, bad in zip(series.index, series, np.isnan(numbers) & ~absent, strict=True)
                if bad
            ]
            return torch.as_tensor((numbers - self.mean) / self.std, dtype=torch.float32), errors
        if self.task == "multilabel":
            return self._encode_multilabel(series, absent)
        return self._encode_classes(series, absent)

    def _encode_classes(self, series: pd.Series, absent: np.ndarray) -> tuple[Tensor, list[DataError]]:
        index = np.full(len(series), -1, dtype=np.int64)  # [N]
        errors = []
        for i, (row, value) in enumerate(series.items()):
            if absent[i]:
                continue
            pos = self._index.get(_key(value))
            if pos is None:
                errors.append(self._unknown(value, row))
            else:
                index[i] = pos
        if self.task == "binary":
            target = torch.as_tensor(index, dtype=torch.float32)
            target[torch.as_tensor(index < 0)] = float("nan")
            return target, errors
        return torch.as_tensor(index), errors

    def _encode_multilabel(self, series: pd.Series, absent: np.ndarray) -> tuple[Tensor, list[DataError]]:
        target = np.zeros((len(series), len(self.classes)), dtype=np.float32)  # [N, K]
        errors = []
        for i, (row, value) in enumerate(series.items()):
            if absent[i]:
                target[i] = np.nan
                continue
            for item in _cells(value, self.task):
                pos = self._index.get(_key(item))
                if pos is None:
                    errors.append(self._unknown(item, row))
                    break
                target[i, pos] = 1.0
        return torch.from_numpy(target), errors

    def _unknown(self, value: Any, row: Any) -> DataError:
        known = ", ".join(str(c) for c in self.classes[:20]) + (", ..." if len(self.classes) > 20 else "")
        return DataError(f"unknown label '{value}' (known: {known})", row, self.column)

    def decode(self, output: Tensor | np.ndarray, threshold: float = 0.5) -> list[Any]:
        """Model outputs -> label values.

        Args:
            output: Class indices [N], class probabilities [N, K], binary probabilities [N],
                multilabel probabilities [N, K] or standardised regression values [N].
            threshold: Decision threshold for binary and multilabel probabilities.
        """
        out = output.detach().cpu().numpy() if isinstance(output, Tensor) else np.asarray(output)
        if self.task == "regression":
            return (out.reshape(-1) * self.std + self.mean).tolist()
        if self.task == "multilabel":
            return [[c for c, p in zip(self.classes, row, strict=True) if p >= threshold] for row in out]
        if self.task == "binary" and out.ndim == 1 and out.dtype.kind == "f":
            return [self.classes[int(p >= threshold)] for p in out]
        index = out.argmax(axis=-1) if out.ndim == 2 else out.astype(np.int64)
        return [self.classes[int(i)] for i in index]

    def state(self) -> dict[str, Any]:
        classes = [c.item() if hasattr(c, "item") else c for c in self.classes]
        return {
            "column": self.column,
            "task": self.task,
            "classes": classes,
            "mean": self.mean,
            "std": self.std,
        }


def missing(series: pd.Series) -> pd.Series:
    """True where a cell holds no value (NaN, None or an empty string)."""
    return pd.Series(missing_mask(series), index=series.index)


def _cells(value: Any, task: str) -> list[Any]:
    if task != "multilabel":
        return [value]
    if isinstance(value, (list, tuple, np.ndarray)):
        return list(value)
    return [part.strip() for part in str(value).split(MULTILABEL_SEP) if part.strip()]


def _key(value: Any) -> Any:
    # 3, 3.0 and np.int64(3) name the same class; "3" read from a CSV stays distinct from 3 on purpose.
    if hasattr(value, "item"):
        value = value.item()
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def _sorted_unique(items: list[Any]) -> list[Any]:
    unique = {_key(v): _key(v) for v in items}  # a NaN-upcast int column gives 3.0; keep 3
    try:
        return sorted(unique.values())
    except TypeError:  # mixed types: order by their text
        return sorted(unique.values(), key=str)


def _numbers(series: pd.Series, column: str) -> np.ndarray:
    numbers = pd.to_numeric(series, errors="coerce")
    bad = numbers.isna() & series.notna()
    if bad.any():
        row = bad.idxmax()
        raise DataError(f"expected a number, got {series[row]!r}", row, column)
    return numbers.to_numpy(dtype=np.float64)

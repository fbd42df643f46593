"""The Preprocessor: a schema's processors and label encoders, fit together, saved together.

``fit`` learns from the training rows only; ``transform`` turns any rows into an EncodedTable and
either raises the first bad cell or drops bad rows and reports them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch
from torch import Tensor

import polyfuse.data.modalities  # noqa: F401  (registers the modalities and their processors)
from polyfuse.config import InputSpec, Schema, from_dict, to_dict
from polyfuse.data.batch import EncodedTable, Inputs
from polyfuse.data.errors import DataError, SchemaError
from polyfuse.data.labels import LabelEncoder
from polyfuse.data.modalities.base import Encoded
from polyfuse.data.table import missing_mask
from polyfuse.registry import MODALITIES, PROCESSORS

ON_ERROR = ("raise", "skip")


class Preprocessor:
    """Turns table rows into model-ready tensors for every input and label of a schema.

    Args:
        schema: Column roles, inputs and labels.
        options: Modality name -> processor parameters, e.g. ``{"audio": {"features": "waveform"}}``.
    """

    def __init__(self, schema: Schema, options: dict[str, dict[str, Any]] | None = None) -> None:
        self.schema = schema
        self.options = {k: dict(v) for k, v in (options or {}).items()}
        unknown = set(self.options) - set(schema.modalities)
        if unknown:
            raise SchemaError(
                f"options for unknown modalities {sorted(unknown)} (known: {schema.modalities})"
            )
        self.processors: dict[str, Any] = {spec.name: self._build(spec) for spec in schema.inputs}
        self.labels = {spec.column: LabelEncoder.from_spec(spec) for spec in schema.labels}

    def _build(self, spec: InputSpec) -> Any:
        params = dict(self.options.get(spec.name, {}))
        return MODALITIES.get(spec.kind).processor(spec, self.schema, params)

    def fit(
        self, df: pd.DataFrame, base_dir: str | Path, fitted: dict[str, Any] | None = None
    ) -> Preprocessor:
        """Fit every processor and label encoder on the given (training) rows; the processors in
        ``fitted`` (modality -> an already fitted processor, e.g. a pre-trained model's) are kept as
        they are."""
        self._check_columns(df, targets=True)
        fitted = fitted or {}
        for spec in self.schema.inputs:
            if spec.name in fitted:
                self.processors[spec.name] = fitted[spec.name]
                continue
            self.processors[spec.name].fit(df[spec.columns], Path(base_dir))
        for label in self.schema.labels:
            encoder = self.labels[label.column].fit(df[label.column])
            label.classes = list(encoder.classes)  # the schema shows what the model predicts
        return self

    def transform(
        self, df: pd.DataFrame, base_dir: str | Path, on_error: str = "raise", targets: bool = True
    ) -> tuple[EncodedTable, list[DataError]]:
        """Encode rows.

        Args:
            df: Rows to encode; its index values become ``row_ids`` and name rows in errors.
            base_dir: Folder relative file paths are resolved against.
            on_error: ``"raise"`` raises the first bad cell; ``"skip"`` drops rows with a bad cell.
            targets: Also encode the labels (then label columns are required); rows with a missing
                label are dropped and reported in either mode.

        Returns:
            The encoded kept rows and one DataError per dropped row.
        """
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        self._check_columns(df, targets)
        encoded = {
            s.name: self.processors[s.name].transform(df[s.columns], Path(base_dir))
            for s in self.schema.inputs
        }
        bad: dict[int, DataError] = {}
        for part in encoded.values():
            _collect(bad, part.errors, df.index)
        target_values: dict[str, Tensor] = {}
        if targets:
            target_values = self._targets(df, bad)
        if on_error == "raise":
            first = _first_cell_error(bad)
            if first is not None:
                raise first
        keep = np.setdiff1d(np.arange(len(df)), np.fromiter(bad, dtype=np.int64, count=len(bad)))
        table = _table(encoded, target_values, keep, list(df.index))
        return table, [bad[i] for i in sorted(bad)]

    def _targets(self, df: pd.DataFrame, bad: dict[int, DataError]) -> dict[str, Tensor]:
        values: dict[str, Tensor] = {}
        for column, encoder in self.labels.items():
            values[column], errors = encoder.encode(df[column])
            _collect(bad, errors, df.index)
            for i in np.flatnonzero(missing_mask(df[column])):
                bad.setdefault(int(i), _MissingLabel("missing label", df.index[i], column))
        return values

    def _check_columns(self, df: pd.DataFrame, targets: bool) -> None:
        needed = [c for spec in self.schema.inputs for c in spec.columns]
        if targets:
            needed += [spec.column for spec in self.schema.labels]
        absent = [c for c in needed if c not in df.columns]
        if absent:
            raise SchemaError(f"column(s) {absent} required by the model are not in the table")

    def encoder_kwargs(self, modality: str) -> dict[str, Any]:
        """What the encoder of ``modality`` must know about its tensors."""
        if modality not in self.processors:
            raise KeyError(f"unknown modality {modality!r} (known: {list(self.processors)})")
        return dict(self.processors[modality].encoder_kwargs())

    def num_outputs(self, label: str) -> int:
        """Head outputs for a label: classes, or 1 for binary and regression."""
        return self.labels[label].num_outputs

    def decode(self, label: str, output: Tensor | np.ndarray, threshold: float = 0.5) -> list[Any]:
        """Model outputs for one label (indices, probabilities or regression values) -> label values."""
        return self.labels[label].decode(output, threshold)

    def decode_all(self, outputs: dict[str, Tensor]) -> dict[str, list[Any]]:
        """``decode`` for every label in ``outputs``."""
        return {label: self.decode(label, out) for label, out in outputs.items()}

    def state(self) -> dict[str, Any]:
        """JSON-ready state; ``Preprocessor.from_state`` rebuilds the fitted preprocessor."""
        return {
            "schema": to_dict(self.schema),
            "options": self.options,
            "processors": {
                name: {"kind": proc.kind, "state": proc.state()} for name, proc in self.processors.items()
            },
            "labels": {column: enc.state() for column, enc in self.labels.items()},
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> Preprocessor:
        pre = cls(from_dict(Schema, state["schema"]), state.get("options"))
        for name, item in state["processors"].items():
            pre.processors[name] = PROCESSORS.get(item["kind"])(**item["state"])
        pre.labels = {column: LabelEncoder(**s) for column, s in state["labels"].items()}
        return pre


class _MissingLabel(DataError):
    """A row without a label: dropped from training, never raised."""


def _collect(bad: dict[int, DataError], errors: list[DataError], index: pd.Index) -> None:
    positions = {row: i for i, row in enumerate(index)} if errors else {}
    for error in errors:
        pos = positions.get(error.row)
        if pos is not None:
            bad.setdefault(pos, error)


def _first_cell_error(bad: dict[int, DataError]) -> DataError | None:
    for pos in sorted(bad):
        if not isinstance(bad[pos], _MissingLabel):
            return bad[pos]
    return None


def _table(
    encoded: dict[str, Encoded], targets: dict[str, Tensor], keep: np.ndarray, ids: list[Any]
) -> EncodedTable:
    idx = torch.from_numpy(keep)
    return EncodedTable(
        inputs={name: _take(part.values, idx) for name, part in encoded.items()},
        mask={name: part.present[idx] for name, part in encoded.items()},
        targets={column: values[idx] for column, values in targets.items()},
        row_ids=[ids[i] for i in keep.tolist()],
    )


def _take(values: Inputs, idx: Tensor) -> Inputs:
    if isinstance(values, dict):
        return {k: v[idx] for k, v in values.items()}
    return values[idx]

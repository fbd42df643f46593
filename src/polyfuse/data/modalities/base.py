"""The processor contract: one table column (or a group) -> tensors for one modality.

A processor is fit on the training split only, turns a column into tensors with the rows first,
reports which rows are absent (empty cell, NaN, missing file) and raises ``DataError`` for values
that are present but bad (corrupt file, text in a numeric column). Its state is JSON data so a
saved model can rebuild it without pickle.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pandas as pd
from torch import Tensor

from polyfuse.data.batch import Inputs
from polyfuse.data.errors import DataError


@dataclass
class Encoded:
    """One modality of a table after processing."""

    values: Inputs  # [N, ...] tensor(s); absent rows hold zeros
    present: Tensor  # bool [N]
    errors: list[DataError] = field(default_factory=list)  # bad cells, at most one per row


class Processor(Protocol):
    kind: str  # "image", "audio", "text" or "tabular"

    def fit(self, frame: pd.DataFrame, base_dir: Path) -> None:
        """Learn statistics / vocabulary from the training rows of this modality's columns."""

    def transform(self, frame: pd.DataFrame, base_dir: Path) -> Encoded:
        """Process the given rows (index = row ids used in error messages)."""

    def encoder_kwargs(self) -> dict[str, Any]:
        """What an encoder must know about the tensors: in_channels, vocab_size, n_mels, ..."""

    def state(self) -> dict[str, Any]:
        """JSON-ready state; ``cls(**state)`` rebuilds the fitted processor."""

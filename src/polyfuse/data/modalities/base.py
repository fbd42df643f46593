"""The processor contract: one table column (or a group) -> tensors for one modality.

A processor is fit on the training split only, turns a column into tensors with the rows first,
reports which rows are absent (empty cell, NaN, missing file) and raises ``DataError`` for values
that are present but bad (corrupt file, text in a numeric column). Its state is JSON data so a
saved model can rebuild it without pickle.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import pandas as pd
from torch import Tensor

from polyfuse.data.batch import Inputs
from polyfuse.data.errors import DataError

Job = TypeVar("Job")
Done = TypeVar("Done")
POOL_MIN_FILES = 64  # fewer files (a served request or batch) are decoded in line: see ``map_files``


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


def map_files(load: Callable[[Job], Done], jobs: list[Job]) -> Iterator[Done]:
    """``load`` over ``jobs``, in order, as the caller consumes them (a table's decoded files are
    never all held twice): on up to 8 threads for a table's files (Pillow and libsndfile release the
    GIL), in line for a few, where starting the threads costs more than they save (a served one-row
    request spent ~10% of its model-thread time in ``Thread.start``)."""
    if len(jobs) < POOL_MIN_FILES:
        yield from map(load, jobs)
        return
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        yield from pool.map(load, jobs)

"""Built-in datasets, built offline from a seed and cached as a real table with files on disk.

Each dataset module registers a ``DatasetInfo`` in ``DATASETS``; this package imports them
explicitly. Importing it stays light: the builders import scikit-learn, scipy and espeak-ng only
when they run.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from polyfuse.data.datasets import (
    avmnist,  # noqa: F401  (registers "avmnist", "avmnist-hard")
    basicmotions,  # noqa: F401  (registers "basicmotions")
    digits_av,  # noqa: F401  (registers "digits-av")
    machines,  # noqa: F401  (registers "machines", "machines-rates")
    scenes,  # noqa: F401  (registers "scenes")
    uea,  # noqa: F401  (registers "japanese-vowels", "plaid")
)
from polyfuse.data.datasets.base import COMPLETE, DatasetInfo, build_dataset, cache_dir
from polyfuse.registry import DATASETS

__all__ = ["COMPLETE", "DatasetInfo", "build_dataset", "cache_dir", "list_datasets", "load_dataset"]


def list_datasets() -> list[dict[str, object]]:
    """Name, description, rows, modalities and label of every built-in dataset."""
    return [DATASETS.get(name).summary() for name in DATASETS.names()]


def load_dataset(name: str, seed: int = 0, limit: int | None = None) -> tuple[pd.DataFrame, Path]:
    """Build (or reuse) a dataset in the cache and read its table.

    Returns:
        The table as a frame (empty notes stay empty strings) and the folder its paths are relative to.
    """
    table = build_dataset(name, seed=seed, limit=limit)
    frame = pd.read_csv(table, keep_default_na=False, na_values=[])
    return frame, table.parent

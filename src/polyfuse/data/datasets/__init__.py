"""Built-in datasets, built offline from a seed and cached as a real table with files on disk.

Each dataset module registers a ``DatasetInfo`` in ``DATASETS``; this package imports them
explicitly. Importing it stays light: the builders import scikit-learn, scipy and espeak-ng only
when they run.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pandas as pd

from polyfuse.data.datasets import (
    avmnist,  # noqa: F401  (registers "avmnist", "avmnist-hard")
    digits_av,  # noqa: F401  (registers "digits-av")
)
from polyfuse.data.datasets.base import DatasetInfo
from polyfuse.registry import DATASETS

COMPLETE = ".complete"  # written last: a folder without it is a killed build and is redone

__all__ = ["DatasetInfo", "build_dataset", "cache_dir", "list_datasets", "load_dataset"]


def cache_dir() -> Path:
    """$POLYFUSE_CACHE, else $XDG_CACHE_HOME/polyfuse, else ~/.cache/polyfuse."""
    if os.environ.get("POLYFUSE_CACHE"):
        return Path(os.environ["POLYFUSE_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "polyfuse"
    return Path.home() / ".cache" / "polyfuse"


def list_datasets() -> list[dict[str, object]]:
    """Name, description, rows, modalities and label of every built-in dataset."""
    return [DATASETS.get(name).summary() for name in DATASETS.names()]


def _default_folder(info: DatasetInfo, seed: int, limit: int | None) -> Path:
    suffix = f"-rows{limit}" if limit is not None else ""
    return cache_dir() / "datasets" / f"{info.name}-v{info.version}-seed{seed}{suffix}"


def build_dataset(
    name: str, out: str | Path | None = None, seed: int = 0, force: bool = False, limit: int | None = None
) -> Path:
    """Build a dataset into ``out`` (default: the cache) unless a complete build is there.

    Args:
        name: a name from ``list_datasets``.
        out: the folder to write; ``None`` means ``<cache>/datasets/<name>-v<version>-seed<seed>/``.
        seed: everything (splits, voices, noise) follows from it; same seed, same bytes.
        force: rebuild even if a complete build exists.
        limit: build only this many rows (spread over the classes), for tests and quick looks.

    Returns:
        The path of the table (a CSV whose file columns are relative to its folder).
    """
    info: DatasetInfo = DATASETS.get(name)
    folder = Path(out) if out is not None else _default_folder(info, seed, limit)
    marker = folder / COMPLETE
    if marker.exists() and not force:
        return folder / marker.read_text().strip()
    if folder.exists():
        shutil.rmtree(folder)
    folder.mkdir(parents=True)
    assert info.builder is not None, f"dataset {name!r} has no builder"
    table = Path(info.builder(folder, seed=seed, limit=limit))
    marker.write_text(table.name + "\n")
    return table


def load_dataset(name: str, seed: int = 0, limit: int | None = None) -> tuple[pd.DataFrame, Path]:
    """Build (or reuse) a dataset in the cache and read its table.

    Returns:
        The table as a frame (empty notes stay empty strings) and the folder its paths are relative to.
    """
    table = build_dataset(name, seed=seed, limit=limit)
    frame = pd.read_csv(table, keep_default_na=False, na_values=[])
    return frame, table.parent

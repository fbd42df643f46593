"""What a built-in dataset registers (a description and a builder that writes a table to disk), and
the cache its builds go to."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from polyfuse.registry import DATASETS

COMPLETE = ".complete"  # written last: a folder without it is a killed build and is redone


@dataclass(frozen=True)
class DatasetInfo:
    """A registry entry for a built-in dataset."""

    name: str
    description: str  # one sentence for ``list_datasets``
    label: str  # the label column
    split: str  # the column holding train / val / test
    rows: int  # rows in a full build
    modalities: dict[str, str] = field(default_factory=dict)  # column -> modality
    version: int = 1  # bump when the output changes, so caches are rebuilt
    builder: Callable[..., Path] | None = None  # (out, seed, limit) -> path of the table

    def summary(self) -> dict[str, object]:
        """The public description used by ``list_datasets``."""
        return {
            "name": self.name,
            "description": self.description,
            "rows": self.rows,
            "modalities": sorted(set(self.modalities.values())),
            "label": self.label,
            "split": self.split,
            "version": self.version,
        }


def cache_dir() -> Path:
    """$POLYFUSE_CACHE, else $XDG_CACHE_HOME/polyfuse, else ~/.cache/polyfuse."""
    if os.environ.get("POLYFUSE_CACHE"):
        return Path(os.environ["POLYFUSE_CACHE"]).expanduser()
    if os.environ.get("XDG_CACHE_HOME"):
        return Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "polyfuse"
    return Path.home() / ".cache" / "polyfuse"


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

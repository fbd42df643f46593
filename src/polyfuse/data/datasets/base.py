"""What a built-in dataset registers: a description and a builder that writes a table to disk."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


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

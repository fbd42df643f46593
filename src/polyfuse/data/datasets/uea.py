"""UEA / UCR archive sets that ship inside sktime's wheel, as tables of ``.npy`` series.

- ``japanese-vowels`` (Kudo, Toyama, Shimbo, 1999; UEA multivariate archive): nine men saying the
  vowels /ae/, 12 LPC cepstrum coefficients per frame, 7 to 29 frames; the speaker is the label.
  270 training and 370 test recordings.
- ``plaid`` (Gao et al., 2014; UCR archive): the current drawn by 11 kinds of household appliance,
  one channel of 100 to 1,344 steps; the appliance is the label. 537 training and 537 test
  recordings.

Each recording becomes one row: its series saved as ``series/<split>-<i>.npy`` ([T, C], its own
length) and its label. The archive's own train / test split is kept; a stratified quarter of the
training recordings (by seed) is the validation split.

The data come from the ``sktime`` package (the ``[timeseries]`` extra): nothing is downloaded and
nothing is copied into this repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.datasets.base import DatasetInfo
from polyfuse.extras import require
from polyfuse.registry import DATASETS

VAL_SHARE = 0.25  # of the training recordings, per class


def load_archive(name: str) -> dict[str, tuple[list[np.ndarray], np.ndarray]]:
    """Split -> (series, each float32 [T, C], labels [N]) of the archive set ``name``."""
    datasets = require("sktime.datasets", "timeseries", f"the {name} dataset")
    out = {}
    for split in ("train", "test"):
        x, y = datasets.load_UCR_UEA_dataset(name, split=split, return_X_y=True, return_type="nested_univ")
        series = [
            np.stack([np.asarray(x.iloc[i, c], dtype=np.float32) for c in range(x.shape[1])], axis=1)
            for i in range(len(x))
        ]
        out[split] = (series, np.asarray(y).astype(str))
    return out


def assign_splits(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """ "train" or "val" per training recording: a stratified ``VAL_SHARE`` is validation."""
    out = np.full(len(labels), "train", dtype=object)
    for label in np.unique(labels):
        idx = rng.permutation(np.flatnonzero(labels == label))
        out[idx[: int(round(len(idx) * VAL_SHARE))]] = "val"
    return out


def build(out: Path, archive: str, table: str, label: str, seed: int = 0, limit: int | None = None) -> Path:
    """Write series/*.npy and the table (``series``, ``label``, ``split``) under ``out``."""
    data = load_archive(archive)
    out = Path(out)
    (out / "series").mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0])
    records = []
    for source, (series, labels) in data.items():
        splits = (
            assign_splits(labels, rng) if source == "train" else np.full(len(labels), "test", dtype=object)
        )
        for i, values in enumerate(series):
            path = f"series/{source}-{i:04d}.npy"
            np.save(out / path, values)
            records.append({"series": path, label: labels[i], "split": splits[i]})
    frame = pd.DataFrame(records)
    if limit is not None and limit < len(frame):
        frame = frame.iloc[np.sort(rng.permutation(len(frame))[:limit])]
    frame.to_csv(out / table, index=False)
    return out / table


def _register(name: str, archive: str, label: str, rows: int, description: str) -> Any:
    def builder(out: Path, seed: int = 0, limit: int | None = None) -> Path:
        return build(out, archive, f"{name}.csv", label, seed, limit)

    return DATASETS.register(name)(
        DatasetInfo(
            name=name,
            description=description,
            label=label,
            split="split",
            rows=rows,
            modalities={"series": "timeseries"},
            version=1,
            builder=builder,
        )
    )


JAPANESE_VOWELS = _register(
    "japanese-vowels",
    "JapaneseVowels",
    "speaker",
    640,
    "Nine speakers' /ae/ as 12 LPC coefficients per frame (7-29 frames), from the UEA archive via "
    "sktime (the [timeseries] extra).",
)
PLAID = _register(
    "plaid",
    "PLAID",
    "appliance",
    1074,
    "The current drawn by 11 kinds of household appliance (100-1,344 steps), from the UCR archive via "
    "sktime (the [timeseries] extra).",
)

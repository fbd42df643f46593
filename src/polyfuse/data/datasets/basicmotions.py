"""basicmotions: smartwatch accelerometer and gyroscope series of four activities (UEA archive).

BasicMotions (Clements, UEA multivariate archive, 2018): 80 recordings of 10 s at 10 Hz of people
standing, walking, running and playing badminton, 40 for training and 40 for testing. Each
recording becomes two modalities, ``accelerometer`` and ``gyroscope``: one ``.npy`` file each,
[100 steps, 3 channels]. The archive's own train / test split is kept; a stratified quarter of the
training recordings (by seed) is the validation split.

The data come from the ``sktime`` package (the ``[timeseries]`` extra), which ships the archive's
files inside its wheel: nothing is downloaded and nothing is copied into this repository.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.datasets.base import DatasetInfo
from polyfuse.data.datasets.uea import assign_splits
from polyfuse.extras import require
from polyfuse.registry import DATASETS

TABLE = "basicmotions.csv"
SENSORS = {"accelerometer": slice(0, 3), "gyroscope": slice(3, 6)}  # the archive's six dimensions


def load_archive() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Split -> (series [N, 6, 100], activity labels [N]) from sktime's copy of the archive."""
    datasets = require("sktime.datasets", "timeseries", "the basicmotions dataset")
    out = {}
    for split in ("train", "test"):
        x, y = datasets.load_basic_motions(split=split, return_type="numpy3D")
        out[split] = (np.asarray(x, dtype=np.float32), np.asarray(y).astype(str))
    return out


def build(out: Path, seed: int = 0, limit: int | None = None) -> Path:
    """Write accelerometer/*.npy, gyroscope/*.npy and the table under ``out``; returns the table."""
    archive = load_archive()
    out = Path(out)
    for sensor in SENSORS:
        (out / sensor).mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng([seed, 0])
    records = []
    for source, (x, y) in archive.items():
        splits = assign_splits(y, rng) if source == "train" else np.full(len(y), "test", dtype=object)
        for i in range(len(y)):
            row = {"id": f"{source}-{i:03d}"}
            for sensor, channels in SENSORS.items():
                path = f"{sensor}/{source}-{i:03d}.npy"
                np.save(out / path, x[i, channels].T.copy())  # [100 steps, 3 channels]
                row[sensor] = path
            records.append({**row, "activity": y[i], "split": splits[i]})
    frame = pd.DataFrame(records)
    if limit is not None and limit < len(frame):
        order = rng.permutation(len(frame))
        frame = frame.iloc[np.sort(order[:limit])]
    frame.to_csv(out / TABLE, index=False)
    return out / TABLE


INFO: Any = DATASETS.register("basicmotions")(
    DatasetInfo(
        name="basicmotions",
        description=(
            "Smartwatch accelerometer and gyroscope series (100 steps x 3 channels each) of four "
            "activities, from the UEA archive via sktime (the [timeseries] extra)."
        ),
        label="activity",
        split="split",
        rows=80,
        modalities={"accelerometer": "timeseries", "gyroscope": "timeseries"},
        version=1,
        builder=build,
    )
)

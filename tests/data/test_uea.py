"""japanese-vowels and plaid: variable-length series from sktime's copy of the UEA / UCR archives
(skipped without sktime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from polyfuse.data.datasets import build_dataset, list_datasets
from polyfuse.data.modalities.timeseries import TimeseriesProcessor
from polyfuse.data.schema import infer_schema

# name -> (label, classes, channels, shortest, longest, train recordings, test recordings)
SETS = {
    "japanese-vowels": ("speaker", 9, 12, 7, 29, 270, 370),
    "plaid": ("appliance", 11, 1, 100, 1344, 537, 537),
}


@pytest.mark.parametrize("name", sorted(SETS))
def test_listed(name: str) -> None:
    label, _, _, _, _, train, test = SETS[name]
    (info,) = [d for d in list_datasets() if d["name"] == name]
    assert info["label"] == label and info["rows"] == train + test and info["modalities"] == ["timeseries"]


@pytest.mark.parametrize("name", sorted(SETS))
def test_built_from_the_archive_with_its_own_lengths(name: str, tmp_path: Path) -> None:
    pytest.importorskip("sktime")
    label, classes, channels, shortest, longest, train, test = SETS[name]
    table = build_dataset(name, out=tmp_path)
    frame = pd.read_csv(table)
    assert list(frame.columns) == ["series", label, "split"] and frame[label].nunique() == classes
    counts = frame["split"].value_counts()
    assert counts["test"] == test and counts["train"] + counts["val"] == train
    assert 0.2 < counts["val"] / train < 0.3  # a stratified quarter of training
    shapes = [np.load(table.parent / p).shape for p in frame["series"]]
    assert {c for _, c in shapes} == {channels}
    assert min(t for t, _ in shapes) == shortest and max(t for t, _ in shapes) == longest
    schema = infer_schema(frame, label, base_dir=table.parent)
    assert [(s.name, s.kind) for s in schema.inputs] == [("series", "timeseries")]
    proc = TimeseriesProcessor(["series"])
    proc.fit(frame[frame["split"] == "train"], table.parent)
    assert proc.channels == channels and shortest < proc.length <= min(longest, 1024)

"""The basicmotions dataset: built from sktime's copy of the UEA archive (skipped without sktime)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polyfuse
from polyfuse.data.datasets import build_dataset, list_datasets
from polyfuse.data.schema import infer_schema
from polyfuse.errors import MissingExtraError


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    pytest.importorskip("sktime")
    return build_dataset("basicmotions", out=tmp_path_factory.mktemp("basicmotions"))


def test_listed_with_two_timeseries_modalities():
    (info,) = [d for d in list_datasets() if d["name"] == "basicmotions"]
    assert info["label"] == "activity" and info["rows"] == 80 and info["modalities"] == ["timeseries"]


def test_missing_sktime_names_the_extra(monkeypatch: pytest.MonkeyPatch, tmp_path: Path):
    monkeypatch.setitem(sys.modules, "sktime.datasets", None)  # import fails
    with pytest.raises(MissingExtraError, match=r"polyfuse\[timeseries\]"):
        build_dataset("basicmotions", out=tmp_path / "bm")


def test_table_files_and_splits(built: Path):
    frame = pd.read_csv(built)
    assert list(frame.columns) == ["id", "accelerometer", "gyroscope", "activity", "split"]
    assert frame["split"].value_counts().to_dict() == {"test": 40, "train": 32, "val": 8}
    assert (frame[frame["split"] == "val"]["activity"].value_counts() == 2).all()  # stratified
    series = np.load(built.parent / frame["gyroscope"].iloc[0])
    assert series.shape == (100, 3) and series.dtype == np.float32
    schema = infer_schema(frame, "activity", base_dir=built.parent)
    assert [(s.name, s.kind) for s in schema.inputs] == [
        ("accelerometer", "timeseries"),
        ("gyroscope", "timeseries"),
    ]


@pytest.mark.slow
def test_a_fused_fit_recognises_the_activities(built: Path, tmp_path: Path):
    frame = pd.read_csv(built)
    predictor = polyfuse.fit(
        (frame, built.parent), label="activity", out=tmp_path / "model", max_epochs=20, batch_size=16,
        baselines=False, verbose=False, progress=False,
    )  # fmt: skip
    test = frame[frame["split"] == "test"]
    accuracy = float((predictor.predict((test, built.parent)) == test["activity"]).mean())
    assert accuracy >= 0.85, accuracy  # 0.975 on a 2-core CPU in ~45 s; chance is 0.25

"""The timeseries modality: reading, cropping / padding, NaN masking, errors, inference and learning."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import polyfuse
from polyfuse.data.errors import DataError
from polyfuse.data.modalities import BadValue, Upload, timeseries
from polyfuse.data.modalities.timeseries import TimeseriesProcessor
from polyfuse.data.schema import infer_role, infer_schema
from polyfuse.encoders import encoders_for


def _fitted(cells: list[object], root: Path, **options: object) -> TimeseriesProcessor:
    proc = TimeseriesProcessor(["series"], **options)  # type: ignore[arg-type]
    proc.fit(pd.DataFrame({"series": cells}), root)
    return proc


def test_reads_npy_csv_and_json_and_rebuilds_from_json_state(tmp_path: Path):
    np.save(tmp_path / "a.npy", np.array([[1.0, 10.0], [2.0, 20.0], [3.0, 30.0]]))  # T x C
    (tmp_path / "b.csv").write_text("timestamp,x,y\n0,4,40\n1,5,50\n")  # the time column is dropped
    cells = ["a.npy", "b.csv", "[[6, 60], [7, 70], [8, 80], [9, 90]]", None]
    proc = _fitted(cells, tmp_path, percentile=50)
    assert proc.channels == 2 and proc.length == 3  # the median of lengths 3, 2 and 4
    everything = np.array([1, 2, 3, 4, 5, 6, 7, 8], dtype=np.float32)  # cut to 3 steps: 9 is left out
    assert proc.mean == pytest.approx([everything.mean(), 10 * everything.mean()])
    assert proc.std == pytest.approx([everything.std(), 10 * everything.std()], rel=1e-5)
    out = proc.transform(pd.DataFrame({"series": cells}), tmp_path)
    values, valid = out.values["values"], out.values["valid"]  # type: ignore[index]
    assert values.shape == (4, 2, 3) and valid.shape == (4, 3)
    assert out.present.tolist() == [True, True, True, False] and out.errors == []
    assert valid.tolist() == [[True] * 3, [True, True, False], [True] * 3, [False] * 3]
    assert float(values[1, 0, 0]) == pytest.approx((4 - everything.mean()) / everything.std(), rel=1e-5)
    assert float(values[1, :, 2].abs().sum()) == 0.0 and float(values[3].abs().sum()) == 0.0
    rebuilt = TimeseriesProcessor(**json.loads(json.dumps(proc.state())))
    again = rebuilt.transform(pd.DataFrame({"series": cells}), tmp_path)
    for key in ("values", "valid"):
        assert torch.equal(out.values[key], again.values[key])  # type: ignore[index]


def test_length_is_a_capped_percentile_of_training_lengths(tmp_path: Path):
    cells = [json.dumps(list(range(n))) for n in range(1, 101)]
    assert _fitted(cells, tmp_path).length == 96  # ceil of the 95th percentile of 1..100 (95.05)
    assert _fitted(cells, tmp_path, max_length=40).length == 40


def test_nan_steps_are_invalid_and_hold_zero(tmp_path: Path):
    proc = _fitted(["[[1, 2], [3, 4], [5, 6]]"], tmp_path)
    out = proc.transform(pd.DataFrame({"series": ["[[1, 2], [null, 4], [5, 6]]"]}), tmp_path)
    values, valid = out.values["values"], out.values["valid"]  # type: ignore[index]
    assert valid.tolist() == [[True, False, True]]
    assert values[0, :, 1].tolist() == [0.0, 0.0] and bool(torch.isfinite(values).all())
    np.save(tmp_path / "gap.npy", np.array([1.0, np.nan, 3.0]))
    proc = _fitted(["gap.npy", "[2, 2, 2]"], tmp_path)
    assert proc.mean == pytest.approx([2.0]) and proc.length == 3  # NaN left out of the statistics


@pytest.mark.parametrize(
    ("cell", "problem"),
    [
        ("[[1, 2], [3]]", "ragged channels: step 1 has 1 values, step 0 has 2"),
        ('[1, "a", 3]', "non-numeric value 'a' at step 1"),
        ("[[1], [2], [3]]", "1 channels, expected 2 (as in training)"),
        ("bad.csv", "non-numeric value 'x' in channel 'v' at step 1"),
    ],
)
def test_bad_series_name_row_column_and_problem(tmp_path: Path, cell: str, problem: str):
    (tmp_path / "bad.csv").write_text("v,w\n1,2\nx,3\n")
    proc = _fitted(["[[1, 2], [3, 4]]"], tmp_path)
    out = proc.transform(pd.DataFrame({"series": ["[[1, 2], [3, 4]]", cell]}, index=[10, 11]), tmp_path)
    assert out.present.tolist() == [True, False] and len(out.errors) == 1
    message = str(out.errors[0])
    assert message.startswith("row 11, column 'series': bad series") and message.endswith(problem)
    refit = _fitted(["[[1, 2], [3, 4]]", cell, "[[5, 6]]"], tmp_path)  # fit leaves the bad row to transform
    assert refit.channels == 2 and refit.mean == pytest.approx([3.0, 4.0])


def test_a_bad_training_row_is_raised_or_skipped_by_fit(tmp_path: Path):
    rng = np.random.default_rng(0)
    cells = [json.dumps(rng.normal(0, 1, (8, 2)).round(3).tolist()) for _ in range(20)]
    cells[3] = "[[1, 2], [3]]"
    frame = pd.DataFrame({"series": cells, "label": ["a", "b"] * 10})
    with pytest.raises(DataError, match="row 3, column 'series': bad series .*ragged channels"):
        polyfuse.fit(
            frame,
            label="label",
            out=tmp_path / "m",
            max_epochs=1,
            baselines=False,
            verbose=False,
            progress=False,
        )
    predictor = polyfuse.fit(
        frame, label="label", out=tmp_path / "m", max_epochs=1, on_error="skip",
        baselines=False, verbose=False, progress=False,
    )  # fmt: skip
    assert predictor.preprocessor.processors["series"].channels == 2


def test_too_long_a_series_is_an_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setattr(timeseries, "MAX_STEPS", 5)
    proc = _fitted(["[1, 2, 3]"], tmp_path)
    out = proc.transform(pd.DataFrame({"series": ["[1, 2, 3, 4, 5, 6]"]}), tmp_path)
    assert str(out.errors[0]).endswith("series of 6 steps; limit 5")


def test_inference_recognises_series_columns_and_leaves_others():
    assert infer_role(pd.Series(["[1, 2, 3]", "[4, 5]", "[[1, 2], [3, 4]]"])) == "timeseries"
    assert infer_role(pd.Series(["a/1.npy", "a/2.npy"])) == "timeseries"
    assert infer_role(pd.Series(["s/1.csv", "s/2.parquet", "s/3.csv"])) == "timeseries"
    assert infer_role(pd.Series(['["red", "blue"]', '["green"]'] * 5)) != "timeseries"  # not numbers
    assert infer_role(pd.Series(["a", "b", "a"] * 5)) == "categorical"
    assert infer_role(pd.Series(["img/1.png", "img/2.png"])) == "image"


def _motif_table(root: Path, n: int, seed: int) -> pd.DataFrame:
    """Noise series of 40-60 steps; class 1 has a sine bump of 12 steps at a random place."""
    rng = np.random.default_rng(seed)
    (root / "series").mkdir()
    cells, labels = [], []
    bump = np.sin(np.linspace(0, np.pi, 12)) * 3
    for i in range(n):
        steps, label = int(rng.integers(40, 61)), i % 2
        x = rng.normal(0, 1, (steps, 2))
        if label:
            start = int(rng.integers(0, steps - 12))
            x[start : start + 12, int(rng.integers(2))] += bump
        np.save(root / "series" / f"{i}.npy", x.astype(np.float32))
        cells.append(f"series/{i}.npy")
        labels.append("motif" if label else "noise")
    split = ["train"] * int(n * 0.7) + ["val"] * int(n * 0.1)
    split += ["test"] * (n - len(split))
    return pd.DataFrame({"series": cells, "label": labels, "split": split})


@pytest.mark.parametrize("encoder", encoders_for("timeseries"))
def test_planted_motif_is_learnt_and_survives_save_and_load(tmp_path: Path, encoder: str):
    frame = _motif_table(tmp_path, 200, seed=0)
    schema = infer_schema(frame, "label", base_dir=tmp_path)
    assert [(s.name, s.kind) for s in schema.inputs] == [("series", "timeseries")]
    predictor = polyfuse.fit(
        (frame, tmp_path), label="label", out=tmp_path / "model", max_epochs=10, batch_size=32,
        encoders={"series": encoder}, baselines=False, verbose=False, progress=False,
    )  # fmt: skip
    test = frame[frame["split"] == "test"]
    accuracy = float((predictor.predict((test, tmp_path)) == test["label"]).mean())
    assert accuracy >= 0.9, accuracy
    loaded = polyfuse.load(tmp_path / "model")
    want, got = predictor.predict_proba((test, tmp_path)), loaded.predict_proba((test, tmp_path))
    assert np.allclose(want.to_numpy(), got.to_numpy(), atol=1e-6)


def test_served_series_decode_from_npy_csv_and_json():
    from polyfuse.serve import Limits

    modality, field = (
        timeseries.TimeseriesModality(),
        timeseries.SeriesField("s", "s", "timeseries", channels=2),
    )
    npy = io.BytesIO()
    np.save(npy, np.ones((5, 2), dtype=np.float32))
    for value in (Upload(npy.getvalue(), "a.npy"), Upload(b"x,y\n1,2\n3,4\n"), [[1, 2], [3, 4]], "[[1, 2]]"):
        data = modality.decode(field, value, Limits())
        assert data is not None and timeseries.read_bytes(data).shape[1] == 2
    assert json.loads(modality.example(field)) == [[0.0, 0.0]] * 4
    with pytest.raises(BadValue, match="ragged channels") as bad:
        modality.decode(field, [[1, 2], [3]], Limits())
    assert bad.value.status == 422
    with pytest.raises(BadValue) as big:
        modality.decode(field, list(range(timeseries.MAX_STEPS + 1)), Limits(max_upload_bytes=10**8))
    assert big.value.status == 413 and "limit" in big.value.problem

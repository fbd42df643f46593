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
    (tmp_path / "b.csv").write_text("timestamp,x,y\n0,4,40\n1,5,50\n")  # 1 s apart: the learnt clock
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


def test_streams_at_different_rates_land_on_one_clock(tmp_path: Path):
    """A 100 Hz vibration and a 1 Hz temperature in one CSV (empty cells between): each channel is
    interpolated from its own samples onto the learnt 100 Hz clock."""
    t = np.arange(0, 3.0001, 0.01)
    vib = np.sin(2 * np.pi * 5 * t)
    temp = np.where(np.isclose(t % 1.0, 0) | np.isclose(t % 1.0, 1), 20 + 2 * t, np.nan)  # at 0, 1, 2, 3 s
    pd.DataFrame({"time": t, "vib": vib, "temp": temp}).to_csv(tmp_path / "a.csv", index=False)
    proc = _fitted(["a.csv"], tmp_path, percentile=100)
    assert proc.rate == pytest.approx(100.0) and proc.length == 301
    out = timeseries.resample(timeseries.read_cell("a.csv", tmp_path), proc.rate)  # type: ignore[arg-type]
    assert not np.isnan(out).any()
    assert out[:, 1] == pytest.approx(20 + 2 * t, abs=1e-4)  # linear between its 1 s samples
    assert out[:, 0] == pytest.approx(vib, abs=1e-5)


def test_series_at_other_rates_are_resampled_to_the_learnt_one(tmp_path: Path):
    """Three recordings of one 4 Hz tone at 50, 50 and 200 samples per second, with jittered and
    date-time stamps: on the learnt 50 Hz clock each has its tone in the same FFT bin."""
    rng = np.random.default_rng(0)
    for name, rate in (("a", 50), ("b", 50), ("c", 200)):
        t = np.arange(0, 4, 1 / rate) + rng.uniform(-0.1, 0.1, int(4 * rate)) / rate
        stamps = pd.Timestamp("2026-01-01 08:00") + pd.to_timedelta(t - t[0], unit="s")
        frame = pd.DataFrame({"timestamp": stamps.astype(str), "x": np.sin(2 * np.pi * 4 * t)})
        frame.sample(frac=1, random_state=1).to_csv(tmp_path / f"{name}.csv", index=False)  # out of order
    proc = _fitted(["a.csv", "b.csv", "c.csv"], tmp_path, percentile=100)
    assert proc.rate == pytest.approx(50.0, rel=0.01)
    for name in "abc":
        series = timeseries.resample(timeseries.read_cell(f"{name}.csv", tmp_path), proc.rate)  # type: ignore[arg-type]
        spectrum = np.abs(np.fft.rfft(np.nan_to_num(series[:, 0])))
        peak = np.fft.rfftfreq(len(series), 1 / proc.rate)[int(np.argmax(spectrum))]
        assert peak == pytest.approx(4.0, abs=0.26), name
    ignored = _fitted(["a.csv", "b.csv", "c.csv"], tmp_path, percentile=100, resample=False)
    out = ignored.transform(pd.DataFrame({"series": ["a.csv", "c.csv"]}), tmp_path).values["values"]  # type: ignore[index]
    assert (
        ignored.rate is None and out.shape[-1] == 800
    )  # steps as read: c's 800 samples, a's 200 then padding
    peaks = [
        int(np.argmax(np.abs(np.fft.rfft(row[0, :n].numpy()))))
        for row, n in zip(out, (200, 800), strict=True)
    ]
    assert peaks == [16, 16]  # 4 Hz over 4 s: bin 16 of either length, so a's tone is 4x c's per step


def test_a_gap_in_timed_samples_stays_invalid(tmp_path: Path):
    t = np.r_[np.arange(0, 1, 0.1), np.arange(2, 3, 0.1)]  # 10 Hz with a 1 s dropout
    pd.DataFrame({"time": t, "x": t}).to_csv(tmp_path / "gap.csv", index=False)
    (tmp_path / "dup.csv").write_text("time,x\n0,1\n0,3\n0.1,4\n")  # two rows at 0 s: their mean
    proc = _fitted(["gap.csv"], tmp_path, percentile=100)
    out = proc.transform(pd.DataFrame({"series": ["gap.csv"]}), tmp_path)
    valid = out.values["valid"][0].numpy()  # type: ignore[index]
    assert proc.rate == pytest.approx(10.0) and len(valid) == 30
    assert valid[:10].all() and not valid[13:17].any() and valid[20:].all()  # 3 intervals either side
    dup = timeseries.read_cell("dup.csv", tmp_path)
    assert dup is not None and dup.values[:, 0].tolist() == [2.0, 4.0] and dup.times.tolist() == [0.0, 0.1]


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
        ("badtime.csv", "timestamp 'soon' at step 1 is neither a number of seconds nor a date and time"),
    ],
)
def test_bad_series_name_row_column_and_problem(tmp_path: Path, cell: str, problem: str):
    (tmp_path / "bad.csv").write_text("v,w\n1,2\nx,3\n")
    (tmp_path / "badtime.csv").write_text("time,v,w\n0,1,2\nsoon,3,4\n")
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
        assert data is not None and timeseries.read_bytes(data).values.shape[1] == 2
    assert json.loads(modality.example(field)) == [[0.0, 0.0]] * 4
    with pytest.raises(BadValue, match="ragged channels") as bad:
        modality.decode(field, [[1, 2], [3]], Limits())
    assert bad.value.status == 422
    with pytest.raises(BadValue) as big:
        modality.decode(field, list(range(timeseries.MAX_STEPS + 1)), Limits(max_upload_bytes=10**8))
    assert big.value.status == 413 and "limit" in big.value.problem


def test_augment_warps_each_series_within_its_valid_span():
    from polyfuse.registry import MODALITIES

    modality = MODALITIES.get("timeseries")
    steps = torch.arange(60, dtype=torch.float32)
    values = torch.stack([torch.sin(steps / 3), torch.cos(steps / 5)])[None].repeat(3, 1, 1)  # [3, 2, 60]
    valid = torch.ones(3, 60, dtype=torch.bool)
    valid[1, 40:] = False  # a shorter series, padded
    values[1, :, 40:] = 0
    valid[2, 10:13] = False  # a gap
    batch = {"values": values, "valid": valid}
    out = modality.augment(batch, torch.Generator().manual_seed(0))
    again = modality.augment(batch, torch.Generator().manual_seed(0))
    assert torch.equal(out["values"], again["values"]) and out["values"].shape == values.shape
    assert out["valid"][1, :40].all() and not out["valid"][1, 40:].any()  # the padding stays padding
    assert 2 <= int((~out["valid"][2]).sum()) <= 5  # the gap moves and may widen by a step
    for row, last in ((0, 59), (1, 39)):  # the ends of each valid span are kept, the middle moves
        assert torch.allclose(out["values"][row, :, [0, last]], values[row, :, [0, last]])
        assert not torch.allclose(out["values"][row, :, 1:last], values[row, :, 1:last], atol=1e-3)
    assert modality.augment(values, torch.Generator()) is values  # a bare tensor: left alone


def test_fit_with_augment_trains_on_warped_batches(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """``augment=True`` sends every training batch's series through the modality's augment (and only
    training batches: prediction reads the series as they are); off by default."""
    from polyfuse.registry import MODALITIES

    modality = MODALITIES.get("timeseries")
    seen: list[int] = []
    original = type(modality).augment

    def counting(self: object, values: object, generator: torch.Generator, names: object = None) -> object:
        seen.append(values["values"].shape[0])  # type: ignore[index]
        return original(self, values, generator, names)  # type: ignore[arg-type]

    monkeypatch.setattr(type(modality), "augment", counting)
    frame = _motif_table(tmp_path, 120, seed=1)
    options = {"max_epochs": 2, "patience": 2, "batch_size": 32, "baselines": False, "verbose": False}
    predictor = polyfuse.fit((frame, tmp_path), label="label", out=tmp_path / "a", augment=True, **options)
    train_rows = int((frame["split"] == "train").sum())
    assert sum(seen) == 2 * train_rows  # two epochs of training batches, nothing else
    seen.clear()
    predictor.predict((frame, tmp_path))
    polyfuse.fit((frame, tmp_path), label="label", out=tmp_path / "p", **options)
    assert seen == []

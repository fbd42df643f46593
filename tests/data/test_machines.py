"""The built-in ``machines`` dataset: files on disk, reproducible, fault signatures where vibration
analysis puts them, and a table on which only a fused reading gets every row right."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from polyfuse.cli import app
from polyfuse.data.datasets import build_dataset, list_datasets
from polyfuse.data.datasets.machines import (
    FAULTS,
    META,
    SOUND_RATE,
    STEPS,
    VIBRATION_RATE,
    plan,
    vibration,
)

ROWS = 100


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_dataset("machines", out=tmp_path_factory.mktemp("machines"), limit=ROWS)


def test_listed_with_five_thousand_rows_or_more() -> None:
    (info,) = [d for d in list_datasets() if d["name"] == "machines"]
    assert info["rows"] >= 5000 and info["label"] == "fault"
    assert info["modalities"] == ["audio", "tabular", "text", "timeseries"]


def test_cli_build_writes_machines_csv(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        app, ["datasets", "build", "machines", "--out", str(tmp_path), "--limit", "20"]
    )
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(tmp_path / "machines.csv")
    assert len(frame) == 20 and set(frame.fault) == set(FAULTS)


def test_table_and_files(built: Path) -> None:
    import soundfile as sf

    frame = pd.read_csv(built, keep_default_na=False)
    inputs = ["vibration", "sound", "note", "temperature", "load", "age_years", "model"]
    assert list(frame.columns) == [*inputs, "fault", "rul_days", "split"]
    assert len(frame) == ROWS and set(frame.split) == {"train", "val", "test"}
    assert frame.fault.value_counts().min() == ROWS // len(FAULTS)
    series = np.load(built.parent / frame.vibration[0])
    assert series.shape == (STEPS, 3) and series.dtype == np.float32
    samples, rate = sf.read(built.parent / frame.sound[0])
    assert rate == SOUND_RATE and samples.shape == (SOUND_RATE // 2,) and np.abs(samples).max() > 0.5
    assert (frame.note == "").mean() > 0.1  # a sparse note


def test_same_seed_same_bytes_other_seed_differs(built: Path, tmp_path: Path) -> None:
    again = build_dataset("machines", out=tmp_path / "again", limit=ROWS)
    assert again.read_bytes() == built.read_bytes()
    for name in ("vibration/00007.npy", "sound/00007.wav"):
        assert (again.parent / name).read_bytes() == (built.parent / name).read_bytes()
    other = build_dataset("machines", out=tmp_path / "other", seed=1, limit=ROWS)
    assert other.read_bytes() != built.read_bytes()


def test_a_ruined_vibration_has_a_gap_and_no_clean_one_does(built: Path) -> None:
    meta = pd.read_csv(built.parent / META)
    frame = pd.read_csv(built, keep_default_na=False)
    gaps = np.array([np.isnan(np.load(built.parent / p)).any() for p in frame.vibration])
    assert (gaps == (meta.ruined == "vibration").to_numpy()).all()


def _band_power(series: np.ndarray, channel: int, hz: float) -> float:
    spectrum = np.abs(np.fft.rfft(series[:, channel] * np.hanning(STEPS))) ** 2
    freqs = np.fft.rfftfreq(STEPS, 1 / VIBRATION_RATE)
    return float(spectrum[np.abs(freqs - hz) <= 4.0].sum())


def _clean_series(fault: str, n: int = 20) -> list[tuple[np.ndarray, float]]:
    rows = plan(seed=3, rows=400)
    rows = rows[(rows.fault == fault) & (rows.ruined != "vibration")].head(n)
    return [(vibration(r, np.random.default_rng(r.row_seed)), r.shaft_hz) for r in rows.itertuples()]


def _median_power(fault: str, channel: int, order: float) -> float:
    return float(np.median([_band_power(s, channel, order * hz) for s, hz in _clean_series(fault)]))


def test_fault_signatures_in_their_frequency_bands() -> None:
    # imbalance: radial 1x; misalignment: axial 2x; bearing: its 300 Hz resonance (vs healthy machines)
    assert _median_power("imbalance", 0, 1) > 5 * _median_power("healthy", 0, 1)
    assert _median_power("misalignment", 2, 2) > 20 * _median_power("healthy", 2, 2)

    def resonance(fault: str) -> float:
        return float(np.median([_band_power(s, 0, 300.0) for s, _ in _clean_series(fault)]))

    assert resonance("bearing") > 5 * resonance("healthy")


def test_rul_says_nothing_about_the_fault() -> None:
    rows = plan(seed=0)
    means = rows.groupby("fault").rul_days.mean()
    assert (means.max() - means.min()) < 0.05 * rows.rul_days.mean()


def test_only_a_fused_reading_gets_every_row(tmp_path: Path) -> None:
    """Linear models on spectra: each sensor alone fails on its ruined rows, both together do not."""
    import soundfile as sf
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    table = build_dataset("machines", out=tmp_path, limit=800)
    frame = pd.read_csv(table, keep_default_na=False)

    def vib(path: str) -> np.ndarray:
        return np.log1p(np.abs(np.fft.rfft(np.nan_to_num(np.load(table.parent / path)), axis=0))).T.ravel()

    def snd(path: str) -> np.ndarray:
        wave, _ = sf.read(table.parent / path)
        spec = np.log1p(np.abs(np.fft.rfft(wave[: len(wave) // 256 * 256].reshape(-1, 256), axis=1)))
        return np.concatenate([spec.mean(0), spec.std(0)])

    features = {
        "vibration": np.stack([vib(p) for p in frame.vibration]),
        "sound": np.stack([snd(p) for p in frame.sound]),
    }
    features["both"] = np.hstack([features["vibration"], features["sound"]])
    train, test = (frame.split != "test").to_numpy(), (frame.split == "test").to_numpy()
    score = {}
    for name, x in features.items():
        model = make_pipeline(StandardScaler(), LogisticRegression(C=0.5, max_iter=2000)).fit(
            x[train], frame.fault[train]
        )
        score[name] = model.score(x[test], frame.fault[test])
    assert max(score["vibration"], score["sound"]) < 0.8
    assert score["both"] > max(score["vibration"], score["sound"]) + 0.15, score


def test_rates_variant_is_timed_csvs_that_resample_onto_one_clock(tmp_path: Path) -> None:
    from polyfuse.data.datasets.machines import LOGGER_RATES
    from polyfuse.data.modalities.timeseries import TimeseriesProcessor

    table = build_dataset("machines-rates", out=tmp_path, limit=40)
    frame = pd.read_csv(table, keep_default_na=False)
    meta = pd.read_csv(table.parent / META)
    assert set(meta.vibration_rate) == set(LOGGER_RATES)
    first = pd.read_csv(table.parent / frame.vibration[0])
    assert list(first.columns) == ["time", "x", "y", "z", "temperature"]
    rate = meta.vibration_rate[0]
    assert (
        first.x.notna().sum() == round(STEPS * rate / VIBRATION_RATE)
        and first.temperature.notna().sum() == 13
    )
    proc = TimeseriesProcessor(["vibration"])
    proc.fit(frame, table.parent)
    assert (
        proc.rate == pytest.approx(VIBRATION_RATE, rel=0.01) and proc.length == STEPS and proc.channels == 4
    )
    valid = proc.transform(frame, table.parent).values["valid"]  # type: ignore[index]
    ruined = (meta.ruined == "vibration").to_numpy()
    assert valid[~ruined].all() and not valid[ruined].all(dim=1).any()  # only a loose sensor's gap is invalid


def test_warped_variant_warps_only_validation_and_test_series(tmp_path: Path) -> None:
    plain = build_dataset("machines", out=tmp_path / "plain", limit=30)
    warped = build_dataset("machines-warped", out=tmp_path / "warped", limit=30)
    frame = pd.read_csv(plain, keep_default_na=False)
    for path, split in zip(frame.vibration, frame.split, strict=True):
        a, b = np.load(plain.parent / path), np.load(warped.parent / path)
        same = np.allclose(a, b, equal_nan=True)
        assert same == (split == "train"), (path, split)
        if not same:  # the ends are kept, the middle moves
            assert np.allclose(a[[0, -1]], b[[0, -1]], equal_nan=True)


def test_cross_attention_reads_vibration_steps_against_sound_frames(tmp_path: Path) -> None:
    """Unaligned sequences through the cross_attention fusion: the series' tokens (its steps pooled
    in windows) and the sound's frames, each with its own length."""
    import polyfuse
    from polyfuse.data.batch import Batch

    table = build_dataset("machines", out=tmp_path / "data", limit=60)
    frame = pd.read_csv(table, keep_default_na=False)[["vibration", "sound", "fault", "split"]]
    predictor = polyfuse.fit(
        (frame, table.parent), label="fault", out=tmp_path / "m", fusion="cross_attention", max_epochs=1,
        baselines=False, verbose=False, progress=False,
    )  # fmt: skip
    encoded, _ = predictor.encode((frame.head(8), table.parent))
    tokens, valid = predictor.model.fusion_inputs(Batch(encoded.inputs, encoded.mask))
    assert valid is not None and tokens["vibration"].dim() == 3 and tokens["sound"].dim() == 3
    assert tokens["vibration"].shape[1] == 64 and tokens["sound"].shape[1] != tokens["vibration"].shape[1]
    assert predictor.predict((frame.head(8), table.parent)).isin(FAULTS).all()

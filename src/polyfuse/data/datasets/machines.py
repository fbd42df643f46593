"""machines: predictive maintenance from vibration, sound, a maintenance note and sensor readings.

Each row is one inspection of a rotating machine (a motor driving a pump or fan) and its label
``fault`` is one of ``FAULTS``; ``rul_days`` (remaining useful life) is a second, regression label.
The signals follow the textbook signatures of vibration analysis:

- ``vibration``: a ``.npy`` file, [256 steps, 3 channels] (two radial axes and the axial one) sampled
  at 1 kHz. Every machine shows its running speed (1x, 20-48 Hz from its model and load).
  *Imbalance* raises the radial 1x; *misalignment* raises the axial 2x; a *bearing* defect rings a
  300 Hz resonance at the outer race's defect rate (3.57x); *looseness* adds harmonics and
  half-harmonics on one axis and clips it. Wear raises the broadband floor.
- ``sound``: a ``.wav`` file, 0.5 s at 8 kHz: mains hum, modulated by the shaft. Imbalance throbs
  at the shaft rate, misalignment adds coupling tones (4x, 8x), a bearing whines at 2.5-3 kHz and
  clicks, looseness rattles (random broadband knocks). Wear raises the hiss.
- ``note``: what the technician wrote: a symptom that names the fault on about a third of the rows
  (a wrong one on a few), otherwise routine words or nothing.
- ``temperature``, ``load``, ``age_years``, ``model``: the machine's readings; a bearing runs a
  little hot, a misaligned coupling a little less, otherwise they only set the running speed.

As in digits-av, one of the two sensors is ruined on most rows (the accelerometer came loose: the
signal a tenth of itself under heavy noise, with a gap; or a press next door drowns the microphone),
never both, so each modality alone fails on its own rows and only a fused model reads every row.
``rul_days`` depends on wear, age and load only (as much for a healthy machine as a faulty one), so
it says nothing about the fault when it is read as an input.

``machines-rates`` is the same table as a plant with mixed data loggers records it: each vibration
is a ``.csv`` with a ``time`` column, logged at 800, 1,000 or 1,250 samples per second with a
little clock jitter, and a bearing-temperature stream logged at 50 per second in the same file
(empty cells between its samples). Read as equally spaced steps, one fault's signature sits at
different steps on different loggers; the timeseries processor resamples every file onto one clock.

``machines-warped`` is ``machines`` with every validation and test vibration time-warped: its
clock runs up to ``WARP`` faster or slower, smoothly, both ends kept (``data.alignment.time_warp``),
so the fault orders drift by up to that much within a recording; training rows are as in
``machines``. A model trained on ``machines`` and tested on both shows what warping costs it.

Built offline and deterministically from a seed: same seed, same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from polyfuse.data.datasets.base import DatasetInfo
from polyfuse.registry import DATASETS

FAULTS = ("healthy", "imbalance", "misalignment", "bearing", "looseness")
MODELS = {"M100": 24.0, "M200": 30.0, "M300": 40.0}  # model -> shaft speed (Hz) at full load
ROWS = 6000
SPLITS = {"train": 0.70, "val": 0.15, "test": 0.15}
# Per row: which sensor is ruined. One at most, so that a fused model can always read the fault.
CORRUPTION = {"none": 0.2, "vibration": 0.4, "sound": 0.4}
VIBRATION_RATE, STEPS = 1000, 256  # Hz, steps per series
LOGGER_RATES = (800, 1000, 1250)  # machines-rates: samples per second of the vibration loggers
TEMPERATURE_RATE = 50  # machines-rates: samples per second of the temperature stream
JITTER = 0.05  # machines-rates: clock jitter, in sample intervals (standard deviation)
WARP = 0.2  # machines-warped: the largest change of a warped clock's speed
SOUND_RATE, SOUND_SECONDS = 8000, 0.5
BEARING_ORDER = 3.57  # outer-race defect frequency / shaft speed (a typical deep-groove bearing)
NOTE_SHARES = {"symptom": 0.3, "wrong": 0.03, "routine": 0.42, "empty": 0.25}
SYMPTOMS = {
    "healthy": ("runs smooth, no complaints", "routine round, nothing found", "quiet and steady today"),
    "imbalance": ("shaft wobbles at speed", "shakes once per turn", "fan blade looks chipped"),
    "misalignment": (
        "coupling runs hot, looks off",
        "axial play at the coupling",
        "shaft out of line after refit",
    ),
    "bearing": (
        "grinding near the bearing housing",
        "high pitched whine from the bearing",
        "grease dark and gritty",
    ),
    "looseness": ("rattle from the base plate", "mounting bolts found loose", "knocking under load"),
}
ROUTINE = ("oil topped up", "filter replaced", "see log", "checked by night shift", "belt tension checked")
TABLE = "machines.csv"
META = "machines.meta.csv"  # per-row generation details (corruption, severity, wear), not model inputs


def assign_splits(faults: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Stratified train/val/test labels in the proportions of ``SPLITS``."""
    out = np.empty(len(faults), dtype=object)
    for fault in np.unique(faults):
        idx = rng.permutation(np.flatnonzero(faults == fault))
        n_train, n_val = int(round(len(idx) * SPLITS["train"])), int(round(len(idx) * SPLITS["val"]))
        out[idx[:n_train]] = "train"
        out[idx[n_train : n_train + n_val]] = "val"
        out[idx[n_train + n_val :]] = "test"
    return out


def plan(seed: int = 0, rows: int = ROWS, rates: bool = False) -> pd.DataFrame:
    """Decide everything about each row before rendering: fault, machine, readings, corruption, note
    (and with ``rates`` the vibration logger's rate: every other row of the plan is the same)."""
    rng = np.random.default_rng([seed, 0])
    faults = np.array([FAULTS[i % len(FAULTS)] for i in range(rows)])
    faults = faults[rng.permutation(rows)]
    split = assign_splits(faults, rng)
    frame = pd.DataFrame(
        [
            _plan_row(str(f), str(s), np.random.default_rng([seed, 1, i]))
            for i, (f, s) in enumerate(zip(faults, split, strict=True))
        ]
    )
    loggers = np.random.default_rng([seed, 2]).choice(LOGGER_RATES, size=rows)
    frame["vibration_rate"] = loggers if rates else VIBRATION_RATE
    return frame


def _plan_row(fault: str, split: str, rng: np.random.Generator) -> dict[str, Any]:
    model = str(rng.choice(list(MODELS)))
    load = float(rng.uniform(0.2, 1.0))
    age = float(rng.uniform(0.0, 15.0))
    wear = float(rng.beta(2.0, 3.0))
    heat = {"bearing": 7.0, "misalignment": 3.5}.get(fault, 0.0)
    rul = 700.0 * (1.0 - wear) * (1.0 - 0.035 * age) * (1.25 - 0.5 * load) + rng.normal(0.0, 15.0)
    ruined = str(rng.choice(list(CORRUPTION), p=list(CORRUPTION.values())))
    note_kind = str(rng.choice(list(NOTE_SHARES), p=list(NOTE_SHARES.values())))
    return {
        "fault": fault,
        "split": split,
        "model": model,
        "load": round(load, 3),
        "age_years": round(age, 1),
        "temperature": round(38.0 + 22.0 * load + heat + rng.normal(0.0, 4.0), 1),
        "rul_days": round(max(3.0, rul), 1),
        "shaft_hz": MODELS[model] * (0.8 + 0.2 * load),
        "severity": float(rng.uniform(0.6, 1.4)),
        "wear": wear,
        "ruined": ruined,
        "note_kind": note_kind,
        "note": _note(fault, note_kind, rng),
        "row_seed": int(rng.integers(2**31)),
    }


def _note(fault: str, kind: str, rng: np.random.Generator) -> str:
    if kind == "empty":
        return ""
    if kind == "routine":
        return str(rng.choice(ROUTINE))
    if kind == "wrong":
        fault = str(rng.choice([f for f in FAULTS if f != fault]))
    return str(rng.choice(SYMPTOMS[fault]))


def vibration(row: Any, rng: np.random.Generator, t: np.ndarray | None = None) -> np.ndarray:
    """[steps, 3] float32: radial x, radial y, axial z, in g, at the times ``t`` (s; default: the
    row's ``vibration_rate`` over ``STEPS / VIBRATION_RATE`` seconds, ``STEPS`` steps at 1 kHz)."""
    t = sample_times(row.vibration_rate, rng) if t is None else t
    f, s = row.shaft_hz, row.severity
    phase = rng.uniform(0.0, 2 * np.pi, size=4)
    turn = 2 * np.pi * f * t
    x, y, z = 0.4 * np.sin(turn + phase[0]), 0.4 * np.cos(turn + phase[0]), 0.12 * np.sin(turn + phase[1])
    if row.fault == "imbalance":
        x, y = x + 1.3 * s * np.sin(turn + phase[0]), y + 1.3 * s * np.cos(turn + phase[0])
    elif row.fault == "misalignment":
        z = z + 1.1 * s * np.sin(2 * turn + phase[2]) + 0.4 * s * np.sin(turn + phase[1])
        x = x + 0.4 * s * np.sin(2 * turn + phase[3])
    elif row.fault == "bearing":
        ring = _impacts(t, BEARING_ORDER * f, 300.0, 0.006, rng)
        x, y, z = x + 1.6 * s * ring, y + 1.1 * s * ring, z + 0.6 * s * ring
    elif row.fault == "looseness":
        harmonics = sum(0.35 * s * np.sin(k * turn + rng.uniform(0, 2 * np.pi)) for k in range(2, 7))
        y = np.clip(y + harmonics + 0.4 * s * np.sin(0.5 * turn + phase[2]), -0.9, 1.4)
    steps = len(t)
    series = np.stack([x, y, z], axis=1) + rng.normal(0.0, 0.2 + 0.5 * row.wear, (steps, 3))
    if row.ruined == "vibration":  # the sensor came loose: a tenth of the signal, heavy noise, a gap
        series = 0.1 * series + rng.normal(0.0, 1.2, series.shape)
        start, width = int(rng.integers(0, steps // 2)), int(rng.integers(steps // 5, steps // 3))
        series[start : start + width] = np.nan
    return series.astype(np.float32)


def sample_times(rate: float, rng: np.random.Generator) -> np.ndarray:
    """The times (s) of a vibration window sampled at ``rate``: exact at the default rate, else with
    the logger's clock jitter."""
    steps = int(round(STEPS * rate / VIBRATION_RATE))
    t = np.arange(steps) / rate
    if rate == VIBRATION_RATE:
        return t
    return np.sort(t + rng.normal(0.0, JITTER / rate, steps)).clip(0.0)


def _impacts(
    t: np.ndarray, rate: float, ring_hz: float, decay_s: float, rng: np.random.Generator
) -> np.ndarray:
    """Decaying bursts at ``ring_hz`` repeating at ``rate`` Hz with a little jitter (a bearing defect)."""
    out = np.zeros_like(t)
    start = rng.uniform(0.0, 1.0 / rate)
    for hit in np.arange(start, t[-1], 1.0 / rate):
        when = hit + rng.normal(0.0, 0.05 / rate)
        after = np.clip(t - when, 0.0, None) * (t >= when)
        out += np.exp(-after / decay_s) * np.sin(2 * np.pi * ring_hz * after) * (t >= when)
    return out


def sound(row: Any, rng: np.random.Generator) -> np.ndarray:
    """[SOUND_RATE * SOUND_SECONDS] float32 in [-1, 1]."""
    t = np.arange(int(SOUND_RATE * SOUND_SECONDS)) / SOUND_RATE
    f, s = row.shaft_hz, row.severity
    turn = 2 * np.pi * f * t
    hum = (
        0.3 * np.sin(2 * np.pi * 100 * t)
        + 0.12 * np.sin(2 * np.pi * 200 * t)
        + 0.05 * np.sin(2 * np.pi * 300 * t)
    )
    wave = hum * (1.0 + 0.1 * np.sin(turn))
    if row.fault == "imbalance":
        wave = hum * (1.0 + 0.8 * min(s, 1.2) * np.sin(turn)) + 0.3 * s * np.sin(turn)
    elif row.fault == "misalignment":
        wave = wave + 0.25 * s * (np.sin(4 * turn) + 0.7 * np.sin(8 * turn + 1.0))
    elif row.fault == "bearing":
        whine = 0.12 * s * np.sin(2 * np.pi * rng.uniform(2500, 3000) * t)
        wave = wave + whine + 0.25 * s * _impacts(t, BEARING_ORDER * f, 1800.0, 0.002, rng)
    elif row.fault == "looseness":
        knocks = np.zeros_like(t)
        for hit in rng.uniform(0.0, t[-1], size=rng.poisson(15 * s)):
            burst = (t >= hit) & (t < hit + 0.006)
            knocks[burst] += rng.normal(0.0, 0.6 * s, burst.sum())
        wave = wave + knocks
    wave = wave + rng.normal(0.0, 0.01 + 0.04 * row.wear, t.shape)
    if row.ruined == "sound":  # a press next door: low rumble and loud stamps far above the machine
        rumble = np.cumsum(rng.normal(0.0, 1.0, t.shape))
        rumble = 1.5 * (rumble - rumble.mean()) / (rumble.std() + 1e-9)
        wave = 0.15 * wave + rumble + rng.normal(0.0, 0.6, t.shape)
    return (0.9 * wave / (np.abs(wave).max() + 1e-9)).astype(np.float32)


def timed(row: Any, rng: np.random.Generator) -> pd.DataFrame:
    """machines-rates' vibration file: ``time`` (s), x, y, z at the logger's rate (jittered), and
    ``temperature`` at ``TEMPERATURE_RATE`` (empty cells between its samples; rows sorted by time)."""
    times = sample_times(row.vibration_rate, rng)
    axes = vibration(row, np.random.default_rng(row.row_seed), times)
    clock = np.arange(0.0, STEPS / VIBRATION_RATE, 1.0 / TEMPERATURE_RATE)
    heat = row.temperature + 0.5 * np.sin(2 * np.pi * clock / 0.4) + rng.normal(0.0, 0.2, len(clock))
    stream = pd.DataFrame({"time": clock, "temperature": heat})
    frame = pd.DataFrame({"time": times, "x": axes[:, 0], "y": axes[:, 1], "z": axes[:, 2]})
    return pd.concat([frame, stream]).sort_values("time", kind="stable")[
        ["time", "x", "y", "z", "temperature"]
    ]


def warped(row: Any, series: np.ndarray) -> np.ndarray:
    """machines-warped's vibration: a validation or test row's series with its clock warped by up
    to ``WARP`` (strength and waves drawn from the row's seed), a training row's as it is."""
    from polyfuse.data.alignment import time_warp

    if row.split == "train":
        return series
    rng = np.random.default_rng([row.row_seed, 2])
    strength = float(rng.uniform(0.5, 1.0) * rng.choice([-1, 1]) * WARP)
    return time_warp(series, strength, int(rng.integers(1, 3))).astype(np.float32)


def build(
    out: Path, seed: int = 0, limit: int | None = None, rates: bool = False, warp: bool = False
) -> Path:
    """Plan and render every row, write vibration/*.npy (``rates``: *.csv; ``warp``: validation and
    test series warped), sound/*.wav, the table and its metadata."""
    import soundfile as sf

    out = Path(out)
    meta = plan(seed, rates=rates)
    if limit is not None and limit < len(meta):  # round-robin over the faults, as the full build
        meta = meta.groupby("fault", group_keys=False).head(-(-limit // len(FAULTS))).iloc[:limit]
    (out / "vibration").mkdir(parents=True, exist_ok=True)
    (out / "sound").mkdir(parents=True, exist_ok=True)
    records = []
    for k, row in enumerate(meta.itertuples()):
        rng = np.random.default_rng(row.row_seed)
        vib, wav = f"vibration/{k:05d}.{'csv' if rates else 'npy'}", f"sound/{k:05d}.wav"
        if rates:
            timed(row, np.random.default_rng([row.row_seed, 1])).to_csv(
                out / vib, index=False, float_format="%.5g"
            )
        else:
            series = vibration(row, rng)
            np.save(out / vib, warped(row, series) if warp else series)
        sf.write(out / wav, sound(row, rng), SOUND_RATE, subtype="PCM_16")
        records.append(
            {
                "vibration": vib,
                "sound": wav,
                "note": row.note,
                "temperature": row.temperature,
                "load": row.load,
                "age_years": row.age_years,
                "model": row.model,
                "fault": row.fault,
                "rul_days": row.rul_days,
                "split": row.split,
            }
        )
    pd.DataFrame(records).to_csv(out / TABLE, index=False)
    meta.drop(columns=["row_seed"]).to_csv(out / META, index_label="row")
    return out / TABLE


MODALITIES = {
    "vibration": "timeseries",
    "sound": "audio",
    "note": "text",
    "temperature": "tabular",
    "load": "tabular",
    "age_years": "tabular",
    "model": "tabular",
}


def _register(name: str, description: str, **variant: bool) -> Any:
    """Register ``name``: the machines table built with ``variant`` (``rates=True``, ``warp=True``)."""

    def builder(out: Path, seed: int = 0, limit: int | None = None) -> Path:
        return build(out, seed, limit, **variant)

    info = DatasetInfo(name, description, "fault", "split", ROWS, MODALITIES, version=1, builder=builder)
    return DATASETS.register(name)(info)


INFO = _register(
    "machines",
    "Predictive maintenance: vibration series, machine sound, a maintenance note and readings -> the "
    "fault (and remaining useful life); each sensor ruined on its own rows.",
)
RATES_INFO = _register(
    "machines-rates",
    "machines with timestamped vibration CSVs from loggers at 800-1,250 samples/s and a 50/s "
    "temperature stream in the same file: resampled onto one clock.",
    rates=True,
)
WARPED_INFO = _register(
    "machines-warped",
    "machines with every validation and test vibration time-warped by up to 20% (training rows "
    "unchanged): what a drifting clock costs a model.",
    warp=True,
)

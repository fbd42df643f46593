"""Time series: one column of series -> {"values": float [N, C, L], "valid": bool [N, L]}.

A cell holds a path to a ``.npy`` file (shape [T] or [T, C]), a ``.csv`` or ``.parquet`` file
(one column per channel, optionally a ``timestamp`` or ``time`` column), or an inline JSON list
(``[1, 2, 3]`` or ``[[x, y], [x, y], ...]``, T x C). Served, it is the file's bytes or a JSON list.

A series with timestamps (seconds, or dates and times) is resampled onto a uniform clock at
``rate`` steps per second, learnt by ``fit`` as the median sampling rate of the training series
with timestamps unless given. Each channel is interpolated from its own samples, so streams
recorded at different rates in one file (a vibration sampled every millisecond, a temperature every
second, empty cells between) land on one common clock; a grid step farther than ``GAP`` of a
channel's typical interval from its nearest sample is a gap (NaN, so invalid), not an invention.
A series without timestamps is taken as already sampled at that rate.

Series may differ in length: ``fit`` learns a length L from the training rows (the 95th percentile
of their lengths, at most ``max_length``); every series is cut to its first L steps or padded at the
end, and padded steps are invalid. A NaN step is invalid too and holds 0 (the channel mean after the
per-channel normalisation learnt on training rows). The channel count is learnt on the training rows
and a series with another count is an error naming its row and column.

Training with ``augment=True`` warps each series' clock at random (``TimeseriesModality.augment``).

Not yet (later slices of issue #17): one clock across several series columns (each column is
resampled on its own, from its own first timestamp), a figure of its own for attributions (explain
draws the per-step profile with the audio figure).
"""

from __future__ import annotations

import io
import json
import math
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO, NamedTuple

import numpy as np
import pandas as pd
import torch

from polyfuse.config import InputSpec
from polyfuse.data.errors import DataError
from polyfuse.data.modalities.base import Encoded, map_files
from polyfuse.data.modalities.modality import BadValue, Column, Field, FileModality, Rule, size
from polyfuse.data.table import describe_cell, is_missing, media_source
from polyfuse.registry import MODALITIES, PROCESSORS

MAX_STEPS = 100_000  # longest series read (from a file, a cell or a client)
MAX_CHANNELS = 256  # most channels of one series
TIME_COLUMNS = ("timestamp", "time")  # a CSV / Parquet column holding each step's time
GAP = 3.0  # a grid step farther than this many typical intervals from a channel's samples is a gap
_NPY_MAGIC = b"\x93NUMPY"


@dataclass
class SeriesField(Field):
    """A served series field; it knows the channel count the model was trained on."""

    channels: int = 1


class TimeseriesModality(FileModality):
    """Series of numbers: an InceptionTime-style CNN by default, integrated gradients per time step."""

    kind = "timeseries"
    roles = ("timeseries",)
    extensions = (".npy", ".csv", ".parquet")
    rank = 25  # before images (30) and numbers in strings (50): a JSON list is no category
    default_encoder = "ts_cnn"
    attribution = "steps"

    default_augmentation = ("time_warp",)  # data.augmentations.timeseries

    def rules(self) -> list[tuple[int, Rule]]:
        return [(self.rank, self._by_extension), (self.rank, _json_lists)]

    def detail(self, series: pd.Series, role: str, base_dir: str | Path | None) -> str:
        values = series.dropna().astype(str).str.strip()
        inline = int(values.str.startswith("[").sum())
        if inline == 0:
            return super().detail(series, role, base_dir)
        return f"{inline} inline series, {len(values) - inline} files, {int(series.isna().sum())} missing"

    def fields(self, spec: InputSpec, processor: Any) -> list[Field]:
        return [SeriesField(c, spec.name, self.kind, channels=processor.channels or 1) for c in spec.columns]

    def decode(self, field: Field, value: Any, limits: Any) -> bytes | None:
        if isinstance(value, list):  # a JSON request's inline series
            value = json.dumps(value)
        if isinstance(value, str) and value.lstrip().startswith("["):
            if len(value) > limits.max_upload_bytes:
                raise BadValue(f"series of {len(value)} characters; limit {limits.max_upload_bytes}", 413)
            data = value.encode()
            self.check(data, limits)
            return data
        return super().decode(field, value, limits)

    def check(self, data: bytes, limits: Any) -> None:
        try:
            read_bytes(data)
        except ValueError as err:
            raise BadValue(f"unusable series: {err}", 413 if "limit" in str(err) else 422) from None

    def example(self, field: Field) -> bytes:
        channels = field.channels if isinstance(field, SeriesField) else 1
        return json.dumps([[0.0] * channels] * 4).encode()  # four steps at the channel means

    def form(self, field: Field, limits: Any) -> dict[str, Any]:
        channels = field.channels if isinstance(field, SeriesField) else 1
        hint = f".npy (T x {channels}) or .csv ({channels} channel columns), up to {MAX_STEPS} steps"
        return {
            "input": "file",
            "accept": ".npy,.csv",
            "preview": "",
            "hint": f"{hint}, {size(limits.max_upload_bytes)}",
        }


MODALITIES.register("timeseries")(TimeseriesModality())  # one instance per kind


def _json_lists(column: Column) -> str | None:
    sample = column.strings.iloc[:200]
    looks = sample.str.startswith("[") & sample.str.endswith("]")
    if looks.mean() <= 0.5:
        return None
    numeric = sum(_is_numeric_json(text) for text in sample[looks])
    return "timeseries" if numeric > 0.5 * len(sample) else None


def _is_numeric_json(text: str) -> bool:
    try:
        read_json(text)
    except ValueError:
        return False
    return True


# --- reading one series: every reader returns a Raw series or raises ValueError(problem) ---


class Raw(NamedTuple):
    """A series as read: values float32 [T, C] (NaN where a channel has no sample) and each step's
    time in seconds from the first (increasing), or None when the steps are equally spaced."""

    values: np.ndarray
    times: np.ndarray | None = None


def read_json(text: str) -> Raw:
    """An inline JSON list, [T] or [T][C]; ``null`` is a NaN."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"not a JSON list ({err.msg})") from None
    if not isinstance(data, list) or not data:
        raise ValueError("expected a non-empty JSON list of numbers (or of lists of numbers)")
    rows = data if isinstance(data[0], list) else [[v] for v in data]
    width = len(rows[0])
    for step, row in enumerate(rows):
        if not isinstance(row, list):
            raise ValueError(f"step {step} is not a list while step 0 is")
        if len(row) != width:
            raise ValueError(f"ragged channels: step {step} has {len(row)} values, step 0 has {width}")
        for v in row:
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise ValueError(f"non-numeric value {v!r} at step {step}")
    return Raw(
        _checked(np.array([[np.nan if v is None else v for v in row] for row in rows], dtype=np.float64))
    )


# numpy parses a .npy header with ast.literal_eval, and CPython 3.11's ast constructor is not
# thread-safe (python/cpython#106905: "AST constructor recursion depth mismatch" when files are read
# on several threads, as ``read_files`` does): one load at a time (series files are small).
_NPY_LOCK = threading.Lock()


def read_npy(source: Path | BinaryIO) -> Raw:
    try:
        with _NPY_LOCK:
            array = np.load(source, allow_pickle=False)
    except (ValueError, OSError, EOFError) as err:
        raise ValueError(f"not a readable .npy file ({err})") from None
    if array.ndim not in (1, 2):
        raise ValueError(f"expected an array of shape [T] or [T, C], got {list(array.shape)}")
    if not (np.issubdtype(array.dtype, np.number) or array.dtype == bool):
        raise ValueError(f"non-numeric array of dtype {array.dtype}")
    return Raw(_checked(array.reshape(len(array), -1)))


def read_frame(frame: pd.DataFrame) -> Raw:
    """A CSV / Parquet series: one column per channel, and its steps' times from a timestamp / time
    column if it has one (rows sorted by time; rows at the same time averaged)."""
    clock = [c for c in frame.columns if str(c).strip().lower() in TIME_COLUMNS]
    times = _seconds(frame[clock[0]]) if clock else None
    frame = frame.drop(columns=clock)
    if frame.shape[1] == 0:
        raise ValueError("no channel columns")
    for name in frame.columns:
        numbers = pd.to_numeric(frame[name], errors="coerce")
        bad = numbers.isna() & frame[name].notna()
        if bad.any():
            step = int(np.argmax(bad.to_numpy()))
            raise ValueError(
                f"non-numeric value {frame[name].iloc[step]!r} in channel {name!r} at step {step}"
            )
    values = frame.apply(pd.to_numeric).to_numpy(dtype=np.float64)
    if times is None:
        return Raw(_checked(values))
    if len(times) > 1 and not (np.diff(times) > 0).all():  # sorted by time; rows at one time: their mean
        merged = pd.DataFrame(values).groupby(times, sort=True).mean()  # NaN cells skipped
        times, values = merged.index.to_numpy(dtype=np.float64), merged.to_numpy(dtype=np.float64)
    return Raw(_checked(values), times - times[0])


def _seconds(column: pd.Series) -> np.ndarray:
    """A timestamp column -> seconds (numbers are seconds; else dates and times, parsed)."""
    numbers = pd.to_numeric(column, errors="coerce")
    if numbers.notna().all():
        return numbers.to_numpy(dtype=np.float64)
    try:
        stamps = pd.to_datetime(column, errors="raise", utc=True)
    except (ValueError, TypeError):
        bad = numbers.isna().to_numpy()
        raise ValueError(
            f"timestamp {column.iloc[int(np.argmax(bad))]!r} at step {int(np.argmax(bad))} is neither "
            "a number of seconds nor a date and time"
        ) from None
    if stamps.isna().any():
        raise ValueError(f"a missing timestamp at step {int(np.argmax(stamps.isna().to_numpy()))}")
    return (stamps - stamps.iloc[0]).dt.total_seconds().to_numpy(dtype=np.float64)


def sampling_rate(times: np.ndarray) -> float | None:
    """Steps per second of a timed series: 1 / its median interval (None with under two steps)."""
    steps = np.diff(times)
    steps = steps[steps > 0]
    return float(1.0 / np.median(steps)) if len(steps) else None


def resample(raw: Raw, rate: float | None) -> np.ndarray:
    """A read series on the uniform clock ``0, 1/rate, 2/rate, ...`` up to its last time: [T', C].

    Each channel is interpolated linearly from its own samples (its NaN cells are "no sample
    here"), its first and last value held beyond them; a step farther than ``GAP`` times the
    channel's median interval from its nearest sample is NaN. Without timestamps or a rate, the
    values as read.
    """
    if raw.times is None or rate is None:
        return raw.values
    grid = np.arange(0.0, raw.times[-1] + 0.5 / rate, 1.0 / rate)
    if len(grid) > MAX_STEPS:
        raise ValueError(f"{len(grid)} steps at {rate:g} per second; limit {MAX_STEPS}")
    out = np.full((len(grid), raw.values.shape[1]), np.nan, dtype=np.float32)
    for c in range(raw.values.shape[1]):
        has = ~np.isnan(raw.values[:, c])
        t, v = raw.times[has], raw.values[has, c]
        if len(t) == 0:
            continue
        interval = float(np.median(np.diff(t))) if len(t) > 1 else 1.0 / rate
        inside = _nearest(grid, t) <= GAP * max(interval, 1.0 / rate)
        out[inside, c] = np.interp(grid[inside], t, v)  # past its first / last sample: held
    return out


def _nearest(grid: np.ndarray, t: np.ndarray) -> np.ndarray:
    """Distance from each grid time to the nearest of the sorted times ``t``."""
    right = np.clip(np.searchsorted(t, grid), 0, len(t) - 1)
    left = np.clip(right - 1, 0, len(t) - 1)
    return np.minimum(np.abs(grid - t[left]), np.abs(grid - t[right]))


def read_bytes(data: bytes) -> Raw:
    """A served series: .npy bytes, CSV text or a JSON list."""
    if data.startswith(_NPY_MAGIC):
        return read_npy(io.BytesIO(data))
    if data.lstrip().startswith(b"["):
        return read_json(data.decode("utf-8", "replace"))
    try:
        frame = pd.read_csv(io.BytesIO(data))
    except Exception as err:  # pandas raises ParserError, UnicodeDecodeError, EmptyDataError ...
        raise ValueError(f"not .npy, CSV or a JSON list ({type(err).__name__})") from None
    return read_frame(frame)


def read_cell(value: Any, base_dir: Path) -> Raw | None:
    """One table cell -> its series; None when its file does not exist (an absent row)."""
    if isinstance(value, (list, tuple, np.ndarray)):
        return read_json(json.dumps(np.asarray(value, dtype=object).tolist()))
    if isinstance(value, str) and value.lstrip().startswith("["):
        return read_json(value)
    source = media_source(value, base_dir)
    if source is None:
        return None
    if isinstance(source, io.BytesIO):
        return read_bytes(source.getvalue())
    suffix = source.suffix.lower()
    if suffix == ".npy":
        return read_npy(source)
    if suffix in (".csv", ".parquet"):
        reader = pd.read_csv if suffix == ".csv" else pd.read_parquet
        try:
            frame = reader(source)
        except Exception as err:  # parsers raise many types; the problem is the file
            raise ValueError(f"cannot read {suffix} file ({type(err).__name__}: {err})") from None
        return read_frame(frame)
    raise ValueError(f"unknown series file type '{suffix}' (use .npy, .csv or .parquet)")


def _checked(array: np.ndarray) -> np.ndarray:
    steps, channels = array.shape
    if steps == 0:
        raise ValueError("an empty series")
    if steps > MAX_STEPS:
        raise ValueError(f"series of {steps} steps; limit {MAX_STEPS}")
    if channels > MAX_CHANNELS:
        raise ValueError(f"series of {channels} channels; limit {MAX_CHANNELS}")
    if np.isinf(array).any():
        raise ValueError("infinite value")
    return array.astype(np.float32)


@PROCESSORS.register("timeseries")
class TimeseriesProcessor:
    """Read, cut / pad and normalise series; NaN and padded steps are marked invalid.

    Args:
        columns: The one column holding series (paths or JSON lists).
        max_length: Longest length ``fit`` may learn.
        percentile: Percentile of the training lengths that becomes the length.
        length: Steps kept per series, learnt by ``fit``.
        rate: Steps per second that series with timestamps are resampled to; ``None``: ``fit``
            learns the median rate of the training series with timestamps.
        resample: ``False`` ignores timestamps: steps are taken as equally spaced, in time order.
        channels: Channels per series, learnt by ``fit``.
        mean: Per-channel mean learnt by ``fit``.
        std: Per-channel standard deviation learnt by ``fit``.
    """

    kind = "timeseries"

    def __init__(
        self,
        columns: list[str],
        max_length: int = 1024,
        percentile: float = 95.0,
        length: int | None = None,
        rate: float | None = None,
        resample: bool = True,
        channels: int | None = None,
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        self.columns = list(columns)
        self.max_length = int(max_length)
        self.percentile = float(percentile)
        self.length = length
        self.rate = None if rate is None else float(rate)
        self.resample = bool(resample)
        self.channels = channels
        self.mean = mean
        self.std = std

    def fit(self, frame: pd.DataFrame, base_dir: Path) -> None:
        # Bad cells are left out here: ``transform`` reports them (raised or skipped by ``on_error``).
        # Each file is read once: the rate is learnt from the series as read, then they are resampled.
        raw, _ = self._read(frame[self.columns[0]], base_dir, channels=None, resampled=False)
        if self.rate is None and self.resample:
            rates = [sampling_rate(r.times) for r in raw if r is not None and r.times is not None]
            known = [r for r in rates if r is not None]
            self.rate = float(np.median(known)) if known else None
        series = [None if r is None else _resampled(r, self.rate if self.resample else None) for r in raw]
        counts = [s.shape[1] for s in series if s is not None]
        if not counts:
            raise DataError("no training row has a series", column=self.columns[0])
        self.channels = int(np.bincount(counts).argmax())  # the most common count (ties: the fewest)
        found = [s for s in series if s is not None and s.shape[1] == self.channels]
        lengths = np.array([len(s) for s in found])
        self.length = max(1, min(self.max_length, math.ceil(float(np.percentile(lengths, self.percentile)))))
        cut = np.concatenate([s[: self.length] for s in found])  # [sum T, C]
        with np.errstate(all="ignore"):
            mean, std = np.nanmean(cut, axis=0), np.nanstd(cut, axis=0)
        self.mean = np.nan_to_num(mean, nan=0.0).astype(float).tolist()
        self.std = np.maximum(np.nan_to_num(std, nan=1.0), 1e-5).astype(float).tolist()

    def transform(self, frame: pd.DataFrame, base_dir: Path) -> Encoded:
        if self.length is None or self.channels is None or self.mean is None or self.std is None:
            raise RuntimeError("TimeseriesProcessor.transform before fit")
        column = frame[self.columns[0]]
        series, errors = self._read(column, base_dir, self.channels)
        n, length = len(column), self.length
        values = np.zeros((n, self.channels, length), dtype=np.float32)  # [N, C, L]
        valid = np.zeros((n, length), dtype=bool)  # [N, L]
        present = np.zeros(n, dtype=bool)
        mean = np.asarray(self.mean, dtype=np.float32)
        std = np.asarray(self.std, dtype=np.float32)
        for i, s in enumerate(series):
            if s is None:
                continue
            cut = (s[:length] - mean) / std  # [T', C]
            ok = ~np.isnan(cut).any(axis=1)  # a step with a NaN in any channel is invalid
            values[i, :, : len(cut)] = np.nan_to_num(cut, nan=0.0).T
            valid[i, : len(cut)] = ok
            present[i] = True
        keep = torch.from_numpy(present)
        return Encoded({"values": torch.from_numpy(values), "valid": torch.from_numpy(valid)}, keep, errors)

    def _read(
        self, column: pd.Series, base_dir: Path, channels: int | None, resampled: bool = True
    ) -> tuple[list[Any], list[DataError]]:
        """Each cell's series (None: absent or bad), [T, C] on the clock of ``rate`` (else as read,
        a ``Raw``), and a DataError per bad cell; a series without ``channels`` channels is bad
        (None: any count)."""
        out: list[Any] = [None] * len(column)
        errors: list[DataError] = []
        jobs = [i for i, v in enumerate(column) if not is_missing(v)]
        rate = self.rate if resampled and self.resample else None
        results = map_files(lambda i: _attempt(column.iloc[i], base_dir, rate, resampled), jobs)
        for i, (series, problem) in zip(jobs, results, strict=True):
            width = None if series is None else (series.shape[1] if resampled else series.values.shape[1])
            if width is not None and channels is not None and width != channels:
                problem = f"{width} channels, expected {channels} (as in training)"
            if problem is not None:
                cell = describe_cell(column.iloc[i])
                shown = cell if len(cell) <= 60 else cell[:57] + "..."
                errors.append(DataError(f"bad series '{shown}': {problem}", column.index[i], self.columns[0]))
            else:
                out[i] = series
        return out, errors

    def encoder_kwargs(self) -> dict[str, Any]:
        return {"in_channels": self.channels, "num_steps": self.length}

    def state(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "max_length": self.max_length,
            "percentile": self.percentile,
            "length": self.length,
            "rate": self.rate,
            "resample": self.resample,
            "channels": self.channels,
            "mean": self.mean,
            "std": self.std,
        }


def _resampled(raw: Raw, rate: float | None) -> np.ndarray | None:
    """``resample``, or None for a series it refuses (too long at ``rate``: ``transform`` reports it)."""
    try:
        return resample(raw, rate)
    except ValueError:
        return None


def _attempt(value: Any, base_dir: Path, rate: float | None, resampled: bool) -> tuple[Any, str | None]:
    """(the cell's series, on the clock of ``rate`` when ``resampled`` else as read, or None; the
    problem or None)."""
    try:
        raw = read_cell(value, base_dir)
        return (resample(raw, rate) if resampled and raw is not None else raw), None
    except ValueError as err:
        return None, str(err)

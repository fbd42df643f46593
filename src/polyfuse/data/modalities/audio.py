"""Audio: file paths in one column -> log-mel spectrograms [N, n_mels, T] or waveforms [N, S].

Clips are read with soundfile at any sample rate, mixed to mono, resampled, cut to a fixed
duration (the loudest window, so a short word in a long recording is kept) and turned into
features for all clips at once: one batched ``torch.stft`` per chunk instead of a loop per clip.
"""

from __future__ import annotations

import functools
import io
import math
from pathlib import Path
from typing import Any, BinaryIO

import numpy as np
import pandas as pd
import torch
from torch import Tensor

from polyfuse.data.errors import DataError
from polyfuse.data.modalities.base import Encoded, map_files
from polyfuse.data.modalities.modality import BadValue, Field, FileModality, size
from polyfuse.data.table import describe_cell, is_missing, media_source
from polyfuse.registry import MODALITIES, PROCESSORS

_FIT_SAMPLE = 2000  # clips the per-bin mean / std are estimated from
_CHUNK = 512  # clips per batched STFT: bounds memory and stays cache-friendly (faster than 2048)


class AudioModality(FileModality):
    """Audio files: a CNN on log-mels by default, integrated gradients per time frame."""

    kind = "audio"
    default_augmentation = ("specaugment", "time_shift", "gain")  # data.augmentations.audio
    roles = ("audio",)
    extensions = (".wav", ".flac", ".ogg", ".mp3", ".aiff", ".au")
    preview = "audio"
    rank = 40
    default_encoder = "audio_cnn"
    pretrained_encoder = "hf_audio"
    attribution = "frames"

    def check(self, data: bytes, limits: Any) -> None:
        check_audio(data, limits.max_audio_seconds)

    def example(self, field: Field) -> bytes:
        import soundfile as sf

        out = io.BytesIO()
        sf.write(out, np.zeros(1600, dtype=np.float32), 16000, format="WAV")  # 0.1 s of silence
        return out.getvalue()

    def hint(self, limits: Any) -> str:
        return f"WAV, FLAC or OGG, up to {limits.max_audio_seconds:g} s and {size(limits.max_upload_bytes)}"


MODALITIES.register("audio")(AudioModality())  # one instance per kind


def check_audio(data: bytes, max_seconds: float) -> None:
    """Reads the header only: the duration is checked before anything is decoded."""
    import soundfile as sf

    try:
        info = sf.info(io.BytesIO(data))
        seconds = info.frames / info.samplerate
    except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError ...
        raise BadValue(f"unsupported audio ({exc.__class__.__name__}); send WAV, FLAC or OGG") from None
    if info.frames <= 0:
        raise BadValue("audio without samples")
    if seconds > max_seconds:
        raise BadValue(f"audio of {seconds:.1f} s; limit {max_seconds} s", 413)


@PROCESSORS.register("audio")
class AudioProcessor:
    """Decode, resample, crop and featurise audio clips.

    Args:
        columns: The one column holding audio file paths.
        sample_rate: Rate every clip is resampled to (Hz).
        duration: Seconds kept per clip (cropped or zero-padded at the end).
        features: ``"logmel"`` or ``"waveform"``.
        n_mels: Mel bins of the log-mel features.
        crop: ``"loudest"`` (the window with the most energy) or ``"start"``.
        mean: Per-mel-bin mean learnt by ``fit`` (log-mel only).
        std: Per-mel-bin standard deviation learnt by ``fit``.
    """

    kind = "audio"

    def __init__(
        self,
        columns: list[str],
        sample_rate: int = 16000,
        duration: float = 1.0,
        features: str = "logmel",
        n_mels: int = 64,
        crop: str = "loudest",
        mean: list[float] | None = None,
        std: list[float] | None = None,
    ) -> None:
        if features not in ("logmel", "waveform"):
            raise ValueError(f"features must be 'logmel' or 'waveform', got {features!r}")
        if crop not in ("loudest", "start"):
            raise ValueError(f"crop must be 'loudest' or 'start', got {crop!r}")
        self.columns = list(columns)
        self.sample_rate = int(sample_rate)
        self.duration = float(duration)
        self.features = features
        self.n_mels = int(n_mels)
        self.crop = crop
        self.mean = mean
        self.std = std

    @property
    def num_samples(self) -> int:
        return int(round(self.duration * self.sample_rate))

    @property
    def n_fft(self) -> int:
        return int(round(400 * self.sample_rate / 16000))  # 25 ms window

    @property
    def hop_length(self) -> int:
        return max(1, self.sample_rate // 100)  # 10 ms

    @property
    def num_frames(self) -> int:
        return self.num_samples // self.hop_length + 1  # centred STFT

    def fit(self, frame: pd.DataFrame, base_dir: Path) -> None:
        if self.features != "logmel":
            return
        series = frame[self.columns[0]]
        step = max(1, len(series) // _FIT_SAMPLE)
        waves, present, _ = self._decode(series.iloc[::step], base_dir)
        if not present.any():
            self.mean, self.std = [0.0] * self.n_mels, [1.0] * self.n_mels
            return
        logmel = self._logmel(waves[torch.from_numpy(present)])  # [n, n_mels, T]
        self.mean = logmel.mean(dim=(0, 2)).tolist()
        self.std = logmel.std(dim=(0, 2)).clamp_min(1e-5).tolist()

    def transform(self, frame: pd.DataFrame, base_dir: Path) -> Encoded:
        waves, present, errors = self._decode(frame[self.columns[0]], base_dir)  # [N, S]
        keep = torch.from_numpy(present)
        if self.features == "waveform":
            return Encoded(values=waves * keep[:, None], present=keep, errors=errors)
        values = self._logmel(waves)  # [N, n_mels, T]
        if self.mean is not None and self.std is not None:
            mean = torch.tensor(self.mean, dtype=torch.float32)[None, :, None]
            std = torch.tensor(self.std, dtype=torch.float32)[None, :, None]
            values = (values - mean) / std
        values = values * keep[:, None, None]  # absent rows hold zeros
        return Encoded(values=values, present=keep, errors=errors)

    def _decode(self, series: pd.Series, base_dir: Path) -> tuple[Tensor, np.ndarray, list[DataError]]:
        waves = np.zeros((len(series), self.num_samples), dtype=np.float32)  # [N, S]
        present = np.zeros(len(series), dtype=bool)
        errors: list[DataError] = []
        sources = [(i, media_source(v, base_dir)) for i, v in enumerate(series) if not is_missing(v)]
        jobs = [(i, src) for i, src in sources if src is not None]  # a file that does not exist is absent
        results = map_files(self._load, [src for _, src in jobs])
        for (i, _), (wave, reason) in zip(jobs, results, strict=True):
            if wave is None:
                value = describe_cell(series.iloc[i])
                errors.append(
                    DataError(f"cannot read audio '{value}': {reason}", series.index[i], self.columns[0])
                )
            else:
                waves[i], present[i] = wave, True
        return torch.from_numpy(waves), present, errors

    def _load(self, source: Path | BinaryIO) -> tuple[np.ndarray | None, str]:
        import soundfile as sf

        try:
            data, rate = sf.read(source, dtype="float32", always_2d=True)  # [T, C]
        except Exception as exc:  # soundfile raises LibsndfileError, RuntimeError, TypeError ...
            return None, str(exc) or type(exc).__name__
        if data.shape[0] == 0:
            return None, "no samples"
        mono = data.mean(axis=1)  # [T]
        if rate != self.sample_rate:
            mono = _resample(mono, int(rate), self.sample_rate)
        return self._fit_length(mono), ""

    def _fit_length(self, wave: np.ndarray) -> np.ndarray:
        n = self.num_samples
        if len(wave) <= n:
            return np.pad(wave, (0, n - len(wave)))
        start = 0
        if self.crop == "loudest":
            energy = np.concatenate([[0.0], np.cumsum(wave.astype(np.float64) ** 2)])
            start = int(np.argmax(energy[n:] - energy[:-n]))  # window sums, [T - n + 1]
        return wave[start : start + n]

    def _logmel(self, waves: Tensor) -> Tensor:
        """waves [N, S] -> log-mel [N, n_mels, T]."""
        filters = torch.from_numpy(
            _mel_filters(self.n_fft, self.n_mels, self.sample_rate)
        ).T.contiguous()  # [M, F]
        window = torch.hann_window(self.n_fft)
        out = torch.empty(len(waves), self.n_mels, self.num_frames)
        for start in range(0, len(waves), _CHUNK):
            chunk = waves[start : start + _CHUNK]
            spec = torch.stft(chunk, self.n_fft, self.hop_length, window=window, return_complex=True)
            power = spec.real**2 + spec.imag**2  # [B, F, T]
            mel = filters @ power  # [B, M, T]
            out[start : start + len(chunk)] = torch.log(mel + 1e-6)
        return out

    def encoder_kwargs(self) -> dict[str, Any]:
        return {
            "n_mels": self.n_mels,
            "num_frames": self.num_frames,
            "sample_rate": self.sample_rate,
            "num_samples": self.num_samples,
            "features": self.features,
        }

    def state(self) -> dict[str, Any]:
        return {
            "columns": self.columns,
            "sample_rate": self.sample_rate,
            "duration": self.duration,
            "features": self.features,
            "n_mels": self.n_mels,
            "crop": self.crop,
            "mean": self.mean,
            "std": self.std,
        }


def _resample(wave: np.ndarray, rate: int, target: int) -> np.ndarray:
    from scipy.signal import resample_poly

    g = math.gcd(rate, target)
    return resample_poly(wave, target // g, rate // g).astype(np.float32)


@functools.lru_cache(maxsize=8)
def _mel_filters(n_fft: int, n_mels: int, sample_rate: int) -> np.ndarray:
    """The Slaney mel bank [F, M], built once per size (each ``transform`` asks for it again; callers
    copy it, never write to it)."""
    from transformers.audio_utils import mel_filter_bank

    bank = mel_filter_bank(
        num_frequency_bins=n_fft // 2 + 1,
        num_mel_filters=n_mels,
        min_frequency=0.0,
        max_frequency=sample_rate / 2,
        sampling_rate=sample_rate,
        norm="slaney",
        mel_scale="slaney",
    )
    return bank.astype(np.float32)  # [F, M]

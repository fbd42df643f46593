"""Audio augmentations on the audio processor's output: normalised log-mel spectrograms
[B, mels, T] (the default) or waveforms [B, S] (``features="waveform"``).

SpecAugment (Park, Chan, Zhang, Chiu, Zoph, Cubuk & Le, 2019, "SpecAugment: A Simple Data
Augmentation Method for Automatic Speech Recognition") masks bands of frequencies and spans of time;
speed and pitch perturbation (Ko, Peddinti, Povey & Khudanpur, 2015, "Audio augmentation for speech
recognition") stretch the time axis and move the mel bands; gain and noise change the level and add
noise at a random signal-to-noise ratio. Masked and padded values are 0, the spectrograms' mean.
"""

from __future__ import annotations

import torch
from torch import Tensor

from polyfuse.data.augmentations.base import augmentation, integers, uniform


def _spectrogram(x: Tensor) -> bool:
    return x.dim() == 3  # [B, mels, T]; a waveform is [B, S]


def _spans(generator: torch.Generator, rows: int, length: int, widest: int, device: torch.device) -> Tensor:
    """[B, length] bool: one span per row of 0..``widest`` steps at a random place."""
    width = integers(generator, rows, 0, max(0, widest), device)
    start = (torch.rand(rows, generator=generator).to(device) * (length - width + 1).clamp(min=1)).long()
    steps = torch.arange(length, device=device)[None, :]
    return (steps >= start[:, None]) & (steps < (start + width)[:, None])


@augmentation("specaugment", "audio")
def specaugment(x: Tensor, generator: torch.Generator) -> Tensor:
    """Two frequency masks of up to a sixth of the mel bands and two time masks of up to a tenth of
    the frames per row (a waveform: the time masks only)."""
    rows, length = x.shape[0], x.shape[-1]
    keep = torch.ones_like(x, dtype=torch.bool)
    for _ in range(2):
        keep &= ~_spans(generator, rows, length, length // 10, x.device).view(
            rows, *[1] * (x.dim() - 2), length
        )
        if _spectrogram(x):
            mels = x.shape[1]
            keep &= ~_spans(generator, rows, mels, mels // 6, x.device)[:, :, None]
    return torch.where(keep, x, x.new_zeros(()))


@augmentation("time_shift", "audio")
def time_shift(x: Tensor, generator: torch.Generator) -> Tensor:
    """Shift each row by up to a tenth of its length either way, the gap filled with 0."""
    rows, length = x.shape[0], x.shape[-1]
    shift = integers(generator, rows, -(length // 10), length // 10, x.device)
    source = torch.arange(length, device=x.device)[None, :] - shift[:, None]  # [B, T]
    inside = (source >= 0) & (source < length)
    index = source.clamp(0, length - 1).view(rows, *[1] * (x.dim() - 2), length).expand_as(x)
    moved = torch.gather(x, -1, index)
    return torch.where(inside.view(rows, *[1] * (x.dim() - 2), length), moved, x.new_zeros(()))


@augmentation("gain", "audio")
def gain(x: Tensor, generator: torch.Generator) -> Tensor:
    """Louder or quieter by up to 6 dB: a waveform scaled, a normalised log-mel spectrogram moved by
    up to 0.3 (its units: standard deviations of each band's level)."""
    rows = x.shape[0]
    view = (rows, *[1] * (x.dim() - 1))
    if _spectrogram(x):
        return x + uniform(generator, rows, -0.3, 0.3, x).view(view)
    return x * (10 ** (uniform(generator, rows, -6.0, 6.0, x) / 20)).view(view)


@augmentation("background_noise", "audio")
def noise(x: Tensor, generator: torch.Generator) -> Tensor:
    """White noise at a signal-to-noise ratio of 10 to 30 dB per row (of the row's own power)."""
    rows = x.shape[0]
    view = (rows, *[1] * (x.dim() - 1))
    power = x.pow(2).mean(dim=tuple(range(1, x.dim()))).clamp(min=1e-8)
    snr = uniform(generator, rows, 10.0, 30.0, x)
    sigma = (power / 10 ** (snr / 10)).sqrt().view(view)
    return x + sigma * torch.randn(x.shape, generator=generator).to(x.device, x.dtype)


@augmentation("speed", "audio")
def speed(x: Tensor, generator: torch.Generator) -> Tensor:
    """Speed perturbation: each row played 10% slower to 10% faster (its time axis resampled
    linearly; the end cut or padded with 0 to the same length)."""
    rows, length = x.shape[0], x.shape[-1]
    rate = uniform(generator, rows, 0.9, 1.1, x)
    source = torch.arange(length, device=x.device, dtype=x.dtype)[None, :] * rate[:, None]  # [B, T]
    inside = source <= length - 1
    low = source.floor().long().clamp(0, length - 1)
    high = (low + 1).clamp(max=length - 1)
    frac = (source - low.to(x.dtype)).view(rows, *[1] * (x.dim() - 2), length)
    shape = (rows, *[1] * (x.dim() - 2), length)
    a = torch.gather(x, -1, low.view(shape).expand_as(x))
    b = torch.gather(x, -1, high.view(shape).expand_as(x))
    return torch.where(inside.view(shape), a + (b - a) * frac, x.new_zeros(()))


@augmentation("pitch", "audio")
def pitch(x: Tensor, generator: torch.Generator) -> Tensor:
    """Pitch perturbation of a log-mel spectrogram: its bands moved up or down by up to 2 (the
    edge band repeated); a waveform is left as it is (resampling it changes its speed too)."""
    if not _spectrogram(x):
        return x
    rows, mels = x.shape[0], x.shape[1]
    shift = integers(generator, rows, -2, 2, x.device)
    index = (torch.arange(mels, device=x.device)[None, :] - shift[:, None]).clamp(0, mels - 1)
    return torch.gather(x, 1, index[:, :, None].expand_as(x))

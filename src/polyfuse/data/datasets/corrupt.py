"""Rendering and degrading the two sensory modalities of digits-av.

Every image gets mild blur, noise and jitter; a "heavy" image is mostly hidden under blocks and
strong noise. Every clip gets some background noise; a "heavy" clip is drowned in low-pass
pink noise far louder than the voice. Strengths are module constants so tuning them is one edit.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

IMAGE_SIZE = 32  # pixels per side of the saved PNG (the sklearn digits are 8x8)
SAMPLE_RATE = 16_000  # Hz of the saved WAV
CLIP_SECONDS = 1.0


@dataclass(frozen=True)
class ImageCorruption:
    """How one image is degraded."""

    blur: float = 1.2  # Gaussian sigma in output pixels
    noise: float = 0.12  # std of additive Gaussian noise, image in [0, 1]
    shift: int = 3  # max random translation in pixels
    occlude: float = 0.0  # fraction of the area hidden under random blocks
    heavy_noise: float = 0.0  # extra noise std


@dataclass(frozen=True)
class AudioCorruption:
    """How one clip is degraded: background noise at a signal-to-noise ratio in dB."""

    snr_db: float = 15.0
    lowpass: bool = False  # low-pass (speech-band) noise masks a voice far better than white noise


MILD_IMAGE = ImageCorruption()
HEAVY_IMAGE = ImageCorruption(blur=1.6, noise=0.12, shift=3, occlude=0.85, heavy_noise=0.5)
MILD_SNR_DB = (8.0, 25.0)
HEAVY_SNR_DB = (-20.0, -14.0)


def render_image(pixels: np.ndarray, how: ImageCorruption, rng: np.random.Generator) -> np.ndarray:
    """Upscale an 8x8 sklearn digit (values 0-16) to a degraded uint8 grey image."""
    from scipy import ndimage

    img = pixels.astype(np.float64) / 16.0
    img = ndimage.zoom(img, IMAGE_SIZE / img.shape[0], order=1)  # [32, 32]
    dy, dx = rng.integers(-how.shift, how.shift + 1, size=2)
    img = ndimage.shift(img, (dy, dx), order=0, mode="constant")
    img = ndimage.gaussian_filter(img, how.blur)
    if how.occlude > 0:
        img = _occlude(img, how.occlude, rng)
    img = img + rng.normal(0.0, how.noise + how.heavy_noise, img.shape)
    return (np.clip(img, 0.0, 1.0) * 255).round().astype(np.uint8)


def _occlude(img: np.ndarray, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """Hide ``fraction`` of the image under random grey blocks, leaving one window visible."""
    size = img.shape[0]
    side = max(2, int(round(size * np.sqrt(1.0 - fraction))))
    y, x = rng.integers(0, size - side + 1, size=2)
    covered = np.ones_like(img, dtype=bool)
    covered[y : y + side, x : x + side] = False
    blocks = rng.uniform(0.0, 1.0, (size // 4, size // 4)).repeat(4, 0).repeat(4, 1)
    return np.where(covered, blocks, img)


def render_audio(
    speech: np.ndarray, source_rate: int, how: AudioCorruption, rng: np.random.Generator
) -> np.ndarray:
    """Resample a synthesised word to 16 kHz, place it in a 1 s clip, add noise; int16 samples."""
    from fractions import Fraction

    from scipy.signal import resample_poly

    ratio = Fraction(SAMPLE_RATE, source_rate)
    voice = resample_poly(speech.astype(np.float64) / 32768.0, ratio.numerator, ratio.denominator)
    voice = _trim(voice)[: int(SAMPLE_RATE * CLIP_SECONDS)]
    voice *= rng.uniform(0.25, 0.6) / (np.abs(voice).max() + 1e-9)
    clip = np.zeros(int(SAMPLE_RATE * CLIP_SECONDS))
    start = int(rng.integers(0, len(clip) - len(voice) + 1))
    clip[start : start + len(voice)] = voice
    noise = _noise(len(clip), how.lowpass, rng)
    speech_power = np.mean(voice**2)
    noise *= np.sqrt(speech_power / (np.mean(noise**2) * 10 ** (how.snr_db / 10)))
    mixed = clip + noise
    mixed *= 0.9 / max(0.9, np.abs(mixed).max())  # avoid clipping, keep quiet clips as they are
    return (mixed * 32767).round().astype(np.int16)


def _trim(x: np.ndarray, threshold: float = 1e-3) -> np.ndarray:
    """Drop leading and trailing near-silence."""
    loud = np.flatnonzero(np.abs(x) > threshold)
    return x[loud[0] : loud[-1] + 1] if len(loud) else x


def _noise(n: int, lowpass: bool, rng: np.random.Generator) -> np.ndarray:
    """White noise, or pink (1/f) noise, which like speech puts most energy at low frequencies."""
    white = rng.normal(0.0, 1.0, n)
    if not lowpass:
        return white
    spectrum = np.fft.rfft(white)
    freqs = np.fft.rfftfreq(n, 1.0 / SAMPLE_RATE)
    spectrum /= np.sqrt(np.maximum(freqs, 60.0))  # power ~ 1/f above 60 Hz
    return np.fft.irfft(spectrum, n)

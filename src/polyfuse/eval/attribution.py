"""Feature-level attribution inside each modality.

Images, audio and text: integrated gradients (Sundararajan, Taly & Yan, 2017, "Axiomatic
Attribution for Deep Networks", via captum) of the fused model's true-class probability (the
predicted value for regression) with respect to the modality's input, the other modalities'
embeddings held fixed: per pixel, per time frame, per token (on the token embeddings, since ids are
not differentiable). Tabular columns: permutation importance (Breiman, 2001), the metric drop when
one column is shuffled across the present rows. Each modality names its method in ``METHODS``
(``Modality.attribution``), so a new kind picks one (a time series: "frames") or adds one here.

Frozen pretrained encoders are differentiated through (their weights stay fixed); a modality known
only by cached embeddings, or whose encoder has no token embedding layer, is skipped with a note.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

import polyfuse.data.modalities  # noqa: F401  (registers the modalities)
from polyfuse.eval import figures
from polyfuse.eval.gradients import Attribution, integrated_gradients, sample_rows, skipped
from polyfuse.eval.permutation import permutation_importance
from polyfuse.eval.probe import Feature, Probe
from polyfuse.eval.tokens import text_attribution
from polyfuse.registry import MODALITIES

PROFILE_POINTS = 200  # longest audio profile written to JSON


@dataclass(frozen=True)
class Settings:
    """How hard to look: integration steps (gradients), the seed, shuffles per column (permutation)."""

    steps: int
    seed: int
    repeats: int


@dataclass(frozen=True)
class Method:
    """An attribution method a modality names (``Modality.attribution``)."""

    run: Callable[[Probe, str, np.ndarray, Settings, Any], Attribution]  # (probe, modality, rows, ..)
    gradients: bool  # integrated gradients (needs captum and a present row); else permutation
    figure: str  # the figure's name (and PNG stem) is f"{figure}_{modality}"
    draw: Callable[[Path, str, Attribution, str], Path | None]  # (PNG, modality, found, metric)


def attribute(
    probe: Probe,
    kinds: dict[str, str],
    processors: dict[str, Any],
    samples: int = 8,
    steps: int = 24,
    seed: int = 0,
    repeats: int = 3,
) -> dict[str, Attribution]:
    """Modality -> its attribution (or a skip note).

    Args:
        probe: The model and rows.
        kinds: Modality -> its kind, whose ``Modality.attribution`` names the method in ``METHODS``.
        processors: Modality -> the preprocessor's processor (column names, vocabulary).
        samples: Rows explained by integrated gradients per modality.
        steps: Integration steps.
        seed: Picks the rows and the permutations.
        repeats: Shuffles per tabular column.
    """
    out = {}
    for m in probe.modalities:
        if m not in probe.table.inputs:
            out[m] = skipped("only cached embeddings, no inputs to attribute")
            continue
        kind = kinds.get(m, "")
        method = method_of(kind)
        rows = sample_rows(probe.present[m].numpy(), samples, seed)
        try:
            if method is None:
                out[m] = skipped(f"no attribution method for {kind!r} inputs")
            elif method.gradients and len(rows) == 0:
                out[m] = skipped("no row has this modality")
            else:
                out[m] = method.run(probe, m, rows, Settings(steps, seed, repeats), processors[m])
        except (RuntimeError, TypeError, AttributeError) as err:  # e.g. an encoder that cuts gradients
            out[m] = skipped(f"attribution failed: {err}")
        if method is not None and method.gradients and "skipped" not in out[m].summary:
            # Gradients went through weights that training kept fixed: worth knowing when reading.
            out[m].summary["frozen_encoder"] = is_frozen(probe.model.encoders[m])
    return out


def is_frozen(encoder: nn.Module) -> bool:
    """A pretrained adapter with a frozen backbone, or an encoder without trainable parameters."""
    return bool(getattr(encoder, "frozen", False)) or not any(p.requires_grad for p in encoder.parameters())


def as_float_pixels(x: Tensor) -> Tensor:
    """uint8 0..255 -> float 0..1 (what image encoders do themselves); [n, H, W] gains a channel."""
    x = x.unsqueeze(1) if x.dim() == 3 else x
    return x.float() / 255.0 if x.dtype == torch.uint8 else x.float()


def image_attribution(probe: Probe, modality: str, rows: np.ndarray, steps: int) -> Attribution:
    """Per-pixel |IG| (summed over channels), averaged over the sampled rows, from a black image."""
    images = probe.table.inputs[modality]
    assert isinstance(images, Tensor)
    x = as_float_pixels(images[torch.as_tensor(rows)])  # [n, C, H, W] in 0..1
    attr, delta = integrated_gradients(probe, modality, rows, x, torch.zeros(len(rows)), steps)
    pixel = attr.abs().sum(dim=1)  # [n, H, W]
    mean_map = pixel.mean(dim=0).numpy()  # [H, W]
    h, w = mean_map.shape
    centre = mean_map[h // 4 : h - h // 4, w // 4 : w - w // 4].sum() / max(mean_map.sum(), 1e-12)
    summary = {
        "method": "integrated_gradients",
        "baseline": "black image",
        "samples": len(rows),
        "n_steps": steps,
        "shape": [h, w],
        "mean_abs": float(mean_map.mean()),
        "center_share": float(centre),
        "peak": [int(v) for v in np.unravel_index(int(mean_map.argmax()), mean_map.shape)],
        "convergence_delta": delta,
    }
    example = x[0].mean(dim=0).numpy()  # [H, W] grey view of the first sampled image
    return Attribution(summary, {"map": mean_map, "example": example, "example_map": pixel[0].numpy()})


def audio_attribution(probe: Probe, modality: str, rows: np.ndarray, steps: int) -> Attribution:
    """|IG| per time frame (summed over mel bins; waveforms cut into frames), from silence / zeros."""
    clips = probe.table.inputs[modality]
    assert isinstance(clips, Tensor)
    x = clips[torch.as_tensor(rows)].float()  # [n, n_mels, T] log-mels or [n, S] waveforms
    attr, delta = integrated_gradients(probe, modality, rows, x, torch.zeros(len(rows)), steps)
    magnitude = attr.abs().reshape(len(rows), -1, attr.shape[-1]) if attr.dim() > 2 else attr.abs()
    if magnitude.dim() == 3:  # [n, n_mels, T]
        profile, kind = magnitude.sum(dim=1).mean(dim=0).numpy(), "logmel"
        arrays = {"map": magnitude.mean(dim=0).numpy()}
    else:  # waveform [n, S]: ~100 frames
        hop = max(1, magnitude.shape[1] // 100)
        frames = magnitude[:, : hop * (magnitude.shape[1] // hop)].reshape(len(rows), -1, hop)
        profile, kind, arrays = frames.sum(dim=2).mean(dim=0).numpy(), "waveform", {}
    arrays["profile"] = profile
    shown = profile if len(profile) <= PROFILE_POINTS else _resample(profile, PROFILE_POINTS)
    summary = {
        "method": "integrated_gradients",
        "baseline": "zeros",
        "input": kind,
        "samples": len(rows),
        "n_steps": steps,
        "frames": len(profile),
        "peak_frame": int(profile.argmax()),
        "profile": [round(float(v), 6) for v in shown],
        "convergence_delta": delta,
    }
    return Attribution(summary, arrays)


def series_attribution(probe: Probe, modality: str, rows: np.ndarray, steps: int) -> Attribution:
    """|IG| per time step (summed over channels) of a normalised series, from zeros (the channel
    means); the validity mask is held fixed."""
    series = probe.table.inputs[modality]
    assert isinstance(series, dict)
    idx = torch.as_tensor(rows)
    x, valid = series["values"][idx].float(), series["valid"][idx]  # [n, C, L], [n, L]

    def encode(inputs: Tensor, valid_rows: Tensor) -> Feature:
        return probe.encode_rows(modality, {"values": inputs, "valid": valid_rows})

    attr, delta = integrated_gradients(probe, modality, rows, x, valid, steps, encode)
    magnitude = attr.abs()  # [n, C, L]
    profile = magnitude.sum(dim=1).mean(dim=0).numpy()  # [L]
    shown = profile if len(profile) <= PROFILE_POINTS else _resample(profile, PROFILE_POINTS)
    summary = {
        "method": "integrated_gradients",
        "baseline": "zeros (the channel means)",
        "samples": len(rows),
        "n_steps": steps,
        "steps": len(profile),
        "peak_step": int(profile.argmax()),
        "channel_share": [
            round(float(v), 6) for v in magnitude.sum(dim=(0, 2)) / magnitude.sum().clamp_min(1e-12)
        ],
        "profile": [round(float(v), 6) for v in shown],
        "convergence_delta": delta,
    }
    return Attribution(summary, {"profile": profile, "map": magnitude.mean(dim=0).numpy()})


def _resample(values: np.ndarray, points: int) -> np.ndarray:
    edges = np.linspace(0, len(values), points + 1).astype(int)
    return np.array([values[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])


def _token_bars(path: Path, modality: str, found: Attribution, metric: str) -> Path | None:
    if not found.summary.get("top_tokens"):
        return None
    tokens = {f"{t} ({n})": s for t, s, n in found.summary["top_tokens"]}
    return figures.bars(path, tokens, f"{modality}: token attributions", "mean IG")


def _importance_bars(path: Path, modality: str, found: Attribution, metric: str) -> Path:
    return figures.bars(path, found.summary, f"{modality}: permutation importance", f"{metric} drop")


METHODS = {  # what a modality's ``attribution`` names
    "pixels": Method(
        lambda p, m, rows, s, _: image_attribution(p, m, rows, s.steps),
        True,
        "ig",
        lambda path, _m, found, _metric: figures.image_map(path, found.arrays),
    ),
    "frames": Method(
        lambda p, m, rows, s, _: audio_attribution(p, m, rows, s.steps),
        True,
        "ig",
        lambda path, _m, found, _metric: figures.audio_profile(path, found.arrays),
    ),
    "steps": Method(  # the audio figure: a profile over time and a channel x step map
        lambda p, m, rows, s, _: series_attribution(p, m, rows, s.steps),
        True,
        "ig",
        lambda path, _m, found, _metric: figures.audio_profile(path, found.arrays),
    ),
    "tokens": Method(
        lambda p, m, rows, s, proc: text_attribution(p, m, rows, s.steps, proc), True, "ig", _token_bars
    ),
    "permutation": Method(
        lambda p, m, rows, s, proc: permutation_importance(p, m, proc, s.repeats, s.seed),
        False,
        "importance",
        _importance_bars,
    ),
}


def method_of(kind: str) -> Method | None:
    """The attribution method of a modality kind (None: unknown kind or none named)."""
    return METHODS.get(MODALITIES.get(kind).attribution) if kind in MODALITIES else None

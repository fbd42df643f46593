"""Feature-level attribution inside each modality.

Images, audio and text: integrated gradients (Sundararajan, Taly & Yan, 2017, "Axiomatic
Attribution for Deep Networks", via captum) of the fused model's true-class probability (the
predicted value for regression) with respect to the modality's input, the other modalities'
embeddings held fixed: per pixel, per time frame, per token (on the token embeddings, since ids are
not differentiable). Tabular columns: permutation importance (Breiman, 2001), the metric drop when
one column is shuffled across the present rows.

Frozen pretrained encoders are differentiated through (their weights stay fixed); a modality known
only by cached embeddings, or whose encoder has no token embedding layer, is skipped with a note.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.eval.gradients import Attribution, integrated_gradients, sample_rows, skipped
from polyfuse.eval.permutation import permutation_importance
from polyfuse.eval.probe import Probe
from polyfuse.eval.tokens import text_attribution

PROFILE_POINTS = 200  # longest audio profile written to JSON


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
        kinds: Modality -> "image", "audio", "text" or "tabular".
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
        rows = sample_rows(probe.present[m].numpy(), samples, seed)
        kind = kinds.get(m, "")
        try:
            if kind == "tabular":
                out[m] = permutation_importance(probe, m, processors[m], repeats, seed)
            elif len(rows) == 0:
                out[m] = skipped("no row has this modality")
            elif kind == "image":
                out[m] = image_attribution(probe, m, rows, steps)
            elif kind == "audio":
                out[m] = audio_attribution(probe, m, rows, steps)
            elif kind == "text":
                out[m] = text_attribution(probe, m, rows, steps, processors[m])
            else:
                out[m] = skipped(f"no attribution method for {kind!r} inputs")
        except (RuntimeError, TypeError, AttributeError) as err:  # e.g. an encoder that cuts gradients
            out[m] = skipped(f"attribution failed: {err}")
        if kind in ("image", "audio", "text") and "skipped" not in out[m].summary:
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


def _resample(values: np.ndarray, points: int) -> np.ndarray:
    edges = np.linspace(0, len(values), points + 1).astype(int)
    return np.array([values[a:b].mean() for a, b in zip(edges[:-1], edges[1:], strict=True)])

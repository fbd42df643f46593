"""Robustness curves: the metric as one modality goes missing on more rows, or gets noisier.

Drop: a seeded random share of the rows loses the modality (mask only; rows where it is absent in
the data stay absent), so rate 1.0 equals the coalition of all the other modalities.
Noise: Gaussian noise scaled by the input's standard deviation (over present rows) is added to the
modality's input tensor and the encoder is run again. Inputs without a continuous tensor (token
ids) and modalities known only by cached embeddings get the noise on what the fusion receives
(their embedding, or tokens), scaled by its std, instead.

The noisy inputs do not depend on the label (the generator is seeded per modality and level), so
the encoder's pass over them can be shared by several labels' curves (``NoisyFeatures``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyfuse.data.batch import Inputs
from polyfuse.eval.probe import Feature, Probe

DROP_RATES = (0.0, 0.25, 0.5, 0.75, 1.0)
NOISE_LEVELS = (0.0, 0.5, 1.0, 2.0)  # noise std in units of the input's std

# (modality, noise level) -> the fusion input of the noisy inputs: encoded once, read by every label.
NoisyFeatures = dict[tuple[str, float], Feature]


def drop_mask(present: Tensor, rate: float, order: np.ndarray) -> Tensor:
    """``present`` with the first ``round(rate * N)`` rows of ``order`` masked."""
    dropped = torch.as_tensor(order[: int(round(rate * len(order)))], dtype=torch.long)
    out = present.clone()
    out[dropped] = False
    return out


def drop_curve(probe: Probe, modality: str, rates: Sequence[float], seed: int) -> list[list[float]]:
    """[[rate, metric], ...] with ``modality`` masked on a ``rate`` share of the rows."""
    order = np.random.default_rng([seed, probe.modalities.index(modality)]).permutation(len(probe))
    curve = []
    for rate in rates:
        mask = dict(probe.present)
        mask[modality] = drop_mask(mask[modality], rate, order)
        curve.append([float(rate), probe.metric(probe.outputs(mask))])
    return curve


def noisy(x: Tensor, level: float, present: Tensor, generator: torch.Generator) -> Tensor | None:
    """``x`` plus N(0, (level * std)^2) noise on present rows, in x's dtype; None for ids.

    uint8 images are noised in 0..255 and rounded back; 0/1 indicator tensors are left alone.
    """
    if not can_noise(x):
        return None
    values = x.float()
    std = float(values[present].std()) if int(present.sum()) > 1 else 0.0
    noise = torch.randn(values.shape, generator=generator) * (level * std)
    out = torch.where(_rows_like(present, values), values + noise, values)
    if x.dtype == torch.uint8:
        return out.clamp(0, 255).round().to(torch.uint8)
    return out.to(x.dtype)


def can_noise(inputs: Inputs) -> bool:
    """Whether ``inputs`` hold a continuous tensor (floats or uint8 pixels, not 0/1 flags or ids)."""
    if isinstance(inputs, dict):
        return any(can_noise(v) for v in inputs.values())
    return (inputs.is_floating_point() or inputs.dtype == torch.uint8) and not _is_indicator(inputs)


def noisy_inputs(inputs: Inputs, level: float, present: Tensor, generator: torch.Generator) -> Inputs | None:
    """``noisy`` for a tensor or for every continuous tensor of a dict (e.g. tabular numbers)."""
    if isinstance(inputs, Tensor):
        return noisy(inputs, level, present, generator)
    out = dict(inputs)
    changed = False
    for key, value in inputs.items():
        new = noisy(value, level, present, generator)
        if new is not None:
            out[key], changed = new, True
    return out if changed else None


def noise_curve(
    probe: Probe, modality: str, levels: Sequence[float], seed: int, encoded: NoisyFeatures | None = None
) -> tuple[list[list[float]], str]:
    """[[level, metric], ...] and where the noise went ("input" or "embedding").

    ``encoded``: noisy inputs already encoded for this table and seed (by another label's curve);
    what this call encodes is added to it.
    """
    encoded = {} if encoded is None else encoded
    present = probe.present[modality]
    inputs = probe.table.inputs.get(modality)
    generator = torch.Generator()
    where = "input" if inputs is not None and can_noise(inputs) else "embedding"
    curve = []
    for level in levels:
        generator.manual_seed(seed + 1000 * probe.modalities.index(modality))  # the same draws at every level
        feature = probe.features[modality]
        if level > 0 and where == "input":
            key = (modality, float(level))
            if key not in encoded:
                noisy_in = noisy_inputs(inputs, level, present, generator)  # type: ignore[arg-type]
                encoded[key] = probe.encode(modality, noisy_in)  # type: ignore[arg-type]
            feature = encoded[key]
        elif level > 0:
            feature = Feature(noisy(feature.values, level, present, generator), feature.valid)  # type: ignore[arg-type]
        curve.append([float(level), probe.metric(probe.outputs(replace={modality: feature}))])
    return curve, where


def robustness(
    probe: Probe,
    rates: Sequence[float] = DROP_RATES,
    levels: Sequence[float] = NOISE_LEVELS,
    seed: int = 0,
    encoded: NoisyFeatures | None = None,
) -> dict[str, dict[str, Any]]:
    """Modality -> {"drop": [[rate, metric]], "noise": [[level, metric]], "noise_on": where}, where is
    "input" or "embedding". Pass the same ``encoded`` dict to several labels' calls on one table and
    seed to encode the noisy inputs once."""
    out: dict[str, dict[str, Any]] = {}
    for m in probe.modalities:
        noise, where = noise_curve(probe, m, levels, seed, encoded)
        out[m] = {"drop": drop_curve(probe, m, rates, seed), "noise": noise, "noise_on": where}
    return out


def _is_indicator(x: Tensor) -> bool:
    return bool(((x == 0) | (x == 1)).all()) and x.is_floating_point()


def _rows_like(present: Tensor, values: Tensor) -> Tensor:
    return present.reshape(-1, *([1] * (values.dim() - 1)))  # [N, 1, ...] broadcastable

"""Integrated gradients (Sundararajan, Taly & Yan, 2017, "Axiomatic Attribution for Deep Networks")
of the fused model's true-class probability (the value for regression) with respect to one
modality's input, through captum, the other modalities' embeddings held fixed."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.eval.probe import Feature, Probe
from polyfuse.extras import require
from polyfuse.models.ensemble import encoder_units


@dataclass
class Attribution:
    summary: dict[str, Any]  # JSON-ready: explain.json["features"][modality]
    arrays: dict[str, np.ndarray] = field(default_factory=dict)  # maps and profiles for the figures


def require_captum() -> Any:
    return require("captum.attr", "explain", "feature attributions")


def skipped(reason: str) -> Attribution:
    return Attribution({"skipped": reason})


def sample_rows(present: np.ndarray, samples: int, seed: int) -> np.ndarray:
    """Up to ``samples`` row positions where the modality is present, seeded, in table order."""
    rows = np.flatnonzero(present)
    if len(rows) > samples:
        rows = np.sort(np.random.default_rng(seed).choice(rows, samples, replace=False))
    return rows


@contextmanager
def differentiable(encoder: nn.Module) -> Iterator[None]:
    """Let gradients flow through a frozen pretrained backbone (its weights still do not change);
    an ensemble's stacked encoder: through each of its units."""
    frozen = [unit for unit in encoder_units(encoder) if getattr(unit, "frozen", None)]
    for unit in frozen:
        unit.frozen = False  # type: ignore[assignment]
    try:
        yield
    finally:
        for unit in frozen:
            unit.frozen = True  # type: ignore[assignment]


def score_tensor(task: str, y: Tensor, output: Tensor) -> Tensor:
    """Torch twin of ``probe.true_score``: [B] true-class probability, or the value."""
    if task == "multiclass":
        return output.gather(1, y.long().reshape(-1, 1))[:, 0]
    if task == "binary":
        return torch.where(y.reshape(-1) == 1, output, 1 - output)
    if task == "multilabel":
        return torch.where(y == 1, output, 1 - output).mean(dim=1)
    return output.reshape(output.shape[0], -1)[:, 0]


def integrated_gradients(
    probe: Probe,
    modality: str,
    rows: np.ndarray,
    x: Tensor,
    aux: Tensor,
    steps: int,
    encode: Callable[[Tensor, Tensor], Feature] | None = None,
) -> tuple[Tensor, float]:
    """IG of the fused true-class score w.r.t. ``x`` (from a zero baseline); (attributions, mean
    |convergence delta|).

    Args:
        probe: The model and rows.
        modality: The modality whose input ``x`` is.
        rows: Row positions of ``x``.
        x: The input to attribute, [n, ...] float.
        aux: Per-row extra tensor the encoder needs (token ids), repeated along with ``x``.
        steps: Integration steps.
        encode: (x, aux) -> the modality's fusion input; default: its encoder on ``x``.
    """
    attr_module = require_captum()
    names, idx = probe.modalities, torch.as_tensor(rows, dtype=torch.long)
    others = [m for m in names if m != modality]
    held = [probe.features[m].take(idx) for m in others]
    encode = encode or (lambda inputs, _: probe.encode_rows(modality, inputs))

    def forward(inputs: Tensor, aux_rows: Tensor, mask: Tensor, y: Tensor, *flat: Tensor) -> Tensor:
        parts = iter(flat)  # each other modality's values, then its validity for tokens
        features = {
            m: Feature(next(parts), next(parts) if f.valid is not None else None)
            for m, f in zip(others, held, strict=True)
        }
        features[modality] = encode(inputs, aux_rows)
        out = probe.fuse(features, {m: mask[:, i] for i, m in enumerate(names)})
        return score_tensor(probe.task, y, out)

    mask = torch.stack([probe.present[m][idx] for m in names], dim=1)  # [n, M]
    y = torch.as_tensor(probe.targets[rows])
    flat = [t for f in held for t in ((f.values,) if f.valid is None else (f.values, f.valid))]
    ig = attr_module.IntegratedGradients(forward)
    with differentiable(probe.model.encoders[modality]):
        attr, delta = ig.attribute(
            x,
            baselines=torch.zeros_like(x),
            additional_forward_args=(aux, mask, y, *flat),
            n_steps=steps,
            return_convergence_delta=True,
        )
    return attr.detach().float(), float(delta.abs().mean())

"""Where fusion fails: metric by presence pattern, fixes and breaks against each modality alone,
the confusion matrix, and the fusion's own modality weights."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from polyfuse.config import plain
from polyfuse.eval.metrics import compute_metrics
from polyfuse.eval.probe import Probe, is_right

EXAMPLES = 10  # row ids listed per fixed / broken group
# Regression has no "right": a row counts as right when |error| <= this share of the target's std.
REGRESSION_TOLERANCE = 0.25


def presence_patterns(probe: Probe, output: np.ndarray) -> list[dict[str, Any]]:
    """[{"present": [...], "rows": n, "metric": m}] per pattern of modalities present in the data."""
    names = probe.modalities
    here = torch.stack([probe.present[m] for m in names], dim=1).numpy()  # [N, M]
    patterns, inverse = np.unique(here, axis=0, return_inverse=True)
    out = []
    for k, pattern in enumerate(patterns):
        rows = np.flatnonzero(inverse.reshape(-1) == k)
        present = [m for m, p in zip(names, pattern, strict=True) if p]
        out.append({"present": present, "rows": int(len(rows)), "metric": probe.metric(output, rows)})
    return sorted(out, key=lambda p: -p["rows"])


def tolerance(probe: Probe) -> float:
    """Regression: the |error| under which a row counts as right; 0 otherwise (unused)."""
    return REGRESSION_TOLERANCE * float(np.std(probe.targets)) if probe.task == "regression" else 0.0


def fix_break(
    probe: Probe, fused: np.ndarray, singles: dict[str, np.ndarray], examples: int = EXAMPLES
) -> dict[str, dict[str, Any]]:
    """Per modality: rows the fused model gets right that the model with only that modality present
    gets wrong (fixed), the reverse (broken), and rows both get right / wrong.

    Args:
        probe: The model and rows.
        fused: Outputs with every modality present (as in the data).
        singles: Modality -> outputs with only that modality present (masking).
        examples: Row ids listed per group.
    """
    tol = tolerance(probe)
    right = is_right(probe.task, probe.targets, fused, tol)
    ids = probe.table.row_ids or list(range(len(probe)))
    out = {}
    for m, single in singles.items():
        alone = is_right(probe.task, probe.targets, single, tol)
        fixed, broken = np.flatnonzero(right & ~alone), np.flatnonzero(~right & alone)
        out[m] = {
            "fixed": int(len(fixed)),
            "broken": int(len(broken)),
            "both_right": int((right & alone).sum()),
            "both_wrong": int((~right & ~alone).sum()),
            "examples_fixed": [plain(ids[i]) for i in fixed[:examples]],
            "examples_broken": [plain(ids[i]) for i in broken[:examples]],
        }
    return out


def confusion(probe: Probe, output: np.ndarray) -> dict[str, Any] | None:
    """{"classes": [...], "matrix": [[...]]} (rows: true class, columns: predicted); None unless
    the label is multiclass or binary."""
    if probe.task not in ("multiclass", "binary"):
        return None
    matrix = compute_metrics(probe.task, probe.targets, output)["confusion_matrix"]
    return {"classes": [plain(c) for c in probe.spec.classes], "matrix": matrix}


def read_modality_weights(fusion: nn.Module, names: list[str]) -> dict[str, Tensor] | None:
    """The fusion's modality weights of its last forward pass as modality -> [B] or [] tensors.

    Reads ``modality_weights()`` or else ``cls_attention()``; each may return a dict, a [M] tensor
    (sorted modality order, the same for every row) or a [B, M] tensor. None when the fusion has
    neither, or returns None.
    """
    for method in ("modality_weights", "cls_attention"):
        read = getattr(fusion, method, None)
        if not callable(read):
            continue
        try:
            weights = read()
        except NotImplementedError:
            continue
        if weights is None:
            return None
        if isinstance(weights, dict):
            return {m: w.detach().float() for m, w in weights.items()}
        order = list(getattr(fusion, "names", sorted(names)))
        return {m: weights.detach().float()[..., i] for i, m in enumerate(order)}
    return None


def attention_weights(probe: Probe) -> dict[str, float] | None:
    """Modality -> mean fusion weight over the rows where it is present (all modalities as in the data)."""
    sums = dict.fromkeys(probe.modalities, 0.0)
    counts = dict.fromkeys(probe.modalities, 0)
    found = False
    present = probe.present

    def collect(fusion: nn.Module, rows: Tensor) -> None:
        nonlocal found
        weights = read_modality_weights(fusion, probe.modalities)
        if weights is None:
            return
        found = True
        for m, w in weights.items():
            if m not in sums:
                continue
            here = present[m][rows]
            w = w.expand(len(rows)) if w.dim() == 0 else w.reshape(len(rows))
            sums[m] += float(w[here].sum())
            counts[m] += int(here.sum())

    probe.outputs(after_batch=collect)
    if not found:
        return None
    return {m: sums[m] / counts[m] if counts[m] else float("nan") for m in probe.modalities}

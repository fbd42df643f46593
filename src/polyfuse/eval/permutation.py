"""Permutation importance of tabular columns (Breiman, 2001, "Random Forests"): how much the metric
drops when one column is shuffled across the rows, in the preprocessed tensors.

Which tensor slices make up a column is the processor's to say (``column_slices``): for the tabular
processor a numeric column is its standardised value and its missing flag (moved together), a
categorical column its code.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from polyfuse.eval.gradients import Attribution, skipped
from polyfuse.eval.probe import Probe


def column_slices(processor: Any) -> list[tuple[str, list[tuple[str, int]]]]:
    """[(column, [(tensor key, index), ...])] of a processor's columns; none if it cannot say."""
    slices = getattr(processor, "column_slices", None)
    return list(slices()) if callable(slices) else []


def permute_columns(
    inputs: dict[str, Tensor], parts: list[tuple[str, int]], rows: Tensor, order: Tensor
) -> dict[str, Tensor]:
    """A copy of ``inputs`` where the given slices take, at ``rows``, the values of rows ``order``."""
    out = dict(inputs)
    for key, j in parts:
        if key not in inputs:
            continue
        column = inputs[key].clone()
        column[rows, j] = inputs[key][order, j]
        out[key] = column
    return out


def permutation_importance(
    probe: Probe, modality: str, processor: Any, repeats: int = 3, seed: int = 0
) -> Attribution:
    """Column -> mean metric drop over ``repeats`` shuffles among the rows where the modality is present."""
    inputs = probe.table.inputs[modality]
    slices = column_slices(processor)
    if not isinstance(inputs, dict) or not slices:
        return skipped("not a tabular processor's tensors")
    rows = np.flatnonzero(probe.present[modality].numpy())
    if len(rows) < 2:
        return skipped("fewer than two rows have this modality")
    base = probe.metric(probe.outputs())
    rng = np.random.default_rng(seed)
    where = torch.as_tensor(rows, dtype=torch.long)
    importance = {}
    for column, parts in slices:
        drops = []
        for _ in range(repeats):
            order = torch.as_tensor(rng.permutation(rows), dtype=torch.long)
            feature = probe.encode(modality, permute_columns(inputs, parts, where, order))
            drops.append(base - probe.metric(probe.outputs(replace={modality: feature})))
        importance[column] = float(np.mean(drops))
    return Attribution(importance)

"""Training-time augmentation: each modality's own (``Modality.augment``), applied to a training
batch when ``TrainConfig.augment`` is on. Frozen encoders' cached outputs are left as they are.

What each modality does is in its file; today the time series' random time warps (a smooth clock
change of up to 20%, so a model learns what a drifting clock does not change).
"""

from __future__ import annotations

import dataclasses

import torch

from polyfuse.data.batch import Batch
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import MODALITIES


def augment_batch(batch: Batch, model: MultimodalModel, seed: int, step: int) -> Batch:
    """``batch`` with every modality's inputs augmented by its kind (same seed and step, same batch)."""
    generator = torch.Generator().manual_seed(seed * 1_000_003 + step)
    inputs = dict(batch.inputs)
    for name, values in batch.inputs.items():
        kind = getattr(model.encoders[name], "modality", None) if name in model.encoders else None
        if kind in MODALITIES.names() and name not in batch.cached:
            inputs[name] = MODALITIES.get(kind).augment(values, generator)
    return dataclasses.replace(batch, inputs=inputs, rows=None)  # no longer the table's rows

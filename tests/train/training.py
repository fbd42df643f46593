"""Helpers of tests/train: everything ``train_model`` takes, for a table."""

from __future__ import annotations

from pathlib import Path

import torch

from polyfuse.config import FusionConfig, ModelConfig
from polyfuse.fitting import FitRequest, prepare
from polyfuse.losses import default_loss
from polyfuse.models.build import build_model
from polyfuse.registry import LOSSES


def prepared(frame, label: str):
    """Everything ``train_model`` takes, for ``frame``: model, heads, losses, tables, schema."""
    prep = prepare(frame, Path.cwd(), FitRequest(label=[label], encoders={"text": "text_bag"}))
    torch.manual_seed(0)
    model = build_model(ModelConfig(prep.encoders, FusionConfig(), prep.heads), prep.pre)
    losses = {h.label: LOSSES.build(default_loss(h.task)) for h in prep.heads}
    return model, prep.heads, losses, prep.tables, prep.schema

"""Imbalance diagnostics: linear probes on each modality's embedding inside the fused model against
its single-modality model, and gradient shares; ``fit`` keeps both in metrics.json."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from benchmarks.balance.tables import dominated

import polyfuse
from polyfuse.config import FusionConfig, ModelConfig, TrainConfig
from polyfuse.eval.imbalance import grad_shares, probe_gaps, probe_score
from polyfuse.fitting import FitRequest, prepare
from polyfuse.losses import default_loss
from polyfuse.models.build import build_model
from polyfuse.registry import LOSSES
from polyfuse.train.loop import train_model


@pytest.fixture(scope="module")
def prep():
    return prepare(dominated(400), Path.cwd(), FitRequest(label=["kind"], encoders={"text": "text_bag"}))


def test_a_probe_reads_a_label_that_is_in_the_features_and_not_one_that_is_not(prep):
    tables, rng = prep.tables, np.random.default_rng(0)
    y = {s: tables[s].targets["kind"].numpy() for s in ("train", "val")}
    planted = {s: np.eye(3)[y[s]] + rng.normal(0, 0.3, (len(y[s]), 3)) for s in y}
    noise = {s: rng.normal(0, 1, (len(y[s]), 8)) for s in y}
    labels = prep.schema.labels
    assert probe_score(labels, (planted["train"], tables["train"]), (planted["val"], tables["val"])) > 0.95
    assert probe_score(labels, (noise["train"], tables["train"]), (noise["val"], tables["val"])) < 0.5


def test_an_encoder_that_learned_nothing_shows_a_probe_gap(prep):
    torch.manual_seed(0)
    fused = build_model(ModelConfig(prep.encoders, FusionConfig(), prep.heads), prep.pre)
    for p in fused.encoders["tabular"].parameters():  # its embedding is now the same for every row
        torch.nn.init.zeros_(p)
    single = build_model(
        ModelConfig({"tabular": prep.encoders["tabular"]}, FusionConfig(), prep.heads), prep.pre
    )
    only = {k: t.select(["tabular"]) for k, t in prep.tables.items()}
    losses = {h.label: LOSSES.build(default_loss(h.task)) for h in prep.heads}
    cfg = TrainConfig(max_epochs=8, patience=8, progress=False, accelerator="cpu")
    train_model(single, prep.heads, losses, only["train"], only["val"], cfg)
    gaps = probe_gaps(prep.schema.labels, fused, {"tabular": single}, prep.tables)["tabular"]
    # x1 = class + N(0, 0.8) puts about 2 rows in 3 right; a constant embedding only the majority class.
    assert gaps["single"] > 0.6 and gaps["fused"] < 0.45 and gaps["gap"] > 0.2, gaps


def test_grad_shares_are_read_from_the_history_in_epoch_order():
    history = [{"epoch": 0, "grad_share_a": 0.25, "grad_share_b": 0.75}, {"epoch": 1, "grad_share_a": 0.5}]
    assert grad_shares(history) == {"a": [0.25, 0.5], "b": [0.75]}


def test_fit_keeps_probes_and_gradient_shares_in_its_metrics_and_explain_repeats_them():
    frame = dominated(300)
    model = polyfuse.fit(frame, "kind", encoders={"text": "text_bag"}, max_epochs=3, verbose=False)
    found = model.metrics["imbalance"]
    assert set(found["probe"]) == {"text", "tabular"}
    for m, probe in found["probe"].items():
        assert 0 <= probe["fused"] <= 1 and 0 <= probe["single"] <= 1, m
        assert probe["gap"] == pytest.approx(probe["single"] - probe["fused"], abs=1e-5)
    epochs = model.metrics["fused"]["epochs"]
    shares = np.array([found["grad_share"]["text"], found["grad_share"]["tabular"]])  # [M, epochs]
    assert shares.shape == (2, epochs) and np.allclose(shares.sum(axis=0), 1.0, atol=1e-5)
    assert "modality_grad_share" not in model.train_config.callbacks  # watched, not saved as asked
    assert model.explain(frame.iloc[:60], samples=2, steps=4)["imbalance"] == found

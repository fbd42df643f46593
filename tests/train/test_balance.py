"""Modality balancing (``BALANCERS``, ``TrainConfig.balance``): every strategy's loss reaches every
encoder, aux heads give a dominated modality more of the gradient, and nothing of them is saved."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from benchmarks.balance.tables import dominated

import polyfuse
import polyfuse.train  # noqa: F401  (registers the strategies before BALANCERS.names() parametrizes)
from polyfuse.config import FusionConfig, ModelConfig
from polyfuse.fitting import FitRequest, prepare
from polyfuse.losses import default_loss
from polyfuse.models.build import build_model
from polyfuse.registry import BALANCERS, LOSSES


@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
@pytest.mark.parametrize("name", BALANCERS.names())
def test_every_balancer_loss_is_finite_and_reaches_every_encoder(name, fusion):
    prep = prepare(dominated(60), Path.cwd(), FitRequest(label=["kind"], encoders={"text": "text_bag"}))
    torch.manual_seed(0)
    model = build_model(ModelConfig(prep.encoders, FusionConfig(fusion), prep.heads), prep.pre)
    losses = {h.label: LOSSES.build(default_loss(h.task)) for h in prep.heads}
    balancer = BALANCERS.get(name)(model, prep.heads, losses)
    if balancer is None:
        assert name == "none"
        return
    batch = prep.tables["train"].take(list(range(16)))
    inputs, valid = model.fusion_inputs(batch)
    assert (valid is not None) == (fusion == "cross_attention")
    for value in inputs.values():
        if value.requires_grad:
            value.retain_grad()
    loss = balancer.loss(inputs, valid, batch.mask, batch.targets)
    assert loss.dim() == 0 and torch.isfinite(loss)
    loss.backward()
    for name, value in inputs.items():  # a token-level fusion may read raw tokens (tabular columns)
        assert not value.requires_grad or float(value.grad.abs().sum()) > 0, name
    if fusion == "concat":  # embeddings: every encoder learns from its own head
        for encoder in model.encoders.values():
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())


def test_aux_gives_the_dominated_modality_more_of_the_gradient():
    from benchmarks.balance.grad_share import share

    seeds = range(3)
    plain = np.mean([share("none", seed, epochs=6) for seed in seeds])
    balanced = np.mean([share("aux", seed, epochs=6) for seed in seeds])
    # benchmarks/results/balance_grad_share.csv, seeds 0-2: 0.225 without balancing, 0.322 with aux
    assert balanced > 1.25 * plain, (plain, balanced)


def test_aux_heads_are_not_saved_and_the_choice_is_recorded(tmp_path):
    frame = dominated(120)
    options = {"encoders": {"text": "text_bag"}, "max_epochs": 2, "baselines": False, "verbose": False}
    plain = polyfuse.fit(frame, "kind", **options)
    balanced = polyfuse.fit(frame, "kind", balance="aux", out=tmp_path / "m", **options)
    assert balanced.metrics["balance"] == "aux" and plain.metrics["balance"] == "none"
    assert balanced.model.state_dict().keys() == plain.model.state_dict().keys()
    again = polyfuse.load(tmp_path / "m")
    assert again.train_config.balance == "aux"
    pd.testing.assert_frame_equal(again.predict_proba(frame), balanced.predict_proba(frame))


def test_an_unknown_strategy_fails_before_any_work():
    message = "unknown balancing strategy 'ogm'; known: aux, none"
    with pytest.raises(KeyError, match=f"^[\"']{re.escape(message)}[\"']$"):  # the whole message
        polyfuse.fit(dominated(30), "kind", balance="ogm", verbose=False)

"""Modality balancing (``BALANCERS``, ``TrainConfig.balance``): every strategy's training step reaches
every encoder, aux heads and OGM-GE give a dominated modality more of the gradient, OGM-GE slows only
the dominant modality, G-Blend's weights follow G / O^2 on held-out training rows, and nothing of the
strategies is saved."""

from __future__ import annotations

import math
import re
from functools import cache
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from benchmarks.balance.tables import dominated
from lightning.pytorch.callbacks import Callback
from training import prepared

import polyfuse
import polyfuse.train  # noqa: F401  (registers the strategies before BALANCERS.names() parametrizes)
from polyfuse.config import FusionConfig, ModelConfig, TrainConfig
from polyfuse.fitting import FitRequest, prepare
from polyfuse.losses import default_loss
from polyfuse.models.build import build_model
from polyfuse.registry import BALANCERS, LOSSES
from polyfuse.train.balancers.gblend import HeadLosses, blend_weights
from polyfuse.train.balancers.ogm_ge import GradientModulation, modulation_coefficients
from polyfuse.train.loop import train_model
from polyfuse.train.module import summed_loss


@pytest.mark.parametrize("fusion", ["concat", "cross_attention"])
@pytest.mark.parametrize("name", BALANCERS.names())
def test_every_balancer_step_is_finite_and_reaches_every_encoder(name, fusion):
    prep = prepare(dominated(60), Path.cwd(), FitRequest(label=["kind"], encoders={"text": "text_bag"}))
    torch.manual_seed(0)
    model = build_model(ModelConfig(prep.encoders, FusionConfig(fusion), prep.heads), prep.pre)
    losses = {h.label: LOSSES.build(default_loss(h.task)) for h in prep.heads}
    balancer = BALANCERS.get(name)(model, prep.heads, losses)
    if balancer is None:
        assert name == "none"
        return
    assert not {id(p) for p in balancer.parameters()} & {id(p) for p in model.parameters()}  # not saved
    batch = prep.tables["train"].take(list(range(16)))
    inputs, valid = model.fusion_inputs(batch)
    assert (valid is not None) == (fusion == "cross_attention")
    learned = [value for value in inputs.values() if value.requires_grad]  # a token-level fusion may
    extra = balancer.loss(inputs, valid, batch.mask, batch.targets)  # read raw tokens (tabular columns)
    assert extra.dim() == 0 and torch.isfinite(extra)
    if extra.requires_grad:  # a loss of its own (unimodal heads) reaches every modality by itself
        grads = torch.autograd.grad(extra, learned, retain_graph=True)
        assert all(float(g.abs().sum()) > 0 for g in grads)
    fused = summed_loss(losses, model.classify(model.fuse_inputs(inputs, valid, batch.mask)), batch.targets)
    (balancer.fused_weight * fused + extra).backward()
    balancer.after_backward(model, 0)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    if fusion == "concat":  # embeddings: every encoder learns
        for encoder in model.encoders.values():
            assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in encoder.parameters())
    assert all(np.isfinite(value) for value in balancer.epoch_end(model, 0).values())


@cache
def mean_share(balance: str) -> float:
    """The tabular encoder's gradient share on ``dominated``, mean over seeds 0-2, 6 epochs each."""
    from benchmarks.balance.grad_share import share

    return float(np.mean([share(balance, seed, epochs=6) for seed in range(3)]))


# Measured (benchmarks.balance.grad_share.share, seeds 0-2, 6 epochs, this machine): none 0.225,
# aux 0.322 (benchmarks/results/balance_grad_share.csv), ogm_ge 0.247 (per seed 0.214, 0.231, 0.297
# against none's 0.185, 0.224, 0.266). ogm_ge's share counts its noise, which is added to every
# encoder: without it (OGM alone) the share was 0.354.
@pytest.mark.parametrize(("name", "margin"), [("aux", 1.25), ("ogm_ge", 1.05)])
def test_balancing_gives_the_dominated_modality_more_of_the_gradient(name, margin):
    plain, balanced = mean_share("none"), mean_share(name)
    assert balanced > margin * plain, (plain, balanced)


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
    message = "unknown balancing strategy 'ogm'; known: aux, gblend, none, ogm_ge"
    with pytest.raises(KeyError, match=f"^[\"']{re.escape(message)}[\"']$"):  # the whole message
        polyfuse.fit(dominated(30), "kind", balance="ogm", verbose=False)


# --- ogm_ge ----------------------------------------------------------------------------------------


def test_ogm_ge_slows_only_the_modality_that_scores_above_the_others():
    def coefficients(scores: dict[str, float]) -> dict[str, float]:
        k = modulation_coefficients({name: torch.tensor(s) for name, s in scores.items()}, alpha=0.8)
        return {name: float(value) for name, value in k.items()}

    k = coefficients({"text": 0.9, "tabular": 0.5})  # text scores 1.8 times tabular
    assert k == {"text": pytest.approx(1 - math.tanh(0.8 * 0.8)), "tabular": 1.0}  # 0.435, 1
    k = coefficients({"a": 0.9, "b": 0.5, "c": 0.4})  # a: 0.9 / mean(0.5, 0.4) = 2; b, c below 1
    assert k == {"a": pytest.approx(1 - math.tanh(0.8)), "b": 1.0, "c": 1.0}  # 0.336
    assert coefficients({"a": 0.6, "b": 0.6}) == {"a": 1.0, "b": 1.0}
    assert coefficients({"a": 0.9}) == {"a": 1.0}  # one modality in the batch: nothing to balance


def test_ogm_ge_slows_the_planted_dominant_modality_in_training():
    model, heads, losses, tables, _ = prepared(dominated(seed=0), "kind")
    cfg = TrainConfig(max_epochs=3, patience=3, balance="ogm_ge", progress=False, accelerator="cpu")
    history = train_model(model, heads, losses, tables["train"], tables["val"], cfg).history
    # Measured: text 0.796, 0.438, 0.432 over the three epochs; tabular 0.985, 1.0, 1.0.
    assert [row["ogm_coeff_text"] < 0.6 for row in history] == [False, True, True]
    assert [row["ogm_coeff_tabular"] for row in history[1:]] == [1.0, 1.0]


def test_ogm_ge_leaves_gradients_alone_after_modulation_ends():
    model, heads, losses, tables, _ = prepared(dominated(60), "kind")
    balancer = GradientModulation(ends=2)
    batch = tables["train"].take(list(range(16)))

    def step_grads(epoch: int) -> list[torch.Tensor]:
        model.zero_grad()
        torch.manual_seed(0)
        inputs, valid = model.fusion_inputs(batch)
        logits = model.classify(model.fuse_inputs(inputs, valid, batch.mask))
        (
            summed_loss(losses, logits, batch.targets)
            + balancer.loss(inputs, valid, batch.mask, batch.targets)
        ).backward()
        balancer.after_backward(model, epoch)
        return [p.grad.clone() for p in model.encoders.parameters() if p.grad is not None]

    model.eval()  # no dropout: the same gradients each time
    plain = step_grads(3)  # epoch 3 > ends: untouched
    modulated = step_grads(2)
    unmodulated_again = step_grads(3)
    assert all(torch.equal(a, b) for a, b in zip(plain, unmodulated_again, strict=True))
    assert not all(torch.equal(a, b) for a, b in zip(plain, modulated, strict=True))


# --- gblend ----------------------------------------------------------------------------------------


def test_gblend_weights_follow_generalisation_over_overfitting_squared():
    before = {"fused": HeadLosses(1.0, 1.1), "text": HeadLosses(1.0, 1.0), "tabular": HeadLosses(1.0, 1.0)}
    after = {"fused": HeadLosses(0.5, 0.9), "text": HeadLosses(0.8, 0.85), "tabular": HeadLosses(0.9, 1.05)}
    # G = held-out decrease, O = change of (held-out - train): fused G 0.2, O 0.3 -> 0.2 / 0.09 = 2.22;
    # text G 0.15, O 0.05 -> 60; tabular's held-out loss rose (G -0.05) -> 0.
    weights = blend_weights(before, after)
    assert weights == {
        "fused": pytest.approx(2.2222 / 62.2222, abs=1e-4),  # 0.0357
        "text": pytest.approx(60 / 62.2222, abs=1e-4),  # 0.9643
        "tabular": 0.0,
    }
    worse = {k: HeadLosses(v.train, v.held_out + 1) for k, v in before.items()}
    assert blend_weights(before, worse) is None  # no head generalises better: the weights stay


def test_gblend_estimates_on_held_out_training_rows_it_never_trains_on():
    model, heads, losses, tables, _ = prepared(dominated(seed=0), "kind")
    seen = Seen()
    cfg = TrainConfig(max_epochs=3, patience=3, balance="gblend", progress=False, accelerator="cpu")
    history = train_model(model, heads, losses, tables["train"], tables["val"], cfg, callbacks=[seen]).history
    train_rows = rows_of(tables["train"].inputs)
    assert len(seen.held_out) == round(0.1 * len(train_rows)) == 21  # of 210
    assert seen.held_out.isdisjoint(seen.trained) and seen.held_out | seen.trained == train_rows
    assert seen.held_out_ids.isdisjoint(tables["val"].row_ids)  # never the validation split
    weights = [{k: v for k, v in row.items() if k.startswith("blend_")} for row in history]
    assert all(set(w) == {"blend_text", "blend_tabular", "blend_fused"} for w in weights)
    assert all(sum(w.values()) == pytest.approx(1.0) for w in weights)
    assert weights[0] == weights[1] == {k: pytest.approx(1 / 3) for k in weights[0]}  # equal until the
    assert weights[2] != weights[1]  # first estimate, after epoch 2 (measured 0.275, 0.701, 0.024)


class Seen(Callback):
    """Records the tabular inputs of every training batch and of the strategy's held-out rows."""

    def __init__(self) -> None:
        self.trained: set[tuple[float, ...]] = set()
        self.held_out: set[tuple[float, ...]] = set()
        self.held_out_ids: set[object] = set()

    def on_train_start(self, trainer, pl_module) -> None:
        _, held_out = pl_module.balancer.rows
        self.held_out, self.held_out_ids = rows_of(held_out.inputs), set(held_out.row_ids)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.trained |= rows_of(batch.inputs)


def rows_of(inputs) -> set[tuple[float, ...]]:
    """Each row's numeric tabular inputs (x1, x2: continuous, so distinct rows differ)."""
    return {tuple(row) for row in inputs["tabular"]["numeric"].tolist()}

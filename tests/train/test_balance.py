"""Modality balancing (``BALANCERS``, ``TrainConfig.balance``): every strategy's training step reaches
every encoder, aux heads and OGM-GE give a dominated modality more of the gradient, OGM-GE slows only
the dominant modality, G-Blend's weights follow G / O^2 on held-out training rows, the Uni-Modal
Teacher keeps each encoder near its single-modality model, and nothing of the strategies is saved."""

from __future__ import annotations

import dataclasses
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
from polyfuse.config import FusionConfig, HeadConfig, ModelConfig, TrainConfig
from polyfuse.eval.imbalance import embeddings
from polyfuse.fitting import FitRequest, prepare, train_and_test
from polyfuse.losses import default_loss
from polyfuse.models.build import build_model
from polyfuse.registry import BALANCERS, LOSSES
from polyfuse.train.balancers.base import pooled
from polyfuse.train.balancers.gblend import HeadLosses, blend_weights
from polyfuse.train.balancers.ogm_ge import GradientModulation, modulation_coefficients
from polyfuse.train.balancers.pmr import (
    ClassMeans,
    PrototypicalRebalance,
    entropy_coefficient,
    imbalance_ratios,
    modality_terms,
    pce_coefficient,
    prototype_log_probs,
)
from polyfuse.train.balancers.umt import relative_distance
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
    if balancer.wants_teachers:  # untrained single-modality teachers; the students then move off them
        balancer.use_teachers(model, single_models(prep, seed=1), prep.tables["train"])
        with torch.no_grad():
            for p in model.encoders.parameters():
                p.add_(0.1 * torch.randn_like(p))
    balancer.see_batch(batch)
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


def single_models(prep, seed: int) -> dict:
    """Modality -> an untrained single-modality model (concat fusion) of ``prep``'s encoders."""
    torch.manual_seed(seed)
    return {
        m: build_model(ModelConfig({m: enc}, FusionConfig("concat"), prep.heads), prep.pre)
        for m, enc in prep.encoders.items()
    }


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
    message = "unknown balancing strategy 'ogm'; known: aux, gblend, none, ogm_ge, pmr, umt"
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


# --- pmr -------------------------------------------------------------------------------------------


def test_pmr_coefficients_help_the_slow_modality_and_temper_the_dominant_one():
    def ratios(scores: dict[str, float]) -> dict[str, float]:
        rho = imbalance_ratios({name: torch.tensor(s) for name, s in scores.items()})
        return {name: float(value) for name, value in rho.items()}

    assert ratios({"a": 0.6, "b": 0.3}) == {"a": pytest.approx(2.0), "b": pytest.approx(0.5)}  # s_a / s_v
    # a: 0.9 / mean(0.5, 0.4) = 2; b: 0.5 / 0.65 = 0.769; c: 0.4 / 0.7 = 0.571
    assert ratios({"a": 0.9, "b": 0.5, "c": 0.4}) == pytest.approx(
        {"a": 2.0, "b": 0.76923, "c": 0.57143}, abs=1e-5
    )
    assert ratios({"a": 0.9}) == {"a": 1.0}  # one modality with a score: nothing to balance

    def beta(rho: float) -> float:
        return float(pce_coefficient(torch.tensor(rho), alpha=1.0))

    def entropy_weight(rho: float) -> float:
        return float(entropy_coefficient(torch.tensor(rho), mu=0.01))

    # alpha clip(1 / rho - 1, 0, 1) for the slow modality, mu clip(rho - 1, 0, 1) for the dominant one
    assert [beta(r) for r in (0.5714, 0.76923, 0.8, 0.5, 0.2, 1.0, 2.0)] == pytest.approx(
        [0.75, 0.3, 0.25, 1.0, 1.0, 0.0, 0.0], abs=1e-4
    )
    assert [entropy_weight(r) for r in (1.25, 2.0, 3.0, 1.0, 0.5)] == pytest.approx(
        [0.0025, 0.01, 0.01, 0.0, 0.0]
    )


def test_pmr_prototypes_are_class_means_blended_across_epochs():
    means = ClassMeans(torch.zeros(3, 2), torch.zeros(3))
    means.add(torch.tensor([[0.0, 0.0], [2.0, 0.0], [0.0, 2.0]]), torch.tensor([0, 0, 1]))
    prototypes, known = means.current()  # first epoch: the means so far
    assert prototypes[:2].tolist() == [[1.0, 0.0], [0.0, 2.0]] and known.tolist() == [True, True, False]
    means.close_epoch(momentum=0.2)
    means.add(torch.tensor([[4.0, 0.0], [1.0, 1.0]]), torch.tensor([0, 2]))
    assert means.current()[0].tolist() == [[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]]  # last epoch's until it ends
    means.close_epoch(momentum=0.2)
    prototypes, known = means.current()
    # class 0: 0.8 x 4 + 0.2 x 1; class 1 unseen this epoch: kept; class 2 new: its mean
    assert prototypes.tolist() == [[pytest.approx(3.4), 0.0], [0.0, 2.0], [1.0, 1.0]]
    assert known.tolist() == [True, True, True]


def test_pmr_terms_skip_classes_without_a_prototype():
    means = ClassMeans(torch.zeros(3, 2), torch.zeros(3))
    means.add(torch.tensor([[0.0, 0.0], [3.0, 4.0]]), torch.tensor([0, 1]))  # class 2 not seen yet
    terms = modality_terms(means, torch.tensor([[0.0, 0.0], [9.0, 9.0]]), torch.tensor([0, 2]))
    # the class-2 row is left out; the other sits on its prototype, 5 from the other one
    p = 1 / (1 + math.exp(-5))  # 0.99331
    assert float(terms.score) == pytest.approx(p)
    assert float(terms.pce) == pytest.approx(-math.log(p))  # 0.00672
    assert float(terms.entropy) == pytest.approx(-(p * math.log(p) + (1 - p) * math.log(1 - p)))  # 0.0402
    one_class = ClassMeans(torch.zeros(3, 2), torch.zeros(3))
    one_class.add(torch.tensor([[1.0, 1.0]]), torch.tensor([0]))
    assert modality_terms(one_class, torch.tensor([[1.0, 1.0]]), torch.tensor([0])) is None


def test_pmr_loss_pulls_the_slow_modality_toward_its_prototypes():
    balancer = PrototypicalRebalance({"y": 2}, alpha=1.0, mu=0.01)
    y = torch.tensor([0, 1, 0, 1])
    a = torch.tensor([[0.0, 0.0], [4.0, 0.0], [0.0, 0.0], [4.0, 0.0]])  # a separates the classes by 4
    tokens = torch.tensor([[[0.0], [9.0]], [[1.0], [0.0]], [[0.0], [0.0]], [[1.0], [1.0]]])  # [B, T, 1]
    valid = {"b": torch.tensor([[True, False], [True, True], [True, True], [True, True]])}  # b pools to
    mask = {"a": torch.ones(4, dtype=torch.bool), "b": torch.tensor([True, True, True, False])}  # 0, .5, 0
    first = balancer.loss({"a": a, "b": tokens}, valid, mask, {"y": y})
    assert float(first) == 0.0  # no prototypes yet: the step only adds to the class means
    assert balancer.means[("y", "b")].counts.tolist() == [2.0, 1.0]  # the absent row is not counted
    b = tokens.clone().requires_grad_(True)
    extra = balancer.loss({"a": a.clone().requires_grad_(True), "b": b}, valid, mask, {"y": y})
    # a: prototypes 0 and 4 apart, s_a = 1 / (1 + e^-4) = 0.98201; b: prototypes 0 and 0.5, rows at
    # 0, 0.5, 0: s_b = 1 / (1 + e^-0.5) = 0.62246. rho_b = 0.6339: beta_b = 1 / rho_b - 1 = 0.5776;
    # rho_a = 1.5776: a's entropy reward 0.01 x 0.5776.
    s_a, s_b = 1 / (1 + math.exp(-4)), 1 / (1 + math.exp(-0.5))
    beta_b = s_a / s_b - 1
    h_a = -(s_a * math.log(s_a) + (1 - s_a) * math.log(1 - s_a))
    h_b = -(s_b * math.log(s_b) + (1 - s_b) * math.log(1 - s_b))
    expected = beta_b * -math.log(s_b) - 0.01 * beta_b * h_a
    assert beta_b == pytest.approx(0.5776, abs=1e-4) and h_b > h_a
    assert float(extra) == pytest.approx(expected, rel=1e-5)
    extra.backward()
    assert float(b.grad[3].abs().sum()) == 0.0 and float(b.grad[0, 1].abs().sum()) == 0.0  # absent, padding
    logged = balancer.epoch_end(None, 0)
    assert logged == pytest.approx(
        {"pmr_rho_a": 1.5776, "pmr_rho_b": 0.6339, "pmr_beta_a": 0.0, "pmr_beta_b": 0.5776}, abs=1e-4
    )
    assert balancer.epoch == 1


def test_pmr_leaves_labels_without_classes_to_plain_training():
    model, heads, losses, _, _ = prepared(dominated(60), "kind")
    build = BALANCERS.get("pmr")
    assert build(model, [HeadConfig("price", "regression", 1)], losses) is None
    assert build(model, [HeadConfig("tags", "multilabel", 4)], losses) is None
    both = build(model, [*heads, HeadConfig("price", "regression", 1), HeadConfig("ok", "binary", 1)], losses)
    assert both.classes == {"kind": 3, "ok": 2}


@cache
def tabular_after(balance: str, seed: int) -> tuple[float, float]:
    """The tabular modality after 6 epochs on ``dominated`` (last epoch's weights), on validation: the
    mean prototype probability of the true class (prototypes: training-row class means of the
    tabular embedding), and the fused model's accuracy with the tabular modality alone."""
    model, heads, losses, tables, _ = prepared(dominated(seed=seed), "kind")
    last = LastWeights()
    cfg = TrainConfig(max_epochs=6, patience=6, seed=seed, balance=balance, progress=False, accelerator="cpu")
    train_model(model, heads, losses, tables["train"], tables["val"], cfg, callbacks=[last])
    model.load_state_dict(last.state)
    model.eval()
    with torch.no_grad():
        z = {split: pooled_tabular(model, tables[split]) for split in ("train", "val")}
        y = {split: tables[split].targets["kind"] for split in ("train", "val")}
        prototypes = torch.stack([z["train"][y["train"] == k].mean(0) for k in range(3)])
        p = prototype_log_probs(z["val"], prototypes).exp()
        val = tables["val"].take(list(range(len(y["val"]))))
        inputs, valid = model.fusion_inputs(val)
        alone = {m: torch.full_like(rows, m == "tabular") for m, rows in val.mask.items()}
        logits = model.classify(model.fuse_inputs(inputs, valid, alone))["kind"]
    true = p.gather(1, y["val"].long().reshape(-1, 1)).mean()
    return float(true), float((logits.argmax(1) == y["val"]).float().mean())


def pooled_tabular(model, table) -> torch.Tensor:
    batch = table.take(list(range(len(table.targets["kind"]))))
    inputs, valid = model.fusion_inputs(batch)
    return inputs["tabular"] if valid is None else pooled(inputs["tabular"], valid["tabular"])


class LastWeights(Callback):
    """The model's weights at the end of the last training epoch (train_model keeps the best one's)."""

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        self.state = {k: v.detach().clone() for k, v in pl_module.model.state_dict().items()}


def test_pmr_clusters_the_dominated_modality_by_class():
    plain = [tabular_after("none", seed) for seed in range(3)]
    balanced = [tabular_after("pmr", seed) for seed in range(3)]
    # Measured (seeds 0-2): prototype probability of the true class none 0.460, 0.456, 0.437 -> pmr
    # 0.497, 0.474, 0.454 (+0.024 on the mean; 8 of 8 seeds higher over seeds 0-7); tabular alone
    # accuracy 0.578, 0.644, 0.578 -> 0.644, 0.667, 0.600. The probes' accuracy did not move beyond
    # noise (45 validation rows; x1 alone allows about 0.65).
    assert all(b[0] > p[0] for p, b in zip(plain, balanced, strict=True)), (plain, balanced)
    assert np.mean([b[0] for b in balanced]) - np.mean([p[0] for p in plain]) > 0.012
    assert np.mean([b[1] for b in balanced]) - np.mean([p[1] for p in plain]) > 0.02


def test_pmr_trains_end_to_end_and_is_not_saved(tmp_path):
    frame = dominated(120)
    options = {"encoders": {"text": "text_bag"}, "max_epochs": 2, "baselines": False, "verbose": False}
    balanced = polyfuse.fit(frame, "kind", balance="pmr", out=tmp_path / "m", **options)
    assert balanced.metrics["balance"] == "pmr"
    logged = pd.read_csv(next((tmp_path / "m").rglob("metrics.csv")))
    assert {"pmr_rho_text", "pmr_rho_tabular", "pmr_beta_text", "pmr_beta_tabular"} <= set(logged.columns)
    again = polyfuse.load(tmp_path / "m")
    assert again.train_config.balance == "pmr"
    pd.testing.assert_frame_equal(again.predict_proba(frame), balanced.predict_proba(frame))


def test_pmr_terms_take_the_label_weights():
    y = {"y": torch.tensor([0, 1, 0, 1])}
    a = torch.tensor([[0.0], [4.0], [0.0], [4.0]])
    b = torch.tensor([[0.0], [0.5], [0.0], [0.5]])
    mask = {"a": torch.ones(4, dtype=torch.bool), "b": torch.ones(4, dtype=torch.bool)}

    def second_step(weights: dict[str, float] | None) -> float:
        balancer = PrototypicalRebalance({"y": 2})
        balancer.loss({"a": a, "b": b}, None, mask, y)  # builds the prototypes
        balancer.label_weights = weights
        return float(balancer.loss({"a": a, "b": b}, None, mask, y))

    plain = second_step(None)
    assert plain > 0 and second_step({"y": 2.0}) == pytest.approx(2 * plain)
    assert second_step({"y": 0.0}) == 0.0


# --- umt --------------------------------------------------------------------------------------------


def test_umt_relative_distance_is_scale_free():
    t = torch.tensor([[3.0, 4.0], [0.0, 5.0]])
    assert float(relative_distance(t, t)) == 0.0
    assert float(relative_distance(torch.zeros_like(t), t)) == pytest.approx(1.0)
    assert float(relative_distance(10 * (t + 0.1), 10 * t)) == pytest.approx(0.0008, rel=1e-5)
    assert float(relative_distance(t + 0.1, t)) == pytest.approx(0.0008, rel=1e-5)  # 0.04 / 50


def test_umt_starts_each_trainable_student_encoder_from_its_teacher():
    prep = prepare(dominated(60), Path.cwd(), FitRequest(label=["kind"], encoders={"text": "text_bag"}))
    torch.manual_seed(0)
    model = build_model(ModelConfig(prep.encoders, FusionConfig("concat"), prep.heads), prep.pre)
    for p in model.encoders["text"].parameters():  # a frozen encoder has nothing to learn from a teacher
        p.requires_grad_(False)
    frozen_before = {k: v.clone() for k, v in model.encoders["text"].state_dict().items()}
    teachers = single_models(prep, seed=1)
    balancer = BALANCERS.get("umt")(model, prep.heads, {})
    balancer.use_teachers(model, teachers, prep.tables["train"])
    assert set(balancer.teachers) == {"tabular"}
    ours, theirs = (
        model.encoders["tabular"].state_dict(),
        teachers["tabular"].encoders["tabular"].state_dict(),
    )
    assert all(torch.equal(ours[k], theirs[k]) for k in theirs)
    assert all(torch.equal(v, frozen_before[k]) for k, v in model.encoders["text"].state_dict().items())
    assert not any(p.requires_grad for p in balancer.teachers["tabular"].parameters())
    assert not balancer.state_dict()  # the teachers are not part of the task's (or the model's) state
    # The training rows' teacher features are computed once; a batch whose inputs changed runs the teacher.
    batch = prep.tables["train"].take([5, 0, 3])
    stored = balancer._targets("tabular", batch)
    assert stored.shape == (3, model.encoders["tabular"].output_dim)
    fresh = balancer._targets("tabular", dataclasses.replace(batch, rows=None))
    torch.testing.assert_close(stored, fresh)


def embedding_distance(balance: str, seed: int) -> float:
    """Relative distance, on validation, between the tabular embedding of the fused network trained with
    ``balance`` on ``dominated`` and that of the tabular single-modality model trained first."""
    request = FitRequest(label=["kind"], encoders={"text": "text_bag"})
    request.train = TrainConfig(max_epochs=8, seed=seed, balance=balance, progress=False, accelerator="cpu")
    prep = prepare(dominated(300, seed=seed), Path.cwd(), request)
    quiet = polyfuse.reporting.Reporter(False)
    one = ModelConfig({"tabular": prep.encoders["tabular"]}, request.fusion, prep.heads)
    only = {k: t.select(["tabular"]) for k, t in prep.tables.items()}
    single = train_and_test(one, prep.pre, only, request.train, None, quiet, "tabular")
    config = ModelConfig(prep.encoders, request.fusion, prep.heads)
    fused = train_and_test(
        config, prep.pre, prep.tables, request.train, None, quiet, "fused", teachers={"tabular": single.model}
    )
    theirs = torch.as_tensor(embeddings(single.model, prep.tables["val"])["tabular"])
    ours = torch.as_tensor(embeddings(fused.model, prep.tables["val"])["tabular"])
    return float(relative_distance(ours, theirs))


def test_umt_keeps_the_dominated_encoder_near_its_single_modality_model():
    distances = {b: [embedding_distance(b, seed) for seed in range(3)] for b in ("none", "umt")}
    # Measured (seeds 0-2, relative squared distance): none 2.22, 3.16, 5.51 (other features than the
    # single-modality model's); umt 0.0086, 0.0087, 0.0187.
    assert max(distances["umt"]) < 0.05 and min(distances["none"]) > 1.0, distances


def test_umt_trains_its_own_teachers_without_baselines(tmp_path):
    frame = dominated(120)
    options = {"encoders": {"text": "text_bag"}, "max_epochs": 2, "baselines": False, "verbose": False}
    balanced = polyfuse.fit(frame, "kind", balance="umt", out=tmp_path / "m", **options)
    assert balanced.metrics["balance"] == "umt" and balanced.metrics["baselines"] == {}
    logged = pd.read_csv(next((tmp_path / "m").rglob("metrics.csv")))
    for name in ("text", "tabular"):  # text_bag trains too: both have a teacher
        distance = logged[f"umt_distance_{name}"].dropna()
        assert len(distance) == 2 and (distance >= 0).all()
    again = polyfuse.load(tmp_path / "m")
    pd.testing.assert_frame_equal(again.predict_proba(frame), balanced.predict_proba(frame))


def test_fit_hands_its_baselines_to_umt_trained_first(monkeypatch):
    import polyfuse.train.loop

    def no_teachers(*args, **kwargs):
        raise AssertionError("fit trains baselines: umt must not train teachers of its own")

    monkeypatch.setattr(polyfuse.train.loop, "train_teachers", no_teachers)
    options = {"encoders": {"text": "text_bag"}, "max_epochs": 2, "verbose": False}
    balanced = polyfuse.fit(dominated(120), "kind", balance="umt", **options)
    assert set(balanced.metrics["baselines"]) == {"text", "tabular"}
    with pytest.raises(AssertionError, match="must not train teachers"):  # without baselines, it would
        polyfuse.fit(dominated(120), "kind", balance="umt", baselines=False, **options)

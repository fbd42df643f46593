"""Regularisation and optimisation options: L1, label smoothing, manifold mixup, stochastic weight
averaging, gradient accumulation."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import Callback
from training import prepared

from polyfuse.config import TrainConfig
from polyfuse.losses import BCELoss, CrossEntropyLoss, training_losses
from polyfuse.train.averaging import averaged_tensors, weight_averaging
from polyfuse.train.loop import train_model
from polyfuse.train.regularisation import l1_penalty, penalised


def _cfg(**options: object) -> TrainConfig:
    return TrainConfig(progress=False, accelerator="cpu", **options)  # type: ignore[arg-type]


def test_l1_penalty_sums_the_weight_matrices_only() -> None:
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.LayerNorm(4), torch.nn.Conv1d(4, 2, 3))
    net[2].bias.requires_grad_(False)
    expected = net[0].weight.abs().sum() + net[2].weight.abs().sum()
    assert [p.shape for p in penalised(net)] == [(4, 3), (2, 4, 3)]
    torch.testing.assert_close(l1_penalty(net), expected)
    net[0].weight.requires_grad_(False)  # a frozen weight is not penalised
    torch.testing.assert_close(l1_penalty(net), net[2].weight.abs().sum())


def test_l1_shrinks_the_weights(make_frame) -> None:
    def trained_l1(weight: float) -> float:
        model, heads, losses, tables, _ = prepared(make_frame(200), "kind")
        cfg = _cfg(max_epochs=3, patience=10, batch_size=16, lr=0.01, l1=weight)
        train_model(model, heads, losses, tables["train"], tables["val"], cfg)
        return float(l1_penalty(model))

    plain, penalised_run = trained_l1(0.0), trained_l1(1e-2)
    assert penalised_run < 0.5 * plain


def test_label_smoothing_moves_the_targets() -> None:
    logits, target = torch.tensor([[2.0, -1.0, 0.5]]), torch.tensor([0])
    smoothed = CrossEntropyLoss(label_smoothing=0.3)(logits, target)
    soft = torch.tensor([[0.8, 0.1, 0.1]])  # 0.7 on the class, 0.3 spread over the 3 classes
    torch.testing.assert_close(smoothed, -(soft * logits.log_softmax(1)).sum())
    binary = BCELoss(label_smoothing=0.2)(torch.tensor([[1.5], [-0.5]]), torch.tensor([1.0, 0.0]))
    expected = F.binary_cross_entropy_with_logits(torch.tensor([[1.5], [-0.5]]), torch.tensor([[0.9], [0.1]]))
    torch.testing.assert_close(binary, expected)
    losses = training_losses({"kind": "multiclass", "tags": "multilabel", "price": "regression"}, 0.1)
    assert losses["kind"].label_smoothing == losses["tags"].label_smoothing == 0.1
    assert not hasattr(losses["price"], "label_smoothing")


class _EpochWeights(Callback):
    """Records the weights as trained at the end of each epoch's last step, and what each validation
    pass reads (this callback runs after the averaging one at every hook)."""

    def __init__(self) -> None:
        self.trained: list[dict[str, torch.Tensor]] = []
        self.validated: list[dict[str, torch.Tensor]] = []

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        if batch_idx == trainer.num_training_batches - 1:
            self.trained.append(_weights(pl_module))

    def on_validation_epoch_start(self, trainer, pl_module) -> None:
        self.validated.append(_weights(pl_module))


def _weights(pl_module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in averaged_tensors(pl_module.model).items()}


def test_swa_validates_the_mean_of_the_epochs_weights_from_its_start(make_frame) -> None:
    model, heads, losses, tables, _ = prepared(make_frame(200), "kind")
    recorder = _EpochWeights()
    cfg = _cfg(max_epochs=4, patience=10, swa_start=1)
    train_model(model, heads, losses, tables["train"], tables["val"], cfg, callbacks=[recorder])
    assert len(recorder.trained) == len(recorder.validated) == 4
    first = recorder.validated[0]
    assert all(torch.equal(first[k], recorder.trained[0][k]) for k in first)  # before the start: as trained
    for epoch in (1, 2, 3):
        averaged = recorder.trained[1 : epoch + 1]
        for name, seen in recorder.validated[epoch].items():
            torch.testing.assert_close(seen, torch.stack([w[name] for w in averaged]).mean(0))
    last = recorder.validated[3]
    assert any(not torch.allclose(last[k], recorder.trained[3][k]) for k in last)


def test_one_weight_average_at_a_time() -> None:
    assert weight_averaging(0.0, None) == []
    with pytest.raises(ValueError, match="ema or swa_start"):
        weight_averaging(0.9, 2)
    with pytest.raises(ValueError, match="swa_start"):
        weight_averaging(0.0, -1)


class _Steps(Callback):
    def __init__(self) -> None:
        self.steps = 0

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self.steps += 1


@pytest.mark.parametrize("accumulate", [1, 3])
def test_gradient_accumulation_steps_once_per_group_of_batches(make_frame, accumulate: int) -> None:
    model, heads, losses, tables, _ = prepared(make_frame(200), "kind")
    counter = _Steps()
    cfg = _cfg(max_epochs=2, patience=10, batch_size=16, accumulate_grad_batches=accumulate)
    train_model(model, heads, losses, tables["train"], tables["val"], cfg, callbacks=[counter])
    batches = math.ceil(len(tables["train"]) / 16)
    assert counter.steps == 2 * math.ceil(batches / accumulate)


def test_mixup_mixes_the_fused_vectors_and_the_losses(make_frame) -> None:
    import numpy as np

    from polyfuse.data.batch import Batch
    from polyfuse.train.mixup import mixed_loss

    model, heads, losses, tables, _ = prepared(make_frame(60), "kind")
    batch: Batch = tables["train"].take(list(range(16)))
    losses = torch.nn.ModuleDict(losses)
    model.eval()  # no dropout: both passes see the same fused vectors
    got = mixed_loss(model, losses, batch, 0.4, torch.Generator().manual_seed(5))
    generator = torch.Generator().manual_seed(5)  # the same draws, by hand
    lam = float(
        np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,), generator=generator))).beta(0.4, 0.4)
    )
    partner = torch.randperm(16, generator=generator)
    fused = model.fuse(batch)
    out = model.classify(lam * fused + (1 - lam) * fused[partner])["kind"]
    y = batch.targets["kind"]
    expected = lam * losses["kind"](out, y) + (1 - lam) * losses["kind"](out, y[partner])
    torch.testing.assert_close(got, expected)
    assert 0 < lam < 1


def test_fit_with_mixup_learns_and_refuses_a_balancer(make_frame) -> None:
    import polyfuse
    from conftest import FAST
    from polyfuse.errors import PolyfuseError

    frame = make_frame(300)
    mixed = polyfuse.fit(frame, label="kind", max_epochs=6, mixup=0.4, baselines=False, **FAST)
    assert mixed.train_config.mixup == 0.4
    assert mixed.metrics["fused"]["test"]["accuracy"] >= 0.6  # chance: 0.33
    with pytest.raises(PolyfuseError, match="mixup"):
        polyfuse.fit(frame, label="kind", max_epochs=1, mixup=0.4, balance="aux", baselines=False, **FAST)

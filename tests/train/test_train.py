"""The training loop: modality dropout, frozen-encoder caching, best-epoch weights."""

from __future__ import annotations

import math

import pytest
import torch
from training import prepared

import polyfuse
import polyfuse.fusions  # noqa: F401  (registers the fusions)
import polyfuse.heads  # noqa: F401
from conftest import FAST
from polyfuse.config import TrainConfig
from polyfuse.data.batch import Batch, EncodedTable
from polyfuse.encoders import build_encoder
from polyfuse.eval.evaluate import evaluate_table
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import FUSIONS, HEADS, OPTIMIZERS
from polyfuse.train import module as train_module
from polyfuse.train.loop import cache_frozen_outputs, train_model
from polyfuse.train.module import drop_modalities, monitor_for
from polyfuse.train.optimizers import make_optimizer

NAMES = ("image", "audio", "text")


def _batch(present: torch.Tensor) -> Batch:
    """A batch whose only interesting part is its masks: ``present`` is bool [B, 3]."""
    n = len(present)
    inputs = {name: torch.randn(n, 2) for name in NAMES}
    mask = {name: present[:, i].clone() for i, name in enumerate(NAMES)}
    return Batch(inputs, mask, targets={"y": torch.zeros(n)}, cached={"text": torch.ones(n, 4)})


def _masks(batch: Batch) -> torch.Tensor:
    return torch.stack([batch.mask[name] for name in NAMES], dim=1)  # [B, 3]


def _random_presence(n: int, seed: int = 0) -> torch.Tensor:
    """bool [n, 3]: each modality present 70% of the time, so some rows have 0, 1, 2 or 3."""
    return torch.rand(n, 3, generator=torch.Generator().manual_seed(seed)) < 0.7


@pytest.mark.parametrize("rate", [0.1, 0.3, 0.6])
def test_drop_modalities_rules_and_rate(rate):
    present = _random_presence(20_000)
    batch = _batch(present)
    torch.manual_seed(1)
    out = drop_modalities(batch, rate)
    after = _masks(out)

    assert torch.equal(_masks(batch), present)  # the input batch is not modified
    assert not (after & ~present).any()  # an absent modality never becomes present
    assert torch.equal(after.any(1), present.any(1))  # a row with an input keeps at least one
    single = present.sum(1) == 1
    assert torch.equal(after[single], present[single])  # a lone modality is never dropped
    assert out.inputs is batch.inputs and out.targets is batch.targets and out.cached is batch.cached

    # Each present modality is dropped with probability `rate`; a row that lost all k of its
    # modalities (probability rate**k) gets exactly one back.
    k = present.sum(1).double()
    expected = float((k * rate - torch.where(k > 0, rate**k, 0)).sum() / k.sum())
    dropped = float((present & ~after).sum() / present.sum())
    assert dropped == pytest.approx(expected, abs=0.01)


def test_drop_modalities_extremes():
    present = _random_presence(6000, seed=2)
    batch = _batch(present)
    assert torch.equal(_masks(drop_modalities(batch, 0.0)), present)

    torch.manual_seed(0)
    after = _masks(drop_modalities(batch, 1.0))
    assert torch.equal(after.sum(1), present.any(1).long())  # exactly one left in every non-empty row
    full = present.all(1)
    shares = after[full].double().mean(0)  # which modality survives when all three were present
    assert torch.allclose(shares, torch.full((3,), 1 / 3, dtype=torch.double), atol=0.05), shares


# --- frozen encoders are run once ------------------------------------------------------------------


def _three_encoder_model() -> MultimodalModel:
    """Three bag-of-words encoders: "a" fully frozen, "b" half frozen, "c" trainable."""
    torch.manual_seed(0)
    encoders = {name: build_encoder("text_bag", vocab_size=30, output_dim=8, hidden_dim=8) for name in "abc"}
    encoders["a"].requires_grad_(False)
    encoders["b"].embed.requires_grad_(False)
    fusion = FUSIONS.build("concat", in_dims={name: 8 for name in "abc"}, output_dim=16)
    heads = {"y": HEADS.build("multiclass", in_dim=16, num_outputs=3)}
    return MultimodalModel(encoders, fusion, heads)


def _token_table(n: int, seed: int) -> EncodedTable:
    g = torch.Generator().manual_seed(seed)
    ids = {name: torch.randint(1, 30, (n, 6), generator=g) for name in "abc"}
    mask = {name: torch.ones(n, dtype=torch.bool) for name in "abc"}
    return EncodedTable(ids, mask, {"y": torch.randint(0, 3, (n,), generator=g)}, row_ids=list(range(n)))


def test_cache_frozen_outputs_only_for_fully_frozen_encoders():
    model = _three_encoder_model()
    assert model.frozen_modalities() == ["a"]
    train, val = _token_table(300, 0), _token_table(40, 1)
    without_a = _token_table(10, 2).select(["b", "c"])
    sentinel = torch.full((40, 8), 7.0)
    val.cached["a"] = sentinel  # already cached: left alone

    cache_frozen_outputs(model, [train, val, without_a], batch_size=64)

    assert set(train.cached) == {"a"} and set(val.cached) == {"a"} and without_a.cached == {}
    assert val.cached["a"] is sentinel
    model.eval()
    with torch.no_grad():
        expected = model.encoders["a"](train.inputs["a"])  # [300, 8], one batch
    assert train.cached["a"].shape == (300, 8)
    assert torch.allclose(train.cached["a"], expected, atol=1e-6)

    # A batch cut from the cached table gives the same outputs as one computed from scratch.
    fresh = _token_table(300, 0)
    rows = [0, 5, 299, 64, 128]
    cached_out = model.predict(train.take(rows))["y"]
    assert train.take(rows).cached["a"].shape == (5, 8)
    assert torch.allclose(cached_out, model.predict(fresh.take(rows))["y"], atol=1e-6)


def test_cache_frozen_outputs_without_frozen_encoders_does_nothing():
    model = _three_encoder_model()
    model.encoders["a"].requires_grad_(True)
    table = _token_table(20, 0)
    cache_frozen_outputs(model, [table])
    assert model.frozen_modalities() == [] and table.cached == {}


# --- the loop on a real (synthetic) table ---------------------------------------------------------


@pytest.mark.parametrize(("task", "label"), [("multiclass", "kind"), ("regression", "price")])
def test_train_model_keeps_the_best_validation_epoch(make_frame, task, label):
    model, heads, losses, tables, schema = prepared(make_frame(240, task=task), label)
    cfg = TrainConfig(max_epochs=5, patience=10, progress=False, accelerator="cpu")
    result = train_model(model, heads, losses, tables["train"], tables["val"], cfg)

    monitor, mode = monitor_for(heads)
    assert result.monitor == monitor and result.epochs == 5 and len(result.history) == 5
    scores = [h[monitor] for h in result.history]
    best = max(scores) if mode == "max" else min(scores)
    assert result.best_score == best and scores[result.best_epoch] == best
    # The model handed back carries that epoch's weights: its validation score is the best one.
    val = evaluate_table(model, schema, tables["val"])
    assert val[monitor.removeprefix("val_")] == pytest.approx(result.best_score, rel=1e-5)
    assert not model.training


def test_train_model_lets_the_caller_free_its_tables(make_frame):
    """Lightning objects outlive a fit through a callback (it keeps the task's bound methods); the
    data loaders must not keep the tables alive through them (the AV-MNIST memory peak)."""
    import gc
    import weakref

    from lightning.pytorch.callbacks import Callback

    model, heads, losses, tables, _ = prepared(make_frame(120), "kind")
    kept = Callback()  # alive after the fit, as a caller's timer or pruning callback is
    cfg = TrainConfig(max_epochs=1, progress=False, accelerator="cpu")
    train_model(model, heads, losses, tables["train"], tables["val"], cfg, callbacks=[kept])
    table = weakref.ref(tables["train"])
    del tables
    gc.collect()
    assert table() is None


def _grad_norms():
    """A callback recording, per step, the global gradient norm the backward pass left
    (``on_before_optimizer_step`` runs before Lightning clips) and the norm of the gradient the
    update applied: under plain SGD with lr 1 and no weight decay, the parameters' change."""
    from lightning.pytorch.callbacks import Callback

    def flat(module) -> torch.Tensor:
        return torch.cat([p.detach().flatten() for p in module.parameters() if p.requires_grad])

    class Recorder(Callback):
        def __init__(self):
            self.raw: list[float] = []
            self.applied: list[float] = []

        def on_before_optimizer_step(self, trainer, pl_module, optimizer):
            grads = [p.grad for p in pl_module.parameters() if p.grad is not None]
            self.raw.append(float(torch.nn.utils.get_total_norm(grads)))
            self.before = flat(pl_module)

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.applied.append(float(torch.linalg.vector_norm(flat(pl_module) - self.before)))

    return Recorder()


@pytest.mark.parametrize("clip", [None, 0.05])
def test_grad_clip_norm_bounds_the_applied_gradient(make_frame, clip):
    model, heads, losses, tables, _ = prepared(make_frame(160), "kind")
    recorder = _grad_norms()
    cfg = TrainConfig(
        max_epochs=2,
        optimizer="sgd",
        lr=1.0,
        weight_decay=0.0,
        scheduler="none",
        grad_clip_norm=clip,
        progress=False,
        accelerator="cpu",
    )
    train_model(model, heads, losses, tables["train"], tables["val"], cfg, callbacks=[recorder])

    assert len(recorder.applied) == len(recorder.raw) >= 4
    assert min(recorder.raw) > 0.05  # every backward pass's gradient exceeds the clip
    expected = recorder.raw if clip is None else [min(r, clip) for r in recorder.raw]
    assert recorder.applied == pytest.approx(expected, rel=1e-3)


def test_modality_dropout_trains_the_fused_model_only(make_frame, monkeypatch):
    rates = []

    def spy(batch, rate):
        rates.append(rate)
        return drop_modalities(batch, rate)

    monkeypatch.setattr(train_module, "drop_modalities", spy)
    frame = make_frame(300)
    predictor = polyfuse.fit(frame, label="kind", max_epochs=4, modality_dropout=0.5, **FAST)
    metrics = predictor.metrics
    # Every training step of the fused model (and none of the single-modality baselines) drops.
    steps = metrics["fused"]["epochs"] * math.ceil(metrics["rows"]["train"] / 64)
    assert rates == [{"text": 0.5, "tabular": 0.5}] * steps  # modality_dropout: one rate for every modality
    assert set(metrics["baselines"]) == {"text", "tabular"}
    assert predictor.train_config.modality_dropout == 0.5
    assert metrics["fused"]["test"]["accuracy"] >= 0.6  # still learns; chance is 0.33


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_every_optimizer_takes_a_step(name: str) -> None:
    layer = torch.nn.Linear(3, 1)
    before = layer.weight.detach().clone()
    opt = make_optimizer(name, list(layer.parameters()), lr=0.1, weight_decay=1e-4)
    layer(torch.ones(2, 3)).sum().backward()
    opt.step()
    assert not torch.equal(before, layer.weight)


def test_unknown_optimizer_is_named() -> None:
    with pytest.raises(KeyError, match="lion"):  # the registries' error, one line in the CLI
        make_optimizer("lion", [torch.nn.Parameter(torch.zeros(1))], 0.1, 0.0)


def test_best_weights_break_score_ties_by_validation_loss():
    """A saturated score (all 10 validation rows right for epochs) keeps the epoch with the lowest
    validation loss among the tied ones, not the first; a better score still wins over any loss."""
    from types import SimpleNamespace

    from polyfuse.train.loop import BestWeights

    best = BestWeights("val_accuracy", "max")
    module = torch.nn.Linear(1, 1)
    for epoch, (score, loss) in enumerate([(0.8, 0.2), (1.0, 0.5), (1.0, 0.3), (1.0, 0.4), (0.9, 0.1)]):
        metrics = {"val_accuracy": torch.tensor(score), "val_loss": torch.tensor(loss)}
        trainer = SimpleNamespace(sanity_checking=False, callback_metrics=metrics, current_epoch=epoch)
        best.on_validation_end(trainer, module)  # type: ignore[arg-type]
    assert (best.best_epoch, best.best, best.best_loss) == (2, 1.0, pytest.approx(0.3))


def test_ema_validates_and_keeps_the_average_of_the_weights(make_frame):
    """``ema``: each validation pass (and so the kept epoch) reads the exponential moving average of
    the weights after every step, and training resumes from the weights as trained."""
    from lightning.pytorch.callbacks import Callback

    from polyfuse.train.averaging import averaged_tensors

    def weights(pl_module) -> dict[str, torch.Tensor]:
        return {k: v.detach().clone() for k, v in averaged_tensors(pl_module.model).items()}

    class Recorder(Callback):  # runs after the averaging callback at every hook
        def __init__(self):
            self.steps, self.validated, self.resumed = [], [], []

        def on_train_batch_end(self, trainer, pl_module, *args):
            self.steps.append(weights(pl_module))

        def on_validation_epoch_start(self, trainer, pl_module):
            self.validated.append((len(self.steps), weights(pl_module)))

        def on_train_epoch_start(self, trainer, pl_module):
            self.resumed.append((len(self.steps), weights(pl_module)))

    decay = 0.9
    model, heads, losses, tables, _ = prepared(make_frame(200), "kind")
    recorder = Recorder()
    cfg = TrainConfig(max_epochs=3, patience=10, ema=decay, progress=False, accelerator="cpu")
    result = train_model(model, heads, losses, tables["train"], tables["val"], cfg, callbacks=[recorder])

    def expected_average(n_steps: int) -> dict[str, torch.Tensor]:
        average = {k: v.clone() for k, v in recorder.steps[0].items()}
        for step in recorder.steps[1:n_steps]:
            average = {k: decay * average[k] + (1 - decay) * step[k] for k in average}
        return average

    assert len(recorder.validated) == 3
    for n_steps, seen in recorder.validated:
        want = expected_average(n_steps)
        assert all(torch.allclose(seen[k], want[k], atol=1e-6) for k in want)
        assert any(not torch.allclose(seen[k], recorder.steps[n_steps - 1][k]) for k in want)
    for n_steps, seen in recorder.resumed[1:]:  # the trained weights come back before the next epoch
        last = recorder.steps[n_steps - 1]
        assert all(torch.equal(seen[k], last[k]) for k in last)
    kept = recorder.validated[result.best_epoch][1]
    final = {k: v.detach() for k, v in averaged_tensors(model).items()}
    assert all(torch.allclose(final[k], kept[k]) for k in kept)


@pytest.mark.parametrize("decay", [0.0, 1.0, 1.5])
def test_ema_decay_outside_the_open_unit_interval_is_refused(decay):
    from polyfuse.train.averaging import WeightEMA

    with pytest.raises(ValueError, match="ema decay"):
        WeightEMA(decay)

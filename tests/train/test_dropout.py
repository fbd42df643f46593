"""Modality dropout: per-modality rates, schedules by name, the rates logged per epoch, early errors."""

from __future__ import annotations

import math

import pytest
import torch
from training import prepared

import polyfuse
from conftest import FAST, synthetic_frame
from polyfuse.config import TrainConfig
from polyfuse.data.batch import Batch
from polyfuse.data.errors import SchemaError
from polyfuse.errors import PolyfuseError
from polyfuse.registry import DROPOUT_SCHEDULES
from polyfuse.train import module as train_module
from polyfuse.train.dropout import drop_modalities, epoch_rates
from polyfuse.train.loop import train_model

NAMES = ("image", "audio", "text")
ROWS = 200_000
# Each drop frequency is a mean of 200k Bernoulli draws: std <= 0.5 / sqrt(200k) = 0.0011.
TOLERANCE = 0.005  # > 4 standard deviations


def _batch(present: torch.Tensor) -> Batch:
    """A batch whose only interesting part is its masks: ``present`` is bool [B, 3]."""
    n = len(present)
    inputs = {name: torch.zeros(n, 1) for name in NAMES}
    return Batch(inputs, {name: present[:, i].clone() for i, name in enumerate(NAMES)}, {"y": torch.zeros(n)})


def _dropped(batch: Batch, rates: dict[str, float] | float, seed: int = 0) -> dict[str, float]:
    """The share of the rows holding each modality that lost it."""
    torch.manual_seed(seed)
    out = drop_modalities(batch, rates)
    return {n: float((batch.mask[n] & ~out.mask[n]).sum() / batch.mask[n].sum()) for n in NAMES}


def test_each_modality_is_dropped_at_its_own_rate():
    batch = _batch(torch.ones(ROWS, 3, dtype=torch.bool))
    # text is never dropped, so no row ever loses all three: the frequencies are the rates themselves.
    dropped = _dropped(batch, {"image": 0.5, "audio": 0.1, "text": 0.0})
    assert dropped["image"] == pytest.approx(0.5, abs=TOLERANCE)
    assert dropped["audio"] == pytest.approx(0.1, abs=TOLERANCE)
    assert dropped["text"] == 0.0


def test_a_row_that_lost_everything_gets_one_modality_back():
    present = torch.ones(ROWS, 3, dtype=torch.bool)
    present[:, 2] = False  # text absent: rows hold image and audio
    batch = _batch(present)
    dropped = _dropped(batch, {"image": 0.6, "audio": 0.3, "text": 0.9})
    # P(image lost) = P(image drawn, audio kept) + P(both drawn) / 2 (one of the two comes back):
    # 0.6 * 0.7 + 0.6 * 0.3 / 2 = 0.51; audio: 0.3 * 0.4 + 0.18 / 2 = 0.21.
    assert dropped["image"] == pytest.approx(0.51, abs=TOLERANCE)
    assert dropped["audio"] == pytest.approx(0.21, abs=TOLERANCE)
    torch.manual_seed(0)
    out = drop_modalities(batch, {"image": 0.6, "audio": 0.3})
    assert bool((out.mask["image"] | out.mask["audio"]).all())  # every row keeps one
    assert not bool(out.mask["text"].any())  # an absent modality never appears


def test_one_rate_for_all_is_the_same_draw_as_that_rate_per_modality():
    present = torch.rand(5000, 3, generator=torch.Generator().manual_seed(1)) < 0.7
    batch = _batch(present)
    torch.manual_seed(3)
    one = drop_modalities(batch, 0.3)
    torch.manual_seed(3)
    each = drop_modalities(batch, dict.fromkeys(NAMES, 0.3))
    assert all(torch.equal(one.mask[n], each.mask[n]) for n in NAMES)


def test_schedules_follow_their_formulas():
    rate, epochs = 0.4, 4
    values = {n: [DROPOUT_SCHEDULES.get(n)(rate, e, epochs) for e in range(7)] for n in DROPOUT_SCHEDULES}
    assert set(values) == {"constant", "linear_warmup", "cosine_decay"}
    assert values["constant"] == [0.4] * 7
    assert values["linear_warmup"] == pytest.approx([0.0, 0.1, 0.2, 0.3, 0.4, 0.4, 0.4])
    # 0.4 (1 + cos(pi e / 4)) / 2: 0.4, 0.3414, 0.2, 0.0586, then 0
    assert values["cosine_decay"] == pytest.approx([0.4, 0.341421, 0.2, 0.058579, 0.0, 0.0, 0.0], abs=1e-6)


def test_epoch_rates_take_a_modalitys_own_rate_and_default_to_max_epochs():
    cfg = TrainConfig(
        max_epochs=10,
        modality_dropout=0.2,
        modality_dropout_rates={"image": 0.5},
        modality_dropout_schedule="linear_warmup",
    )
    assert epoch_rates(cfg, ["image", "audio"], 5) == pytest.approx({"image": 0.25, "audio": 0.1})
    cfg.modality_dropout_epochs = 2
    assert epoch_rates(cfg, ["image", "audio"], 1) == pytest.approx({"image": 0.25, "audio": 0.1})
    assert epoch_rates(cfg, ["image", "audio"], 7) == pytest.approx({"image": 0.5, "audio": 0.2})


def test_the_rates_each_epoch_trains_with_are_logged(monkeypatch):
    used: list[dict[str, float]] = []

    def spy(batch, rates):
        used.append(dict(rates))
        return drop_modalities(batch, rates)

    monkeypatch.setattr(train_module, "drop_modalities", spy)
    model, heads, losses, tables, _ = prepared(synthetic_frame(120), "kind")
    cfg = TrainConfig(
        max_epochs=4,
        patience=10,
        batch_size=64,
        progress=False,
        modality_dropout=0.2,
        modality_dropout_rates={"text": 0.6},
        modality_dropout_schedule="cosine_decay",
        modality_dropout_epochs=2,
    )
    history = train_model(model, heads, losses, tables["train"], tables["val"], cfg).history
    # Epochs 0..3 over 2 schedule epochs: factor (1 + cos(pi min(e, 2) / 2)) / 2 = 1, 0.5, 0, 0.
    assert [row["modality_dropout_text"] for row in history] == pytest.approx([0.6, 0.3, 0.0, 0.0])
    assert [row["modality_dropout_tabular"] for row in history] == pytest.approx([0.2, 0.1, 0.0, 0.0])
    steps = math.ceil(len(tables["train"]) / 64)
    # Dropout runs only while a rate is positive: epochs 0 and 1, at the logged rates.
    assert used == [{"text": 0.6, "tabular": 0.2}] * steps + [{"text": 0.3, "tabular": 0.1}] * steps


def test_no_rate_logged_without_modality_dropout():
    model, heads, losses, tables, _ = prepared(synthetic_frame(60), "kind")
    cfg = TrainConfig(max_epochs=1, progress=False)
    history = train_model(model, heads, losses, tables["train"], tables["val"], cfg).history
    assert len(history) == 1 and not [k for k in history[0] if k.startswith("modality_dropout")]


def test_single_modality_baselines_never_drop(monkeypatch):
    calls: list[dict[str, float]] = []

    def spy(batch, rates):
        calls.append(dict(rates))
        return drop_modalities(batch, rates)

    monkeypatch.setattr(train_module, "drop_modalities", spy)
    predictor = polyfuse.fit(
        synthetic_frame(120), "kind", max_epochs=2, modality_dropout_rates={"text": 0.5}, **FAST
    )
    metrics = predictor.metrics
    steps = metrics["fused"]["epochs"] * math.ceil(metrics["rows"]["train"] / 64)
    assert set(metrics["baselines"]) == {"text", "tabular"}
    # Only the fused model's steps drop (text at its rate, tabular at modality_dropout's 0).
    assert calls == [{"text": 0.5, "tabular": 0.0}] * steps


def test_an_unknown_modality_fails_before_any_data_work(monkeypatch):
    import polyfuse.fitting

    def no_preparing(*args, **kwargs):
        raise AssertionError("the table was preprocessed before the check")

    monkeypatch.setattr(polyfuse.fitting, "prepare", no_preparing)
    with pytest.raises(SchemaError, match=r"unknown modalities \['imgae'\].*'text'"):
        polyfuse.fit(synthetic_frame(60), "kind", modality_dropout_rates={"imgae": 0.3}, **FAST)


def test_an_unknown_modality_fails_a_comparison_before_any_run(tmp_path, monkeypatch):
    import polyfuse.sweep.engine as engine

    monkeypatch.setattr(engine, "prepare", lambda *a, **kw: pytest.fail("preprocessed before the check"))
    with pytest.raises(SchemaError, match="imgae"):
        polyfuse.compare(
            synthetic_frame(60), "kind", out=tmp_path, modality_dropout_rates={"imgae": 0.3}, verbose=False
        )
    assert not (tmp_path / "leaderboard.csv").exists()


@pytest.mark.parametrize(
    ("options", "error", "match"),
    [
        ({"modality_dropout_rates": {"text": 1.5}}, PolyfuseError, r"\[0, 1\]: \{'text': 1.5\}"),
        ({"modality_dropout_schedule": "warmup"}, KeyError, "known: constant, cosine_decay, linear_warmup"),
        ({"modality_dropout_epochs": 0}, PolyfuseError, "at least 1"),
        ({"modality_dropout_rates": "text=0.5"}, TypeError, "modality -> rate"),
    ],
)
def test_bad_settings_fail_before_the_table_is_read(options, error, match):
    from polyfuse.fitting import fit_inputs

    with pytest.raises(error, match=match):
        fit_inputs("/nonexistent/table.csv", "kind", train_options=options)  # never read

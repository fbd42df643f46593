"""Optimizers, learning-rate schedules and training callbacks by name: contracts over each registry,
today's hyper-parameters kept exactly, and unknown names failing before any work."""

from __future__ import annotations

import json
import math
import re
from itertools import pairwise
from pathlib import Path

import pandas as pd
import pytest
import torch
from training import prepared

import polyfuse
from conftest import synthetic_frame
from polyfuse.config import TrainConfig, from_dict, to_dict
from polyfuse.registry import CALLBACKS, OPTIMIZERS, SCHEDULERS
from polyfuse.train import check_names
from polyfuse.train.loop import TrainResult, train_model
from polyfuse.train.schedulers import warmup_epochs

LR = 0.1

# --- optimizers -----------------------------------------------------------------------------------

# The optimizers as module.py built them before the registry: (class, keyword arguments besides
# lr and weight_decay). Training must stay bit-for-bit the same, so these are checked exactly.
BEFORE = {
    "adamw": (torch.optim.AdamW, {}),
    "adam": (torch.optim.Adam, {}),
    "sgd": (torch.optim.SGD, {}),
    "sgd_momentum": (torch.optim.SGD, {"momentum": 0.9, "nesterov": True}),
}


def _regression() -> tuple[torch.nn.Linear, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    x = torch.randn(16, 3)
    return torch.nn.Linear(3, 1), x, x @ torch.tensor([[1.0], [-2.0], [0.5]])


@pytest.mark.parametrize("name", OPTIMIZERS.names())
def test_one_step_of_every_optimizer_lowers_the_loss(name: str) -> None:
    layer, x, y = _regression()
    opt = OPTIMIZERS.get(name)(layer.parameters(), lr=0.01, weight_decay=1e-4)
    assert isinstance(opt, torch.optim.Optimizer)

    def loss() -> torch.Tensor:
        return torch.nn.functional.mse_loss(layer(x), y)

    before = loss()
    before.backward()
    opt.step()
    assert loss().item() < before.item()


@pytest.mark.parametrize("name", sorted(BEFORE))
def test_optimizers_keep_their_former_hyper_parameters(name: str) -> None:
    cls, extra = BEFORE[name]
    param = [torch.nn.Parameter(torch.zeros(2))]
    built = OPTIMIZERS.get(name)(param, lr=0.03, weight_decay=1e-3)
    former = cls(param, lr=0.03, weight_decay=1e-3, **extra)
    assert type(built) is cls
    assert built.defaults == former.defaults


# --- schedulers -----------------------------------------------------------------------------------


def _rates(
    name: str,
    max_epochs: int,
    epochs: int | None = None,
    losses: list[float] | None = None,
    patience: int = 6,
) -> list[float]:
    """The learning rate of each epoch under schedule ``name``, stepped once per epoch as Lightning does
    (``plateau`` with each epoch's validation loss: ``losses``, default a constant one)."""
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = SCHEDULERS.get(name)(opt, TrainConfig(max_epochs=max_epochs, lr=LR, patience=patience))
    rates = []
    for epoch in range(max_epochs if epochs is None else epochs):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        if isinstance(sched, torch.optim.lr_scheduler.ReduceLROnPlateau):
            sched.step(1.0 if losses is None else losses[epoch])
        elif sched is not None:
            sched.step()
    return rates


@pytest.mark.parametrize("name", SCHEDULERS.names())
def test_every_schedule_stays_between_zero_and_lr(name: str) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    sched = SCHEDULERS.get(name)(opt, TrainConfig(max_epochs=8, lr=LR))
    assert sched is None or isinstance(sched, torch.optim.lr_scheduler.LRScheduler)
    rates = _rates(name, 8)
    assert all(0 < r <= LR * (1 + 1e-12) for r in rates)


def test_none_keeps_the_rate_constant() -> None:
    assert _rates("none", 6) == [LR] * 6


@pytest.mark.parametrize("max_epochs", [1, 5, 30])
def test_cosine_is_torchs_cosine_annealing_over_max_epochs(max_epochs: int) -> None:
    opt = torch.optim.SGD([torch.nn.Parameter(torch.zeros(1))], lr=LR)
    torchs = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max_epochs)
    expected = []
    for _ in range(max_epochs):
        expected.append(opt.param_groups[0]["lr"])
        opt.step()
        torchs.step()
    assert _rates("cosine", max_epochs) == expected
    closed_form = [LR * (1 + math.cos(math.pi * e / max_epochs)) / 2 for e in range(max_epochs)]
    assert expected == pytest.approx(closed_form)


WARMUPS = [(1, 0), (2, 1), (9, 1), (10, 1), (19, 1), (20, 2), (30, 3)]  # (max_epochs, warmup epochs)


@pytest.mark.parametrize(("max_epochs", "warmup"), WARMUPS)
def test_warmup_is_a_tenth_of_the_epochs_at_least_one(max_epochs: int, warmup: int) -> None:
    assert warmup_epochs(max_epochs) == warmup


@pytest.mark.parametrize("max_epochs", [1, 2, 3, 10, 30])
def test_linear_warmup_cosine_follows_its_docstring(max_epochs: int) -> None:
    w, e_ = warmup_epochs(max_epochs), max_epochs
    expected = [
        LR * ((e + 1) / (w + 1) if e < w else (1 + math.cos(math.pi * (e - w) / (e_ - w))) / 2)
        for e in range(max_epochs)
    ]
    rates = _rates("linear_warmup_cosine", max_epochs)
    assert rates == pytest.approx(expected, rel=1e-12)
    peak = rates.index(max(rates))
    assert peak == w and rates[peak] == pytest.approx(LR)  # rises to lr in epoch W ...
    assert all(a < b for a, b in pairwise(rates[: peak + 1]))
    assert all(a > b for a, b in pairwise(rates[peak:]))  # ... then only falls


def test_linear_warmup_cosine_over_30_epochs() -> None:
    rates = _rates("linear_warmup_cosine", 30)
    assert rates[:4] == pytest.approx([LR / 4, LR / 2, 3 * LR / 4, LR])
    assert rates[-1] == pytest.approx(LR * (1 + math.cos(math.pi * 26 / 27)) / 2)


@pytest.mark.parametrize("max_epochs", [1, 2, 10, 30])
def test_one_cycle_rises_for_thirty_percent_then_anneals_to_lr_over_25e4(max_epochs: int) -> None:
    rates = _rates("one_cycle", max_epochs)
    rise = max(0, min(round(0.3 * max_epochs), max_epochs - 2))
    assert rates[rise] == pytest.approx(LR) and max(rates) == pytest.approx(LR)
    if rise:
        assert rates[0] == pytest.approx(LR / 25)
        assert all(a < b for a, b in pairwise(rates[: rise + 1]))
    if max_epochs > 1:
        assert rates[-1] == pytest.approx(LR / 25 / 1e4)
        assert all(a > b for a, b in pairwise(rates[rise:]))


def test_step_divides_by_ten_after_each_third() -> None:
    assert _rates("step", 9) == pytest.approx([LR] * 3 + [LR / 10] * 3 + [LR / 100] * 3)


def test_exponential_reaches_a_hundredth_after_max_epochs() -> None:
    rates = _rates("exponential", 10, epochs=11)
    assert rates[-1] == pytest.approx(LR / 100)
    assert all(b / a == pytest.approx(0.01**0.1) for a, b in pairwise(rates))


def test_plateau_halves_the_rate_when_the_validation_loss_stalls() -> None:
    losses = [1.0, 0.9, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8, 0.8]  # stalls after epoch 2; patience 4 -> 2 epochs
    rates = _rates("plateau", 9, losses=losses, patience=4)
    assert rates == pytest.approx([LR] * 6 + [LR / 2] * 3)


# --- callbacks and schedules inside a real fit ----------------------------------------------------


def _fit(tmp_path: Path | None = None, **options: object) -> TrainResult:
    model, heads, losses, tables, _ = prepared(synthetic_frame(120), "kind")
    cfg = TrainConfig(progress=False, accelerator="cpu", **options)  # type: ignore[arg-type]
    return train_model(model, heads, losses, tables["train"], tables["val"], cfg, tmp_path)


@pytest.mark.parametrize("name", CALLBACKS.names())
def test_every_callback_attaches_to_a_fit(name: str) -> None:
    assert len(_fit(max_epochs=1, callbacks=[name]).history) == 1


@pytest.mark.parametrize("scheduler", SCHEDULERS.names())
def test_lr_monitor_logs_each_epochs_rate_in_the_history_and_csv(tmp_path: Path, scheduler: str) -> None:
    """The rate each epoch trained at, in that epoch's history row and metrics.csv: for every schedule,
    the sequence its own test holds it to (Lightning steps it once per epoch, after validation)."""
    result = _fit(tmp_path, max_epochs=3, patience=10, lr=LR, scheduler=scheduler, callbacks=["lr_monitor"])
    expected = _rates(scheduler, 3)
    assert [h["lr"] for h in result.history] == pytest.approx(expected, rel=1e-6)
    logged = pd.read_csv(tmp_path / "metrics.csv").dropna(subset=["lr"])
    assert logged["epoch"].tolist() == [0, 1, 2]
    assert logged["lr"].tolist() == pytest.approx(expected, rel=1e-6)
    assert logged["val_accuracy"].notna().all()  # the same row as the epoch's validation metrics


def test_each_history_row_holds_its_own_epochs_train_loss(tmp_path: Path) -> None:
    result = _fit(tmp_path, max_epochs=3, patience=10)
    logged = pd.read_csv(tmp_path / "metrics.csv").dropna(subset=["train_loss"])
    assert [h["epoch"] for h in result.history] == logged["epoch"].tolist() == [0, 1, 2]
    assert [h["train_loss"] for h in result.history] == pytest.approx(logged["train_loss"].tolist(), rel=1e-6)


def test_gradient_shares_add_up_to_one_and_a_frozen_encoder_gets_none(tmp_path: Path) -> None:
    model, heads, losses, tables, _ = prepared(synthetic_frame(120), "kind")
    for parameter in model.encoders["text"].parameters():
        parameter.requires_grad_(False)
    cfg = TrainConfig(progress=False, accelerator="cpu", max_epochs=2, callbacks=["modality_grad_share"])
    history = train_model(model, heads, losses, tables["train"], tables["val"], cfg, tmp_path).history
    for row in history:
        assert row["grad_share_text"] == 0.0 and row["grad_share_tabular"] == pytest.approx(1.0)
    unfrozen = _fit(tmp_path / "both", max_epochs=2, callbacks=["modality_grad_share"]).history
    for row in unfrozen:
        shares = [row["grad_share_text"], row["grad_share_tabular"]]
        assert sum(shares) == pytest.approx(1.0) and all(0.0 < share < 1.0 for share in shares)
    logged = pd.read_csv(tmp_path / "both" / "metrics.csv").dropna(subset=["grad_share_text"])
    assert logged["epoch"].tolist() == [0, 1]


def test_lr_monitor_only_observes() -> None:
    plain = _fit(max_epochs=2)
    watched = _fit(max_epochs=2, callbacks=["lr_monitor"])
    assert [{k: v for k, v in h.items() if k != "lr"} for h in watched.history] == plain.history


# --- names in configs -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "message"),
    [
        ({"optimizer": "lion"}, "unknown optimizer 'lion'; known: adam, adamw, rmsprop, sgd, sgd_momentum"),
        (
            {"scheduler": "warm_restarts"},
            "unknown scheduler 'warm_restarts'; known: cosine, exponential, linear_warmup_cosine, none, "
            "one_cycle, plateau, step",
        ),
        (
            {"callbacks": ["lr_monitor", "nope"]},
            "unknown training callback 'nope'; known: lr_monitor, modality_grad_share",
        ),
    ],
)
def test_unknown_names_fail_at_config_time(option: dict[str, object], message: str, tmp_path: Path) -> None:
    cfg = TrainConfig(**option)  # type: ignore[arg-type]
    whole = f"^[\"']{re.escape(message)}[\"']$"  # the whole message: str(KeyError) quotes it
    with pytest.raises(KeyError, match=whole):
        check_names(cfg)
    # ``fit`` checks before reading the table: a missing table is not even looked for.
    with pytest.raises(KeyError, match=whole):
        polyfuse.fit(tmp_path / "no_such_table.csv", label="y", verbose=False, **option)
    with pytest.raises(KeyError, match=whole):  # and so does the loop, before Lightning starts
        _fit(max_epochs=1, **option)


def test_callbacks_must_be_a_list_of_names() -> None:
    with pytest.raises(TypeError, match=r"list of names, e.g. \['lr_monitor'\]"):
        check_names(TrainConfig(callbacks="lr_monitor"))  # type: ignore[arg-type]


def test_train_config_round_trips_and_old_configs_load() -> None:
    cfg = TrainConfig(scheduler="linear_warmup_cosine", optimizer="sgd", callbacks=["lr_monitor"])
    assert from_dict(TrainConfig, json.loads(json.dumps(to_dict(cfg)))) == cfg
    old = to_dict(TrainConfig())
    del old["callbacks"]  # a config.json saved before the field existed
    assert from_dict(TrainConfig, json.loads(json.dumps(old))) == TrainConfig()
    assert TrainConfig().callbacks == [] and TrainConfig().scheduler == "cosine"

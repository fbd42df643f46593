"""train.weights.fit_modality_weights: a late fusion's modality weights fit on held-out rows."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest
import torch
from torch import Tensor, nn

import polyfuse
import polyfuse.fusions  # noqa: F401  (registers the fusions)
import polyfuse.heads  # noqa: F401
from conftest import FAST, synthetic_frame
from polyfuse.config import HeadConfig, TrainConfig
from polyfuse.data.batch import EncodedTable
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.registry import FUSIONS, HEADS
from polyfuse.train.loop import train_model
from polyfuse.train.weights import can_fit_weights, fit_modality_weights

DIM = 6


class Features(nn.Module):
    """An encoder that passes its float features through (the experts do the learning)."""

    def __init__(self) -> None:
        super().__init__()
        self.output_dim = DIM

    def forward(self, x: Tensor) -> Tensor:
        return x


def toy_model(fusion: str = "late", **params: object) -> MultimodalModel:
    torch.manual_seed(0)
    encoders = {"a": Features(), "b": Features()}
    built = FUSIONS.build(fusion, in_dims={"a": DIM, "b": DIM}, hidden_dim=16, **params)
    head = HEADS.build("multiclass", in_dim=built.output_dim, num_outputs=3, hidden_dim=0)
    return MultimodalModel(encoders, built, {"y": head})


def toy_table(n: int, seed: int, noisy: str = "b", absent_b: int = 0) -> EncodedTable:
    """Modality ``a`` shows the class clearly; the ``noisy`` one only faintly."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 3, (n,), generator=g)
    signal = nn.functional.one_hot(y, DIM).float()
    x = {m: signal * (0.3 if m == noisy else 2.0) + torch.randn(n, DIM, generator=g) for m in ("a", "b")}
    mask = {"a": torch.ones(n, dtype=torch.bool), "b": torch.arange(n) >= absent_b}
    return EncodedTable(inputs=x, mask=mask, targets={"y": y}, row_ids=list(range(n)))


def val_loss(model: MultimodalModel, table: EncodedTable) -> float:
    with torch.no_grad():
        return float(
            nn.functional.cross_entropy(model(table.take(list(range(len(table)))))["y"], table.targets["y"])
        )


def trained_toy(cfg: TrainConfig) -> tuple[MultimodalModel, object]:
    model = toy_model()
    losses = {"y": nn.CrossEntropyLoss()}
    result = train_model(
        model, [HeadConfig("y", "multiclass", 3)], losses, toy_table(300, 0), toy_table(200, 1), cfg
    )
    return model, result


FIT_CFG = TrainConfig(max_epochs=4, batch_size=32, accelerator="cpu", progress=False, baselines=False)


@pytest.fixture(scope="module")
def trained() -> tuple[MultimodalModel, object]:
    return trained_toy(FIT_CFG)


@pytest.fixture
def model(trained: tuple[MultimodalModel, object]) -> MultimodalModel:
    """A fresh copy of the trained toy model (combine "mean", weights not fitted)."""
    return copy.deepcopy(trained[0])


def test_fitted_weights_minimise_the_validation_loss_over_the_simplex(model: MultimodalModel) -> None:
    val = toy_table(200, 1)
    before = val_loss(model, val)
    weights = fit_modality_weights(model, val, {"y": nn.CrossEntropyLoss()})
    after = val_loss(model, val)
    assert set(weights) == {"a", "b"} and sum(weights.values()) == pytest.approx(1.0, abs=1e-3)
    assert weights["a"] > weights["b"]  # the clear modality counts for more
    assert after <= before + 1e-6
    for w in torch.linspace(0.0, 1.0, 21).tolist():  # no weight pair on a grid does better
        with torch.no_grad():
            model.fusion.logits.copy_(torch.log(torch.tensor([w, 1.0 - w]).clamp_min(1e-9)))
        assert after <= val_loss(model, val) + 1e-4, w


def test_rows_missing_a_modality_use_the_other_expert_alone(model: MultimodalModel) -> None:
    fit_modality_weights(model, toy_table(200, 1), {"y": nn.CrossEntropyLoss()})
    table = toy_table(10, 2, absent_b=10)  # b absent everywhere
    batch = table.take(list(range(10)))
    with torch.no_grad():
        fused = model(batch)["y"]
        alone = model.heads["y"](model.fusion.experts["a"](batch.inputs["a"]))
    assert torch.allclose(fused, alone, atol=1e-5)
    assert torch.allclose(model.fusion.modality_weights()["a"], torch.ones(10))


def test_the_training_loop_fits_them_when_asked_and_only_for_late_fusion(trained: tuple) -> None:
    assert trained[1].modality_weights is None  # not asked
    _, result = trained_toy(TrainConfig(**{**FIT_CFG.__dict__, "fit_modality_weights": True}))
    assert result.modality_weights is not None and result.modality_weights["a"] > 0.5  # type: ignore[attr-defined]
    assert can_fit_weights(toy_model("late", combine="learned"))
    for fusion, params in [("late", {"combine": "stacking"}), ("attention", {})]:
        model = toy_model(fusion, **params)
        assert not can_fit_weights(model)
        with pytest.raises(ValueError, match="late fusion"):
            fit_modality_weights(model, toy_table(20, 1), {"y": nn.CrossEntropyLoss()})


def test_mean_weights_stay_fixed_during_training(model: MultimodalModel) -> None:
    # combine "mean": a plain mean until fitted
    assert torch.equal(model.fusion.logits.detach(), torch.zeros(2))
    assert not model.fusion.logits.requires_grad


def test_fit_saves_and_reloads_the_fitted_weights(tmp_path: Path) -> None:
    frame = synthetic_frame(240, seed=0, task="multiclass")
    opts = {**FAST, "max_epochs": 2, "baselines": False}
    predictor = polyfuse.fit(
        frame, label="kind", fusion="late", out=tmp_path, fit_modality_weights=True, **opts
    )
    weights = predictor.metrics["modality_weights"]
    assert sum(weights.values()) == pytest.approx(1.0, abs=1e-3) and len(weights) >= 2
    again = polyfuse.load(tmp_path)
    assert again.predict_proba(frame.head(20)).equals(predictor.predict_proba(frame.head(20)))
    fitted = torch.softmax(again.model.fusion.logits.detach(), dim=0)
    assert fitted.tolist() == pytest.approx([weights[m] for m in again.model.fusion.names], abs=1e-3)

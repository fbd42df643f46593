"""Per-sample hard-concrete gates (dynamic feature selection): the gate's distribution, every fusion
behind embedding gates, and a fit whose tabular gates stay open on the informative columns."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from tests.conftest import FAST

import polyfuse
import polyfuse.fusions  # noqa: F401  (registers the fusions)
from polyfuse.fusions.gates import GatedFusion, HardConcreteGate, l0_penalty
from polyfuse.registry import FUSIONS

IN_DIMS = {"text": 5, "image": 7, "audio": 3}


def test_the_gate_is_random_in_training_and_fixed_in_evaluation():
    torch.manual_seed(0)
    gate = HardConcreteGate(4, 6)
    torch.nn.init.constant_(gate.logits.bias, 0.0)
    x = torch.randn(64, 4)
    gate.train()
    a, b = gate(x), gate(x)
    assert not torch.equal(a, b) and float(a.min()) >= 0.0 and float(a.max()) <= 1.0
    assert float((a == 0).float().mean()) > 0.05 and float((a == 1).float().mean()) > 0.05  # exact 0s and 1s
    gate.eval()
    assert torch.equal(gate(x), gate(x))
    torch.testing.assert_close(gate(x), torch.full((64, 6), 0.5))  # sigmoid(0) stretched: 0.5 x 1.2 - 0.1


def test_the_l0_penalty_falls_as_the_logits_fall():
    gate, x = HardConcreteGate(3, 8).train(), torch.randn(16, 3)
    penalties = []
    for bias in (3.0, 0.0, -3.0):
        torch.nn.init.constant_(gate.logits.bias, bias)
        gate(x)
        penalties.append(float(gate.l0()))
    assert penalties[0] > penalties[1] > penalties[2] and penalties[0] <= 8.0
    torch.nn.init.constant_(gate.logits.bias, -6.0)
    assert torch.equal(gate.eval()(x), torch.zeros(16, 8))  # far below: every gate shut


@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_runs_behind_embedding_gates(name):
    torch.manual_seed(0)
    inner = FUSIONS.build(name, in_dims=IN_DIMS)
    fusion = GatedFusion(inner, IN_DIMS)
    assert fusion.output_dim == inner.output_dim
    assert getattr(fusion, "wants_tokens", False) == getattr(inner, "wants_tokens", False)
    embeddings = {m: torch.randn(6, d) for m, d in IN_DIMS.items()}
    mask = {m: torch.tensor([True, False, True, True, False, True]) for m in IN_DIMS}
    kwargs = {"tokens_valid": {}} if getattr(inner, "wants_tokens", False) else {}
    fusion.train()
    out = fusion(embeddings, mask, **kwargs)
    assert out.shape == (6, inner.output_dim) and torch.isfinite(out).all()
    (out.sum() + l0_penalty(fusion)).backward()
    assert all(g.logits.bias.grad is not None for g in fusion.gates.values())


def noisy_columns(n: int = 600, seed: int = 0) -> pd.DataFrame:
    """Two informative numbers and six noise numbers; the label is read from the first two."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    frame = pd.DataFrame({f"noise{i}": rng.normal(0, 1, n) for i in range(6)})
    frame["signal_a"] = z + rng.normal(0, 0.4, n)
    frame["signal_b"] = -z + rng.normal(0, 0.4, n)
    frame["kind"] = np.array(["a", "b", "c"])[z]
    return frame


def test_tabular_gates_stay_open_on_the_informative_columns():
    frame = noisy_columns()
    frame["text"] = "nothing to read here"
    predictor = polyfuse.fit(
        frame, label="kind", feature_gates="tabular", feature_gate_l0=0.05, max_epochs=25, patience=25,
        baselines=False, seed=0, **FAST,
    )  # fmt: skip
    columns = predictor.metrics["feature_gates"]["columns"]
    signal = np.mean([columns["signal_a"], columns["signal_b"]])
    noise = np.mean([columns[f"noise{i}"] for i in range(6)])
    assert signal > noise + 0.3, columns  # measured: 1.0 against about 0.5
    assert "embeddings" not in predictor.metrics["feature_gates"]
    assert predictor.metrics["test"]["accuracy"] > 0.8


def test_embedding_gates_are_part_of_the_saved_model(tmp_path):
    frame = noisy_columns(200)
    frame["text"] = "nothing to read here"
    predictor = polyfuse.fit(
        frame, label="kind", out=tmp_path / "m", feature_gates="both", max_epochs=2, **FAST
    )
    found = predictor.metrics["feature_gates"]
    assert set(found["embeddings"]) == {"tabular", "text"} and len(found["columns"]) == 8
    assert all(0.0 <= v <= 1.0 for v in [*found["embeddings"].values(), *found["columns"].values()])
    loaded = polyfuse.load(tmp_path / "m")
    assert loaded.model_config.fusion.gates or any(m.model.fusion.gates for m in loaded.model_config.members)
    rows = frame.drop(columns="kind").iloc[:40]
    pd.testing.assert_frame_equal(loaded.predictions(rows), predictor.predictions(rows))

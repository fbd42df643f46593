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
from polyfuse.eval.gates import gate_report
from polyfuse.fusions.gates import GatedFusion, HardConcreteGate, l0_penalty, present
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


def _sign_gates(fusion: GatedFusion) -> None:
    """Each embedding dimension's gate logit is 10 x its value: open for +1, shut for -1."""
    for gate in fusion.gates.values():
        torch.nn.init.eye_(gate.logits.weight)
        gate.logits.weight.data *= 10.0
        torch.nn.init.zeros_(gate.logits.bias)


def _shut_where_present(mask: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Embeddings of -1 on the rows where a modality is present, +1 (open gates) on the absent rows."""
    return {m: torch.where(mask[m][:, None], -1.0, 1.0).expand(-1, IN_DIMS[m]) for m in IN_DIMS}


def test_absent_rows_count_neither_in_the_penalty_nor_in_the_open_share():
    fusion = GatedFusion(FUSIONS.build("concat", in_dims=IN_DIMS), IN_DIMS)
    _sign_gates(fusion)
    half = torch.tensor([True, False] * 4)
    mask = {"text": half, "image": ~half, "audio": torch.zeros(8, dtype=torch.bool)}
    fusion.train()(_shut_where_present(mask), mask)
    # present rows: P(z != 0) = sigmoid(-10 + 1.60) = 2.3e-4 per gate; absent ones (P = 1.0) are left out
    assert float(l0_penalty(fusion)) < 0.01
    everyone = {m: torch.ones(8, dtype=torch.bool) for m in IN_DIMS}
    fusion(_shut_where_present(mask), everyone)  # the same embeddings, all counted: half the rows open
    # text 5 x 1/2 + image 7 x 1/2 + audio 3 x 1 (absent throughout, so open throughout)
    assert float(l0_penalty(fusion)) == pytest.approx(2.5 + 3.5 + 3.0, abs=0.01)

    class Embedded(torch.nn.Module):  # the model surface gate_report reads: predict(batch)
        def __init__(self) -> None:
            super().__init__()
            self.fusion = fusion

        def predict(self, batch):
            return self.fusion(*batch)

    class Table:  # the EncodedTable surface gate_report reads: len() and batches(size)
        def __len__(self) -> int:
            return 8

        def batches(self, size):
            yield _shut_where_present(mask), mask

    found = gate_report(Embedded(), Table(), {})
    assert found == {"embeddings": {"text": 0.0, "image": 0.0}}  # audio, absent throughout, is left out


def test_a_token_level_fusion_counts_present_rows_valid_tokens():
    mask, valid = torch.tensor([True, False]), torch.tensor([[True, True, False], [True, True, True]])
    rows = present(mask, valid, torch.zeros(2, 3, 4))  # [B, T]
    assert rows.tolist() == [[True, True, False], [False, False, False]]
    assert present(mask, None, torch.zeros(2, 3, 4)).shape == (2, 1)  # a present row's every token
    assert torch.equal(present(mask, None, torch.zeros(2, 4)), mask) and present(None, None, mask) is None
    gate = HardConcreteGate(4, 4).train()
    torch.nn.init.eye_(gate.logits.weight)
    gate.logits.weight.data *= 10.0
    torch.nn.init.zeros_(gate.logits.bias)
    x = torch.where(rows[..., None], -1.0, 1.0).expand(-1, -1, 4)  # counted tokens shut, the rest open
    assert gate(x, rows).shape == (2, 3, 4)
    assert float(gate.l0()) < 0.01  # the 2 counted tokens: 4 x sigmoid(-10 + 1.60) = 9e-4
    gate(x)
    assert float(gate.l0()) == pytest.approx(4 * 4 / 6, abs=0.01)  # all 6 counted: 4 of them open


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

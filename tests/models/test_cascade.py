"""The modality cascade: each stage encodes one more modality for the rows still running, a row stops
once confident, running everything reproduces the model, and the plan fit measures on validation
reads a compute budget."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from tests.conftest import FAST, synthetic_frame
from typer.testing import CliRunner

import polyfuse
import polyfuse.cli
import polyfuse.fusions  # noqa: F401  (registers the fusions)
from polyfuse.config import FusionConfig, ModelConfig
from polyfuse.errors import PolyfuseError
from polyfuse.eval.cascade import (
    MEASURED,
    plan_cascade,
    prefix_outputs,
    simulate,
    threshold_for,
    threshold_within,
)
from polyfuse.eval.probe import fusion_features
from polyfuse.fitting import FitRequest, prepare
from polyfuse.models.build import build_model
from polyfuse.models.cascade import NEVER, cascade_predict, confidence, head_tasks
from polyfuse.models.inference import predict_table
from polyfuse.predictor import data_split
from polyfuse.registry import FUSIONS

LABELS = {"multiclass": ["kind"], "two_labels": ["kind", "price"]}


def _present(table):
    return {m: mask.bool() for m, mask in table.mask.items()}


def _untrained(fusion: str, task: str = "multiclass"):
    frame = synthetic_frame(80, task=task)
    frame.loc[::7, "text"] = None  # some rows lack their note: a stage may have nothing to encode
    prep = prepare(frame, Path.cwd(), FitRequest(LABELS[task], encoders={"text": "text_bag"}))
    torch.manual_seed(0)
    model = build_model(ModelConfig(prep.encoders, FusionConfig(fusion), prep.heads), prep.pre).eval()
    return prep, model


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_running_every_modality_gives_the_model_s_own_outputs(fusion):
    prep, model = _untrained(fusion)
    table = prep.tables["train"]
    result = cascade_predict(model, table, ["text", "tabular"], NEVER, batch_size=16)
    expected = predict_table(model, table)
    torch.testing.assert_close(result.outputs["kind"], expected["kind"], atol=1e-5, rtol=1e-4)
    assert result.stages.tolist() == [2] * len(table)


@pytest.mark.parametrize("fusion", FUSIONS.names())
def test_each_stage_sees_only_the_modalities_encoded_so_far(fusion):
    prep, model = _untrained(fusion)
    table, order = prep.tables["train"], ["tabular", "text"]
    first = cascade_predict(model, table, order, 0.0, batch_size=16)
    assert first.stages.tolist() == [1] * len(table)
    prefixes = prefix_outputs(model, fusion_features(model, table, 16), _present(table), order, batch_size=16)
    torch.testing.assert_close(first.outputs["kind"], prefixes[0]["kind"], atol=1e-5, rtol=1e-4)


@pytest.mark.parametrize("task", list(LABELS))
def test_the_simulated_cascade_is_the_real_one(task):
    prep, model = _untrained("concat", task)
    table, order = prep.tables["train"], ["tabular", "text"]
    prefixes = prefix_outputs(model, fusion_features(model, table), _present(table), order)
    tasks = head_tasks(model)
    kinds = {"kind": tasks["kind"]}  # the median confidence of the class label: half the rows are sure
    threshold = float(np.median(confidence({"kind": prefixes[0]["kind"]}, kinds).numpy()))
    present = _present(table)
    outputs, stage, spent = simulate(
        prefixes, order, {"tabular": 1.0, "text": 10.0}, present, tasks, threshold
    )
    real = cascade_predict(model, table, order, threshold, batch_size=16)
    assert real.stages.tolist() == stage.tolist()
    for label in LABELS[task]:
        torch.testing.assert_close(real.outputs[label], outputs[label], atol=1e-5, rtol=1e-4)
    if task == "multiclass":  # about half the rows stop after the cheap modality
        assert 0.3 < (stage == 1).mean() < 0.7
        with_text = ((stage == 2) & table.mask["text"].bool().numpy()).sum()
        assert spent.sum() == pytest.approx(len(table) * 1.0 + with_text * 10.0)
    else:  # a regression label is never confident: every row runs every modality
        assert (stage == 2).all()


def test_confidence_is_the_least_confident_label():
    outputs = {
        "a": torch.tensor([[0.9, 0.1], [0.5, 0.5]]),
        "b": torch.tensor([0.2, 0.99]),  # binary: max(p, 1 - p)
        "c": torch.tensor([[0.95, 0.3], [0.99, 0.01]]),  # multilabel: the least confident class
    }
    tasks = {"a": "multiclass", "b": "binary", "c": "multilabel"}
    torch.testing.assert_close(confidence(outputs, tasks), torch.tensor([0.7, 0.5]))


def test_a_budget_picks_the_best_validated_point_that_fits():
    plan = {
        "curve": [
            {"threshold": 0.0, "val_score": 0.80, "ms_per_row": 1.0},
            {"threshold": 0.9, "val_score": 0.95, "ms_per_row": 2.0},
            {"threshold": 0.99, "val_score": 0.96, "ms_per_row": 4.0},
            {"threshold": NEVER, "val_score": 0.96, "ms_per_row": 6.0},
        ]
    }
    assert threshold_for(plan, 2.5) == 0.9
    assert threshold_for(plan, 100.0) == 0.99  # the same score for less
    assert threshold_for(plan, 0.1) == 0.0  # nothing fits: the cheapest
    assert threshold_within(plan, 0.01) == 0.9 and threshold_within(plan, 0.0) == 0.99


@pytest.fixture(scope="module")
def fitted(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("cascade") / "model"
    frame = synthetic_frame(400, seed=1)
    predictor = polyfuse.fit(frame, label="kind", out=out, max_epochs=6, seed=0, **FAST)
    return predictor, out, frame


def test_fit_measures_the_cascade_on_validation(fitted):
    predictor, _, frame = fitted
    plan = predictor.metrics["cascade"]
    assert sorted(plan["order"]) == sorted(predictor.model.modalities)
    assert set(plan["encoder_ms"]) == set(plan["order"]) and min(plan["encoder_ms"].values()) > 0
    curve = plan["curve"]
    assert curve[0]["threshold"] == 0.0 and curve[-1]["threshold"] == NEVER
    assert curve[-1]["full_share"] == 1.0 and curve[0]["full_share"] == 0.0
    shares = [p["full_share"] for p in curve]
    assert shares == sorted(shares)  # a higher threshold sends more rows to every modality
    val = predictor.evaluate(data_split(predictor, "val", frame))
    assert curve[-1]["val_score"] == pytest.approx(val["accuracy"], abs=1e-6)  # everything: the model itself


def test_a_budget_runs_the_cascade_in_predict_and_the_cli(fitted, tmp_path):
    predictor, out, frame = fitted
    test = frame.iloc[:60]
    cheapest = min(p["ms_per_row"] for p in predictor.metrics["cascade"]["curve"])
    loaded = polyfuse.load(out)
    every = loaded.predict(test)
    pd_budget = loaded.predict(test, budget_ms=1e9)  # everything fits: the best validated point
    assert (pd_budget == every).mean() > 0.9
    cheap = loaded.predictions(test, budget_ms=cheapest)
    assert len(cheap) == len(test) and "p_kind_a" in cheap
    csv = tmp_path / "t.csv"
    test.to_csv(csv, index=False)
    result = CliRunner().invoke(
        polyfuse.cli.app,
        ["predict", str(out), str(csv), "--out", str(tmp_path / "p.csv"), "--budget-ms", str(cheapest)],
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "p.csv").read_text().splitlines()[1:] == _csv_lines(cheap)


def _csv_lines(frame) -> list[str]:
    frame = frame.copy()
    frame.index.name = "row"
    return frame.to_csv().splitlines()[1:]


def test_a_model_without_a_plan_refuses_a_budget(fitted):
    predictor, _, frame = fitted
    plain = polyfuse.Predictor(
        predictor.preprocessor, predictor.model_config, predictor.train_config, predictor.model
    )
    with pytest.raises(PolyfuseError, match="no cascade plan"):
        plain.predict(frame.iloc[:5], budget_ms=1.0)


def test_plan_cascade_orders_modalities_cheapest_first(fitted):
    predictor, _, frame = fitted
    table, _ = predictor.encode(frame.iloc[:100], targets=True)
    plan = plan_cascade(predictor.model, table, predictor.schema.labels)
    costs = plan["encoder_ms"]
    assert plan["order"] == sorted(costs, key=costs.get)


def test_explain_runs_the_cascade_for_real_and_draws_it(fitted, tmp_path):
    predictor, _, frame = fitted
    result = predictor.explain(frame.iloc[300:], out=tmp_path / "explain", samples=2, steps=4)
    measured = result["cascade"]["measured"]
    assert [p["threshold"] for p in measured] == list(MEASURED)
    assert measured[0]["full_share"] == 0.0 and measured[-1]["full_share"] == 1.0
    shares = [p["full_share"] for p in measured]
    assert shares == sorted(shares)
    assert measured[-1]["score"] == pytest.approx(result["shapley"]["metric_all"], abs=1e-6)
    assert all(p["ms_per_row"] > 0 for p in measured)
    assert (tmp_path / "explain" / result["figures"]["cascade"]).is_file()


def test_the_printed_budget_buys_the_printed_point(fitted):
    from polyfuse.reporting import CASCADE_TOLERANCE, cascade_line

    plan = fitted[0].metrics["cascade"]
    budget = float(cascade_line(plan).rsplit("--budget-ms ", 1)[1].rstrip(")"))
    assert threshold_for(plan, budget) == threshold_within(plan, CASCADE_TOLERANCE)
    tricky = {**plan, "curve": [{**p, "ms_per_row": p["ms_per_row"] + 0.00044} for p in plan["curve"]]}
    budget = float(
        cascade_line(tricky).rsplit("--budget-ms ", 1)[1].rstrip(")")
    )  # rounding down would miss it
    assert threshold_for(tricky, budget) == threshold_within(tricky, CASCADE_TOLERANCE)

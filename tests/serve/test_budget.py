"""``polyfuse serve --budget-ms``: the server runs the modality cascade and says so in /model."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from polyfuse.eval.cascade import threshold_for
from polyfuse.serve import ServeConfig, create_app
from serve.serving import FIELDS, assert_close, fields_of, post


def _budget(small) -> float:
    """A budget between the cheapest point of the model's curve and running everything."""
    curve = small.predictor.metrics["cascade"]["curve"]
    return (curve[0]["ms_per_row"] + curve[-1]["ms_per_row"]) / 2


@pytest.fixture(scope="module")
def budgeted(small):
    with TestClient(create_app(str(small.folder), ServeConfig(budget_ms=_budget(small)))) as client:
        yield client


def test_model_describes_the_cascade_it_runs(small, budgeted):
    body = budgeted.get("/model").json()["cascade"]
    plan = small.predictor.metrics["cascade"]
    assert body["order"] == plan["order"] and body["budget_ms"] == pytest.approx(_budget(small))
    assert body["threshold"] == threshold_for(plan, _budget(small))
    assert body["validation"]["ms_per_row"] <= _budget(small) or body["validation"] == plan["curve"][0]


@pytest.mark.parametrize("i", [0, 3])
def test_served_answers_are_the_cascade_s(small, budgeted, i):
    response = post(budgeted, fields_of(small, i, FIELDS), "json")
    assert response.status_code == 200, response.text
    row = small.frame.iloc[[i]]
    table, _ = small.predictor.encode((row, small.root))
    want = small.predictor.outputs(table, budget_ms=_budget(small))["kind"][0]
    classes = [str(c) for c in small.predictor.schema.labels[0].classes]
    assert_close(response.json()["probabilities"], dict(zip(classes, want.tolist(), strict=True)))


def test_a_budget_needs_the_torch_backend(small):
    with pytest.raises(ValueError, match="torch backend"):
        create_app(str(small.folder), ServeConfig(backend="onnx", budget_ms=1.0))

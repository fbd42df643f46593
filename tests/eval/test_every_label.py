"""A model with two labels is explained, reported, served and quantized for each of them, not only the
first: per-label Shapley values that add up, a column per label in the report, ``by_label`` in the
served explanation and in the int8 comparison."""

from __future__ import annotations

import json

import pytest
from fastapi.testclient import TestClient
from tests.conftest import FAST, synthetic_frame
from typer.testing import CliRunner

import polyfuse
from polyfuse.cli import app

LABELS = ["kind", "price"]


@pytest.fixture(scope="module")
def two_labels(tmp_path_factory: pytest.TempPathFactory):
    root = tmp_path_factory.mktemp("two-labels")
    frame = synthetic_frame(240, seed=2, task="two_labels")
    predictor = polyfuse.fit(frame, label=LABELS, out=root / "model", max_epochs=4, baselines=False, **FAST)
    frame.to_csv(root / "table.csv", index=False)
    return predictor, root


@pytest.fixture(scope="module")
def explained(two_labels):
    predictor, root = two_labels
    result = predictor.explain(root / "table.csv", out=root / "model" / "explain", samples=2, steps=4)
    return predictor, root, result


def test_explain_gives_every_label_its_own_shapley_values(explained):
    _, root, result = explained
    labels = result["labels"]
    assert list(labels) == LABELS
    assert [labels[k]["metric"] for k in LABELS] == ["accuracy", "r2"]
    for found in labels.values():
        shapley = found["shapley"]
        total = sum(shapley["values"].values())
        assert total == pytest.approx(shapley["metric_all"] - shapley["metric_none"], abs=1e-9)  # efficiency
        assert set(shapley["values"]) == {"text", "tabular"} and found["robustness"]
    assert labels["kind"]["shapley"]["values"] == result["shapley"]["values"]  # the first is the top level
    assert labels["price"]["confusion"] is None and labels["kind"]["confusion"] is not None
    assert labels["price"]["shapley"]["metric_all"] > 0.5  # the regression label is learnt (R²)
    saved = json.loads((root / "model" / "explain" / "explain.json").read_text())
    assert saved["labels"]["price"]["shapley"]["values"] == pytest.approx(
        labels["price"]["shapley"]["values"]
    )
    assert (root / "model" / "explain" / saved["figures"]["shapley_price"]).is_file()
    assert "confusion_price" not in saved["figures"]  # regression: no confusion matrix
    # The first label's entry is the top level's, computed once.
    assert labels["kind"]["robustness"] == result["robustness"]
    assert labels["kind"]["fix_break"] == result["fix_break"]
    assert labels["price"]["fix_break_rule"].startswith("|error| <=")
    for found in labels.values():  # no noise and no drop is the model with every modality
        for curves in found["robustness"].values():
            assert curves["noise"][0][1] == pytest.approx(found["shapley"]["metric_all"])
            assert curves["drop"][0][1] == pytest.approx(found["shapley"]["metric_all"])


def test_labels_share_the_noisy_encodings(two_labels):
    from polyfuse.eval.probe import Probe
    from polyfuse.eval.robustness import robustness

    predictor, root = two_labels
    table, _ = predictor.encode(root / "table.csv", targets=True)
    kind, price = predictor.schema.labels
    first = Probe.build(predictor.model, table, kind)
    second = Probe(predictor.model, price, table, first.features)
    encoded: dict = {}
    shared = [robustness(p, levels=(0.0, 1.0), encoded=encoded) for p in (first, second)]
    assert set(encoded) == {("tabular", 1.0)}  # numbers are noised at the input, text on its embedding
    alone = robustness(second, levels=(0.0, 1.0))
    assert shared[1] == alone  # the shared encoding gives the same curves as encoding again
    assert shared[0]["tabular"]["noise"] != shared[1]["tabular"]["noise"]  # each label's own metric


def test_the_explain_command_prints_every_label(explained):
    _, root, _ = explained
    out = root / "cli-explain"
    args = ["explain", str(root / "model"), str(root / "table.csv"), "--out", str(out), "--samples", "2"]
    result = CliRunner().invoke(app, [*args, "--steps", "4"])
    assert result.exit_code == 0, result.output
    assert "kind accuracy:" in result.output and "price r2:" in result.output


def test_the_report_tables_every_label(explained):
    _, root, result = explained
    page = polyfuse.report(root / "model", root / "report.html").read_text()
    assert "kind (accuracy)" in page and "price (r2)" in page
    value = result["labels"]["price"]["shapley"]["values"]["tabular"]
    assert f"{value:.4f}" in page
    assert "<dt>labels</dt><dd>kind, price</dd>" in page
    r2 = json.loads((root / "model" / "metrics.json").read_text())["test"]["by_label"]["price"]["r2"]
    price_metrics = page.split("<h3>Test metrics: price</h3>")[1].split("</table>")[0]
    assert f'<td>r2</td><td class="num">{r2:.4f}</td>' in price_metrics
    assert "<h3>price</h3>" in page  # its robustness table


def test_served_explanations_hold_every_label(two_labels):
    from polyfuse.serve import ServeConfig, create_app

    predictor, root = two_labels
    row = {
        "text": "the parcel arrived late and quietly without fuss",
        "x1": 1.2,
        "x2": -0.3,
        "colour": "green",
    }
    with TestClient(create_app(str(root / "model"), ServeConfig())) as client:
        body = client.post("/explain", json=row).json()
        described = client.get("/model").json()
    assert [(d["column"], d["task"]) for d in described["labels"]] == [
        ("kind", "multiclass"),
        ("price", "regression"),
    ]
    assert set(described["metrics"]["test"]["by_label"]) == set(LABELS)  # the page's per-label metric chips
    assert set(body["by_label"]) == set(LABELS)
    for label, found in body["by_label"].items():
        total = sum(found["contributions"].values())
        assert total == pytest.approx(found["full"] - found["base"], abs=1e-5), label
    assert body["contributions"] == body["by_label"]["kind"]["contributions"]
    assert body["by_label"]["price"]["target"] == "predicted value"
    assert body["by_label"]["price"]["full"] == pytest.approx(body["predictions"]["price"]["value"], abs=1e-5)


def test_int8_comparison_reports_every_label(two_labels, tmp_path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    import shutil

    from polyfuse.export import compare_int8
    from polyfuse.predictor import data_split

    predictor, root = two_labels
    copy = tmp_path / "model"
    shutil.copytree(root / "model", copy, ignore=shutil.ignore_patterns("logs", "explain"))
    args = ["export", str(copy), "--quantize", "int8", "--data", str(root / "table.csv")]
    exported = CliRunner().invoke(app, args)
    assert exported.exit_code == 0, exported.output
    assert "  kind accuracy: fp32 " in exported.output and "  price mse: fp32 " in exported.output
    table, _ = predictor.encode(data_split(predictor, "test", root / "table.csv"), targets=True)
    result = compare_int8(predictor, copy / "model.onnx", copy / "model.int8.onnx", table)
    assert set(result["by_label"]) == set(LABELS)
    assert (
        result["by_label"]["kind"]["metric"] == "accuracy" and result["by_label"]["price"]["metric"] == "mse"
    )
    for found in result["by_label"].values():
        assert found["change"] == pytest.approx(found["int8"] - found["fp32"])
    assert result["int8"] == result["by_label"]["kind"]["int8"]

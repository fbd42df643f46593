"""``polyfuse report``: one self-contained HTML page about a compare, model or explain directory.

The compare and explain directories are written here in the documented format (notes/formats.md);
the model directory (and a compare's ``best/``) is a real one from a tiny fit.
"""

from __future__ import annotations

import base64
import io
import json
import re
import shutil
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from PIL import Image
from typer.testing import CliRunner

import polyfuse
from conftest import FAST, synthetic_frame
from polyfuse.cli import app
from polyfuse.errors import PolyfuseError
from polyfuse.htmlreport import analysis, build_report, build_sections, features, load_run, sections
from polyfuse.htmlreport.html import fmt
from polyfuse.htmlreport.sources import epoch_rows, summarize

MODALITIES = ["text", "tabular"]
CLASSES = ["a", "b", "<i>c</i>"]  # a class name with markup: it must come out escaped
EVIL_ERROR = "<script>alert('x')</script> out of memory & \"more\""
# Mean test accuracy per configuration (modalities, fusion); seeds add SEED_OFFSETS.
CONFIG_SCORES = {
    ("text", "concat"): 0.80,
    ("tabular", "concat"): 0.68,
    ("text+tabular", "concat"): 0.86,
    ("text+tabular", "gmu"): 0.88,
    ("text+tabular", "sum"): 0.84,
}
SEED_OFFSETS = [-0.01, 0.0, 0.013]
SHAPLEY = {
    "values": {"text": 0.30, "tabular": 0.20},
    "metric": "accuracy",
    "metric_all": 0.83,
    "metric_none": 0.33,
}
ALL_SECTIONS = [
    "overview",
    "leaderboard",
    "shapley",
    "robustness",
    "confusion",
    "training",
    "imbalance",
    "cascade",
    "errors",
    "correlation",
    "attention",
    "features",
]


# --- fixture directories in the documented formats -------------------------------------------------


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A real model directory (config, weights, metrics.json, logs/metrics.csv) from a 2-epoch fit."""
    out = tmp_path_factory.mktemp("report-model") / "model"
    polyfuse.fit(synthetic_frame(120), label="kind", out=out, max_epochs=2, **FAST)
    return out


def write_png(path: Path, color: tuple[int, int, int], size: tuple[int, int] = (60, 40)) -> None:
    pixels = np.zeros((size[1], size[0], 3), dtype=np.uint8)
    pixels[:] = color
    pixels[5:15, 5:40] = 255 - np.array(color, dtype=np.uint8)  # two colours: a real picture, not a blank
    Image.fromarray(pixels).save(path)


def write_explain_dir(out: Path, modalities: list[str] = MODALITIES, classes: list[str] = CLASSES) -> Path:
    """shapley.json, shapley_per_sample.csv, explain.json and its PNG figures, as ``polyfuse explain``
    writes them (the report redraws five of the figures from the data and inlines the other two)."""
    out.mkdir(parents=True, exist_ok=True)
    shapley = dict(SHAPLEY, subsets={"text": 0.32, "tabular": 0.18}, subsets_metric="accuracy")
    shapley["coalitions"] = [
        {"modalities": [], "metric": 0.33},
        {"modalities": ["text"], "metric": 0.72},
        {"modalities": ["tabular"], "metric": 0.61},
        {"modalities": ["text", "tabular"], "metric": 0.83},
    ]
    (out / "shapley.json").write_text(json.dumps(shapley))
    per_sample = pd.DataFrame(
        {"row_id": [3, 7, 11, 19], "text": [0.4, -0.1, 0.5, 0.2], "tabular": [0.1, 0.3, -0.2, 0.0]}
    )
    per_sample.to_csv(out / "shapley_per_sample.csv", index=False)
    redrawn = ["shapley", "robustness", "correlation", "confusion", "attention"]
    figures = {name: f"{name}.png" for name in [*redrawn, "ig_text", "importance_tabular"]}
    for i, name in enumerate(figures.values()):
        write_png(out / name, ((40 * i) % 255, 120, 200))
    explain = {
        "metric": "accuracy",
        "label": "kind",
        "task": "multiclass",
        "modalities": modalities,
        "rows": 18,
        "presence": [
            {"present": modalities, "rows": 15, "metric": 0.87},
            {"present": ["text"], "rows": 3, "metric": 0.67},
        ],
        "fix_break": {
            "text": {
                "fixed": 4,
                "broken": 1,
                "both_right": 11,
                "both_wrong": 2,
                "examples_fixed": [3, 7, 11, 19, 23, 29, 31, 37, 41],
                "examples_broken": [5],
            },
            "tabular": {
                "fixed": 6,
                "broken": 0,
                "both_right": 9,
                "both_wrong": 3,
                "examples_fixed": [2, 4],
                "examples_broken": [],
            },
        },
        "fix_break_rule": "predicted label correct",
        "robustness": {
            m: {
                "drop": [[0.0, 0.83], [0.5, 0.7 - 0.1 * i], [1.0, 0.6 - 0.2 * i]],
                "noise": [[0.0, 0.83], [0.5, 0.8], [1.0, 0.74]],
                "noise_on": "embedding" if m == "text" else "input",
            }
            for i, m in enumerate(modalities)
        },
        "correlation": {
            "modalities": modalities,
            "cka": [[1.0, 0.31], [0.31, 1.0]],
            "cca": [[1.0, 0.45], [0.45, 1.0]],
        },
        "attention": {"text": 0.62, "tabular": 0.38},
        "confusion": {"classes": classes, "matrix": [[5, 1, 0], [1, 4, 1], [0, 0, 6]]},
        "features": {
            "tabular": {"x1": 0.41, "colour": 0.12, "x2": 0.03},
            "text": {
                "method": "integrated_gradients",
                "on": "token embeddings",
                "samples": 8,
                "top_tokens": [["late", 0.21, 9], ["early", 0.17, 7]],
            },
        },
        "figures": figures,
        "shapley": shapley,
    }
    (out / "explain.json").write_text(json.dumps(explain))
    return out


def leaderboard_rows() -> list[dict[str, Any]]:
    rows = []
    for (mods, fusion), score in CONFIG_SCORES.items():
        n = len(mods.split("+"))
        encoders = ";".join(f"{m}={'text_bag' if m == 'text' else 'tabular_mlp'}" for m in mods.split("+"))
        for seed, offset in enumerate(SEED_OFFSETS):
            acc = score + offset
            rows.append(
                {
                    "run_id": f"{mods.replace('+', '-')}_{fusion}_s{seed}",
                    "modalities": mods,
                    "n_modalities": n,
                    "fusion": fusion,
                    "encoders": encoders,
                    "seed": seed,
                    "status": "ok",
                    "metric": "accuracy",
                    "test_accuracy": acc,
                    "test_f1_macro": acc - 0.02,
                    "val_score": acc + 0.01,
                    "params": 40_000 * n + (5_000 if fusion == "gmu" else 0),
                    "trainable_params": 40_000 * n,
                    "train_seconds": 1.5 * n + seed * 0.1,
                    "epochs": 3,
                    "latency_ms": 0.05 * n,
                    "error": "",
                }
            )
    rows.append(
        {
            "run_id": "text-tabular_tensor_s0",
            "modalities": "text+tabular",
            "n_modalities": 2,
            "fusion": "tensor",
            "encoders": "text=text_bag;tabular=tabular_mlp",
            "seed": 0,
            "status": "failed",
            "metric": "accuracy",
            "error": EVIL_ERROR,
        }
    )
    return rows


def write_compare_dir(out: Path, best_model: Path, with_explain: bool = True) -> Path:
    """leaderboard.csv, a shuffled summary.csv, compare.json, runs/*/history.csv, best/ and explain/."""
    out.mkdir(parents=True, exist_ok=True)
    board = pd.DataFrame(leaderboard_rows())
    board.to_csv(out / "leaderboard.csv", index=False)
    ok = board[board["status"] == "ok"]
    summary = (
        ok.groupby(["modalities", "n_modalities", "fusion", "encoders"], sort=False)
        .agg(
            seeds=("seed", "count"),
            accuracy_mean=("test_accuracy", "mean"),
            accuracy_std=("test_accuracy", "std"),
            val_score_mean=("val_score", "mean"),
            params=("params", "first"),
            train_seconds_mean=("train_seconds", "mean"),
            latency_ms=("latency_ms", "mean"),
        )
        .reset_index()
    )
    summary.insert(4, "params_json", "")
    summary.sample(frac=1.0, random_state=3).to_csv(out / "summary.csv", index=False)  # not in order
    best_run = "text-tabular_gmu_s2"
    compare = {
        "metric": "accuracy",
        "higher_is_better": True,
        "label": "kind",
        "modalities": MODALITIES,
        "fusions": ["concat", "gmu", "sum", "tensor"],
        "seeds": [0, 1, 2],
        "best": {"run_id": best_run, "modalities": "text+tabular", "fusion": "gmu", "accuracy": 0.893},
        "best_single": {
            "run_id": "text_concat_s2",
            "modalities": "text",
            "fusion": "concat",
            "accuracy": 0.813,
        },
        "selection": "best validation score of a single run",
        "data": {"table": "/data/parcels.csv"},
        "finished": True,
    }
    (out / "compare.json").write_text(json.dumps(compare))
    for i, run_id in enumerate(ok["run_id"]):
        epochs = np.arange(4)
        history = pd.DataFrame(
            {
                "epoch": epochs,
                "train_loss": 1.1 / (epochs + 1),
                "val_loss": 1.2 / (epochs + 1) + 0.01 * i,
                "val_accuracy": 0.5 + 0.1 * epochs - 0.005 * i,
            }
        )
        (out / "runs" / run_id).mkdir(parents=True)
        history.to_csv(out / "runs" / run_id / "history.csv", index=False)
    shutil.copytree(best_model, out / "best")
    if with_explain:
        write_explain_dir(out / "explain")
    return out


@pytest.fixture(scope="module")
def compare_dir(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_compare_dir(tmp_path_factory.mktemp("report-compare") / "compare", model_dir)


@pytest.fixture(scope="module")
def compare_html(compare_dir: Path) -> str:
    return build_report(compare_dir).read_text()


# --- helpers ---------------------------------------------------------------------------------------


def section_ids(page: str) -> list[str]:
    return re.findall(r'<section id="([^"]+)">', page)


def section_html(page: str, section_id: str) -> str:
    match = re.search(rf'<section id="{section_id}">(.*?)</section>', page, re.S)
    assert match, section_id
    return match.group(1)


def png_images(page: str) -> list[Image.Image]:
    """Every inline image of the page, decoded (fails if one is not a valid PNG)."""
    images = []
    for data in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', page):
        image = Image.open(io.BytesIO(base64.b64decode(data)))
        image.load()
        assert image.format == "PNG"
        images.append(image)
    return images


def table_rows(fragment: str) -> list[list[str]]:
    body = re.search(r"<tbody>(.*?)</tbody>", fragment, re.S)
    assert body
    return [
        re.findall(r"<td[^>]*>(.*?)</td>", row) for row in re.findall(r"<tr[^>]*>(.*?)</tr>", body.group(1))
    ]


# --- the whole page --------------------------------------------------------------------------------


def test_compare_report_has_every_section_in_order(compare_dir: Path, compare_html: str):
    assert (compare_dir / "report.html").is_file()  # the default output path
    assert section_ids(compare_html) == ALL_SECTIONS
    assert "<title>polyfuse report: compare (comparison)</title>" in compare_html


def test_figures_are_inline_pngs_and_nothing_is_external(compare_html: str):
    images = png_images(compare_html)
    # leaderboard chart, shapley, robustness, confusion, training (loss + all runs), imbalance (probes,
    # gradient shares), cascade, correlation, attention, and the two explain PNGs the report does not
    # redraw (ig_text, importance_tabular).
    assert len(images) == 13
    assert all(img.width >= 60 and img.height >= 40 for img in images)
    assert compare_html.count("<img ") == len(images)
    assert not re.search(r"https?://", compare_html)
    assert not re.search(r"<(script|link|iframe)\b", compare_html, re.I)
    assert "@import" not in compare_html and "url(" not in compare_html
    for target in re.findall(r'(?:src|href)="([^"]*)"', compare_html):
        assert target.startswith(("data:image/png;base64,", "#")), target[:40]


def test_text_from_the_run_is_escaped(compare_html: str):
    assert "<script>" not in compare_html and "<i>c</i>" not in compare_html
    assert (
        "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt; out of memory &amp; &quot;more&quot;"
        in compare_html
    )
    assert "&lt;i&gt;c&lt;/i&gt;" in section_html(compare_html, "confusion")


def test_summary_line_names_the_best_configuration_and_single_modality(compare_html: str):
    gmu = np.array([0.88 + o for o in SEED_OFFSETS])
    text = np.mean([0.80 + o for o in SEED_OFFSETS])
    summary = re.search(r'<div class="summary" id="summary">(.*?)</div>', compare_html).group(1)
    assert f"best: <b>text+tabular with gmu</b>, accuracy {gmu.mean():.3f} ± {gmu.std(ddof=1):.3f}" in summary
    assert f"best single modality: <b>text</b> {text:.3f}" in summary
    assert "largest Shapley value: <b>text</b> (+0.300)" in summary


def test_leaderboard_is_sorted_best_first_from_a_shuffled_summary(compare_html: str):
    rows = table_rows(section_html(compare_html, "leaderboard"))
    means = {k: np.mean([v + o for o in SEED_OFFSETS]) for k, v in CONFIG_SCORES.items()}
    order = sorted(means, key=lambda k: -means[k])
    assert [(r[1], r[2]) for r in rows[:5]] == [(m, f if "+" in m else "–") for m, f in order]
    best = np.array([0.88 + o for o in SEED_OFFSETS])
    assert rows[0][5] == f"{best.mean():.4f} ± {best.std(ddof=1):.4f}"
    assert rows[0][6] == "85,000" and rows[0][4] == "3"
    leaderboard = section_html(compare_html, "leaderboard")
    assert "Failed runs" in leaderboard and "text-tabular_tensor_s0" in leaderboard


def test_shapley_section_reports_efficiency_and_subsets(compare_html: str):
    shapley = section_html(compare_html, "shapley")
    assert "Efficiency holds: the values sum to metric_all − metric_none = 0.5000." in shapley
    rows = table_rows(shapley)
    assert rows[0][:3] == ["text", "0.3000", "60.0%"] and rows[1][:3] == ["tabular", "0.2000", "40.0%"]
    assert rows[0][3] == "0.3200"  # the retrained-subsets value
    assert rows[0][4] == "0.3000"  # mean |per-sample value| of text: (0.4 + 0.1 + 0.5 + 0.2) / 4
    assert '<td>text+tabular</td><td class="num">0.8300</td>' in shapley  # the coalition table


def test_error_analysis_tables(compare_html: str):
    errors = section_html(compare_html, "errors")
    assert '<td>text+tabular</td><td class="num">15</td><td class="num">0.8700</td>' in errors
    rows = table_rows(errors.split("Fixed and broken")[1])
    assert rows[0][:6] == ["text", "4", "1", "11", "2", "3"]
    assert rows[0][6] == "3, 7, 11, 19, 23, 29, 31, 37 … (+1)"
    assert rows[1][7] == "–"


def test_confusion_section_counts_and_recall(compare_html: str):
    rows = table_rows(section_html(compare_html, "confusion"))
    assert rows[0] == ["a", "6", "5", "0.8333"]
    assert rows[2] == ["&lt;i&gt;c&lt;/i&gt;", "6", "6", "1.0000"]


def test_model_dir_report_without_explain(model_dir: Path, tmp_path: Path):
    page = build_report(model_dir, tmp_path / "r.html").read_text()
    assert section_ids(page) == [
        "overview",
        "confusion",
        "training",
        "imbalance",
        "cascade",
        "explain-missing",
    ]
    metrics = json.loads((model_dir / "metrics.json").read_text())
    assert f"test accuracy {metrics['test']['accuracy']:.3f}" in page
    overview = section_html(page, "overview")
    assert "text=text_bag, tabular=tabular_mlp" in overview
    assert "train 84, val 18, test 18" in overview
    assert f"polyfuse explain {model_dir} --out {model_dir / 'explain'}" in section_html(
        page, "explain-missing"
    )
    # the confusion matrix of metrics.json, with the class names of preprocessor.json
    matrix = metrics["test"]["confusion_matrix"]
    rows = table_rows(section_html(page, "confusion"))
    assert [r[0] for r in rows] == ["a", "b", "c"] and [int(r[1]) for r in rows] == [sum(r) for r in matrix]
    assert len(png_images(page)) == 5  # confusion, training curves, linear probes, gradient shares, cascade
    cascade = section_html(page, "cascade")
    assert "cheapest first" in cascade and all(f"{m} " in cascade for m in metrics["cascade"]["order"])
    imbalance = section_html(page, "imbalance")
    assert "linear probe" in imbalance and "gradient norm per epoch" in imbalance
    # the final model's column first, then the fused network's (when it is not the final one), then each alone
    header = re.findall(r"<th(?: [^>]*)?>(.*?)</th>", overview)
    final = metrics["final_model"]
    first = "fused (concat)" if final == "fused" else f"final: {final}"
    assert header[:2] == ["test metric", first] and header[-2:] == ["text alone", "tabular alone"], header


def test_regression_model_report(tmp_path: Path):
    out = tmp_path / "model"
    predictor = polyfuse.fit(
        synthetic_frame(120, task="regression"), label="price", out=out, max_epochs=2, **FAST
    )
    page = build_report(out).read_text()
    assert section_ids(page) == [
        "overview",
        "training",
        "imbalance",
        "explain-missing",
    ]  # no confusion matrix
    test, baselines = predictor.metrics["test"], predictor.metrics["baselines"]
    best = min(baselines, key=lambda m: baselines[m]["test"]["mse"])  # mse: lower is better
    single = baselines[best]["test"]["mse"]
    assert f"test mse {test['mse']:.3f}; best single modality: <b>{best}</b> {single:.3f}" in page
    assert len(png_images(page)) == 3  # training curves, linear probes (R²), gradient shares


def test_model_dir_with_an_explain_subfolder(model_dir: Path, tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    write_explain_dir(folder / "explain")
    page = build_report(folder).read_text()
    assert section_ids(page) == [s for s in ALL_SECTIONS if s != "leaderboard"]
    assert "explain-missing" not in page


def test_explain_dir_alone(tmp_path: Path):
    folder = write_explain_dir(tmp_path / "explain")
    explain = json.loads((folder / "explain.json").read_text())
    explain["figures"]["missing"] = "nope.png"
    explain["figures"]["outside"] = "../secret.png"
    write_png(tmp_path / "secret.png", (1, 2, 3))
    (folder / "explain.json").write_text(json.dumps(explain))
    page = build_report(folder, tmp_path / "out" / "report.html").read_text()
    skipped = ("leaderboard", "training", "imbalance", "cascade")  # a model's metrics.json holds them
    assert section_ids(page) == [s for s in ALL_SECTIONS if s not in skipped]
    assert "<dt>data rows</dt><dd>18 test rows explained</dd>" in section_html(page, "overview")
    features = section_html(page, "features")
    assert features.count("<img ") == 2
    assert "<figcaption>text: integrated gradients (ig_text.png)</figcaption>" in features
    assert "<figcaption>tabular: permutation importance (importance_tabular.png)</figcaption>" in features
    assert "<dt>on</dt><dd>token embeddings</dd>" in features  # the text summary's facts under its figure
    assert "figure missing (nope.png) is listed in explain.json but is not a readable PNG." in features
    assert "figure outside (../secret.png)" in features  # refused: outside the explain folder
    assert "<h2>Training curves</h2>" not in page


def test_every_label_of_an_explain_dir(tmp_path: Path):
    # Two classification labels: the second has its own Shapley values, robustness and confusion.
    folder = write_explain_dir(tmp_path / "explain")
    explain = json.loads((folder / "explain.json").read_text())
    second = {
        "task": "binary",
        "metric": "accuracy",
        "shapley": {"values": {"text": 0.05, "tabular": 0.25}, "metric_all": 0.9, "metric_none": 0.6},
        "robustness": {m: {"drop": [[0.0, 0.9], [1.0, 0.55]]} for m in MODALITIES},
        "confusion": {"classes": ["no", "yes"], "matrix": [[7, 2], [1, 8]]},
        "presence": [{"present": ["text", "tabular"], "rows": 18, "metric": 0.8333}],
        "fix_break": {
            "text": {"fixed": 3, "broken": 1, "both_right": 12, "both_wrong": 2},
            "tabular": {"fixed": 0, "broken": 2, "both_right": 13, "both_wrong": 3},
        },
        "fix_break_rule": "predicted label correct",
    }
    keys = ("task", "metric", "shapley", "robustness", "confusion", "presence", "fix_break", "fix_break_rule")
    first = {k: explain[k] for k in keys}
    explain["labels"] = {"kind": first, "late": second}
    for name in ("shapley_late", "confusion_late"):  # explain's own PNGs: the report redraws them
        explain["figures"][name] = f"{name}.png"
        write_png(folder / f"{name}.png", (9, 9, 9))
    (folder / "explain.json").write_text(json.dumps(explain))
    page = build_report(folder).read_text()
    assert "<dt>labels</dt><dd>kind, late</dd>" in section_html(page, "overview")
    shapley = section_html(page, "shapley")
    assert len(png_images(shapley)) == 2  # the first label's bars, then every label's
    assert table_rows(shapley.split("<h3>Every label</h3>")[1])[1] == ["tabular", "0.2000", "0.2500"]
    confusion = section_html(page, "confusion")
    assert len(png_images(confusion)) == 1  # one figure, a panel per label
    assert "<h2>Confusion matrices</h2>" in page
    assert table_rows(confusion.split("<h3>late</h3>")[1]) == [
        ["no", "9", "7", "0.7778"],
        ["yes", "9", "8", "0.8889"],
    ]
    errors = section_html(page, "errors")  # each label's presence and fix / break tables
    assert errors.index("<h3>kind</h3>") < errors.index("<h3>late</h3>")
    late_errors = errors.split("<h3>late</h3>")[1]
    assert table_rows(late_errors)[0] == ["text+tabular", "18", "0.8333"]
    assert [r[:6] for r in table_rows(late_errors.split("Fixed and broken")[1])] == [
        ["text", "3", "1", "12", "2", "2"],
        ["tabular", "0", "2", "13", "3", "-2"],
    ]
    late = section_html(page, "robustness").split("<h3>late</h3>")[1]
    assert table_rows(late)[0] == ["text", "drop", "0.9000", "0.5500 at 1", "-0.3500"]
    assert "shapley_late.png" not in page and "confusion_late.png" not in page  # redrawn, not inlined


def test_every_label_of_a_model_dir_from_its_test_metrics(model_dir: Path, tmp_path: Path):
    # Without explanations: each label's test metrics and confusion matrix come from metrics.json.
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    metrics = json.loads((folder / "metrics.json").read_text())
    second = {"accuracy": 0.75, "confusion_matrix": [[3, 1], [1, 3]]}
    metrics["test"]["by_label"] = {"kind": dict(metrics["test"]), "late": second}
    (folder / "metrics.json").write_text(json.dumps(metrics))
    page = build_report(folder).read_text()
    overview = section_html(page, "overview")
    assert "<h3>Test metrics: kind</h3>" in overview and "<h3>Test metrics: late</h3>" in overview
    assert table_rows(overview.split("<h3>Test metrics: late</h3>")[1])[0][:2] == ["accuracy", "0.7500"]
    confusion = section_html(page, "confusion")
    assert "<h3>kind</h3>" in confusion and "<h3>late</h3>" in confusion
    assert [r[0] for r in table_rows(confusion.split("<h3>late</h3>")[1])] == ["0", "1"]  # no class names


def test_report_of_an_explain_dir_inside_a_model_uses_the_model(model_dir: Path, tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    page = build_report(write_explain_dir(folder / "explain")).read_text()
    assert section_ids(page)[0] == "overview" and "(explanations)" in page


# --- section builders ------------------------------------------------------------------------------


def test_feature_summaries_are_drawn_when_explain_drew_no_figure(tmp_path: Path):
    folder = write_explain_dir(tmp_path)
    explain = json.loads((folder / "explain.json").read_text())
    explain["figures"] = {}
    explain["features"]["image"] = {"skipped": "only cached embeddings, no inputs to attribute"}
    (folder / "explain.json").write_text(json.dumps(explain))
    section = features.features(load_run(folder))
    assert section is not None
    assert len(png_images(section.body)) == 1  # the tabular importance bars
    assert "tabular: the 3 most important features." in section.body
    assert [r[0] for r in table_rows(section.body)] == ["late", "early"]  # text tokens, as a table
    assert '<h3>image</h3><p class="note">No attribution: only cached embeddings' in section.body
    assert "<dt>method</dt><dd>integrated_gradients</dd>" in section.body


def test_nulls_from_strict_json_are_tolerated(tmp_path: Path):
    # explain writes NaN as null: an undefined CCA, a metric over no rows, a failed noise point.
    folder = write_explain_dir(tmp_path)
    explain = json.loads((folder / "explain.json").read_text())
    explain["correlation"]["cca"] = [[1.0, None], [None, 1.0]]
    explain["presence"].append({"present": ["tabular"], "rows": 0, "metric": None})
    explain["robustness"]["text"]["noise"] = [[0.0, 0.83], [0.5, None]]
    (folder / "explain.json").write_text(json.dumps(explain))
    run = load_run(folder)
    errors = analysis.errors(run)
    assert (
        errors is not None and '<td>tabular</td><td class="num">0</td><td class="num">–</td>' in errors.body
    )
    assert len(png_images(analysis.correlation(run).body)) == 1
    robustness = analysis.robustness(run)
    assert robustness is not None and "<td>text</td><td>noise</td>" in robustness.body
    assert "added to the embedding of text" in robustness.body


def test_sections_are_omitted_without_their_data(compare_dir: Path, tmp_path: Path):
    folder = tmp_path / "bare"
    folder.mkdir()
    shutil.copy(compare_dir / "leaderboard.csv", folder)
    run = load_run(folder)
    assert run.summary is not None and run.compare == {"metric": "accuracy"}
    built = build_sections(run)
    assert [s.id for s in built] == ["overview", "leaderboard"]
    assert "<dt>runs</dt><dd>15 finished, 1 failed</dd>" in built[0].body
    assert (
        analysis.shapley(run) is None and analysis.robustness(run) is None and sections.training(run) is None
    )


def test_summary_is_computed_from_the_leaderboard_when_absent():
    board = pd.DataFrame(leaderboard_rows())
    summary = summarize(board, "accuracy")
    assert len(summary) == len(CONFIG_SCORES)
    row = summary[(summary["modalities"] == "text+tabular") & (summary["fusion"] == "gmu")].iloc[0]
    assert row["accuracy_mean"] == pytest.approx(0.88 + np.mean(SEED_OFFSETS))
    assert row["seeds"] == 3 and row["params"] == 85_000


def test_saved_model_is_named_when_it_is_not_the_top_configuration(compare_dir: Path, tmp_path: Path):
    folder = tmp_path / "compare"
    shutil.copytree(compare_dir, folder)
    compare = json.loads((folder / "compare.json").read_text())
    assert "saved model" not in sections.summary_line(load_run(folder))  # best/ is the top row
    compare["best"] = compare["best_single"]  # validation picked the text-only run
    (folder / "compare.json").write_text(json.dumps(compare))
    run = load_run(folder)
    assert sections.summary_line(run).endswith(
        "; saved model (best/, chosen on validation): <b>text</b>"
        "; largest Shapley value: <b>text</b> (+0.300)"
    )
    overview = sections.overview(run)
    assert overview is not None
    assert "<dt>chosen by</dt><dd>best validation score of a single run</dd>" in overview.body


def test_searched_options_get_a_leaderboard_column(compare_dir: Path, tmp_path: Path):
    folder = tmp_path / "compare"
    shutil.copytree(compare_dir, folder)
    summary = pd.read_csv(folder / "summary.csv", keep_default_na=False, na_values=[""])
    summary["params_json"] = [json.dumps({"lr": 0.001, "fusion": {"hidden_dim": 64}})] + [""] * (
        len(summary) - 1
    )
    summary.to_csv(folder / "summary.csv", index=False)
    section = sections.leaderboard(load_run(folder))
    assert section is not None and "<th>options</th>" in section.body
    cells = [r[4] for r in table_rows(section.body)]
    assert sorted(cells) == ["lr=0.001, fusion.hidden_dim=64"] + ["–"] * (len(summary) - 1)


def test_subset_shapley_covers_modalities_the_model_lacks(tmp_path: Path):
    shapley = {
        "values": {"text": 0.5},
        "metric": "accuracy",
        "metric_all": 0.86,
        "metric_none": 0.36,
        "subsets": {"text": 0.27, "tabular": 0.27},
        "subsets_metric": "accuracy",
        "subsets_coalitions": [
            {"modalities": [], "metric": 0.36, "fusion": None},
            {"modalities": ["text", "tabular"], "metric": 0.91, "fusion": "concat"},
        ],
    }
    (tmp_path / "shapley.json").write_text(json.dumps(shapley))
    section = analysis.shapley(load_run(tmp_path))
    assert section is not None
    rows = table_rows(section.body)
    assert rows[0] == ["text", "0.5000", "100.0%", "0.2700"] and rows[1] == ["tabular", "–", "–", "0.2700"]
    assert '<td>text+tabular</td><td>concat</td><td class="num">0.9100</td>' in section.body
    assert len(png_images(section.body)) == 1


def test_lower_is_better_metric_sorts_ascending(tmp_path: Path):
    board = pd.DataFrame(
        {
            "run_id": ["a", "b", "c"],
            "modalities": ["x", "y", "x+y"],
            "n_modalities": [1, 1, 2],
            "fusion": ["concat"] * 3,
            "encoders": ["", "", ""],
            "seed": [0, 0, 0],
            "status": ["ok"] * 3,
            "metric": ["mse"] * 3,
            "test_mse": [0.5, 0.9, 0.2],
        }
    )
    board.to_csv(tmp_path / "leaderboard.csv", index=False)
    (tmp_path / "compare.json").write_text(json.dumps({"metric": "mse", "higher_is_better": False}))
    run = load_run(tmp_path)
    assert run.summary["modalities"].tolist() == ["x+y", "x", "y"]
    assert sections.summary_line(run).startswith("best: <b>x+y with concat</b>, mse 0.200")


def test_shapley_efficiency_violation_is_flagged(tmp_path: Path):
    (tmp_path / "shapley.json").write_text(json.dumps(dict(SHAPLEY, metric_all=0.9)))
    section = analysis.shapley(load_run(tmp_path))
    assert section is not None
    assert "The values sum to 0.500000, not metric_all − metric_none = 0.570000." in section.body
    assert 'class="warn"' in section.body


def test_csv_logger_rows_become_one_row_per_epoch():
    log = pd.DataFrame(
        {
            "epoch": [0, 0, 1, 1],
            "step": [1, 1, 3, 3],
            "train_loss": [np.nan, 1.05, np.nan, 0.65],
            "val_accuracy": [0.67, np.nan, 0.89, np.nan],
            "val_loss": [0.66, np.nan, 0.49, np.nan],
        }
    )
    rows = epoch_rows(log)
    assert rows.to_dict("list") == {
        "epoch": [0, 1],
        "train_loss": [1.05, 0.65],
        "val_accuracy": [0.67, 0.89],
        "val_loss": [0.66, 0.49],
    }


def test_fmt():
    assert fmt(0.98765) == "0.9877" and fmt(85000) == "85,000" and fmt(85000.0) == "85,000"
    assert fmt(None) == "–" and fmt(float("nan")) == "–" and fmt("gmu") == "gmu"


def test_a_dollar_in_a_name_is_drawn_literally(tmp_path: Path):
    (tmp_path / "shapley.json").write_text(json.dumps(dict(SHAPLEY, values={"$x$": 0.3, "price $": 0.2})))
    section = analysis.shapley(load_run(tmp_path))
    assert section is not None and len(png_images(section.body)) == 1


# --- errors, API and CLI ---------------------------------------------------------------------------


def test_not_a_run_directory(tmp_path: Path):
    with pytest.raises(PolyfuseError, match="not a polyfuse directory"):
        build_report(tmp_path)
    with pytest.raises(PolyfuseError, match="not a directory"):
        build_report(tmp_path / "absent")


def test_broken_json_names_the_file(tmp_path: Path):
    (tmp_path / "compare.json").write_text("{not json")
    with pytest.raises(PolyfuseError, match="compare.json"):
        build_report(tmp_path)


def test_missing_matplotlib_names_the_extra(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    write_explain_dir(tmp_path)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(PolyfuseError, match=re.escape("pip install 'polyfuse[explain]'")):
        build_report(tmp_path)
    assert not (tmp_path / "report.html").exists()


def test_public_report_function_stays_callable(compare_dir: Path, tmp_path: Path):
    first = polyfuse.report(compare_dir, out=tmp_path / "a.html")
    second = polyfuse.report(str(compare_dir), out=str(tmp_path / "b.html"))  # still the function
    assert first == tmp_path / "a.html" and second == tmp_path / "b.html"
    assert callable(polyfuse.report) and section_ids(second.read_text()) == ALL_SECTIONS


def test_cli_report(compare_dir: Path, tmp_path: Path):
    out = tmp_path / "cli" / "report.html"
    result = CliRunner().invoke(app, ["report", str(compare_dir), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(out) and section_ids(out.read_text()) == ALL_SECTIONS


def test_cli_report_default_path_and_error(model_dir: Path, tmp_path: Path):
    folder = tmp_path / "model"
    shutil.copytree(model_dir, folder)
    result = CliRunner().invoke(app, ["report", str(folder)])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == str(folder / "report.html") and (folder / "report.html").is_file()
    failed = CliRunner().invoke(app, ["report", str(tmp_path / "absent")])
    assert failed.exit_code != 0 and isinstance(failed.exception, PolyfuseError)

"""The command line: every command's help, fit -> info / evaluate / predict, and user mistakes."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import typer
from typer.testing import CliRunner

import polyfuse
from conftest import CORRUPT_ROW, synthetic_frame
from polyfuse.cli import app

runner = CliRunner()


def _command_paths(command: Any, prefix: tuple[str, ...] = ()) -> list[tuple[str, ...]]:
    """Every command and sub-command of the app as argument tuples, e.g. ("datasets", "build")."""
    paths = [prefix] if prefix else []
    # Groups have ``commands`` (typer may bundle its own click, so no isinstance on click.Group).
    for name, sub in getattr(command, "commands", {}).items():
        paths += _command_paths(sub, (*prefix, name))
    return paths


COMMANDS = _command_paths(typer.main.get_command(app))


def test_the_command_tree_is_complete():
    expected = {"fit", "evaluate", "predict", "info", "encoders", "fusions", "datasets"}
    assert {path[0] for path in COMMANDS} >= expected
    assert ("datasets", "list") in COMMANDS and ("datasets", "build") in COMMANDS


@pytest.mark.parametrize("path", [(), *COMMANDS], ids=lambda p: " ".join(p) or "polyfuse")
def test_every_command_has_help(path):
    result = runner.invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage:" in result.output and "--help" in result.output


def _polyfuse(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """Run the CLI in a fresh interpreter through ``polyfuse.cli.main`` (the console entry point)."""
    return subprocess.run(
        [sys.executable, "-m", "polyfuse.cli", *args], capture_output=True, text=True, cwd=cwd, timeout=300
    )


def test_console_script_help():
    script = Path(sys.executable).with_name("polyfuse")
    assert script.is_file(), "the `polyfuse` console script is not installed (pip install -e .)"
    done = subprocess.run([str(script), "--help"], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for command in ("fit", "evaluate", "predict", "info", "datasets"):
        assert command in done.stdout


def test_datasets_list_shows_digits_av():
    result = runner.invoke(app, ["datasets", "list"])
    assert result.exit_code == 0 and "digits-av" in result.output


def test_encoders_and_fusions_list_the_registries():
    encoders = runner.invoke(app, ["encoders"])
    assert encoders.exit_code == 0
    listed = {line.split()[0] for line in encoders.output.splitlines()}
    assert {e["name"] for e in polyfuse.list_encoders()} <= listed
    fusions = runner.invoke(app, ["fusions"])
    assert fusions.exit_code == 0 and "concat" in fusions.output


# --- fit, then use the saved model ----------------------------------------------------------------


@pytest.fixture(scope="module")
def cli_model(tmp_path_factory):
    """``polyfuse fit`` on a 200-row CSV; returns (table, model folder)."""
    root = tmp_path_factory.mktemp("cli")
    table = root / "orders.csv"
    synthetic_frame(200, seed=1).to_csv(table, index=False)
    out = root / "model"
    args = ["fit", str(table), "--label", "kind", "--out", str(out), "--quiet", "--max-epochs", "4"]
    result = runner.invoke(app, [*args, "--encoder", "text=text_bag", "--no-baselines"])
    assert result.exit_code == 0, result.output
    assert result.output.strip() == ""  # --quiet prints nothing on success
    return table, out


def test_fit_saves_a_loadable_model(cli_model):
    table, out = cli_model
    predictor = polyfuse.load(out)
    assert predictor.labels == ["kind"]
    assert predictor.model_config.encoders["text"].name == "text_bag"
    assert predictor.train_config.max_epochs == 4 and predictor.metrics["baselines"] == {}


def test_fit_passes_fusion_encoder_and_head_options(tmp_path):
    table, out = tmp_path / "orders.csv", tmp_path / "model"
    synthetic_frame(80, seed=2).to_csv(table, index=False)
    args = ["fit", str(table), "--label", "kind", "--out", str(out), "--quiet", "--max-epochs", "1"]
    args += ["--encoder", "text=text_bag", "--no-baselines", "--fusion", "relation"]
    options = {
        "--fusion-option": ["objects=text", "hidden_dim=12", "dropout=0.25"],
        "--encoder-option": ["tabular.dropout=0.3"],
        "--head-option": ["dropout=0.4", "hidden_dim=8"],
    }
    args += [part for flag, values in options.items() for value in values for part in (flag, value)]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    loaded = polyfuse.load(out)
    config = loaded.model_config
    assert config.fusion.name == "relation"
    assert config.fusion.params == {"objects": "text", "hidden_dim": 12, "dropout": 0.25}
    assert config.encoders["tabular"].params["dropout"] == 0.3
    assert config.heads[0].params == {"dropout": 0.4, "hidden_dim": 8}
    assert loaded.model.heads["kind"].net[-2].p == 0.4  # the head's dropout before its output layer
    bad = runner.invoke(app, [*args, "--fusion-option", "objects"])
    assert bad.exit_code == 2 and "KEY=VALUE for --fusion-option" in bad.output
    bad = runner.invoke(app, [*args, "--encoder-option", "dropout=0.1"])
    assert bad.exit_code == 2 and "MODALITY.KEY=VALUE" in bad.output


def test_info(cli_model):
    _, out = cli_model
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0, result.output
    assert "input text (text, columns ['text']): encoder text_bag" in result.output
    assert "label kind (multiclass): 3 classes" in result.output
    assert "fusion: concat" in result.output and "test: accuracy" in result.output


def test_info_of_a_regression_model(tmp_path):
    table, out = tmp_path / "prices.csv", tmp_path / "model"
    synthetic_frame(120, task="regression").to_csv(table, index=False)
    args = ["fit", str(table), "--label", "price", "--out", str(out), "--quiet", "--max-epochs", "2"]
    assert runner.invoke(app, [*args, "--encoder", "text=text_bag"]).exit_code == 0
    result = runner.invoke(app, ["info", str(out)])
    assert result.exit_code == 0, result.output
    assert "label price (regression)" in result.output and "classes" not in result.output
    assert "nan" not in result.output
    for name in ("text", "tabular"):
        line = next(x for x in result.output.splitlines() if x.strip().startswith(f"{name} only:"))
        assert " r2 " in line, line


def test_evaluate_json(cli_model):
    table, out = cli_model
    result = runner.invoke(app, ["evaluate", str(out), str(table), "--json"])
    assert result.exit_code == 0, result.output
    metrics = json.loads(result.stdout)
    assert metrics == json.loads(json.dumps(polyfuse.load(out).evaluate(str(table))))
    assert len(metrics["confusion_matrix"]) == 3 and sum(map(sum, metrics["confusion_matrix"])) == 200
    assert metrics["accuracy"] >= 0.6  # train + val + test rows of an easy table; chance is 0.33


def test_predict_writes_labels_and_probabilities(cli_model, tmp_path):
    table, out = cli_model
    preds = tmp_path / "preds.csv"
    result = runner.invoke(app, ["predict", str(out), str(table), "--out", str(preds)])
    assert result.exit_code == 0, result.output
    assert f"wrote 200 predictions to {preds}" in result.output
    frame = pd.read_csv(preds)
    assert list(frame.columns) == ["row", "kind", "p_kind_a", "p_kind_b", "p_kind_c"]
    assert frame["row"].tolist() == list(range(200))
    proba = frame[["p_kind_a", "p_kind_b", "p_kind_c"]]
    assert (proba.sum(axis=1) - 1).abs().max() < 1e-5
    assert (proba.idxmax(axis=1).str.removeprefix("p_kind_") == frame["kind"]).all()


# --- user mistakes: exit code 2, one "error:" line, no traceback ----------------------------------


def _assert_one_line_error(done: subprocess.CompletedProcess[str], *fragments: str) -> None:
    assert done.returncode == 2, (done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    assert "Traceback" not in done.stderr + done.stdout
    for fragment in fragments:
        assert fragment in lines[0]


@pytest.mark.slow
def test_missing_label_column_is_a_one_line_error(tmp_path):
    table = tmp_path / "t.csv"
    synthetic_frame(30).to_csv(table, index=False)
    done = _polyfuse("fit", str(table), "--label", "nope", "--out", str(tmp_path / "m"), "--quiet")
    _assert_one_line_error(done, "label column 'nope' not in the table")


@pytest.mark.slow
def test_corrupt_file_without_skip_is_a_one_line_error(media_table, tmp_path):
    args = ["fit", str(media_table), "--label", "label", "--out", str(tmp_path / "m"), "--quiet"]
    done = _polyfuse(*args, "--max-epochs", "1", "--encoder", "text=text_bag")
    where, what = f"row {CORRUPT_ROW}, column 'img'", f"cannot read image 'img/{CORRUPT_ROW}.png'"
    _assert_one_line_error(done, where, what)
    assert not (tmp_path / "m").exists()


@pytest.mark.slow
def test_unknown_encoder_is_a_one_line_error(tmp_path):
    table = tmp_path / "t.csv"
    synthetic_frame(30).to_csv(table, index=False)
    args = ["fit", str(table), "--label", "kind", "--out", str(tmp_path / "m"), "--quiet"]
    done = _polyfuse(*args, "--encoder", "text=nope")
    _assert_one_line_error(done, "unknown encoder 'nope'", "text_bag")

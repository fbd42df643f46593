"""Options are defined once: every ``TrainConfig`` field is a ``fit`` / ``compare`` CLI option and an API
keyword with the same default, and a value given on the command line reaches the API unchanged."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

import polyfuse
from polyfuse.cli import app
from polyfuse.config import (
    COMPARE_DEFAULTS,
    CompareOptions,
    GenerateOptions,
    PretrainOptions,
    TrainConfig,
    field_help,
)

FIELDS = [f.name for f in dataclasses.fields(TrainConfig)]
COMPARE_SKIPS = {"baselines", "ensemble", "progress"}  # compare's runs: single models, without a bar
# A value different from the default for each field, as the CLI is given it and as the API receives it.
CHANGED: dict[str, tuple[str, Any]] = {
    "max_epochs": ("7", 7),
    "batch_size": ("17", 17),
    "eval_batch_size": ("33", 33),
    "lr": ("0.01", 0.01),
    "weight_decay": ("0.5", 0.5),
    "optimizer": ("sgd", "sgd"),
    "scheduler": ("none", "none"),
    "l1": ("0.001", 0.001),
    "label_smoothing": ("0.1", 0.1),
    "swa_start": ("4", 4),
    "accumulate_grad_batches": ("2", 2),
    "patience": ("2", 2),
    "seed": ("3", 3),
    "precision": ("bf16-mixed", "bf16-mixed"),
    "accelerator": ("cpu", "cpu"),
    "modality_dropout": ("0.3", 0.3),
    "align_sequences": ("0.1", 0.1),
    "ema": ("0.9", 0.9),
    "augment": ("default,image=randaugment", "default,image=randaugment"),
    "mixup": ("0.2", 0.2),
    "modality_dropout_rates": ("text=0.4, tabular=0.1", {"text": 0.4, "tabular": 0.1}),
    "modality_dropout_schedule": ("cosine_decay", "cosine_decay"),
    "modality_dropout_epochs": ("5", 5),
    "grad_clip_norm": ("8", 8.0),
    "balance": ("aux", "aux"),
    "loss_weighting": ("dwa", "dwa"),
    "fit_modality_weights": ("", True),
    "val_fraction": ("0.2", 0.2),
    "test_fraction": ("0.25", 0.25),
    "baselines": ("", False),
    "ensemble": ("off", "off"),
    "feature_gates": ("both", "both"),
    "feature_gate_l0": ("0.05", 0.05),
    "select_features": ("3", 3),
    "select_features_by": ("permutation", "permutation"),
    "time_limit_s": ("60", 60.0),
    "progress": ("", False),
    "callbacks": ("lr_monitor", ["lr_monitor"]),
}


def _params(command: str) -> dict[str, Any]:
    click_group = typer.main.get_command(app)
    return {p.name: p for p in click_group.commands[command].params}  # type: ignore[attr-defined]


def _flag(name: str, default: Any) -> list[str]:
    cli_value, _ = CHANGED[name]
    option = "--" + name.replace("_", "-")
    if isinstance(default, bool):
        return [option if not default else "--no-" + name.replace("_", "-")]
    return [option, cli_value]


def test_every_field_has_a_changed_value_here():
    assert set(CHANGED) == set(FIELDS)  # a new field needs a line above, and then it is tested


def test_the_model_format_page_lists_every_field_in_order():
    """docs/format.md's ``train`` row names the fields a saved ``config.json`` holds."""
    import re
    from pathlib import Path

    page = (Path(__file__).resolve().parents[1] / "docs" / "format.md").read_text()
    row = re.search(r"every field with its value \((.*?); a key missing", page)
    assert row is not None and re.findall(r"`(\w+)`", row[1]) == FIELDS


@pytest.mark.parametrize("name", FIELDS)
def test_fit_cli_option_has_the_config_default_and_help(name):
    param = _params("fit")[name]
    assert param.default == getattr(TrainConfig(), name)
    assert param.help == field_help(TrainConfig, name) and param.help


@pytest.mark.parametrize("name", [n for n in FIELDS if n not in COMPARE_SKIPS])
def test_compare_cli_option_has_compares_default(name):
    param = _params("compare")[name]
    assert param.default == COMPARE_DEFAULTS.get(name, getattr(TrainConfig(), name))


def _recorded(
    monkeypatch: pytest.MonkeyPatch, verb: str, args: list[str], function: str | None = None
) -> dict[str, Any]:
    calls: list[dict[str, Any]] = []

    class Done:
        finished, best_dir = True, "best"
        pairs, test = [("a", "b")], {"a->b": {"recall_at_1": 1.0}}  # what pretrain prints
        summary = {"epochs": 1, "best_epoch": 0, "val_recall_at_1": 1.0, "val_loss": 0.1, "vocabulary": 9}
        examples = [{"written": "a red circle", "reference": "a red circle"}]  # what fit-text prints

    if function == "fit_text":
        Done.test = {"bleu_4": 1.0}  # type: ignore[assignment]  # what fit-text prints
    monkeypatch.setattr(
        polyfuse, function or verb, lambda *a, **kw: calls.append(kw) or Done(), raising=False
    )
    result = CliRunner().invoke(app, [verb, *args])
    assert result.exit_code == 0, result.output
    return calls[0]


@pytest.mark.parametrize("verb", ["fit", "compare"])
def test_cli_defaults_reach_the_api_as_the_apis_defaults(verb, monkeypatch):
    got = _recorded(monkeypatch, verb, [])
    expected = TrainConfig(**(COMPARE_DEFAULTS if verb == "compare" else {}))
    for name in FIELDS:
        if verb == "compare" and name in COMPARE_SKIPS:
            assert name not in got
            continue
        assert got[name] == getattr(expected, name), name


@pytest.mark.parametrize("name", FIELDS)
def test_a_cli_value_reaches_fit(name, monkeypatch):
    got = _recorded(monkeypatch, "fit", _flag(name, getattr(TrainConfig(), name)))
    assert got[name] == CHANGED[name][1]


@pytest.mark.parametrize("name", [n for n in FIELDS if n not in COMPARE_SKIPS])
def test_a_cli_value_reaches_compare(name, monkeypatch):
    default = COMPARE_DEFAULTS.get(name, getattr(TrainConfig(), name))
    got = _recorded(monkeypatch, "compare", _flag(name, default))
    assert got[name] == CHANGED[name][1]


def test_api_keywords_build_the_train_config(make_frame):
    from polyfuse.fitting import fit_inputs

    frame = make_frame(20)
    _, _, request, _ = fit_inputs(frame, "kind", train_options={})
    assert request.train == TrainConfig()
    changed = {name: value for name, (_, value) in CHANGED.items()}
    _, _, request, _ = fit_inputs(frame, "kind", train_options=changed)
    assert request.train == TrainConfig(**changed)
    with pytest.raises(TypeError, match="unknown training option"):
        fit_inputs(frame, "kind", train_options={"epochs": 3})


def test_compare_api_applies_compares_defaults(make_frame, monkeypatch):
    import polyfuse.sweep.runner as runner

    seen = []
    monkeypatch.setattr(runner, "run_compare", lambda frame, base, req, *a, **kw: seen.append(req))
    polyfuse.compare(make_frame(20), "kind", verbose=False)
    assert seen[0].fit.train == TrainConfig(**COMPARE_DEFAULTS)


def test_the_search_space_covers_compares_defaults():
    from polyfuse.sweep.search import SPACE, TRAIN_KEYS, TRAIN_SPACE

    assert TRAIN_KEYS and set(TRAIN_KEYS) < set(TRAIN_SPACE) <= set(FIELDS)  # balance: not in train_params
    for name in TRAIN_SPACE:
        kind, arg = SPACE[name]
        default = COMPARE_DEFAULTS.get(name, getattr(TrainConfig(), name))  # a search runs under compare
        assert (default in arg) if kind == "choice" else (arg[0] <= default <= arg[1]), name


# --- compare's search options (CompareOptions) ------------------------------------------------------

COMPARE_FIELDS = [f.name for f in dataclasses.fields(CompareOptions)]
COMPARE_CHANGED: dict[str, tuple[list[str], Any]] = {
    "max_modalities": (["--max-modalities", "2"], 2),
    "budget_s": (["--budget", "600"], 600.0),  # the older spelling still works
    "search": (["--search", "optuna"], "optuna"),
    "trials": (["--trials", "5"], 5),
    "explain": (["--no-explain"], False),
}


def test_every_compare_option_has_a_changed_value_here():
    assert set(COMPARE_CHANGED) == set(COMPARE_FIELDS)


@pytest.mark.parametrize("name", COMPARE_FIELDS)
def test_compare_options_have_one_default_in_cli_and_api(name):
    import inspect

    default = getattr(CompareOptions(), name)
    assert _params("compare")[name].default == default
    assert inspect.signature(polyfuse.compare).parameters[name].default == default
    assert _params("compare")[name].help == field_help(CompareOptions, name)


@pytest.mark.parametrize("name", COMPARE_FIELDS)
def test_a_cli_compare_option_reaches_the_api(name, monkeypatch):
    args, value = COMPARE_CHANGED[name]
    assert _recorded(monkeypatch, "compare", args)[name] == value


def test_budget_s_is_also_spelled_budget_s(monkeypatch):
    assert _recorded(monkeypatch, "compare", ["--budget-s", "60"])["budget_s"] == 60.0


# --- pretrain's options (PretrainOptions) ----------------------------------------------------------

PRETRAIN_FIELDS = [f.name for f in dataclasses.fields(PretrainOptions)]
PRETRAIN_CHANGED: dict[str, tuple[list[str], Any]] = {
    "pairs": (["--pairs", "image:caption,audio:caption"], "image:caption,audio:caption"),
    "anchor": (["--anchor", "caption"], "caption"),
    "dim": (["--dim", "64"], 64),
    "masked_weight": (["--masked-weight", "0.5"], 0.5),
    "relevant_by": (["--relevant-by", "content"], "content"),
}


def test_every_pretrain_option_has_a_changed_value_here():
    assert set(PRETRAIN_CHANGED) == set(PRETRAIN_FIELDS)


@pytest.mark.parametrize("name", PRETRAIN_FIELDS)
def test_pretrain_options_are_cli_options_with_the_config_default_and_help(name):
    assert _params("pretrain")[name].default == getattr(PretrainOptions(), name)
    assert _params("pretrain")[name].help == field_help(PretrainOptions, name)


@pytest.mark.parametrize("name", PRETRAIN_FIELDS)
def test_a_cli_pretrain_option_reaches_the_api(name, monkeypatch, tmp_path):
    args, value = PRETRAIN_CHANGED[name]
    assert _recorded(monkeypatch, "pretrain", [str(tmp_path / "t.csv"), *args])[name] == value


def test_cli_pretrain_passes_training_options(monkeypatch, tmp_path):
    got = _recorded(monkeypatch, "pretrain", [str(tmp_path / "t.csv"), "--max-epochs", "7", "--ema", "0.9"])
    assert got["max_epochs"] == 7 and got["ema"] == 0.9 and "baselines" not in got


# --- fit-text's options (GenerateOptions) ----------------------------------------------------------

GENERATE_FIELDS = [f.name for f in dataclasses.fields(GenerateOptions)]
GENERATE_CHANGED: dict[str, tuple[list[str], Any]] = {
    "target": (["--target", "caption"], "caption"),
    "inputs": (["--inputs", "image,question"], "image,question"),
    "max_words": (["--max-words", "12"], 12),
    "min_word_count": (["--min-word-count", "2"], 2),
    "d_model": (["--d-model", "64"], 64),
    "layers": (["--layers", "1"], 1),
    "heads": (["--heads", "2"], 2),
    "prefix_length": (["--prefix-length", "2"], 2),
    "memory": (["--memory", "prefix"], "prefix"),
    "beam": (["--beam", "1"], 1),
    "references_by": (["--references-by", "content"], "content"),
}


def test_every_fit_text_option_has_a_changed_value_here():
    assert set(GENERATE_CHANGED) == set(GENERATE_FIELDS)


@pytest.mark.parametrize("name", GENERATE_FIELDS)
def test_fit_text_options_are_cli_options_with_the_config_default_and_help(name):
    assert _params("fit-text")[name].default == getattr(GenerateOptions(), name)
    assert _params("fit-text")[name].help == field_help(GenerateOptions, name)


@pytest.mark.parametrize("name", GENERATE_FIELDS)
def test_a_cli_fit_text_option_reaches_the_api(name, monkeypatch, tmp_path):
    args, value = GENERATE_CHANGED[name]
    assert _recorded(monkeypatch, "fit-text", [str(tmp_path / "t.csv"), *args], "fit_text")[name] == value


def test_cli_fit_text_passes_training_options(monkeypatch, tmp_path):
    got = _recorded(monkeypatch, "fit-text", [str(tmp_path / "t.csv"), "--max-epochs", "7"], "fit_text")
    assert got["max_epochs"] == 7 and "baselines" not in got

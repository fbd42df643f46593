"""compare: the grid, the leaderboard, resuming, the budget, the optuna search and the CLI."""

from __future__ import annotations

import json

import pandas as pd
import pytest
from typer.testing import CliRunner

import polyfuse
from conftest import synthetic_frame
from polyfuse.cli import app
from polyfuse.sweep.board import summarize
from polyfuse.sweep.grid import SINGLE_FUSION, build_grid, modality_subsets

QUICK = {"verbose": False, "encoder_choices": {"text": ["text_bag"]}, "max_epochs": 3, "explain": False}
LEADERBOARD_COLUMNS = {"modalities", "fusion", "seed", "test_accuracy", "params", "train_seconds"}


def test_every_non_empty_subset_in_schema_order():
    subsets = modality_subsets(["image", "audio", "text"])
    assert len(subsets) == 7 and subsets[0] == ("image",) and subsets[-1] == ("image", "audio", "text")
    assert all(list(s) == sorted(s, key=["image", "audio", "text"].index) for s in subsets)
    assert modality_subsets(["a", "b", "c"], max_size=2) == [
        ("a",),
        ("b",),
        ("c",),
        ("a", "b"),
        ("a", "c"),
        ("b", "c"),
    ]


def test_grid_is_seed_major_and_single_modalities_get_one_fusion():
    subsets = modality_subsets(["image", "text"])
    choices = {"image": ["image_cnn"], "text": ["hf_text", "text_bag"]}
    grid = build_grid(subsets, ["concat", "gmu"], choices, seeds=[0, 1])
    per_seed = 1 + 2 + 2 * 2  # image; text x 2 encoders; pair x 2 encoders x 2 fusions
    assert len(grid) == 2 * per_seed
    assert [s.seed for s in grid] == [0] * per_seed + [1] * per_seed
    assert {s.fusion for s in grid if len(s.modalities) == 1} == {SINGLE_FUSION}
    assert len({s.run_id for s in grid}) == len(grid)


def test_summary_averages_over_seeds_best_first():
    rows = [
        {
            "modalities": "a",
            "n_modalities": 1,
            "fusion": "concat",
            "encoders": "a=x",
            "seed": s,
            "status": "ok",
            "test_accuracy": acc,
            "val_score": acc,
            "params": 10,
            "train_seconds": 1.0,
            "latency_ms": 0.1,
        }
        for s, acc in [(0, 0.5), (1, 0.7)]
    ] + [
        {
            "modalities": "a+b",
            "n_modalities": 2,
            "fusion": "gmu",
            "encoders": "a=x;b=y",
            "seed": 0,
            "status": "ok",
            "test_accuracy": 0.9,
            "val_score": 0.9,
            "params": 20,
            "train_seconds": 2.0,
            "latency_ms": 0.2,
        },
        {
            "modalities": "b",
            "n_modalities": 1,
            "fusion": "concat",
            "encoders": "b=y",
            "seed": 0,
            "status": "failed",
        },
    ]
    summary = summarize(rows, "accuracy")
    assert list(summary["modalities"]) == ["a+b", "a"]
    assert summary.loc[1, "accuracy_mean"] == pytest.approx(0.6)
    assert summary.loc[1, "accuracy_std"] == pytest.approx(pd.Series([0.5, 0.7]).std())
    assert summary.loc[1, "seeds"] == 2


@pytest.fixture(scope="module")
def compared(tmp_path_factory: pytest.TempPathFactory):
    out = tmp_path_factory.mktemp("compare")
    options = {**QUICK, "explain": True}  # the one comparison here that also explains its best model
    result = polyfuse.compare(
        synthetic_frame(240), "kind", out=out, fusions=["concat", "gmu"], seeds=2, **options
    )
    return out, result


def test_leaderboard_has_a_row_per_subset_fusion_and_seed(compared):
    out, result = compared
    board = pd.read_csv(out / "leaderboard.csv")
    assert LEADERBOARD_COLUMNS <= set(board.columns)
    # text, tabular, text+tabular x {concat, gmu}; two seeds.
    assert len(board) == 2 * 4 and (board["status"] == "ok").all()
    assert set(board["modalities"]) == {"text", "tabular", "text+tabular"}
    assert sorted(board["seed"].unique()) == [0, 1]
    assert (board["test_accuracy"] > 0.5).all()  # three balanced classes: chance is 1/3
    assert (board["params"] > 0).all() and (board["latency_ms"] > 0).all()
    for run_id in board["run_id"]:
        history = pd.read_csv(out / "runs" / run_id / "history.csv")
        assert len(history) >= 1 and "val_accuracy" in history
    assert result.finished and len(result.summary) == 4


def test_best_is_the_best_validation_run_and_a_loadable_model(compared):
    out, _ = compared
    info = json.loads((out / "compare.json").read_text())
    board = pd.read_csv(out / "leaderboard.csv")
    assert info["format"] == 1  # docs/format.md
    assert info["best"]["val_score"] == pytest.approx(board["val_score"].max())
    assert info["best_single"]["modalities"] in {"text", "tabular"}
    best = polyfuse.load(out / "best")
    assert best.metrics["compare"]["run_id"] == info["best"]["run_id"]
    row = board.set_index("run_id").loc[info["best"]["run_id"]]
    frame = synthetic_frame(240)
    assert best.evaluate(frame)["accuracy"] > 0.5
    assert best.metrics["test"]["accuracy"] == pytest.approx(row["test_accuracy"])


def test_a_second_call_resumes_and_trains_only_what_is_missing(compared, tmp_path):
    out, _ = compared
    copy = tmp_path / "resumed"
    copy.mkdir()
    board = pd.read_csv(out / "leaderboard.csv")
    board.iloc[:-1].to_csv(copy / "leaderboard.csv", index=False)  # as if killed before the last run
    result = polyfuse.compare(
        synthetic_frame(240), "kind", out=copy, fusions=["concat", "gmu"], seeds=2, **QUICK
    )
    again = pd.read_csv(copy / "leaderboard.csv")
    assert list(again["run_id"]) == list(board["run_id"])
    pd.testing.assert_frame_equal(again.iloc[:-1], board.iloc[:-1])  # earlier rows untouched
    assert result.finished


def test_a_spent_budget_starts_no_run_and_says_so(tmp_path):
    result = polyfuse.compare(synthetic_frame(120), "kind", out=tmp_path, budget_s=0, **QUICK)
    assert not result.finished and result.rows == []
    assert json.loads((tmp_path / "compare.json").read_text())["finished"] is False


def test_optuna_search_writes_trials_to_the_same_board_and_resumes(tmp_path):
    pytest.importorskip("optuna")
    frame = synthetic_frame(200)
    polyfuse.compare(
        frame, "kind", out=tmp_path, search="optuna", trials=4, fusions=["concat", "gmu"], **QUICK
    )
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(board["run_id"]) == [f"trial-{i:04d}" for i in range(4)]
    assert set(board["status"]) <= {"ok", "pruned"}
    params = json.loads(board.loc[0, "params_json"])
    assert {"lr", "batch_size", "modality_dropout"} <= set(params)
    assert set(board["balance"]) <= {"aux", "gblend", "none", "ogm_ge", "pmr", "umt"}
    assert (board.loc[board["n_modalities"] == 1, "balance"] == "none").all()
    result = polyfuse.compare(
        frame, "kind", out=tmp_path, search="optuna", trials=5, fusions=["concat"], **QUICK
    )
    assert len(pd.read_csv(tmp_path / "leaderboard.csv")) == 5 and result.finished  # one more trial only


def test_cli_compare_writes_the_leaderboard_and_best(tmp_path):
    table = tmp_path / "t.csv"
    synthetic_frame(150).to_csv(table, index=False)
    out = tmp_path / "cmp"
    args = [
        "compare",
        str(table),
        "--label",
        "kind",
        "--out",
        str(out),
        "--fusions",
        "concat",
        "--encoder",
        "text=text_bag",
        "--max-epochs",
        "2",
        "--batch-size",
        "32",
        "--grad-clip-norm",
        "8",
        "--quiet",
    ]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "best model in" in result.output
    board = pd.read_csv(out / "leaderboard.csv")
    assert len(board) == 3 and LEADERBOARD_COLUMNS <= set(board.columns)
    assert (out / "best" / "model.safetensors").is_file()
    trained = polyfuse.load(out / "best").train_config
    assert (trained.batch_size, trained.grad_clip_norm) == (32, 8.0)


def test_the_best_model_is_explained_with_subset_shapley_and_reported(compared):
    out, _ = compared
    shapley = json.loads((out / "explain" / "shapley.json").read_text())
    assert set(shapley["values"]) == set(polyfuse.load(out / "best").model.modalities)
    total = sum(shapley["values"].values())
    assert total == pytest.approx(shapley["metric_all"] - shapley["metric_none"], abs=1e-6)
    # Over the retrained subsets: every modality of the comparison gets a value.
    assert set(shapley["subsets"]) == {"text", "tabular"}
    html = polyfuse.report(out).read_text()
    assert 'id="leaderboard"' in html and 'id="shapley"' in html and "data:image/png;base64," in html


def test_the_default_pretrained_text_encoder_stays_frozen_in_every_run():
    from polyfuse.encoders import default_text_model_path
    from polyfuse.fitting import fit_inputs
    from polyfuse.sweep.engine import CompareRequest, Workspace
    from polyfuse.sweep.grid import RunSpec

    if default_text_model_path() is None:
        pytest.skip("the offline MiniLM package is not installed")
    frame, base, fit_request, _ = fit_inputs(synthetic_frame(60), "kind")
    choices = {"text": ["hf_text", "text_bag"]}
    ws = Workspace(frame, base, CompareRequest(fit=fit_request, encoder_choices=choices))
    minilm = ws.prepared(RunSpec(("text",), "concat", (("text", "hf_text"),), 0))
    bag = ws.prepared(RunSpec(("text",), "concat", (("text", "text_bag"),), 0))
    # As in fit: the default MiniLM is frozen (computed once per table), a trainable choice trains.
    assert minilm.encoders["text"].freeze is True and bag.encoders["text"].freeze is False


# --- balancing strategies as a grid axis -----------------------------------------------------------


def test_balances_apply_to_two_or_more_modalities_and_keep_the_default_run_ids():
    subsets = modality_subsets(["image", "text"])
    choices = {"image": ["image_cnn"], "text": ["text_bag"]}
    default = build_grid(subsets, ["concat", "gmu"], choices, seeds=[0])
    grid = build_grid(subsets, ["concat", "gmu"], choices, seeds=[0], balances=["none", "aux", "ogm_ge"])
    assert len(default) == 2 + 2 and len(grid) == 2 + 2 * 3  # singles once; the pair per fusion x balance
    assert {s.balance for s in grid if len(s.modalities) == 1} == {"none"}
    assert {s.balance for s in grid if len(s.modalities) == 2} == {"none", "aux", "ogm_ge"}
    # "none" runs keep the run_id they had before the axis, so earlier comparisons resume unchanged.
    assert [s.run_id for s in default] == [
        "image__concat__image_cnn__s0",
        "text__concat__text_bag__s0",
        "image+text__concat__image_cnn+text_bag__s0",
        "image+text__gmu__image_cnn+text_bag__s0",
    ]
    assert {s.run_id for s in default} < {s.run_id for s in grid}
    assert "image+text__gmu__image_cnn+text_bag__balance=aux__s0" in {s.run_id for s in grid}


def test_compare_trains_each_balance_on_multimodal_subsets_and_resumes(tmp_path, monkeypatch):
    import polyfuse.sweep.engine as engine

    trained: dict[str, str] = {}  # run_id -> the balance its training config held
    real = engine.train_and_test

    def spy(config, pre, tables, cfg, log_dir, rep, title, callbacks=None):
        trained[title] = cfg.balance
        return real(config, pre, tables, cfg, log_dir, rep, title, callbacks)

    monkeypatch.setattr(engine, "train_and_test", spy)
    frame, quick = synthetic_frame(120), {**QUICK, "max_epochs": 2, "fusions": ["concat"]}
    polyfuse.compare(frame, "kind", out=tmp_path, balances=["none", "aux"], **quick)
    board = pd.read_csv(tmp_path / "leaderboard.csv")
    assert list(board.columns[:5]) == ["run_id", "modalities", "n_modalities", "fusion", "balance"]
    assert sorted(zip(board["modalities"], board["balance"], strict=True)) == [
        ("tabular", "none"),
        ("text", "none"),
        ("text+tabular", "aux"),
        ("text+tabular", "none"),
    ]
    assert (board["status"] == "ok").all()
    assert trained == dict(zip(board["run_id"], board["balance"], strict=True))
    summary = pd.read_csv(tmp_path / "summary.csv")
    assert len(summary) == 4  # a configuration per balance
    assert sorted(summary.loc[summary["n_modalities"] == 2, "balance"]) == ["aux", "none"]
    assert json.loads((tmp_path / "compare.json").read_text())["balances"] == ["aux", "none"]
    html = polyfuse.report(tmp_path).read_text()
    assert html.count("<th>balance</th>") == 1 and html.count("<td>aux</td>") == 1  # the leaderboard's

    # Resuming with one more strategy trains only its run.
    trained.clear()
    polyfuse.compare(frame, "kind", out=tmp_path, balances=["none", "aux", "ogm_ge"], **quick)
    assert trained == {"text+tabular__concat__text_bag+tabular_mlp__balance=ogm_ge__s0": "ogm_ge"}
    assert len(pd.read_csv(tmp_path / "leaderboard.csv")) == 5


def test_an_unknown_balance_fails_before_the_table_is_read(tmp_path):
    with pytest.raises(
        KeyError, match="unknown balancing strategy 'auxx'; known: aux, gblend, none, ogm_ge, pmr, umt"
    ):
        polyfuse.compare(tmp_path / "missing.csv", "kind", out=tmp_path / "cmp", balances=["none", "auxx"])
    with pytest.raises(TypeError, match="list of names"):
        polyfuse.compare(tmp_path / "missing.csv", "kind", out=tmp_path / "cmp", balances="aux")  # type: ignore[arg-type]
    assert not (tmp_path / "cmp").exists()


def test_cli_balances_reach_the_api_as_a_list(monkeypatch):
    calls: list[dict] = []

    class Done:
        finished, best_dir = True, "best"

    monkeypatch.setattr(polyfuse, "compare", lambda *a, **kw: calls.append(kw) or Done())
    for args, expected in [([], None), (["--balances", "none, aux,ogm_ge"], ["none", "aux", "ogm_ge"])]:
        result = CliRunner().invoke(app, ["compare", *args])
        assert result.exit_code == 0, result.output
        assert calls[-1]["balances"] == expected


def test_the_optuna_space_chooses_a_balance_for_multimodal_trials_only():
    from types import SimpleNamespace

    from polyfuse.registry import BALANCERS
    from polyfuse.sweep.search import SPACE, TRAIN_KEYS, suggest

    assert SPACE["balance"] == ("choice", BALANCERS.names())
    assert BALANCERS.names() == ["aux", "gblend", "none", "ogm_ge", "pmr", "umt"]
    assert "balance" not in TRAIN_KEYS  # a run's balance is its own field (the board's column)

    class Trial:  # picks the last choice of every categorical, the low end of every range
        number = 7

        def __init__(self):
            self.asked: dict[str, list] = {}

        def suggest_categorical(self, name, choices):
            self.asked[name] = list(choices)
            return choices[-1]

        def suggest_float(self, name, low, high, log=False):
            return low

    session = SimpleNamespace(
        ws=SimpleNamespace(choices={"text": ["text_bag"], "tabular": ["tabular_mlp"]}),
        req=SimpleNamespace(fusions=["concat", "gmu"], seeds=[0]),
    )
    pair, single = Trial(), Trial()
    spec = suggest(pair, session, [("text",), ("text", "tabular")])  # picks the pair
    assert (spec.modalities, spec.fusion, spec.balance) == (("text", "tabular"), "gmu", "umt")
    assert pair.asked["balance"] == BALANCERS.names()
    spec = suggest(single, session, [("text", "tabular"), ("text",)])  # picks the single
    assert (spec.modalities, spec.balance) == (("text",), "none") and "balance" not in single.asked

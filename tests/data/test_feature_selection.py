"""``select_features=K`` keeps the K tabular columns that tell the most about the labels (mutual
information, or permutation importance), ranked on the training rows; the dropped columns leave the
saved model, and predicting ignores them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.conftest import FAST

import polyfuse
from polyfuse.config import InputSpec, LabelSpec, Schema, TrainConfig
from polyfuse.data.errors import SchemaError
from polyfuse.data.feature_selection import select_columns
from polyfuse.fitting import FitRequest, prepare

NOISE = [f"noise{i}" for i in range(8)]


def planted(n: int = 400, seed: int = 0) -> pd.DataFrame:
    """Two informative columns (one numeric, one categorical) among eight numeric noise columns."""
    rng = np.random.default_rng(seed)
    z = rng.integers(0, 3, n)
    frame = pd.DataFrame({name: rng.normal(0, 1, n) for name in NOISE})
    frame["signal"] = z + rng.normal(0, 0.3, n)
    frame["shade"] = np.where(rng.random(n) < 0.85, np.array(["pale", "mid", "dark"])[z], "mid")
    frame["kind"] = np.array(["a", "b", "c"])[z]
    frame["size"] = 2.0 * z + rng.normal(0, 0.5, n)  # a regression label read from the same latent
    return frame


def _schema(frame: pd.DataFrame, labels: list[LabelSpec]) -> Schema:
    columns = [*NOISE, "signal", "shade"]
    roles = {c: "numeric" for c in columns} | {"shade": "categorical"}
    return Schema([InputSpec("tabular", "tabular", columns)], labels, roles=roles)


@pytest.mark.parametrize(
    "labels",
    [[LabelSpec("kind", "multiclass", ["a", "b", "c"])], [LabelSpec("size", "regression")]],
    ids=["multiclass", "regression"],
)
def test_the_informative_columns_are_kept(labels):
    frame = planted()
    schema, record = select_columns(frame, _schema(frame, labels), np.arange(300), 2)
    assert sorted(record["kept"]) == ["shade", "signal"] and sorted(record["dropped"]) == sorted(NOISE)
    assert schema.inputs[0].columns == ["signal", "shade"] and set(NOISE) <= set(schema.ignored)
    scores = record["scores"]
    assert max(scores[c] for c in NOISE) < 0.5 * min(scores["signal"], scores["shade"])
    assert max(scores.values()) == pytest.approx(1.0)


def two_of_ten(n: int = 400, seed: int = 0, xor: bool = False) -> pd.DataFrame:
    """Two informative numbers ``a`` and ``b`` among eight noise numbers: the label says whether
    a + b > 0, or (``xor``) whether exactly one of them is positive, which neither tells alone.
    ``both`` is a regression label read from a and b."""
    rng = np.random.default_rng(seed)
    frame = pd.DataFrame({"a": rng.normal(0, 1, n), "b": rng.normal(0, 1, n)})
    frame[NOISE] = rng.normal(0, 1, (n, len(NOISE)))
    frame["label"] = np.where((frame.a > 0) ^ (frame.b > 0) if xor else frame.a + frame.b > 0, "yes", "no")
    frame["both"] = frame.a - 2 * frame.b + rng.normal(0, 0.3, n)
    return frame


def _numbers(labels: list[LabelSpec]) -> Schema:
    columns = ["a", "b", *NOISE]
    return Schema([InputSpec("tabular", "tabular", columns)], labels, roles={c: "numeric" for c in columns})


YES_NO = [LabelSpec("label", "binary", ["no", "yes"])]


@pytest.mark.parametrize("method", ["mutual_info", "permutation"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_two_informative_numbers_among_eight_noise_ones_are_kept(method, seed):
    _, record = select_columns(two_of_ten(seed=seed), _numbers(YES_NO), np.arange(300), 2, method=method)
    assert sorted(record["kept"]) == ["a", "b"] and record["method"] == method
    scores = record["scores"]  # measured: a and b 0.59..1.0, noise at most 0.26 (mutual_info), 0.03
    assert max(scores[c] for c in NOISE) < 0.5 * min(scores["a"], scores["b"])


def test_permutation_importance_finds_columns_that_only_help_together():
    frame, schema = two_of_ten(xor=True), _numbers(YES_NO)
    _, by_permutation = select_columns(frame, schema, np.arange(300), 2, method="permutation")
    assert sorted(by_permutation["kept"]) == ["a", "b"]  # measured: 1.0 and 0.98, every noise column 0
    assert max(by_permutation["scores"][c] for c in NOISE) < 0.1
    _, by_information = select_columns(frame, schema, np.arange(300), 2, method="mutual_info")
    assert by_information["scores"]["a"] == by_information["scores"]["b"] == 0.0  # alone, each tells nothing


def test_several_labels_average_each_labels_share_of_its_best_column():
    frame = two_of_ten()
    frame["label"] = np.where(frame.a > 0, "yes", "no")  # the class reads a only, the number mostly b
    labels = [*YES_NO, LabelSpec("both", "regression")]
    _, record = select_columns(frame, _numbers(labels), np.arange(300), 2)
    assert sorted(record["kept"]) == ["a", "b"]
    scores = record["scores"]
    # b: the regression's best (1) and nothing about the class (0); a: the class's best and some of the
    # regression (measured 0.55); noise: measured at most 0.04
    assert scores["b"] == pytest.approx(0.5) and scores["a"] > 0.5 and max(scores[c] for c in NOISE) < 0.15


def test_an_unknown_ranking_is_refused():
    with pytest.raises(SchemaError, match="select_features_by must be one of"):
        select_columns(two_of_ten(), _numbers(YES_NO), np.arange(300), 2, method="chi2")


def test_prepare_ranks_by_the_chosen_method(tmp_path):
    frame = two_of_ten(xor=True).drop(columns="both")
    train = TrainConfig(select_features=2, select_features_by="permutation", seed=0)
    prep = prepare(frame, tmp_path, FitRequest(label=["label"], train=train))
    assert prep.selection["method"] == "permutation" and sorted(prep.selection["kept"]) == ["a", "b"]
    assert sorted(prep.pre.processors["tabular"].numeric) == ["a", "b"]  # the preprocessor knows only those


def test_only_training_rows_are_read():
    frame = planted()
    frame.loc[300:, "noise0"] = frame.loc[300:, "kind"].map(
        {"a": 0.0, "b": 5.0, "c": 10.0}
    )  # leaks, not in train
    _, record = select_columns(frame, _schema(frame, [LabelSpec("kind", "multiclass")]), np.arange(300), 2)
    assert "noise0" in record["dropped"]


def test_asking_for_more_columns_than_there_are_keeps_them_all_and_nothing_keeps_none():
    frame = planted()
    schema, record = select_columns(
        frame, _schema(frame, [LabelSpec("kind", "multiclass")]), np.arange(300), 50
    )
    assert record["dropped"] == [] and len(schema.inputs[0].columns) == 10
    with pytest.raises(SchemaError, match="at least one"):
        select_columns(frame, _schema(frame, [LabelSpec("kind", "multiclass")]), np.arange(300), 0)
    no_tabular = Schema([InputSpec("text", "text", ["note"])], [LabelSpec("kind", "multiclass")])
    with pytest.raises(SchemaError, match="tabular"):
        select_columns(frame, no_tabular, np.arange(300), 2)


def test_fit_keeps_k_columns_saves_them_and_predicts_without_the_rest(tmp_path):
    frame = planted(seed=1).drop(columns="size")
    frame["text"] = [f"a parcel numbered {i}" for i in range(len(frame))]
    predictor = polyfuse.fit(frame, label="kind", out=tmp_path / "m", select_features=2, max_epochs=4, **FAST)
    record = predictor.metrics["feature_selection"]
    assert sorted(record["kept"]) == ["shade", "signal"] and record["method"] == "mutual_info"
    tabular = next(s for s in predictor.schema.inputs if s.kind == "tabular")
    assert sorted(tabular.columns) == ["shade", "signal"]
    loaded = polyfuse.load(tmp_path / "m")
    assert sorted(next(s for s in loaded.schema.inputs if s.kind == "tabular").columns) == ["shade", "signal"]
    rows = frame.drop(columns="kind").iloc[:50]
    shuffled = rows.copy()
    shuffled[NOISE] = shuffled[NOISE].to_numpy()[::-1]  # the dropped columns change, the predictions do not
    assert (loaded.predict(rows) == loaded.predict(shuffled)).all()
    assert (loaded.predict(rows.drop(columns=NOISE)).to_numpy() == loaded.predict(rows).to_numpy()).all()
    assert predictor.metrics["test"]["accuracy"] > 0.7  # the kept columns carry the class

"""``select_features=K`` keeps the K tabular columns with the most mutual information with the labels,
ranked on the training rows; the dropped columns leave the saved model, and predicting ignores them."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from tests.conftest import FAST

import polyfuse
from polyfuse.config import InputSpec, LabelSpec, Schema
from polyfuse.data.errors import SchemaError
from polyfuse.data.feature_selection import select_columns

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

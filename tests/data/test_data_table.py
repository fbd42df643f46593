"""Table reading, schema inference, label encoding and splits."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from polyfuse.config import Schema, from_dict, to_dict
from polyfuse.data.errors import DataError, SchemaError
from polyfuse.data.labels import LabelEncoder
from polyfuse.data.schema import describe_schema, infer_schema, infer_task
from polyfuse.data.split import split_indices
from polyfuse.data.table import read_table


def _frame(n: int = 60) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {
            "id": [f"item{i:03d}" for i in range(n)],
            "img": [f"images/{i}.png" for i in range(n)],
            "clip": [f"audio/{i}.wav" for i in range(n)],
            "note": [f"this is a rather long note number {i} about things" for i in range(n)],
            "age": rng.normal(40, 10, n),
            "rooms": rng.integers(1, 5, n),
            "colour": rng.choice(["red", "green", "blue"], n),
            "label": rng.choice(["cat", "dog", "fox"], n),
        }
    )


@pytest.mark.parametrize("suffix", [".csv", ".parquet", ".jsonl", ".ndjson"])
def test_read_table_formats(tmp_path, suffix):
    df = pd.DataFrame({"a": [1, 2], "b": ["x", "y"]})
    path = tmp_path / f"t{suffix}"
    if suffix == ".csv":
        df.to_csv(path, index=False)
    elif suffix == ".parquet":
        df.to_parquet(path)
    else:
        df.to_json(path, orient="records", lines=True)
    frame, base = read_table(path)
    assert base == tmp_path.resolve()
    assert frame["a"].tolist() == [1, 2] and frame["b"].tolist() == ["x", "y"]


def test_read_table_errors(tmp_path):
    (tmp_path / "t.xlsx").write_text("nope")
    with pytest.raises(SchemaError, match="unknown extension"):
        read_table(tmp_path / "t.xlsx")
    (tmp_path / "t.parquet").write_text("not parquet")
    with pytest.raises(SchemaError, match="cannot read table"):
        read_table(tmp_path / "t.parquet")
    with pytest.raises(SchemaError, match="not found"):
        read_table(tmp_path / "absent.csv")


def test_read_table_dataframe_uses_cwd():
    df = pd.DataFrame({"a": [1]})
    frame, base = read_table(df)
    assert frame is df and base.is_dir()


def test_infer_schema_mixed_frame():
    schema = infer_schema(_frame(), "label", ".")
    assert schema.roles["id"] == "ignore" and schema.ignored == ["id"]
    kinds = {spec.name: spec.kind for spec in schema.inputs}
    assert kinds == {"img": "image", "clip": "audio", "note": "text", "tabular": "tabular"}
    tabular = next(s for s in schema.inputs if s.name == "tabular")
    assert tabular.columns == ["age", "rooms", "colour"]
    assert schema.roles["colour"] == "categorical" and schema.roles["rooms"] == "numeric"
    assert [(s.column, s.task) for s in schema.labels] == [("label", "multiclass")]
    assert from_dict(Schema, to_dict(schema)) == schema  # JSON round trip
    rows = describe_schema(schema, _frame())
    assert ("colour", "categorical", "3 categories, 0 missing") in rows


def test_declared_roles_and_split_column():
    df = _frame()
    df["split"] = ["train"] * 40 + ["valid"] * 10 + ["test"] * 10
    schema = infer_schema(df, "label", ".", declared={"id": "text", "rooms": "categorical"})
    assert schema.roles["id"] == "text" and schema.roles["rooms"] == "categorical"
    assert schema.split_column == "split"
    parts = split_indices(df, schema, seed=0)
    assert [len(parts[k]) for k in ("train", "val", "test")] == [40, 10, 10]


def test_missing_columns_are_named():
    with pytest.raises(SchemaError, match="'target'"):
        infer_schema(_frame(), "target", ".")
    with pytest.raises(SchemaError, match="'nope'"):
        infer_schema(_frame(), "label", ".", declared={"nope": "text"})


def test_infer_task():
    assert infer_task(pd.Series(["a", "b", "a"])) == "binary"
    assert infer_task(pd.Series(np.linspace(0, 1, 50))) == "regression"
    assert infer_task(pd.Series([0, 1, 2, 3, 1])) == "multiclass"
    assert infer_task(pd.Series([["a"], ["a", "b"]])) == "multilabel"


def test_label_encoders_round_trip():
    enc = LabelEncoder("y", "multiclass").fit(pd.Series(["dog", "cat", None, "fox"]))
    assert enc.classes == ["cat", "dog", "fox"]
    target, errors = enc.encode(pd.Series(["fox", "cat"]))
    assert target.tolist() == [2, 0] and not errors
    assert enc.decode(torch.tensor([[0.1, 0.8, 0.1]])) == ["dog"]
    _, errors = enc.encode(pd.Series(["cat", "emu"], index=[10, 11]))
    assert len(errors) == 1 and "row 11" in str(errors[0]) and "unknown label 'emu'" in str(errors[0])

    reg = LabelEncoder("y", "regression").fit(pd.Series([1.0, 2.0, 3.0]))
    target, _ = reg.encode(pd.Series([2.0, 3.0]))
    assert target[0] == 0.0 and reg.decode(target) == pytest.approx([2.0, 3.0])
    assert LabelEncoder(**reg.state()).decode(target) == pytest.approx([2.0, 3.0])

    multi = LabelEncoder("y", "multilabel").fit(pd.Series(["a|b", "c", "b"]))
    target, _ = multi.encode(pd.Series(["a|c", "b"]))
    assert target.tolist() == [[1, 0, 1], [0, 1, 0]]
    assert multi.decode(target) == [["a", "c"], ["b"]]

    binary = LabelEncoder("y", "binary").fit(pd.Series([0, 1, 1]))
    target, _ = binary.encode(pd.Series([1, 0]))
    assert target.dtype == torch.float32 and target.tolist() == [1.0, 0.0]


def test_regression_label_with_text_is_data_error():
    reg = LabelEncoder("y", "regression")
    with pytest.raises(DataError, match="expected a number"):
        reg.fit(pd.Series([1.0, "abc"], dtype=object))


def test_split_reproducible_and_stratified():
    df = pd.DataFrame({"x": np.arange(200.0), "label": ["a"] * 150 + ["b"] * 50})
    schema = infer_schema(df, "label", ".")
    first, second = split_indices(df, schema, seed=3), split_indices(df, schema, seed=3)
    assert all(np.array_equal(first[k], second[k]) for k in first)
    assert not np.array_equal(first["test"], split_indices(df, schema, seed=4)["test"])
    everything = np.concatenate([first[k] for k in ("train", "val", "test")])
    assert sorted(everything.tolist()) == list(range(200))
    assert len(first["test"]) == 30 and len(first["val"]) == 30
    share_b = (df["label"].to_numpy()[first["test"]] == "b").mean()
    assert share_b == pytest.approx(0.25, abs=0.02)


def test_split_falls_back_when_class_too_small():
    df = pd.DataFrame({"x": np.arange(20.0), "label": ["a"] * 19 + ["b"]})
    parts = split_indices(df, infer_schema(df, "label", "."), seed=0)
    assert sum(len(v) for v in parts.values()) == 20

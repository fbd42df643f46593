"""Saved directories keep their format (docs/format.md): a model saved in format 1 still loads and
predicts what it predicted when it was saved, and readers refuse a newer format with a clear error."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import polyfuse
from polyfuse.errors import FormatError
from polyfuse.formats import COMPARE_FORMAT, EXPLAIN_FORMAT, MODEL_FORMAT, check_format

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "model_v1"  # made by fixtures/make_model_v1.py


def test_a_model_saved_in_format_1_predicts_what_it_predicted_when_saved():
    model = polyfuse.load(FIXTURE / "model")
    expected = pd.read_csv(FIXTURE / "expected.csv", index_col=0)
    got = model.predictions(FIXTURE / "rows" / "rows.csv")
    assert list(got.columns) == list(expected.columns)
    assert got["label"].tolist() == expected["label"].tolist()
    probabilities = [c for c in expected.columns if c.startswith("p_")]
    np.testing.assert_allclose(got[probabilities].to_numpy(), expected[probabilities].to_numpy(), atol=1e-5)


def test_the_fixture_is_the_current_format():
    config = json.loads((FIXTURE / "model" / "config.json").read_text())
    assert config["format"] == MODEL_FORMAT == 1


def _newer(path: Path) -> None:
    data = json.loads(path.read_text())
    path.write_text(json.dumps({**data, "format": data.get("format", 1) + 1}))


def test_load_refuses_a_newer_model_format(tmp_path):
    folder = shutil.copytree(FIXTURE / "model", tmp_path / "model")
    _newer(folder / "config.json")
    with pytest.raises(FormatError, match="has format 2, newer than this polyfuse .* upgrade polyfuse"):
        polyfuse.load(folder)


def test_report_refuses_newer_compare_and_explain_formats(tmp_path):
    from polyfuse.eval.subsets import read_compare_json

    compare = tmp_path / "compare"
    compare.mkdir()
    (compare / "compare.json").write_text(json.dumps({"metric": "accuracy"}))
    assert read_compare_json(compare) == {"metric": "accuracy"}  # written before the key: format 1
    _newer(compare / "compare.json")
    with pytest.raises(FormatError, match="compare.json has format 2"):
        read_compare_json(compare)
    with pytest.raises(FormatError, match="compare.json has format 2"):
        polyfuse.report(compare)
    explain = tmp_path / "explain"
    explain.mkdir()
    (explain / "explain.json").write_text(json.dumps({"format": EXPLAIN_FORMAT + 1, "metric": "accuracy"}))
    with pytest.raises(FormatError, match="explain.json has format 2"):
        polyfuse.report(explain)


def test_compare_refuses_to_resume_a_newer_comparison(tmp_path, make_frame):
    out = tmp_path / "cmp"
    out.mkdir()
    (out / "compare.json").write_text(json.dumps({"format": COMPARE_FORMAT + 1}))
    with pytest.raises(FormatError, match="newer than this polyfuse"):
        polyfuse.compare(make_frame(40), "kind", out=out, fusions=["concat"], max_epochs=1, verbose=False)


def test_the_onnx_sidecar_is_checked_too(tmp_path):
    from polyfuse.export import read_sidecar

    (tmp_path / "model.onnx.json").write_text(json.dumps({"format": 2}))
    with pytest.raises(FormatError, match="model.onnx.json has format 2"):
        read_sidecar(tmp_path / "model.onnx")


@pytest.mark.parametrize("bad", [0, -1, "1", 1.0, True, None])
def test_a_format_that_is_not_a_positive_integer_is_refused(bad):
    with pytest.raises(FormatError, match="positive integer"):
        check_format({"format": bad}, 1, "x.json")

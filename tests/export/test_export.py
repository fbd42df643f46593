"""ONNX export: parity with torch at several batch sizes, the onnxruntime runner, int8, the CLI.

Exporting is the slow part (torch.export traces the model: several seconds each), so the digits
model is exported once, through the CLI, and every test below reads that one export.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
from typer.testing import CliRunner

import polyfuse.encoders  # noqa: F401  (registers the encoders)
import polyfuse.fusions  # noqa: F401
import polyfuse.heads  # noqa: F401
from polyfuse.cli import app
from polyfuse.data.batch import EncodedTable
from polyfuse.errors import PolyfuseError
from polyfuse.export import OnnxModel, compare_int8, example_table, export_model, parity, read_sidecar
from polyfuse.export.layout import input_layout
from polyfuse.models.build import fusion_input_dim
from polyfuse.models.inference import predict_table
from polyfuse.models.multimodal import MultimodalModel
from polyfuse.predictor import Predictor, data_split
from polyfuse.registry import ENCODERS, FUSIONS, HEADS

pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


@pytest.fixture(scope="module")
def exported(
    digits_model: tuple[Predictor, Path], tmp_path_factory: pytest.TempPathFactory
) -> dict[str, Any]:
    """``polyfuse export COPY --quantize int8`` on a copy of the digits model (default paths)."""
    predictor, folder = digits_model
    copy = tmp_path_factory.mktemp("export") / "model"
    shutil.copytree(folder, copy, ignore=shutil.ignore_patterns("logs"))
    result = CliRunner().invoke(app, ["export", str(copy), "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    table, _ = predictor.encode(data_split(predictor, "test"), targets=True)
    return {"predictor": predictor, "dir": copy, "output": result.output, "table": table}


def with_absent_modalities(table: EncodedTable) -> EncodedTable:
    """The same rows, where each modality is also absent from some rows (and one row has none)."""
    out = table.subset(list(range(len(table))))
    for i, name in enumerate(out.mask):
        mask = out.mask[name].clone()
        mask[i::4] = False
        mask[len(out) - 1] = False
        out.mask[name] = mask
    return out


def test_cli_writes_the_model_its_sidecar_and_the_int8_model(exported):
    folder, output = exported["dir"], exported["output"]
    for name in ("model.onnx", "model.onnx.json", "model.int8.onnx", "model.int8.onnx.json"):
        assert (folder / name).is_file(), name
    assert "parity with torch on the model's test split" in output
    assert "digit accuracy: fp32" in output and "int8" in output
    info = read_sidecar(folder / "model.onnx")
    assert info["labels"] == ["digit"] and info["exporter"] == "dynamo" and info["opset"] >= 17
    assert [i["name"] for i in info["inputs"]] == [
        "image",
        "audio",
        "text",
        "mask.image",
        "mask.audio",
        "mask.text",
    ]
    assert {i["name"]: i["dtype"] for i in info["inputs"]}["image"] == "uint8"
    assert all(i["shape"][0] == "batch" for i in info["inputs"])
    head = {"name": "logits.digit", "label": "digit", "task": "multiclass", "num_outputs": 10}
    assert info["outputs"][0] == {**head, "shape": ["batch", 10]}
    assert 0 <= info["parity"]["max_abs_diff"] <= 1e-4
    assert set(info["versions"]) >= {"torch", "onnx", "onnxruntime"}


def test_parity_at_two_batch_sizes_with_absent_modalities(exported):
    predictor = exported["predictor"]
    table = with_absent_modalities(exported["table"])
    assert all(bool((~m).any()) and bool(m.any()) for m in table.mask.values())
    onnx = OnnxModel(exported["dir"] / "model.onnx", predictor)
    result = parity(onnx, predictor.model, table, [3, 37])  # neither is the traced batch size (8)
    assert set(result["by_batch_size"]) == {"3", "37"}
    assert 0 <= result["max_abs_diff"] <= 1e-4, result


def test_onnx_outputs_equal_the_predictor_outputs(exported):
    predictor, path = exported["predictor"], exported["dir"] / "model.onnx"
    table = with_absent_modalities(exported["table"])
    expected = predictor.outputs(table)
    for runner in (OnnxModel(path, predictor, threads=1), OnnxModel(path)):  # heads from the sidecar
        got = runner.outputs(table, batch_size=16)
        assert set(got) == set(expected)
        assert got["digit"].shape == expected["digit"].shape == (len(table), 10)
        assert float((got["digit"] - expected["digit"]).abs().max()) <= 1e-4
    with pytest.raises(PolyfuseError, match="no rows"):
        OnnxModel(path).outputs(table.subset([]))


def test_int8_is_smaller_and_still_beats_chance(exported):
    predictor, folder = exported["predictor"], exported["dir"]
    result = compare_int8(predictor, folder / "model.onnx", folder / "model.int8.onnx", exported["table"])
    assert result["metric"] == "accuracy" and result["rows"] == len(exported["table"])
    assert result["int8_bytes"] < 0.5 * result["fp32_bytes"]
    assert 0.0 <= result["int8"] <= 1.0 and result["change"] == pytest.approx(result["int8"] - result["fp32"])
    assert result["int8"] > 0.1 + 0.3, result  # ten classes: chance is 0.1
    assert read_sidecar(folder / "model.int8.onnx")["quantization"]["weights"] == "int8"


def test_example_rows_have_the_real_layout(exported):
    predictor = exported["predictor"]
    made_up = example_table(predictor)
    modalities = predictor.model.modalities
    assert input_layout(made_up, modalities) == input_layout(exported["table"], modalities)
    assert all(bool(m.any()) and bool((~m).any()) for m in made_up.mask.values())
    assert float(made_up.inputs["audio"].std()) > 0.5  # type: ignore[union-attr]


def test_a_missing_extra_names_it(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with pytest.raises(PolyfuseError, match=r"pip install 'polyfuse\[export\]'"):
        OnnxModel(tmp_path / "model.onnx", {"inputs": [], "labels": [], "outputs": []})


def test_cli_rejects_an_unknown_quantization(exported):
    result = CliRunner().invoke(app, ["export", str(exported["dir"]), "--quantize", "int4"])
    assert result.exit_code != 0 and "int4" in str(result.exception)


def test_import_polyfuse_export_loads_no_onnx():
    code = (
        "import sys, polyfuse.export; print(sorted({'onnx', 'onnxruntime', 'onnxscript'} & set(sys.modules)))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "[]"


# --- every registered fusion exports -----------------------------------------------------------------


def tiny_model(fusion: str) -> MultimodalModel:
    """Tabular (a dict input: numbers, missing flags, codes) and bag-of-words text (tokens for
    token-level fusions), a classification and a regression head: random weights, a few hundred
    parameters, so that the export's cost is the exporter's own."""
    torch.manual_seed(0)
    encoders = {
        "tab": ENCODERS.build("tabular_mlp", num_numeric=2, cardinalities=[4], output_dim=8, hidden_dim=8),
        "text": ENCODERS.build("text_bag", vocab_size=20, output_dim=8, hidden_dim=8),
    }
    tokens = bool(getattr(FUSIONS.get(fusion), "wants_tokens", False))
    fused = FUSIONS.build(fusion, in_dims={k: fusion_input_dim(e, tokens) for k, e in encoders.items()})
    heads = {
        "kind": HEADS.build("multiclass", in_dim=fused.output_dim, num_outputs=3),
        "price": HEADS.build("regression", in_dim=fused.output_dim, num_outputs=1),
    }
    return MultimodalModel(encoders, fused, heads).eval()


def tiny_table(n: int = 12) -> EncodedTable:
    """Rows with each modality absent somewhere, one row with none, one with no text token."""
    gen = torch.Generator().manual_seed(1)
    text = torch.randint(1, 20, (n, 6), generator=gen)
    text[:, 4:] = 0  # padding
    text[2] = 0
    mask = {"tab": torch.rand(n, generator=gen) > 0.3, "text": torch.rand(n, generator=gen) > 0.3}
    mask["text"][2] = False
    mask["tab"][3] = mask["text"][3] = False
    tab = {
        "numeric": torch.randn(n, 2, generator=gen),
        "numeric_missing": (torch.rand(n, 2, generator=gen) > 0.8).float(),
        "categorical": torch.randint(0, 4, (n, 1), generator=gen),
    }
    return EncodedTable(inputs={"tab": tab, "text": text}, mask=mask)


@pytest.mark.slow  # one torch.export trace per fusion: 5-30 s each on two busy cores
@pytest.mark.parametrize("name", FUSIONS.names())
def test_every_fusion_exports_with_parity(name, tmp_path):
    model, table = tiny_model(name), tiny_table()
    info = export_model(model, table, tmp_path / f"{name}.onnx")
    assert info["exporter"] == "dynamo"
    assert set(info["parity"]["by_batch_size"]) == {"1", "12"}
    assert 0 <= info["parity"]["max_abs_diff"] <= 1e-4, info["parity"]
    assert json.loads((tmp_path / f"{name}.onnx.json").read_text())["labels"] == ["kind", "price"]
    got, expected = (
        OnnxModel(tmp_path / f"{name}.onnx").outputs(table, batch_size=5),
        predict_table(model, table),
    )
    assert got["price"].shape == expected["price"].shape == (12,)
    for label in expected:
        assert float((got[label] - expected[label]).abs().max()) <= 1e-4


@pytest.mark.slow  # one torch.export trace per fusion
@pytest.mark.parametrize("name", ["concat", "cross_attention"])  # an embedding and a token-level fusion
def test_a_model_with_feature_gates_exports_with_parity(name, tmp_path):
    from polyfuse.fusions.gates import GatedFusion, gate_modules

    model = tiny_model(name)
    model.encoders["tab"] = ENCODERS.build(
        "tabular_mlp", num_numeric=2, cardinalities=[4], output_dim=8, hidden_dim=8, column_gates=True
    ).eval()
    tokens = model.wants_tokens
    model.fusion = GatedFusion(
        model.fusion, {k: fusion_input_dim(e, tokens) for k, e in model.encoders.items()}
    ).eval()
    for gate in gate_modules(model).values():  # gates that differ from row to row
        torch.nn.init.normal_(gate.logits.weight, std=2.0)
    info = export_model(model, tiny_table(), tmp_path / "gated.onnx")
    assert 0 <= info["parity"]["max_abs_diff"] <= 1e-4, info["parity"]

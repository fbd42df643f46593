"""The modality contract, for every registered kind (``MODALITIES``): a tiny table of that kind alone
goes through sniff -> process -> encode -> fit -> explain -> serve decode -> export.

A new kind adds one tiny sample to ``SAMPLES`` (its cells carry the label, so the model has
something to learn) and these tests cover it; ``test_every_kind_has_a_sample`` says so when it is
missing.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

import polyfuse
import polyfuse.data.modalities  # noqa: F401  (registers the modalities)
import polyfuse.encoders  # noqa: F401  (registers the encoders)
from polyfuse.api import Predictor
from polyfuse.data.batch import Inputs
from polyfuse.data.modalities import BadValue, Field, Modality, owner
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.schema import describe_schema, infer_role, infer_schema
from polyfuse.encoders.base import build_encoder
from polyfuse.eval.attribution import method_of
from polyfuse.registry import ENCODERS, MODALITIES
from polyfuse.serve import Limits
from polyfuse.serve.inputs import model_fields

ROWS = 16  # rows 0-11 train, 12-13 val, 14-15 test
SPLIT = ["train"] * 12 + ["val"] * 2 + ["test"] * 2


@dataclass
class Sample:
    """A kind's tiny columns: ``make(root, yes)`` -> one row's cells (files written under root)."""

    make: Callable[[Path, list[bool]], dict[str, list[Any]]]
    options: dict[str, dict[str, Any]] = field(default_factory=dict)  # processor options per input
    encoders: dict[str, str] = field(default_factory=dict)  # instead of the default encoder


def _images(root: Path, yes: list[bool]) -> dict[str, list[Any]]:
    from PIL import Image

    rng = np.random.default_rng(0)
    (root / "img").mkdir()
    for i, bright in enumerate(yes):
        pixels = rng.integers(150, 255, (8, 8)) if bright else rng.integers(0, 100, (8, 8))
        Image.fromarray(pixels.astype(np.uint8), "L").save(root / "img" / f"{i}.png")
    return {"img": [f"img/{i}.png" for i in range(len(yes))]}


def _clips(root: Path, yes: list[bool]) -> dict[str, list[Any]]:
    import soundfile as sf

    (root / "wav").mkdir()
    t = np.arange(int(0.2 * 8000)) / 8000  # 0.2 s at 8 kHz
    for i, high in enumerate(yes):
        sf.write(root / "wav" / f"{i}.wav", 0.4 * np.sin(2 * np.pi * (1200 if high else 300) * t), 8000)
    return {"clip": [f"wav/{i}.wav" for i in range(len(yes))]}


def _notes(root: Path, yes: list[bool]) -> dict[str, list[Any]]:
    return {"note": [f"parcel {i} arrived {'early' if y else 'late'} today" for i, y in enumerate(yes)]}


def _numbers(root: Path, yes: list[bool]) -> dict[str, list[Any]]:
    rng = np.random.default_rng(0)
    colours = ["red", "green", "blue"]
    return {
        "x1": [round(float(y) + float(rng.normal(0, 0.3)), 4) for y in yes],
        "colour": [colours[0] if y else colours[1 + i % 2] for i, y in enumerate(yes)],
    }


def _series(root: Path, yes: list[bool]) -> dict[str, list[Any]]:
    rng = np.random.default_rng(0)
    (root / "npy").mkdir()
    for i, up in enumerate(yes):  # 2 channels, 12 to 20 steps: a rising or a falling trend
        steps = 12 + i % 9
        trend = np.linspace(0, 1, steps) * (1 if up else -1)
        np.save(root / "npy" / f"{i}.npy", np.stack([trend, rng.normal(0, 0.1, steps)], axis=1))
    return {"series": [f"npy/{i}.npy" for i in range(len(yes))]}


SAMPLES = {
    "image": Sample(_images, {"img": {"image_size": 8}}),
    "audio": Sample(_clips, {"clip": {"duration": 0.2, "n_mels": 16}}),
    # "auto" would take the offline MiniLM, frozen with its outputs cached: nothing left to attribute.
    "text": Sample(_notes, encoders={"note": "text_bag"}),
    "tabular": Sample(_numbers),
    "timeseries": Sample(_series),
}


@dataclass
class Case:
    kind: str
    modality: Modality
    sample: Sample
    root: Path
    frame: pd.DataFrame  # the table with its label and split; paths relative to root
    columns: list[str]  # the sample's columns
    fitted: dict[str, Any] = field(default_factory=dict)  # predictor, model dir: fit once per kind

    @property
    def data(self) -> tuple[pd.DataFrame, Path]:
        return self.frame, self.root

    def predictor(self) -> Predictor:
        if not self.fitted:
            out = self.root / "model"
            self.fitted["predictor"] = polyfuse.fit(
                self.data,
                label="label",
                out=out,
                processor_options=self.sample.options,
                encoders=self.sample.encoders,
                max_epochs=1,
                batch_size=8,
                baselines=False,
                verbose=False,
                progress=False,
            )
            self.fitted["dir"] = out
        return self.fitted["predictor"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module", params=MODALITIES.names())
def case(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Case:
    kind = request.param
    if kind not in SAMPLES:
        pytest.fail(f"modality {kind!r} has no tiny sample: add one to SAMPLES in {Path(__file__).name}")
    root = tmp_path_factory.mktemp(f"modality-{kind}")
    yes = [i % 2 == 0 for i in range(ROWS)]
    cells = SAMPLES[kind].make(root, yes)
    frame = pd.DataFrame({**cells, "label": ["yes" if y else "no" for y in yes], "split": SPLIT})
    return Case(kind, MODALITIES.get(kind), SAMPLES[kind], root, frame, list(cells))


def test_every_kind_has_a_sample():
    assert sorted(SAMPLES) == MODALITIES.names()


def test_sniff_recognises_the_kind(case: Case):
    schema = infer_schema(case.frame, "label", base_dir=case.root)
    assert [spec.kind for spec in schema.inputs] == [case.kind]
    assert schema.inputs[0].columns == case.columns and schema.split_column == "split"
    for column in case.columns:
        role = infer_role(case.frame[column])
        assert role in case.modality.roles and owner(role) is case.modality
        assert schema.roles[column] == role
    described = {row[0]: row for row in describe_schema(schema, case.frame, case.root)}
    for column in case.columns:
        assert described[column][1] == schema.roles[column] and described[column][2]


def _fitted_preprocessor(case: Case) -> Preprocessor:
    schema = infer_schema(case.frame, "label", base_dir=case.root)
    return Preprocessor(schema, case.sample.options).fit(case.frame.iloc[:12], case.root)


def _equal(a: Inputs, b: Inputs) -> bool:
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    return isinstance(a, torch.Tensor) and isinstance(b, torch.Tensor) and torch.equal(a, b)


def test_processor_fits_transforms_and_rebuilds_from_its_json_state(case: Case):
    pre = _fitted_preprocessor(case)
    name = pre.schema.inputs[0].name
    assert pre.processors[name].kind == case.kind
    table, errors = pre.transform(case.frame, case.root)
    assert errors == [] and len(table) == ROWS and bool(table.mask[name].all())
    rebuilt = Preprocessor.from_state(json.loads(json.dumps(pre.state())))
    again, _ = rebuilt.transform(case.frame, case.root)
    assert _equal(table.inputs[name], again.inputs[name])


def test_augment_keeps_the_inputs_shapes_and_repeats_with_its_generator(case: Case):
    pre = _fitted_preprocessor(case)
    name = pre.schema.inputs[0].name
    table, _ = pre.transform(case.frame, case.root)
    once = case.modality.augment(table.inputs[name], torch.Generator().manual_seed(0))
    assert _equal(once, case.modality.augment(table.inputs[name], torch.Generator().manual_seed(0)))
    assert _shapes(once) == _shapes(table.inputs[name])
    assert case.modality.default_augmentation  # every kind augments (data.augmentations)
    assert not _equal(once, table.inputs[name])


def _shapes(values: Any) -> Any:
    if isinstance(values, dict):
        return {k: _shapes(v) for k, v in values.items()}
    return (tuple(values.shape), values.dtype)


def test_default_encoder_takes_the_processed_tensors(case: Case):
    for name in (case.modality.default_encoder, case.modality.pretrained_encoder):
        if name not in (None, "auto"):  # "auto": fit chooses (see fitting._text_encoder)
            assert ENCODERS.get(name).modality == case.kind, name
    pre = _fitted_preprocessor(case)
    spec = pre.schema.inputs[0]
    chosen = case.sample.encoders.get(spec.name, case.modality.default_encoder)
    encoder = build_encoder(chosen, **pre.encoder_kwargs(spec.name)).eval()
    table, _ = pre.transform(case.frame, case.root)
    with torch.no_grad():
        embedding = encoder(table.inputs[spec.name])  # [N, D]
    assert embedding.shape == (ROWS, encoder.output_dim) and bool(torch.isfinite(embedding).all())


def test_fit_saves_a_model_that_reloads_with_the_same_predictions(case: Case):
    predictor = case.predictor()
    loaded = polyfuse.load(case.fitted["dir"])
    assert loaded.schema.inputs[0].kind == case.kind
    want, got = predictor.predict_proba(case.data), loaded.predict_proba(case.data)
    assert want.shape == (ROWS, 2) and np.allclose(want.to_numpy(), got.to_numpy(), atol=1e-6)


def test_explain_attributes_inside_the_modality(case: Case, tmp_path: Path):
    pytest.importorskip("captum")
    predictor = case.predictor()
    name = predictor.schema.inputs[0].name
    result = polyfuse.explain(predictor, case.data, out=tmp_path, samples=4, steps=4)
    summary = result["features"][name]
    assert "skipped" not in summary, summary
    method = method_of(case.kind)
    assert method is not None
    figure = f"{method.figure}_{name}"
    assert figure in result["figures"] and (tmp_path / result["figures"][figure]).is_file()
    assert set(result["robustness"]) == {name}


def _request_value(case: Case, f: Field, cell: Any) -> Any:
    """A table cell as a JSON request sends it: a file's bytes in base64, other values as they are."""
    if owner(f.kind).field_type(f) == "file":
        return base64.b64encode((case.root / str(cell)).read_bytes()).decode()
    return cell.item() if isinstance(cell, np.generic) else cell


def test_serve_decodes_documents_and_predicts_a_row(case: Case):
    from fastapi.testclient import TestClient

    from polyfuse.serve import ServeConfig, create_app

    predictor = case.predictor()
    fields = model_fields(predictor.preprocessor)
    assert [f.name for f in fields] == case.columns
    for f in fields:
        hooks = owner(f.kind)
        assert hooks is case.modality and hooks.field_schema(f, Limits(), multipart=False)["type"]
        with pytest.raises(BadValue):
            hooks.decode(f, {"not": "a value"}, Limits())  # a JSON object is never a cell
    body = {f.name: _request_value(case, f, case.frame.iloc[14][f.name]) for f in fields}
    with TestClient(create_app(str(case.fitted["dir"]), ServeConfig())) as client:  # warms up on examples
        described = client.get("/model").json()["fields"]
        answer = client.post("/predict", json=body)
    assert all(d["form"]["input"] and d["kind"] in case.modality.roles for d in described)
    assert answer.status_code == 200, answer.text
    want = predictor.predict_proba((case.frame.iloc[[14]], case.root)).iloc[0]
    got = answer.json()["probabilities"]
    assert got.keys() == {str(c) for c in want.index}
    assert all(abs(got[str(c)] - float(p)) <= 1e-5 for c, p in want.items())


def test_export_matches_torch(case: Case, tmp_path: Path):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    from polyfuse.export import OnnxModel, export_onnx

    predictor = case.predictor()
    table, _ = predictor.encode(case.data)
    info = export_onnx(predictor, tmp_path / "model.onnx", table)
    assert 0 <= info["parity"]["max_abs_diff"] <= 1e-4
    got = OnnxModel(tmp_path / "model.onnx", predictor).outputs(table)["label"]
    want = predictor.outputs(table)["label"]
    assert got.shape == want.shape == (ROWS,) and float((got - want).abs().max()) <= 1e-4

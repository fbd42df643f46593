"""``polyfuse serve``: served answers are the model's, every limit holds, errors are JSON 4xx.

A small model with every field kind (image, audio, text, numeric, categorical) is fit once; its
served probabilities are compared with ``Predictor.predict_proba`` on a table holding the same
files, for full rows, rows with absent modalities, batches and explanations.
"""

from __future__ import annotations

import asyncio
import base64
import functools
import io
import json
import struct
import sys
import threading
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pandas as pd
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

import polyfuse
from polyfuse.data.table import read_table
from polyfuse.predictor import Predictor
from polyfuse.serve import Limits, ServeConfig, create_app
from polyfuse.serve.batching import MicroBatcher

ROWS = 36
CLASSES = ("a", "b", "c")
COLOURS = ("red", "green", "blue")
WORDS = ("early", "late", "damaged")
MODALITIES = ("img", "clip", "text", "tabular")
FIELDS = ("img", "clip", "text", "x1", "colour")
MEDIA = ("img", "clip")


# --- media bytes and the small model ---------------------------------------------------------------


def png(width: int = 8, height: int = 8, level: int = 128, seed: int = 0) -> bytes:
    from PIL import Image

    rng = np.random.default_rng(seed)
    pixels = np.clip(rng.integers(level - 40, level + 40, (height, width)), 0, 255).astype(np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "L").save(out, format="PNG")
    return out.getvalue()


def png_header(width: int, height: int) -> bytes:
    """A PNG of just its header chunks: claims ``width`` x ``height`` pixels in a few dozen bytes."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IEND", b"")


def wav(seconds: float = 0.2, rate: int = 8000, hz: float = 440.0) -> bytes:
    import soundfile as sf

    t = np.arange(int(seconds * rate)) / rate
    out = io.BytesIO()
    sf.write(out, 0.4 * np.sin(2 * np.pi * hz * t), rate, format="WAV")
    return out.getvalue()


@dataclass
class Small:
    predictor: Predictor  # as fit, before saving
    folder: Path  # the saved model
    root: Path  # the table's folder (img/, wav/)
    frame: pd.DataFrame  # the table, paths relative to root


@functools.cache
def fit_small(root: Path) -> Small:
    """36 rows where every field carries the class; cached so the fuzz file reuses the same fit."""
    rng = np.random.default_rng(0)
    (root / "img").mkdir(parents=True)
    (root / "wav").mkdir()
    rows = []
    for i in range(ROWS):
        z = i % 3
        (root / "img" / f"{i}.png").write_bytes(png(level=50 + 75 * z, seed=i))
        (root / "wav" / f"{i}.wav").write_bytes(wav(hz=300 + 500 * z))
        rows.append(
            {
                "img": f"img/{i}.png",
                "clip": f"wav/{i}.wav",
                "text": f"parcel number {i} arrived {WORDS[z]} today",
                "x1": round(float(z + rng.normal(0, 0.5)), 4),
                "colour": COLOURS[z],
                "kind": CLASSES[z],
            }
        )
    frame = pd.DataFrame(rows)
    frame.to_csv(root / "table.csv", index=False)
    predictor = polyfuse.fit(
        str(root / "table.csv"),
        label="kind",
        out=root / "model",
        roles={"text": "text", "colour": "categorical"},
        processor_options={"img": {"image_size": 8}, "clip": {"duration": 0.2, "n_mels": 16}},
        encoders={"text": "text_bag"},
        max_epochs=3,
        baselines=False,
        verbose=False,
        progress=False,
    )
    return Small(predictor, root / "model", root, read_table(root / "table.csv")[0])


@pytest.fixture(scope="session")
def small(tmp_path_factory: pytest.TempPathFactory) -> Small:
    return fit_small(tmp_path_factory.getbasetemp() / "serve-small")


@pytest.fixture(scope="module")
def api(small: Small) -> Iterator[TestClient]:
    with TestClient(create_app(str(small.folder), ServeConfig())) as client:
        yield client


TIGHT = Limits(
    max_request_bytes=20_000,
    max_upload_bytes=4_000,
    max_image_pixels=100,  # an 8x8 image passes, 16x16 does not
    max_audio_seconds=0.5,
    max_text_chars=50,
    max_batch_rows=3,
)


@pytest.fixture(scope="module")
def tight(small: Small) -> Iterator[TestClient]:
    with TestClient(create_app(str(small.folder), ServeConfig(limits=TIGHT))) as client:
        yield client


def fields_of(small: Small, i: int, only: tuple[str, ...] = FIELDS) -> dict[str, Any]:
    """Row ``i`` of the table as request fields: file bytes, text, a number, a category."""
    row = small.frame.iloc[i]
    out: dict[str, Any] = {}
    for name in only:
        out[name] = (small.root / row[name]).read_bytes() if name in MEDIA else row[name]
    out["x1"] = float(out["x1"]) if "x1" in out else None
    return {k: v for k, v in out.items() if v is not None}


def as_json(fields: dict[str, Any]) -> dict[str, Any]:
    return {k: base64.b64encode(v).decode() if isinstance(v, bytes) else v for k, v in fields.items()}


def post(client: TestClient, fields: dict[str, Any], how: str, path: str = "/predict") -> httpx.Response:
    """Multipart (files as uploads, the rest as form text) or JSON (files base64)."""
    if how == "json":
        return client.post(path, json=as_json(fields))
    parts = {k: (f"{k}.bin", v) if isinstance(v, bytes) else (None, str(v)) for k, v in fields.items()}
    return client.post(path, files=parts)


def expected(small: Small, i: int, absent: tuple[str, ...] = ()) -> dict[str, float]:
    """The predictor's probabilities on table row ``i`` with the ``absent`` cells emptied."""
    row = small.frame.iloc[[i]].astype(object)
    for name in absent:
        row.iloc[0, row.columns.get_loc(name)] = None
    proba = small.predictor.predict_proba((row, small.root))
    return {str(c): float(p) for c, p in proba.iloc[0].items()}


def assert_close(got: dict[str, float], want: dict[str, float], tol: float = 1e-5) -> None:
    assert got.keys() == want.keys()
    for key in want:
        assert abs(got[key] - want[key]) <= tol, (key, got, want)


def assert_error(response: httpx.Response, status: int, field: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["status"] == status and error["problem"]
    if field is not None:
        assert error["field"] == field, error
    return error  # type: ignore[no-any-return]


def metric_samples(
    client: TestClient | httpx.Response,
) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, from /metrics."""
    text = (client.get("/metrics") if isinstance(client, TestClient) else client).text
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def batches(samples: dict[Any, float]) -> tuple[float, float, float]:
    """Forward passes, rows over them, and passes of exactly one row."""
    ones = samples[("polyfuse_batch_size_bucket", (("le", "1.0"),))]
    return samples[("polyfuse_batch_size_count", ())], samples[("polyfuse_batch_size_sum", ())], ones


# --- served answers are the model's ------------------------------------------------------------------


@pytest.mark.parametrize("i", [0, 1, 5])
def test_multipart_and_json_give_the_predictors_probabilities(small, api, i):
    fields = fields_of(small, i)
    by_form, by_json = post(api, fields, "multipart"), post(api, fields, "json")
    assert by_form.status_code == 200, by_form.text
    assert by_json.status_code == 200, by_json.text
    want = expected(small, i)
    assert_close(by_form.json()["probabilities"], want)
    assert_close(by_json.json()["probabilities"], want)
    body = by_json.json()
    assert body["label"] == "kind" and body["prediction"] == max(want, key=want.__getitem__)
    assert body["present"] == dict.fromkeys(MODALITIES, True)
    assert body["latency_ms"] >= 0


@pytest.mark.slow
def test_the_onnx_backend_serves_the_same_answers(small, tmp_path):
    """``serve --backend onnx``: onnxruntime on the exported model, same preprocessing and answers."""
    pytest.importorskip("onnxruntime")
    from polyfuse.export import export_onnx

    onnx = tmp_path / "model.onnx"
    export_onnx(polyfuse.load(small.folder), onnx)
    with TestClient(
        create_app(str(small.folder), ServeConfig(backend="onnx", onnx_path=str(onnx)))
    ) as client:
        assert client.get("/model").json()["backend"] == "onnx"
        for i, absent in [(0, ()), (4, ("clip", "text"))]:
            fields = fields_of(small, i, tuple(f for f in FIELDS if f not in absent))
            answer = post(client, fields, "multipart")
            assert answer.status_code == 200, answer.text
            assert_close(answer.json()["probabilities"], expected(small, i, absent), tol=1e-4)
        explained = post(client, fields_of(small, 2), "multipart", "/explain").json()
        assert sum(explained["contributions"].values()) == pytest.approx(
            explained["full"] - explained["base"], abs=1e-5
        )


def test_a_data_url_is_the_same_as_its_base64(small, api):
    fields = as_json(fields_of(small, 2, ("img",)))
    plain = api.post("/predict", json=fields).json()
    url = api.post("/predict", json={"img": "data:image/png;base64," + fields["img"]}).json()
    assert url["probabilities"] == plain["probabilities"]


@pytest.mark.parametrize(
    "sent",
    [
        ("img",),
        ("clip",),
        ("text",),
        ("x1",),
        ("colour",),
        ("img", "text"),
        ("clip", "x1"),
        ("colour", "text"),
    ],
    ids=lambda s: "+".join(s),
)
def test_absent_modalities_are_masked_as_in_the_table(small, api, sent):
    i = 4
    response = post(api, fields_of(small, i, sent), "multipart")
    assert response.status_code == 200, response.text
    body = response.json()
    tabular = "x1" in sent or "colour" in sent
    present = {m: m in sent for m in ("img", "clip", "text")} | {"tabular": tabular}
    assert body["present"] == present
    absent = tuple(f for f in FIELDS if f not in sent)
    assert_close(body["probabilities"], expected(small, i, absent))


def test_a_real_trained_model_is_served_unchanged(digits_model, digits_table):
    predictor, folder = digits_model
    frame, root = read_table(digits_table)
    test = frame[frame["split"] == "test"].head(30)
    want = predictor.predict_proba((test, root))
    rows = []
    for _, row in test.iterrows():
        fields = {"image": (root / row["image"]).read_bytes(), "audio": (root / row["audio"]).read_bytes()}
        rows.append(as_json({**fields, "text": row["text"]}))
    with TestClient(create_app(str(folder))) as client:
        served = client.post("/predict/batch", json={"rows": rows})
        single = client.post("/predict", json=rows[0])
    assert served.status_code == 200, served.text
    results = served.json()["results"]
    assert single.json()["probabilities"] == results[0]["probabilities"]
    for result, (_, p) in zip(results, want.iterrows(), strict=True):
        assert_close(result["probabilities"], {str(c): float(v) for c, v in p.items()})
    accuracy = np.mean([str(r["prediction"]) == str(d) for r, d in zip(results, test["digit"], strict=True)])
    assert accuracy >= 0.6  # ten classes: chance is 0.1


# --- /predict/batch ---------------------------------------------------------------------------------


def test_batch_equals_single_calls_row_by_row(small, api):
    rows = [
        as_json(fields_of(small, 0)),
        as_json(fields_of(small, 7, ("img", "colour"))),
        as_json(fields_of(small, 11, ("text",))),
    ]
    response = api.post("/predict/batch", json={"rows": rows})
    assert response.status_code == 200, response.text
    results = response.json()["results"]
    assert len(results) == 3
    for row, result in zip(rows, results, strict=True):
        single = api.post("/predict", json=row).json()
        assert result["probabilities"] == single["probabilities"]
        assert result["present"] == single["present"]
    bare = api.post("/predict/batch", json=rows).json()["results"]  # a bare list works too
    assert [r["probabilities"] for r in bare] == [r["probabilities"] for r in results]


def test_batch_limits_and_bad_rows_name_the_row(small, tight):
    row = {"x1": 0.5}
    assert tight.post("/predict/batch", json={"rows": [row] * 3}).status_code == 200
    assert_error(tight.post("/predict/batch", json={"rows": [row] * 4}), 413, "rows")
    assert_error(tight.post("/predict/batch", json={"rows": []}), 422, "rows")
    assert_error(tight.post("/predict/batch", json={"rows": [row, {"x1": "many"}]}), 422, "rows[1].x1")
    assert_error(tight.post("/predict/batch", json={"rows": [row, {"nope": 1}]}), 422, "rows[1].nope")
    assert_error(tight.post("/predict/batch", json={"rows": [row, 5]}), 422, "rows[1]")
    assert_error(tight.post("/predict/batch", json={"rows": [row, {}]}), 422, "rows[1]")


def test_an_image_that_fails_to_decode_names_its_field(small, api):
    whole = png(seed=3)
    truncated = whole[: len(whole) // 2]  # the header reads, the pixels do not
    assert_error(post(api, {"img": truncated, "x1": 1.0}, "multipart"), 422, "img")
    rows = [{"x1": 1.0}, as_json({"img": truncated})]
    assert_error(api.post("/predict/batch", json={"rows": rows}), 422, "rows[1].img")


# --- /explain, /model, /openapi.json ----------------------------------------------------------------


@pytest.mark.parametrize("sent", [FIELDS, ("img", "text"), ("colour",)], ids=lambda s: "+".join(s))
def test_explain_contributions_add_up_to_full_minus_base(small, api, sent):
    response = post(api, fields_of(small, 3, sent), "json", "/explain")
    assert response.status_code == 200, response.text
    body = response.json()
    contributions = body["contributions"]
    assert set(contributions) == set(MODALITIES)
    assert abs(sum(contributions.values()) - (body["full"] - body["base"])) <= 1e-5
    for modality, present in body["present"].items():
        if not present:
            assert contributions[modality] == 0.0
    assert abs(body["full"] - body["probabilities"][body["prediction"]]) <= 1e-5
    assert body["target"] == f"probability of {body['prediction']!r}"


def test_model_lists_fields_labels_and_limits(tight):
    body = tight.get("/model").json()
    assert {f["name"]: f["kind"] for f in body["fields"]} == {
        "img": "image",
        "clip": "audio",
        "text": "text",
        "x1": "numeric",
        "colour": "categorical",
    }
    colour = next(f for f in body["fields"] if f["name"] == "colour")
    assert colour["categories"] == sorted(COLOURS) and colour["modality"] == "tabular"
    assert body["labels"] == [{"column": "kind", "task": "multiclass", "classes": list(CLASSES)}]
    assert body["limits"]["max_image_pixels"] == 100 and body["limits"]["max_batch_rows"] == 3
    assert body["modalities"] == list(MODALITIES) and body["backend"] == "torch"


def test_openapi_has_the_request_bodies(tight):
    spec = tight.get("/openapi.json").json()
    content = spec["paths"]["/predict"]["post"]["requestBody"]["content"]
    form = content["multipart/form-data"]["schema"]["properties"]
    as_json_ = content["application/json"]["schema"]["properties"]
    assert set(form) == set(as_json_) == set(FIELDS)
    assert form["img"]["format"] == "binary" and as_json_["img"]["format"] == "byte"
    assert as_json_["x1"]["type"] == "number" and as_json_["text"]["maxLength"] == 50
    assert as_json_["colour"]["enum"] == sorted(COLOURS)
    batch = spec["paths"]["/predict/batch"]["post"]["requestBody"]["content"]["application/json"]["schema"]
    assert batch["properties"]["rows"]["maxItems"] == 3
    assert tight.get("/docs").status_code == 200 and "polyfuse" in tight.get("/").text.lower()


# --- limits and client errors -------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["multipart", "json"])
def test_every_limit_is_a_413_naming_the_field(small, tight, how):
    assert post(tight, {"img": png(), "clip": wav(), "text": "on time"}, how).status_code == 200
    assert_error(post(tight, {"img": b"\x00" * 5_000}, how), 413, "img")  # before any decoding
    assert_error(post(tight, {"img": png(16, 16)}, how), 413, "img")  # 256 pixels > 100
    assert_error(post(tight, {"clip": wav(seconds=1.0, rate=1000)}, how), 413, "clip")  # 1 s > 0.5 s
    assert_error(post(tight, {"text": "x" * 51}, how), 413, "text")
    assert_error(post(tight, {"text": "x" * 5_000}, how), 413, "text")  # over the multipart part size too
    assert post(tight, {"text": "x" * 50}, how).status_code == 200


def test_a_decompression_bomb_header_is_a_413(api):
    # 20000 x 20000 in 57 bytes: Pillow itself refuses it at open; it is still "too large".
    error = assert_error(post(api, {"img": png_header(20_000, 20_000)}, "json"), 413, "img")
    assert "limit" in error["problem"]
    assert_error(post(api, {"img": png_header(5_000, 5_000)}, "json"), 413, "img")  # our own bound


def test_a_body_over_the_limit_is_a_413(tight):
    big = {"text": "x" * 30_000}
    assert_error(tight.post("/predict", json=big), 413)  # declared length
    chunks = (b'{"text": "' + b"x" * 30_000 + b'"}' for _ in range(1))  # chunked: no length declared
    response = tight.post("/predict", content=chunks, headers={"content-type": "application/json"})
    assert_error(response, 413)
    parts = {"img": ("a.png", b"\x00" * 25_000)}
    assert_error(tight.post("/predict", files=parts), 413)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"colour": "purple"}, "colour"),
        ({"colour": 3}, "colour"),
        ({"x1": "many"}, "x1"),
        ({"x1": "nan"}, "x1"),
        ({"x1": [1]}, "x1"),
        ({"x1": True}, "x1"),
        ({"text": 5}, "text"),
        ({"img": 5}, "img"),
        ({"img": "not base64!"}, "img"),
        ({"img": "data:image/png"}, "img"),  # a data: URL without its content
        ({"clip": base64.b64encode(b"RIFF" + b"\x00" * 40).decode()}, "clip"),
        ({"nope": 1}, "nope"),
        ({"x1": 1, "weight": 2}, "weight"),
        ({}, None),
        ({"text": "  ", "img": ""}, None),
    ],
)
def test_bad_fields_are_422_naming_the_field(api, body, field):
    error = assert_error(api.post("/predict", json=body), 422, field)
    if field == "colour":
        assert "known: blue, green, red" in error["problem"]


def test_bad_form_fields_are_422(api):
    assert_error(api.post("/predict", files={"x1": (None, "many")}), 422, "x1")
    assert_error(api.post("/predict", files={"colour": (None, "purple")}), 422, "colour")
    assert_error(api.post("/predict", files={"other": (None, "1")}), 422, "other")
    assert_error(api.post("/predict", files={"text": ("t.txt", b"a file, not text")}), 422, "text")
    assert_error(api.post("/predict", data={"x1": ["1", "2"]}), 422, "x1")  # sent twice
    assert_error(api.post("/predict", files={"img": ("a.png", b"")}), 422)  # empty upload: no input


def test_a_path_in_a_file_field_is_never_opened(api, tmp_path):
    image, clip = tmp_path / "real.png", tmp_path / "real.wav"
    image.write_bytes(png())
    clip.write_bytes(wav())
    for name, path in (("img", image), ("clip", clip)):
        for sent in (str(path), path.as_uri(), f"../{path.name}"):
            response = api.post("/predict", json={name: sent})
            assert_error(response, 422, name)
            assert "probabilities" not in response.json()
            assert_error(api.post("/predict", files={name: (None, sent)}), 422, name)
    # A path made only of base64 letters decodes, to bytes that are no image: still never opened.
    assert_error(api.post("/predict", json={"img": "/tmp/real/png+AA"}), 422, "img")


def test_content_type_json_and_headers(api):
    assert_error(api.post("/predict", content=b"x1=1", headers={"content-type": "text/plain"}), 415)
    assert_error(api.post("/predict", content=b"{}"), 415)  # no content-type
    assert_error(api.post("/predict/batch", files={"x1": (None, "1")}), 415)
    malformed = (b'{"x1": 1', b"\xff\xfe{", b"[" * 10_000, b'{"x1": 1' + b"0" * 5_000 + b"}")
    for body in malformed:
        response = api.post("/predict", content=body, headers={"content-type": "application/json"})
        assert_error(response, 400)
    assert_error(api.post("/predict", json=[1, 2]), 422)
    multipart = {"content-type": "multipart/form-data; boundary=xyz"}
    assert_error(api.post("/predict", content=b"--xyz\r\nnonsense", headers=multipart), 422)  # no fields
    bare = {"content-type": "multipart/form-data"}
    assert_error(api.post("/predict", content=b"--xyz\r\n\r\n--xyz--", headers=bare), 400)
    for length, status in (("abc", 400), ("9" * 5_000, 413)):  # int() refuses 5000 digits: was a 500
        headers = {"content-type": "application/json", "content-length": length}
        assert_error(api.post("/predict", content=b'{"x1": 1}', headers=headers), status)
    assert_error(api.get("/nowhere"), 404)
    assert_error(api.get("/predict"), 405)
    assert api.get("/health").json()["status"] == "ok"


async def _raw_post(app: FastAPI, headers: list[tuple[bytes, bytes]]) -> tuple[int, dict[str, Any]]:
    """One ASGI request with headers exactly as given (the test client re-encodes non-ASCII ones)."""
    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/predict",
        "raw_path": b"/predict",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"content-type", b"application/json"), *headers],
        "client": ("client", 1),
        "server": ("serve", 80),
    }
    incoming = [{"type": "http.request", "body": b'{"x1": 1}', "more_body": False}]
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return incoming.pop(0) if incoming else {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        sent.append(message)

    await app(scope, receive, send)
    return sent[0]["status"], json.loads(b"".join(m.get("body", b"") for m in sent[1:]))


def test_content_length_must_be_ascii_digits(small):
    app = create_app(str(small.folder))  # the guard answers before the model: no lifespan needed
    for raw in (b"\xb2", b"\xb9\xb3", b"-1", b" 9", b"1e3"):  # "²".isdigit() is True: int() then raised
        status, body = asyncio.run(_raw_post(app, [(b"content-length", raw)]))
        assert status == 400 and body["error"]["problem"] == "bad Content-Length header", (raw, body)


def test_huge_numbers_and_lone_surrogates_are_client_errors(api):
    assert_error(api.post("/predict", json={"x1": 10**400}), 422, "x1")  # float() overflows
    # Finite, but far beyond float32 once standardised: NaN outputs, once served as null probabilities.
    for path in ("/predict", "/explain"):
        assert "finite" in assert_error(api.post(path, json={"x1": 1e38, "colour": "red"}), 422)["problem"]
    rows = {"rows": [{"x1": 1.0}, {"x1": -1e300}]}
    assert_error(api.post("/predict/batch", json=rows), 422, "rows[1]")
    assert api.post("/predict", json={"x1": 1e3}).status_code == 200
    surrogate = b'{"text": "\\ud800 late"}'
    response = api.post("/predict", content=surrogate, headers={"content-type": "application/json"})
    assert_error(response, 422, "text")
    response = api.post("/predict", content=b'{"\\udc00x": 1}', headers={"content-type": "application/json"})
    assert_error(response, 422, "?x")  # the unknown name, as UTF-8 can carry it


def test_a_bad_request_does_not_spoil_the_requests_batched_with_it(small):
    """A lone surrogate once failed the whole forward pass (pyarrow), so every request batched with it."""
    app = create_app(str(small.folder), ServeConfig(max_batch=8, max_wait_ms=100))
    good = [as_json(fields_of(small, i, ("text", "x1"))) for i in range(3)]
    bad = b'{"text": "\\ud800"}'

    async def run() -> list[httpx.Response]:
        async with app.router.lifespan_context(app), _client(app) as client:
            headers = {"content-type": "application/json"}
            return await asyncio.gather(
                *(client.post("/predict", json=row) for row in good),
                client.post("/predict", content=bad, headers=headers),
            )

    *answers, refused = asyncio.run(run())
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert_error(refused, 422, "text")


# --- API key, metrics --------------------------------------------------------------------------------


def test_api_key(small):
    with TestClient(create_app(str(small.folder), ServeConfig(api_key="k"))) as client:
        for method, path, kwargs in (("post", "/predict", {"json": {"x1": 1}}), ("get", "/model", {})):
            call = getattr(client, method)
            assert_error(call(path, **kwargs), 401)
            assert_error(call(path, headers={"x-api-key": "wrong"}, **kwargs), 401)
            assert call(path, headers={"x-api-key": "k"}, **kwargs).status_code == 200
        assert_error(client.get("/metrics"), 401)
        assert client.get("/health").status_code == 200
        assert client.get("/").status_code == 200


def test_metrics_count_requests_by_status_and_batch_sizes(small, api):
    before = metric_samples(api)
    for _ in range(3):
        assert api.post("/predict", json={"x1": 0.1}).status_code == 200
    api.post("/predict", json={"x1": "many"})
    api.post("/predict", content=b"{", headers={"content-type": "application/json"})
    api.post("/predict/batch", json={"rows": [{"x1": 1}, {"x1": 2}]})
    after = metric_samples(api)

    def delta(name: str, **labels: str) -> float:
        key = (name, tuple(sorted(labels.items())))
        return after.get(key, 0.0) - before.get(key, 0.0)

    assert delta("polyfuse_requests_total", path="/predict", status="200") == 3
    assert delta("polyfuse_requests_total", path="/predict", status="422") == 1
    assert delta("polyfuse_requests_total", path="/predict", status="400") == 1
    assert delta("polyfuse_requests_total", path="/predict/batch", status="200") == 1
    assert delta("polyfuse_request_latency_seconds_count", path="/predict") == 5
    assert delta("polyfuse_batch_size_count") == 4  # the 422 and the 400 never reached the model
    assert delta("polyfuse_batch_size_sum") == 5
    assert delta("polyfuse_batch_size_bucket", le="2.0") == 4


# --- micro-batching ----------------------------------------------------------------------------------


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")


def _concurrent(app: FastAPI, rows: list[dict[str, Any]]) -> tuple[list[Any], list[Any], Any, Any]:
    """Each row alone, then all at once: (single answers, concurrent answers, metrics before, after)."""

    async def run() -> tuple[list[Any], list[Any], Any, Any]:
        async with app.router.lifespan_context(app), _client(app) as client:
            singles = [(await client.post("/predict", json=row)).json() for row in rows]
            before = metric_samples(await client.get("/metrics"))
            answers = await asyncio.gather(*(client.post("/predict", json=row) for row in rows))
            after = metric_samples(await client.get("/metrics"))
            return singles, [a.json() for a in answers], before, after

    return asyncio.run(run())


def test_concurrent_requests_share_forward_passes(small):
    rows = [as_json(fields_of(small, i)) for i in range(8)]
    app = create_app(str(small.folder), ServeConfig(max_batch=8, max_wait_ms=50))
    singles, answers, before, after = _concurrent(app, rows)
    passes, total, _ = np.subtract(batches(after), batches(before))
    assert total == len(rows)
    assert passes < len(rows)
    for single, answer in zip(singles, answers, strict=True):
        assert_close(answer["probabilities"], single["probabilities"], 2e-6)


def test_max_batch_one_runs_every_request_alone(small):
    rows = [as_json(fields_of(small, i, ("text", "x1"))) for i in range(6)]
    app = create_app(str(small.folder), ServeConfig(max_batch=1, max_wait_ms=50))
    singles, answers, before, after = _concurrent(app, rows)
    passes, total, ones = np.subtract(batches(after), batches(before))
    assert passes == total == ones == len(rows)
    assert [a["probabilities"] for a in answers] == [s["probabilities"] for s in singles]


class _Recorder:
    """A fake model: records each batch it runs; ``x`` -> ``10 x``; raises on a batch holding "bad"."""

    def __init__(self) -> None:
        self.batches: list[list[Any]] = []

    def __call__(self, items: list[Any]) -> list[Any]:
        self.batches.append(list(items))
        if "bad" in items:
            raise ValueError("bad item")
        return [10 * x for x in items]


async def _with(batcher: MicroBatcher[Any, Any], work: Any) -> Any:
    await batcher.start()
    try:
        return await work()
    finally:
        await batcher.stop()


def test_batcher_groups_up_to_max_batch_and_routes_results():
    run, sizes = _Recorder(), []
    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=100, on_batch=sizes.append)

    async def work() -> list[Any]:
        return await asyncio.gather(*(batcher.submit([i]) for i in range(10)))

    results = asyncio.run(_with(batcher, work))
    assert results == [[10 * i] for i in range(10)]
    assert [len(b) for b in run.batches] == sizes == [4, 4, 2]
    assert sorted(x for b in run.batches for x in b) == list(range(10))


def test_batcher_waits_at_most_max_wait_and_not_when_full():
    async def alone(max_batch: int, max_wait_ms: float, n: int) -> float:
        batcher = MicroBatcher(_Recorder(), max_batch=max_batch, max_wait_ms=max_wait_ms)

        async def work() -> float:
            start = time.monotonic()
            await asyncio.gather(*(batcher.submit([i]) for i in range(n)))
            return time.monotonic() - start

        return await _with(batcher, work)  # type: ignore[no-any-return]

    assert 0.1 <= asyncio.run(alone(8, 100, 1)) < 5.0  # one request waits for company, then runs
    assert asyncio.run(alone(2, 60_000, 2)) < 5.0  # a full batch runs at once, not after a minute
    assert asyncio.run(alone(1, 60_000, 1)) < 5.0


def test_batcher_keeps_multi_row_submits_together():
    run = _Recorder()
    batcher = MicroBatcher(run, max_batch=4, max_wait_ms=100)

    async def work() -> list[Any]:
        return await asyncio.gather(
            batcher.submit([1, 2, 3]),
            batcher.submit([4, 5, 6]),
            batcher.submit([7]),
            batcher.submit(list(range(6))),
        )

    results = asyncio.run(_with(batcher, work))
    assert results == [[10, 20, 30], [40, 50, 60], [70], [0, 10, 20, 30, 40, 50]]
    assert run.batches == [[1, 2, 3], [4, 5, 6, 7], [0, 1, 2, 3, 4, 5]]  # never split, never over 4 but alone


def test_batcher_failure_reaches_every_caller_and_it_keeps_working():
    run = _Recorder()
    batcher = MicroBatcher(run, max_batch=8, max_wait_ms=50)

    async def work() -> tuple[list[Any], list[Any]]:
        failed = await asyncio.gather(
            batcher.submit([1]), batcher.submit(["bad"]), batcher.submit([2]), return_exceptions=True
        )
        after = await asyncio.gather(batcher.submit([3]), batcher.submit([4]))
        return failed, after

    failed, after = asyncio.run(_with(batcher, work))
    assert all(isinstance(f, ValueError) for f in failed) and len(failed) == 3
    assert after == [[30], [40]]


def test_batcher_skips_a_caller_that_gave_up():
    run = _Recorder()
    batcher = MicroBatcher(run, max_batch=8, max_wait_ms=100)

    async def work() -> list[Any]:
        gone = asyncio.ensure_future(batcher.submit([1]))
        kept = asyncio.ensure_future(batcher.submit([2]))
        await asyncio.sleep(0.01)
        gone.cancel()
        return await kept  # type: ignore[no-any-return]

    assert asyncio.run(_with(batcher, work)) == [20]
    assert run.batches == [[2]]


def test_batcher_rejects_bad_settings():
    with pytest.raises(ValueError, match="max_batch"):
        MicroBatcher(_Recorder(), max_batch=0)


# --- a slow model: 503, not a hang ---------------------------------------------------------------------


class _Slow:
    def __init__(self, inner: Any, seconds: float):
        self.inner, self.seconds = inner, seconds

    def outputs(self, table: Any, batch_size: int = 256) -> Any:
        time.sleep(self.seconds)
        return self.inner.outputs(table, batch_size)


def test_a_slow_model_gives_a_503_and_the_server_keeps_answering(small):
    app = create_app(str(small.folder), ServeConfig(limits=Limits(request_timeout_s=0.2)))
    with TestClient(app) as client:
        service = app.state.server.service
        service.backend = _Slow(service.backend, 1.0)
        start = time.monotonic()
        error = assert_error(client.post("/predict", json={"x1": 1.0}), 503)
        assert "0.2 s" in error["problem"] and time.monotonic() - start < 0.9
        assert_error(client.post("/explain", json={"x1": 1.0}), 503)
        assert client.get("/health").status_code == 200
        service.backend = service.backend.inner
        time.sleep(1.0)  # the model thread finishes the slow passes
        assert client.post("/predict", json={"x1": 1.0}).status_code == 200


# --- the command line -----------------------------------------------------------------------------------


def test_serve_help():
    from typer.testing import CliRunner

    from polyfuse.cli import app

    result = CliRunner().invoke(app, ["serve", "--help"])
    assert result.exit_code == 0, result.output
    for option in ("--api-key-env", "--max-batch", "--workers", "--backend"):
        assert option in result.output


def test_serve_with_an_unset_api_key_variable_exits_2(small, monkeypatch, capsys):
    from polyfuse.cli import main

    monkeypatch.delenv("POLYFUSE_TEST_NO_SUCH_KEY", raising=False)
    started = threading.Event()
    monkeypatch.setattr("polyfuse.serve.app.serve", lambda *args: started.set())
    argv = ["polyfuse", "serve", str(small.folder), "--api-key-env", "POLYFUSE_TEST_NO_SUCH_KEY"]
    monkeypatch.setattr(sys, "argv", argv)
    with pytest.raises(SystemExit) as done:
        main()
    assert done.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --api-key-env POLYFUSE_TEST_NO_SUCH_KEY") and "unset" in err
    assert len(err.splitlines()) == 1 and not started.is_set()

"""Every limit holds and every client error is a JSON 4xx naming the field."""

from __future__ import annotations

import asyncio
import base64
import json
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from polyfuse.serve import ServeConfig, create_app
from serve.serving import as_json, asgi_client, assert_error, fields_of, png, png_header, post, wav

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
        async with app.router.lifespan_context(app), asgi_client(app) as client:
            headers = {"content-type": "application/json"}
            return await asyncio.gather(
                *(client.post("/predict", json=row) for row in good),
                client.post("/predict", content=bad, headers=headers),
            )

    *answers, refused = asyncio.run(run())
    assert [a.status_code for a in answers] == [200, 200, 200]
    assert_error(refused, 422, "text")

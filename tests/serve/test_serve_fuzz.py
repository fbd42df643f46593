"""Fuzzing ``polyfuse serve``: whatever a client sends, the answer is a JSON 4xx (or a real
prediction when the input happens to be valid), never a 5xx, and the server keeps answering.

How a 200 is judged: random bytes in a file field may only succeed if Pillow / soundfile decode
them independently; elsewhere a 200 must be a well-formed prediction of a request that could be
valid (known field names only). Every other answer must be a 4xx JSON error with a problem.
"""

from __future__ import annotations

import base64
import io
import json
import string
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import httpx
import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from polyfuse.serve import Limits, ServeConfig, create_app
from serve.serving import FIELDS, MEDIA, fit_small, png, png_header, wav

FUZZ = settings(
    max_examples=40,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMITS = Limits(
    max_request_bytes=60_000,
    max_upload_bytes=8_000,
    max_image_pixels=64 * 64,
    max_audio_seconds=0.5,
    max_text_chars=200,
    max_batch_rows=4,
)
KINDS = {"img": "image", "clip": "audio", "text": "text", "x1": "numeric", "colour": "categorical"}
JSON_HEADERS = {"content-type": "application/json"}


@pytest.fixture(scope="module")
def fuzz(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    small = fit_small(tmp_path_factory.getbasetemp() / "serve-small")  # the fit of test_serve, if it ran
    app = create_app(str(small.folder), ServeConfig(limits=LIMITS))
    with TestClient(app, raise_server_exceptions=False) as client:
        yield client
        assert client.get("/health").json() == {"status": "ok", "model": "model"}


def check(response: httpx.Response, may_succeed: bool = False) -> None:
    """A JSON 4xx with a problem; or, where ``may_succeed``, a well-formed prediction."""
    status = response.status_code
    assert status < 500, (status, response.text[:300])
    if status == 200 and may_succeed:
        body = response.json()
        results = body.get("results", [body])
        for result in results:
            assert abs(sum(result["probabilities"].values()) - 1) < 1e-4, body
        return
    assert 400 <= status < 500, (status, response.text[:300])
    error = response.json()["error"]
    assert error["status"] == status and isinstance(error["problem"], str) and error["problem"]
    assert error["field"] is None or isinstance(error["field"], str)


def alive(client: TestClient) -> None:
    assert client.get("/health").status_code == 200


# --- strategies ---------------------------------------------------------------------------------------

MAGIC = [
    b"\x89PNG\r\n\x1a\n",
    b"GIF89a",
    b"\xff\xd8\xff\xe0",
    b"BM",
    b"II*\x00",
    b"RIFF",
    b"fLaC",
    b"OggS",
    b"ID3",
]
SEEDS = {"img": [png(), png(16, 16, seed=1), png_header(70, 70)], "clip": [wav(), wav(0.1, 16000)]}


def _mutate(data: bytes, edits: list[tuple[int, int]], cut: int) -> bytes:
    out = bytearray(data)
    for at, value in edits:
        out[at % len(out)] = value
    return bytes(out[: max(cut, 1)])


def media_bytes(name: str) -> st.SearchStrategy[bytes]:
    """Random bytes, random bytes behind a real format's magic, and real files with bytes changed."""
    mutated = st.builds(
        _mutate,
        st.sampled_from(SEEDS[name]),
        st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=6),
        st.integers(8, 4_000),
    )
    behind_magic = st.builds(bytes.__add__, st.sampled_from(MAGIC), st.binary(max_size=600))
    return st.one_of(st.binary(max_size=1_500), behind_magic, mutated)


def decodes(name: str, data: bytes) -> bool:
    """Whether the bytes are a file the libraries read on their own."""
    try:
        if name == "img":
            from PIL import Image

            with Image.open(io.BytesIO(data)) as img:
                img.load()
        else:
            import soundfile as sf

            sf.read(io.BytesIO(data))
    except Exception:
        return False
    return True


json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(),
    st.integers(10**300, 10**400),  # float() overflows
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from([1e38, -1e300, 1.7976931348623157e308]),  # finite, beyond float32 once standardised
    st.text(max_size=30),
    st.builds("data:".__add__, st.text(max_size=12)),  # data: URLs, with or without their comma
)
json_values = st.recursive(
    json_scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)
# Field names as a JSON body may carry them, lone surrogates included (json.dumps escapes them).
names = st.one_of(
    st.text(max_size=12),
    st.text(st.characters(categories=["Cs"]), min_size=1, max_size=3),  # lone surrogates
    st.sampled_from(FIELDS),
)
# Number literals as JSON text: beyond float range, beyond int()'s 4300 digits, odd exponents.
number_literals = st.one_of(
    st.integers(1, 6_000).map(lambda n: "9" * n),
    st.builds("{}e{}".format, st.integers(-9, 9), st.integers(-400, 400)),
    st.from_regex(r"-?(0|[1-9][0-9]{0,40})(\.[0-9]{1,40})?([eE][+-]?[0-9]{1,4})?", fullmatch=True),
)


def may_be_valid(kind: str, value: Any) -> bool:
    """Whether ``value`` could be a valid JSON value of a field of ``kind`` (then a 200 is fine)."""
    if kind in ("image", "audio"):
        return False  # a short random string never decodes to a file
    if kind == "text":
        return isinstance(value, str)
    if kind == "numeric":
        return isinstance(value, (int, float, str)) and not isinstance(value, bool)
    return isinstance(value, (int, float, str)) and not isinstance(value, bool)


# --- files --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("how", ["multipart", "json"])
@pytest.mark.parametrize("name", MEDIA)
def test_random_bytes_in_a_file_field(fuzz, name, how):
    @FUZZ
    @given(data=media_bytes(name), with_text=st.booleans())
    def run(data: bytes, with_text: bool) -> None:
        extra = {"text": "late again"} if with_text else {}
        if how == "multipart":
            parts = {name: (f"{name}.bin", data), **{k: (None, v) for k, v in extra.items()}}
            response = fuzz.post("/predict", files=parts)
        else:
            response = fuzz.post("/predict", json={name: base64.b64encode(data).decode(), **extra})
        check(response, may_succeed=decodes(name, data) or not data)  # no bytes: no file, absent
        if response.status_code == 200:
            assert response.json()["present"][name] == bool(data)
        elif response.status_code in (413, 422) and data:
            assert response.json()["error"]["field"] == name

    run()
    alive(fuzz)


# --- malformed bodies -----------------------------------------------------------------------------------


def _multipart_body(fields: dict[str, Any], boundary: str = "fuzzboundary") -> bytes:
    request = httpx.Request(
        "POST", "http://x/", files={k: (None, str(v)) for k, v in fields.items()}, headers=_boundary(boundary)
    )
    return request.read()


def _boundary(boundary: str) -> dict[str, str]:
    return {"content-type": f"multipart/form-data; boundary={boundary}"}


VALID_FORM = _multipart_body({"x1": 0.5, "colour": "red", "text": "early"})
boundaries = st.text(string.ascii_letters + string.digits + "-_'()+,./:=?", min_size=0, max_size=70)


def test_random_bytes_with_a_multipart_content_type(fuzz):
    @FUZZ
    @given(body=st.binary(max_size=2_000), boundary=boundaries)
    def run(body: bytes, boundary: str) -> None:
        check(fuzz.post("/predict", content=body, headers=_boundary(boundary)))

    run()
    alive(fuzz)


def test_truncated_and_altered_multipart_bodies(fuzz):
    @FUZZ
    @given(
        cut=st.integers(0, len(VALID_FORM)),
        edits=st.lists(st.tuples(st.integers(0, len(VALID_FORM) - 1), st.integers(0, 255)), max_size=4),
        header=st.sampled_from(
            [
                "multipart/form-data; boundary=fuzzboundary",
                "multipart/form-data",
                "multipart/form-data; boundary=",
                "multipart/form-data; boundary=other",
                'multipart/form-data; boundary="fuzzboundary"; charset=nope',
                "multipart/mixed; boundary=fuzzboundary",
                "application/x-www-form-urlencoded",
            ]
        ),
    )
    def run(cut: int, edits: list[tuple[int, int]], header: str) -> None:
        body = _mutate(VALID_FORM, edits, cut) if cut else b""
        # A lenient parser may read the complete parts of a cut body: then a prediction is right.
        check(fuzz.post("/predict", content=body, headers={"content-type": header}), may_succeed=True)

    run()
    alive(fuzz)


def test_random_json_documents(fuzz):
    @FUZZ
    @given(document=json_values, path=st.sampled_from(["/predict", "/predict/batch", "/explain"]))
    def run(document: Any, path: str) -> None:
        response = fuzz.post(path, content=json.dumps(document).encode(), headers=JSON_HEADERS)
        if path.endswith("batch"):  # {"rows": [...]} or a bare list
            rows = document.get("rows") if isinstance(document, dict) else document
            plausible = isinstance(rows, list)
        else:
            plausible = isinstance(document, dict) and set(document) <= set(FIELDS)
        check(response, may_succeed=plausible)

    run()
    alive(fuzz)


def test_random_text_as_a_json_body(fuzz):
    @FUZZ
    @given(body=st.one_of(st.binary(max_size=500), st.text(max_size=200).map(str.encode)))
    def run(body: bytes) -> None:
        check(fuzz.post("/predict", content=body, headers=JSON_HEADERS))

    run()
    alive(fuzz)


def test_number_literals_in_every_field(fuzz):
    @FUZZ
    @given(literal=number_literals, name=st.sampled_from(FIELDS), batch=st.booleans())
    def run(literal: str, name: str, batch: bool) -> None:
        row = f'{{"{name}": {literal}}}'
        body = f'{{"rows": [{row}]}}' if batch else row
        path = "/predict/batch" if batch else "/predict"
        response = fuzz.post(path, content=body.encode(), headers=JSON_HEADERS)
        check(response, may_succeed=KINDS[name] in ("numeric", "categorical"))

    run()
    alive(fuzz)


# --- fields: wrong types, random names, just over each limit ----------------------------------------


@pytest.mark.parametrize("name", FIELDS)
def test_wrong_json_types_in_every_field(fuzz, name):
    @FUZZ
    @given(value=json_values, batch=st.booleans())
    def run(value: Any, batch: bool) -> None:
        ok = may_be_valid(KINDS[name], value)
        if batch:
            response = fuzz.post("/predict/batch", json={"rows": [{"x1": 0.0}, {name: value}]})
            check(response, may_succeed=ok)
            if response.status_code == 422:
                assert response.json()["error"]["field"] in (f"rows[1].{name}", "rows[1]")
            return
        response = fuzz.post("/predict", json={name: value})
        check(response, may_succeed=ok)
        if response.status_code == 422:
            assert response.json()["error"]["field"] in (name, None)  # None: absent (null, "") or no output

    run()
    alive(fuzz)


def test_random_field_names(fuzz):
    @FUZZ
    @given(fields=st.dictionaries(names, json_scalars, min_size=1, max_size=4), form=st.booleans())
    def run(fields: dict[str, Any], form: bool) -> None:
        if not form:  # the names as the server reads them ("\\ud800\\udc00" is one character there)
            fields = json.loads(json.dumps(fields))
        unknown = sorted(set(fields) - set(FIELDS))
        if form:
            try:
                parts = {k: (None, json.dumps(v)) for k, v in fields.items()}
                response = fuzz.post("/predict", files=parts)
            except UnicodeEncodeError:  # httpx cannot put a lone surrogate in a multipart name
                return
        else:  # json.dumps escapes lone surrogates: the server reads them back as such
            response = fuzz.post("/predict", content=json.dumps(fields).encode(), headers=JSON_HEADERS)
        check(response, may_succeed=not unknown)
        if unknown and not form:
            problem = response.json()["error"]
            assert problem["status"] == 422 and "unknown field" in problem["problem"]
            assert problem["field"] == unknown[0].encode("utf-8", "replace").decode()

    run()
    alive(fuzz)


def _png_of(pixels: int) -> bytes:
    width = max(1, int(pixels**0.5))
    return png_header(width, -(-pixels // width))


def _over_limits(fuzz: TestClient, over: int, how: str) -> None:
    cases = [
        ("text", "x" * (LIMITS.max_text_chars + over)),
        ("text", "x" * (LIMITS.max_upload_bytes + over)),  # also over python-multipart's part size
        ("img", _png_of(LIMITS.max_image_pixels + over * 97)),
        ("clip", wav(LIMITS.max_audio_seconds + over / 1000, rate=2000)),
        ("img", b"\x89PNG" + bytes(LIMITS.max_upload_bytes - 4 + over)),
    ]
    for name, value in cases:
        if how == "json":
            sent = base64.b64encode(value).decode() if isinstance(value, bytes) else value
            response = fuzz.post("/predict", json={name: sent})
        else:
            part = (f"{name}.bin", value) if isinstance(value, bytes) else (None, value)
            response = fuzz.post("/predict", files={name: part})
        check(response)
        assert response.status_code == 413 and response.json()["error"]["field"] == name, response.text
    rows = [{"x1": 1.0}] * (LIMITS.max_batch_rows + over % 5 + 1)
    check(fuzz.post("/predict/batch", json={"rows": rows}))
    body = b'{"text": "' + b"y" * (LIMITS.max_request_bytes + over) + b'"}'
    response = fuzz.post("/predict", content=body, headers=JSON_HEADERS)
    assert response.status_code == 413 and response.json()["error"]["field"] is None


def test_just_over_every_limit_is_a_413_naming_the_field(fuzz):
    @FUZZ
    @given(over=st.integers(1, 60), how=st.sampled_from(["multipart", "json"]))
    def run(over: int, how: str) -> None:
        _over_limits(fuzz, over, how)

    run()
    exact = fuzz.post("/predict", json={"text": "x" * LIMITS.max_text_chars})
    assert exact.status_code == 200, exact.text  # the limit itself is allowed
    alive(fuzz)


# --- query strings, headers, methods, paths -------------------------------------------------------------

header_names = st.one_of(
    st.sampled_from(["content-length", "content-type", "x-api-key", "transfer-encoding", "accept", "host"]),
    st.text(string.ascii_lowercase + string.digits + "-_.!#$%&'*+^`|~", min_size=1, max_size=20),
)
header_values = st.one_of(
    st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=40),
    st.sampled_from(["\u00b2", "\u00b9\u00b3", "9" * 5_000, "-1", "1e3", " 12", "0", "99999999999999999999"]),
)


def test_random_query_strings_and_headers(fuzz):
    @FUZZ
    @given(
        query=st.text(max_size=40),
        headers=st.dictionaries(header_names, header_values, max_size=4),
        path=st.sampled_from(["/predict", "/health", "/model", "/explain", "/predict/batch"]),
    )
    def run(query: str, headers: dict[str, str], path: str) -> None:
        encoded = {k: v.encode("latin-1") for k, v in headers.items()}
        url = f"{path}?{quote(query, safe='=&;/?+')}"  # the client refuses raw control characters
        if path in ("/health", "/model"):
            response = fuzz.get(url, headers=encoded)
        else:
            body = json.dumps({"rows": [{"x1": 1}]} if path.endswith("batch") else {"x1": 1}).encode()
            response = fuzz.post(url, content=body, headers={"content-type": "application/json", **encoded})
        if response.status_code == 200 and path in ("/health", "/model"):
            assert response.json()["status" if path == "/health" else "name"] in ("ok", "model")
        else:
            check(response, may_succeed=True)

    run()
    alive(fuzz)


def test_random_methods_and_paths(fuzz):
    @FUZZ
    @given(
        method=st.sampled_from(["GET", "POST", "PUT", "DELETE", "PATCH", "OPTIONS"]),
        path=st.one_of(
            st.sampled_from(
                ["/predict", "/predict/batch", "/explain", "/model", "/metrics", "/docs", "//", "/x"]
            ),
            st.text(max_size=20).map(lambda p: "/" + quote(p.lstrip("/"), safe="/%?=&")),
        ),
    )
    def run(method: str, path: str) -> None:
        response = fuzz.request(method, path, content=b"{}", headers=JSON_HEADERS)
        assert response.status_code < 500, (method, path, response.status_code, response.text[:200])
        if response.status_code >= 400:
            check(response)

    run()
    alive(fuzz)

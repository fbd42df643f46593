"""Helpers and fixtures of tests/serve (registered as a plugin by tests/conftest.py).

A small model with every field kind (image, audio, text, numeric, categorical) is fit once; its
served probabilities are compared with ``Predictor.predict_proba`` on a table holding the same
files, for full rows, rows with absent modalities, batches and explanations.
"""

from __future__ import annotations

import base64
import functools
import io
import struct
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


def asgi_client(app: FastAPI) -> httpx.AsyncClient:
    """An async client that calls the app in process (no socket)."""
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://serve")

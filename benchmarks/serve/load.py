"""A closed-loop HTTP load generator for ``polyfuse serve``: C clients, each sending its next request
as soon as its previous one is answered, until a request count or a duration runs out.

Requests are real multipart uploads (image + audio files and text from a model's test rows), encoded
once before the run so that the generator's own CPU goes to sending, not to building bodies.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import numpy as np

LOCAL_HOST = "127.0.0.1"  # the only host this generator sends to
CONTENT_TYPES = {"image": "image/png", "audio": "audio/wav"}


@dataclass
class Payload:
    """One request body, ready to send: multipart bytes and their content type."""

    body: bytes
    content_type: str


@dataclass
class LoadReport:
    """What one run measured, client side: every request ends as a success or an error."""

    clients: int
    requests: int  # answered or failed, warm-up excluded
    ok: int  # status 200
    errors: dict[str, int] = field(default_factory=dict)  # status code or exception name -> count
    seconds: float = 0.0  # first send to last answer
    throughput_rps: float = 0.0  # requests / seconds
    p50_ms: float = float("nan")  # latency percentiles of the successful requests
    p95_ms: float = float("nan")
    p99_ms: float = float("nan")
    mean_ms: float = float("nan")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def multipart(fields: dict[str, Any], kinds: dict[str, str]) -> Payload:
    """A multipart/form-data body: bytes values as file uploads, the rest as text fields."""
    import httpx

    files = {
        name: (f"{name}{'.png' if kinds[name] == 'image' else '.wav'}", value, CONTENT_TYPES[kinds[name]])
        for name, value in fields.items()
        if isinstance(value, bytes)
    }
    data = {name: str(value) for name, value in fields.items() if not isinstance(value, bytes)}
    request = httpx.Request("POST", f"http://{LOCAL_HOST}/predict", files=files, data=data)
    return Payload(request.read(), request.headers["content-type"])


def request_payloads(model_dir: str | Path, limit: int = 256) -> list[Payload]:
    """Up to ``limit`` requests built from the model's test rows (files read into memory)."""
    from polyfuse.data.table import is_missing, resolve_path
    from polyfuse.predictor import data_split, load
    from polyfuse.serve.inputs import model_fields

    predictor = load(model_dir)
    frame, base_dir = data_split(predictor, "test")
    served = model_fields(predictor.preprocessor)
    kinds = {f.name: f.kind for f in served}
    files = {f.name for f in served if f.describe()["type"] == "file"}
    out = []
    for _, row in frame.head(limit).iterrows():
        fields: dict[str, Any] = {}
        for name in kinds:
            value = row.get(name)
            if value is None or is_missing(value):
                continue
            fields[name] = resolve_path(value, base_dir).read_bytes() if name in files else value
        out.append(multipart(fields, kinds))
    return out


def check_local(url: str) -> None:
    """Refuses any URL that is not plain http on 127.0.0.1: this tool loads only its own machine."""
    parts = urlsplit(url)
    if parts.scheme != "http" or parts.hostname != LOCAL_HOST:
        raise ValueError(f"load is sent to http://{LOCAL_HOST} only, not {url!r}")


async def generate(
    url: str,
    payloads: list[Payload],
    clients: int = 16,
    max_requests: int = 2000,
    max_seconds: float = 30.0,
    timeout_s: float = 60.0,
) -> LoadReport:
    """Runs ``clients`` closed-loop clients on ``url`` until ``max_requests`` were sent or
    ``max_seconds`` have passed, whichever comes first (requests in flight then are awaited)."""
    import httpx

    check_local(url)
    if not payloads or clients < 1 or max_requests < 1 or max_seconds <= 0:
        raise ValueError("need payloads, clients >= 1, max_requests >= 1 and max_seconds > 0")
    latencies: list[float] = []
    errors: Counter[str] = Counter()
    sent = 0
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    async with httpx.AsyncClient(limits=limits, timeout=timeout_s) as client:
        start = time.perf_counter()
        deadline = start + max_seconds

        async def one_client() -> None:
            nonlocal sent
            while sent < max_requests and time.perf_counter() < deadline:
                payload = payloads[sent % len(payloads)]
                sent += 1
                began = time.perf_counter()
                try:
                    response = await client.post(
                        url, content=payload.body, headers={"content-type": payload.content_type}
                    )
                    await response.aread()
                except Exception as exc:  # refused, reset, timed out ...: counted, the run goes on
                    errors[type(exc).__name__] += 1
                    continue
                if response.status_code == 200:
                    latencies.append((time.perf_counter() - began) * 1000)
                else:
                    errors[str(response.status_code)] += 1

        await asyncio.gather(*(one_client() for _ in range(clients)))
        seconds = time.perf_counter() - start
    return summarise(clients, latencies, dict(errors), seconds)


def run_load(url: str, payloads: list[Payload], **options: Any) -> LoadReport:
    """``generate`` on a fresh event loop (the caller's thread must have none running)."""
    return asyncio.run(generate(url, payloads, **options))


def summarise(clients: int, latencies_ms: list[float], errors: dict[str, int], seconds: float) -> LoadReport:
    requests = len(latencies_ms) + sum(errors.values())
    report = LoadReport(clients, requests, len(latencies_ms), dict(sorted(errors.items())), round(seconds, 3))
    report.throughput_rps = round(requests / seconds, 2) if seconds > 0 else 0.0
    if latencies_ms:
        p50, p95, p99 = (round(float(p), 2) for p in np.percentile(latencies_ms, [50, 95, 99]))
        report.p50_ms, report.p95_ms, report.p99_ms = p50, p95, p99
        report.mean_ms = round(float(np.mean(latencies_ms)), 2)
    return report


def batch_totals(metrics_text: str) -> tuple[float, float]:
    """(rows, forward passes) so far, from ``/metrics``'s ``polyfuse_batch_size`` histogram."""
    values = {}
    for line in metrics_text.splitlines():
        name, _, value = line.partition(" ")
        if name in ("polyfuse_batch_size_sum", "polyfuse_batch_size_count"):
            values[name] = float(value)
    return values.get("polyfuse_batch_size_sum", 0.0), values.get("polyfuse_batch_size_count", 0.0)


def mean_batch(before: str, after: str) -> float:
    """Mean rows per forward pass between two ``/metrics`` snapshots (warm-up excluded)."""
    (rows0, passes0), (rows1, passes1) = batch_totals(before), batch_totals(after)
    return round((rows1 - rows0) / (passes1 - passes0), 2) if passes1 > passes0 else float("nan")

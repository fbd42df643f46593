"""Micro-batching: concurrent requests share forward passes; a slow model gives a 503, not a hang."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import numpy as np
import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from polyfuse.serve import Limits, ServeConfig, create_app
from polyfuse.serve.batching import MicroBatcher
from serve.serving import as_json, asgi_client, assert_close, assert_error, batches, fields_of, metric_samples

# --- micro-batching ----------------------------------------------------------------------------------


def _concurrent(app: FastAPI, rows: list[dict[str, Any]]) -> tuple[list[Any], list[Any], Any, Any]:
    """Each row alone, then all at once: (single answers, concurrent answers, metrics before, after)."""

    async def run() -> tuple[list[Any], list[Any], Any, Any]:
        async with app.router.lifespan_context(app), asgi_client(app) as client:
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
        # The model thread finishes the slow passes: a no-op queued behind them returns after them (a
        # fixed sleep raced them on a loaded machine).
        app.state.server.batcher.model_thread.submit(lambda: None).result(timeout=30)
        assert client.post("/predict", json={"x1": 1.0}).status_code == 200

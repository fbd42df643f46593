"""The serve load generator (benchmarks/serve): its report adds up, against a live in-process server.

No timing thresholds here (timing belongs in benchmarks/): only that every request is counted once,
as a success or as an error by status, and that the numbers derived from them are consistent.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from benchmarks.serve.load import Payload, check_local, mean_batch, multipart, request_payloads, run_load
from benchmarks.serve.server import free_port

pytest.importorskip("fastapi")
pytest.importorskip("uvicorn")
httpx = pytest.importorskip("httpx")

MAX_BATCH = 8


@pytest.fixture(scope="module")
def served(digits_model) -> Iterator[tuple[str, list[Payload]]]:
    """The digits model behind uvicorn on a thread; (base URL, requests from its test rows)."""
    import uvicorn

    from polyfuse.serve import ServeConfig
    from polyfuse.serve.app import create_app

    _, folder = digits_model
    app = create_app(folder, ServeConfig(max_batch=MAX_BATCH, max_wait_ms=2.0))
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", request_payloads(folder, limit=16)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.mark.slow
def test_valid_requests_all_succeed_and_the_numbers_add_up(served):
    url, payloads = served
    before = httpx.get(f"{url}/metrics").text
    report = run_load(f"{url}/predict", payloads, clients=4, max_requests=100_000, max_seconds=1.0)
    after = httpx.get(f"{url}/metrics").text
    assert report.errors == {}
    assert report.requests == report.ok > 0
    assert report.p50_ms <= report.p95_ms <= report.p99_ms
    assert report.throughput_rps > 0
    assert report.throughput_rps == pytest.approx(report.requests / report.seconds, rel=0.01)
    assert 1.0 <= mean_batch(before, after) <= MAX_BATCH


@pytest.mark.slow
def test_the_request_cap_holds_and_client_errors_are_counted_by_status(served):
    url, payloads = served
    corrupt = multipart({"image": b"not a png"}, {"image": "image"})
    report = run_load(f"{url}/predict", [payloads[0], corrupt], clients=2, max_requests=10, max_seconds=60)
    assert report.requests == 10  # the cap, not the 60 s
    assert report.ok == 5 and report.errors == {"422": 5}  # the two payloads take turns
    assert report.requests == report.ok + sum(report.errors.values())


def test_refused_connections_are_errors_not_crashes():
    port = free_port()  # nothing listens there
    payload = multipart({"text": "seven"}, {"text": "text"})
    url = f"http://127.0.0.1:{port}/predict"
    report = run_load(url, [payload], clients=2, max_requests=4, max_seconds=10)
    assert report.requests == 4 and report.ok == 0
    assert report.errors == {"ConnectError": 4}
    assert report.p99_ms != report.p99_ms  # NaN: no successful request to take percentiles of


@pytest.mark.parametrize(
    "url", ["http://localhost:8000/predict", "http://10.0.0.1:8000/predict", "https://127.0.0.1/predict"]
)
def test_load_goes_to_127_0_0_1_only(url):
    with pytest.raises(ValueError, match="127.0.0.1"):
        check_local(url)


def test_mean_batch_counts_only_the_passes_between_two_snapshots():
    def metrics(rows: float, passes: float) -> str:
        return (
            "# TYPE polyfuse_batch_size histogram\n"
            f'polyfuse_batch_size_bucket{{le="1.0"}} 1.0\n'
            f"polyfuse_batch_size_sum {rows}\npolyfuse_batch_size_count {passes}\n"
        )

    assert mean_batch(metrics(1, 1), metrics(61, 11)) == 6.0  # (61 - 1) rows / (11 - 1) passes
    assert mean_batch(metrics(5, 2), metrics(5, 2)) != mean_batch(metrics(5, 2), metrics(5, 2))  # NaN

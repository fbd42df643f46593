"""Prometheus metrics of one app: requests by path and status, latency, batch sizes."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class ServerMetrics:
    """One registry per app, so that apps (and tests) never share counts."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "polyfuse_requests",
            "HTTP requests by path and status",
            ["path", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "polyfuse_request_latency_seconds",
            "request latency, seconds",
            ["path"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.batch_size = Histogram(
            "polyfuse_batch_size",
            "rows per model forward pass",
            buckets=BATCH_BUCKETS,
            registry=self.registry,
        )

    def observe(self, path: str, status: int, seconds: float) -> None:
        self.requests.labels(path, str(status)).inc()
        self.latency.labels(path).observe(seconds)

    def text(self) -> bytes:
        return generate_latest(self.registry)

"""Prometheus metrics of one server (its own registry, so several servers can coexist).

With ``PROMETHEUS_MULTIPROC_DIR`` set (``deepseek serve --workers K`` sets it for its worker
processes), the values live in files that every worker writes and ``/metrics`` reports the
sum over all workers, whichever worker answers the scrape.
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

LATENCY_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5,
                   5.0, 10.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"


class ServerMetrics:
    """The server's Prometheus metrics: requests, errors, latency, batch sizes and queue depth per
    model (multiprocess-aware).
    """
    def __init__(self, server: Any) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("deepseek_requests", "Inference requests received",
                                ["model", "protocol"], registry=r)
        self.errors = Counter("deepseek_request_errors", "Inference requests that failed",
                              ["model", "protocol", "code"], registry=r)
        self.latency = Histogram("deepseek_request_latency_seconds",
                                 "Time from request received to response ready",
                                 ["model", "protocol"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("deepseek_batch_size", "Samples per executed batch",
                                    ["model"], buckets=BATCH_BUCKETS, registry=r)
        self.queue = Gauge("deepseek_queue_depth", "Requests waiting for a batch", ["model"],
                           registry=r, multiprocess_mode="livesum")
        for name in server.models:
            self.queue.labels(name).set(0)

    def batch(self, model: str, size: int) -> None:
        """Record a batch of ``size`` samples run for ``model``."""
        self.batch_size.labels(model).observe(size)

    def depth(self, model: str, depth: int) -> None:
        """Set the queue depth of ``model``."""
        self.queue.labels(model).set(depth)

    def observe(self, model: str, protocol: str, seconds: float, code: str | None) -> None:
        """Record one request: its latency, or its error code."""
        self.requests.labels(model, protocol).inc()
        if code is not None:
            self.errors.labels(model, protocol, code).inc()
        else:
            self.latency.labels(model, protocol).observe(seconds)

    def render(self) -> bytes:
        """The metrics in Prometheus text format (merged across worker processes)."""
        if self.multiprocess:
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            return generate_latest(registry)
        return generate_latest(self.registry)

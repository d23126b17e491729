"""Operational signals: Prometheus metrics, the Server-Timing header, structured JSON logs.

Metrics are per process (with `--workers N`, scrape each worker or put a proxy in front; the
multiprocess mode of prometheus_client is not used). Log records are one JSON object per line
with the request id, never a key or a prompt.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class Metrics:
    """Every metric Tollway exports, on its own registry (so tests can run several apps)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = Counter("tollway_requests", "Data-plane requests", ["route", "model", "status"], registry=r)
        self.latency = Histogram("tollway_request_seconds", "Total request time (to the last byte)", ["route"],
                                 buckets=_BUCKETS, registry=r)
        self.upstream = Histogram("tollway_upstream_seconds", "Time the upstream took to answer (headers)",
                                  ["route"], buckets=_BUCKETS, registry=r)
        self.overhead = Histogram("tollway_overhead_seconds", "Tollway's own time before the answer started",
                                  ["route"], buckets=_OVERHEAD_BUCKETS, registry=r)
        self.tokens = Counter("tollway_tokens", "Tokens metered", ["model", "kind"], registry=r)
        self.cost = Counter("tollway_cost_usd", "Cost metered, USD", ["model"], registry=r)
        self.retries = Counter("tollway_upstream_retries", "Upstream attempts retried", ["model"], registry=r)
        self.breaker = Gauge("tollway_breaker_open", "1 while a deployment's circuit breaker is open",
                             ["deployment"], registry=r)
        self.dlp = Counter("tollway_dlp_findings", "DLP findings", ["kind", "action"], registry=r)
        self.queue = Gauge("tollway_queue_depth", "Records waiting in a write-behind queue", ["writer"], registry=r)
        from tollway.upstream.compat import CompatCollector  # cloud compatibility drops (pure module)

        r.register(CompatCollector())

        self._children: dict[tuple[int, tuple[str, ...]], Any] = {}

    def child(self, metric: Any, *labels: str) -> Any:
        """`metric.labels(*labels)`, memoised: prometheus_client spends ~2.5 µs per `labels()` call
        (a lock and a tuple), and a request makes seven of them. Label values here come from the
        config (routes, catalogue ids, statuses), so the memo stays small."""
        key = (id(metric), labels)
        found = self._children.get(key)
        if found is None:
            found = self._children[key] = metric.labels(*labels)
        return found

    def watch_queue(self, name: str, depth: Callable[[], int]) -> None:
        self.queue.labels(name).set_function(depth)

    def render(self) -> bytes:
        return generate_latest(self.registry)


def server_timing(gateway_s: float, upstream_s: float | None) -> str:
    """`Server-Timing` value: Tollway's own time and the upstream's, in milliseconds."""
    if upstream_s is None:
        return f"gateway;dur={gateway_s * 1000:.2f}"
    return f"gateway;dur={gateway_s * 1000:.2f}, upstream;dur={upstream_s * 1000:.2f}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line; `extra=` fields (request_id, route, …) are kept as keys."""

    _SKIP = frozenset(logging.LogRecord("", 0, "", 0, "", (), None).__dict__) | {"message", "asctime"}

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": round(record.created, 6), "level": record.levelname.lower(), "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in record.__dict__.items():
            if k not in self._SKIP:
                out[k] = v
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        return orjson.dumps(out, default=str).decode()


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)

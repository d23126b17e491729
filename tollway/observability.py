"""Operational signals: Prometheus metrics, the Server-Timing header, structured JSON logs.

Metrics are per process (with `--workers N`, scrape each worker or put a proxy in front; the
multiprocess mode of prometheus_client is not used). Log records are one JSON object per line
with the request id, never a key or a prompt.
"""

from __future__ import annotations

import logging
import sys
from bisect import bisect_left
from collections.abc import Callable, Iterator
from typing import Any

import orjson
from prometheus_client import CollectorRegistry, Counter, Gauge, generate_latest
from prometheus_client.core import CounterMetricFamily, HistogramMetricFamily
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
_OVERHEAD_BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.5)


class RequestCounter:
    """A labelled counter that every request updates: plain numbers, exported by `RequestMetrics`.

    Why not prometheus_client's `Counter`: each `inc` takes a lock and goes through several
    calls (about 1 µs here, 2 µs on a loaded machine), and a request makes up to seven counter
    and histogram updates. These are updated only on the event loop and read by `/metrics` on
    the same loop, so a dict of numbers is all they need."""

    __slots__ = ("doc", "labels", "name", "values")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...]) -> None:
        self.name, self.doc, self.labels = name, doc, labels
        self.values: dict[tuple[str, ...], float] = {}

    def inc(self, labels: tuple[str, ...], amount: float = 1) -> None:
        self.values[labels] = self.values.get(labels, 0) + amount

    def family(self) -> CounterMetricFamily:
        family = CounterMetricFamily(self.name, self.doc, labels=self.labels)
        for labels, value in list(self.values.items()):
            family.add_metric(labels, value)
        return family


class RequestHistogram:
    """A labelled histogram that every request updates: per label values, one count per bucket
    (the last one +Inf) and the sum, exported cumulatively by `RequestMetrics`."""

    __slots__ = ("bounds", "doc", "labels", "name", "series")

    def __init__(self, name: str, doc: str, labels: tuple[str, ...], bounds: tuple[float, ...]) -> None:
        self.name, self.doc, self.labels, self.bounds = name, doc, labels, bounds
        self.series: dict[tuple[str, ...], list[float]] = {}

    def observe(self, labels: tuple[str, ...], value: float) -> None:
        counts = self.series.get(labels)
        if counts is None:
            counts = self.series[labels] = [0] * (len(self.bounds) + 2)  # buckets, +Inf, sum
        counts[bisect_left(self.bounds, value)] += 1  # the first bucket whose bound is >= value
        counts[-1] += value

    def family(self) -> HistogramMetricFamily:
        family = HistogramMetricFamily(self.name, self.doc, labels=self.labels)
        edges = [*(floatToGoString(b) for b in self.bounds), "+Inf"]  # as prometheus_client spells `le`
        for labels, counts in list(self.series.items()):
            total, buckets = 0.0, []
            for edge, n in zip(edges, counts[:-1], strict=True):
                total += n
                buckets.append((edge, total))
            family.add_metric(labels, buckets, counts[-1])
        return family


class RequestMetrics(Collector):
    """Exports the per-request counters and histograms (`RequestCounter`, `RequestHistogram`)."""

    def __init__(self, *metrics: RequestCounter | RequestHistogram) -> None:
        self.metrics = metrics

    def collect(self) -> Iterator[CounterMetricFamily | HistogramMetricFamily]:
        for metric in self.metrics:
            yield metric.family()


class Metrics:
    """Every metric Tollway exports, on its own registry (so tests can run several apps)."""

    def __init__(self) -> None:
        r = self.registry = CollectorRegistry()
        self.requests = RequestCounter("tollway_requests", "Data-plane requests", ("route", "model", "status"))
        self.latency = RequestHistogram("tollway_request_seconds", "Total request time (to the last byte)",
                                        ("route",), _BUCKETS)
        self.upstream = RequestHistogram("tollway_upstream_seconds", "Time the upstream took to answer (headers)",
                                         ("route",), _BUCKETS)
        self.overhead = RequestHistogram("tollway_overhead_seconds", "Tollway's own time before the answer started",
                                         ("route",), _OVERHEAD_BUCKETS)
        self.tokens = RequestCounter("tollway_tokens", "Tokens metered", ("model", "kind"))
        self.cost = RequestCounter("tollway_cost_usd", "Cost metered, USD", ("model",))
        r.register(RequestMetrics(self.requests, self.latency, self.upstream, self.overhead, self.tokens, self.cost))
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
        (a lock and a tuple). For the prometheus_client metrics updated off the per-request path
        (retries, DLP findings, breakers); label values come from the config, so the memo stays small."""
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

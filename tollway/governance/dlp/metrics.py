"""Prometheus metrics of a ``DlpEngine``: how much it scanned, and how its verdict caches answered.

``tollway_dlp_scanned_chars_total`` grows only when the detectors run: a request whose units every
cache knew leaves it unchanged, which is how an operator (and tests/test_dlp_shared.py) sees that a
worker did not rescan what another one had scanned.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

if TYPE_CHECKING:
    from tollway.governance.dlp.engine import DlpEngine


class DlpMetrics:
    """A Prometheus collector over one engine's counters (read at scrape time; nothing on the request path)."""

    def __init__(self, engine: DlpEngine) -> None:
        self.engine = engine

    def collect(self) -> Iterator[Metric]:
        engine = self.engine
        units = CounterMetricFamily("tollway_dlp_scanned_units", "Content units the DLP detectors ran over "
                                    "(found in no verdict cache)")
        units.add_metric([], engine.scanned_units)
        chars = CounterMetricFamily("tollway_dlp_scanned_chars", "Characters the DLP detectors ran over")
        chars.add_metric([], engine.scanned_chars)
        lookups = CounterMetricFamily("tollway_dlp_cache_lookups", "Verdict cache look-ups by layer and result "
                                      "(shared: error = Redis failed, skipped = not asked while it rests)",
                                      labels=["layer", "result"])
        if engine.cache is not None:
            lookups.add_metric(["local", "hit"], engine.cache.hits)
            lookups.add_metric(["local", "miss"], engine.cache.misses)
        shared = engine.shared
        if shared is not None:
            lookups.add_metric(["shared", "hit"], shared.hits)
            lookups.add_metric(["shared", "miss"], shared.misses)
            lookups.add_metric(["shared", "error"], shared.errors)
            lookups.add_metric(["shared", "skipped"], shared.skipped)
        yield units
        yield chars
        yield lookups
        if shared is not None:
            writes = CounterMetricFamily("tollway_dlp_shared_writes", "Verdicts written to the shared layer")
            writes.add_metric([], shared.writes)
            up = GaugeMetricFamily("tollway_dlp_shared_available", "0 after the shared verdict layer (Redis) "
                                   "failed, until it answers again")
            up.add_metric([], 1 if shared.available else 0)
            yield writes
            yield up

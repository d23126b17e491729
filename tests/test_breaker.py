"""The circuit breaker on its own, with an injected clock: no test here sleeps."""

from __future__ import annotations

import logging

import pytest

from tollway.pipeline import counts_as_failure
from tollway.upstream.breaker import Breaker


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, cooldown: float = 30.0) -> tuple[Breaker, Clock, list[tuple[str, str]]]:
    clock = Clock()
    changes: list[tuple[str, str]] = []
    breaker = Breaker(threshold, cooldown, name="dep", clock=clock, on_change=lambda n, s: changes.append((n, s)))
    return breaker, clock, changes


def test_opens_after_threshold_failures_in_a_row() -> None:
    breaker, _, changes = make()
    breaker.failure()
    breaker.failure()
    assert breaker.allow() and breaker.state == "closed"
    breaker.failure()
    assert not breaker.allow() and breaker.state == "open" and changes == [("dep", "open")]


def test_a_success_resets_the_count() -> None:
    breaker, _, changes = make()
    breaker.failure()
    breaker.failure()
    breaker.success()
    breaker.failure()
    breaker.failure()
    assert breaker.state == "closed" and changes == []


def test_one_probe_after_the_cooldown_and_it_closes_on_success() -> None:
    breaker, clock, changes = make(threshold=1, cooldown=30)
    breaker.failure()
    clock.now += 29.9
    assert not breaker.allow() and breaker.retry_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert breaker.allow() and breaker.state == "half_open"
    assert not breaker.allow()  # exactly one probe
    breaker.success()
    assert breaker.allow() and changes == [("dep", "open"), ("dep", "half_open"), ("dep", "closed")]


def test_a_failed_probe_reopens_for_a_full_cooldown() -> None:
    breaker, clock, _ = make(threshold=2, cooldown=10)
    breaker.failure()
    breaker.failure()
    clock.now += 10
    assert breaker.allow()
    breaker.failure()
    assert breaker.state == "open" and breaker.retry_in() == 10
    clock.now += 9.99
    assert not breaker.allow()


def test_state_changes_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    breaker, clock, _ = make(threshold=1, cooldown=5)
    with caplog.at_level(logging.INFO, logger="tollway.upstream"):
        breaker.failure()
        clock.now += 5
        breaker.allow()
        breaker.success()
    assert [(r.levelname, r.getMessage(), getattr(r, "deployment", None)) for r in caplog.records] == [
        ("WARNING", "circuit breaker open", "dep"), ("INFO", "circuit breaker half-open", "dep"),
        ("INFO", "circuit breaker closed", "dep")]


@pytest.mark.parametrize("status,retry_after,counts", [
    (500, None, True), (502, None, True), (529, None, True), (503, None, True),
    (529, 2.0, False), (503, 0.0, False), (429, None, False), (429, 3.0, False), (408, None, False),
])
def test_what_counts_as_a_deployment_failure(status: int, retry_after: float | None, counts: bool) -> None:
    assert counts_as_failure(status, retry_after) is counts

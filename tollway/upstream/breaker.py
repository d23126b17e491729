"""A deployment's circuit breaker, with its clock injected.

A breaker exists to fail over: it keeps requests away from a deployment that keeps failing while
another deployment or a fallback model can answer. So the pipeline consults it only when there
is somewhere else to go, and feeds it at most one failure per request (a request's retries are
one incident, not three). What counts as a failure is the pipeline's rule (`counts_as_failure`):
an upstream that says "busy, come back later" (408, 429, or a 503/529 with `retry-after`) is
not broken.

After `threshold` failures in a row the breaker opens for `cooldown` seconds, then lets one probe
through (half-open); the probe's outcome closes or reopens it. Every change of state is logged
(warning when it opens, info when it half-opens or closes) and reported to `on_change`, which
the router wires to the `tollway_breaker_open` gauge.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger("tollway.upstream")

Clock = Callable[[], float]
CLOSED, OPEN, HALF_OPEN = "closed", "open", "half_open"


class Breaker:
    __slots__ = ("clock", "cooldown", "failures", "name", "on_change", "opened_at", "probing", "threshold")

    def __init__(self, threshold: int, cooldown: float, *, name: str = "", clock: Clock = time.monotonic,
                 on_change: Callable[[str, str], None] | None = None) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self.name = name
        self.clock = clock
        self.on_change = on_change
        self.failures = 0
        self.opened_at: float | None = None
        self.probing = False

    @property
    def open(self) -> bool:
        return self.opened_at is not None

    @property
    def state(self) -> str:
        if self.opened_at is None:
            return CLOSED
        return HALF_OPEN if self.probing else OPEN

    def retry_in(self) -> float:
        """Seconds until an open breaker lets its probe through (0 when it would now)."""
        if self.opened_at is None:
            return 0.0
        return max(0.0, self.cooldown - (self.clock() - self.opened_at))

    def allow(self) -> bool:
        """Whether a request may go to this deployment now (taking the one probe when half-open)."""
        if self.opened_at is None:
            return True
        if not self.probing and self.clock() - self.opened_at >= self.cooldown:
            self.probing = True  # half-open: exactly one request finds out
            self._changed(OPEN, HALF_OPEN)
            return True
        return False

    def success(self) -> None:
        before = self.state
        self.failures, self.opened_at, self.probing = 0, None, False
        if before != CLOSED:
            self._changed(before, CLOSED)

    def failure(self) -> None:
        before = self.state
        self.failures += 1
        if self.probing or self.failures >= self.threshold:
            self.opened_at, self.probing = self.clock(), False
            if before != OPEN:
                self._changed(before, OPEN)

    def _changed(self, before: str, after: str) -> None:
        level = logging.WARNING if after == OPEN else logging.INFO
        log.log(level, "circuit breaker %s", after.replace("_", "-"), extra={
            "deployment": self.name, "breaker_from": before, "breaker_to": after, "failures": self.failures,
            "cooldown_s": self.cooldown})
        if self.on_change is not None:
            self.on_change(self.name, after)

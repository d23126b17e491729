"""Per-client-IP request windows for the sign-in endpoints (RFC 8628 §5.1 and §5.2).

Why in memory: these limits slow down code guessing and polling floods; each gateway process
counting on its own is enough for that (N workers allow N times the rate), and it keeps the
sign-in endpoints free of a Redis dependency. The address is the TCP peer; behind a reverse
proxy every client shares the proxy's address, so set the limits for that.
"""

from __future__ import annotations

import time


class PerIpWindow:
    """At most `limit` requests per `window` seconds per address (fixed windows)."""

    _MAX_TRACKED = 50_000

    def __init__(self, limit: int, window: float = 60.0) -> None:
        self.limit = limit
        self.window = window
        self._counts: dict[str, tuple[float, int]] = {}

    def allow(self, address: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        start, count = self._counts.get(address, (now, 0))
        if now - start >= self.window:
            start, count = now, 0
        if count >= self.limit:
            return False
        if len(self._counts) >= self._MAX_TRACKED:
            self._counts.clear()
        self._counts[address] = (start, count + 1)
        return True

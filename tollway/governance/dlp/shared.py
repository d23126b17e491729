"""The shared verdict layer: what one gateway process found in a content unit, for the others, in Redis.

Several workers (``tollway serve --workers N``, or several hosts) each keep their own ``VerdictCache``;
a Claude Code session's turns land on any of them, so without sharing every worker rescans the
history once. With ``dlp.shared_cache.redis_url`` set, a unit the local cache does not know is looked
up in Redis (one ``MGET`` for all of a request's new units) before it is scanned, and what a scan
finds is written back (one pipelined ``SET … EX`` per request, in the background: the request does
not wait for it).

What Redis holds: key ``<key_prefix><fingerprint>:<unit digest>`` (both hex; the fingerprint is the
engine's, over the whole ``dlp`` policy and the detectors' version, so a policy change reads and
writes other keys, and the old ones expire), value the unit's findings as JSON
``[[string index, start, end, kind], …]``: positions and kinds, never the matched text. An entry read
back is checked (shape, known kinds, positions inside the unit's strings) and a bad one is ignored
(the unit is scanned). Someone who can read this Redis learns which content digests were seen and
where their findings sit, not the content: give it the protection the limiter's Redis has.

Bounded: every key expires after ``ttl_seconds``, and entries of more than ``max_findings`` findings
are kept in the process only; an entry is about 100 bytes of key and value plus 12 bytes a finding,
so a worker writes at most (new units per second) * ``ttl_seconds`` * that. Give the Redis a
``maxmemory`` (with ``volatile-lru`` or ``allkeys-lru`` when it holds nothing else) if its memory must
be capped below that.

Failure never fails a request: a lookup or write that errs or takes longer than ``timeout_ms`` counts
as a miss (the unit is scanned here, as without the layer), is logged once per outage, counted in
``errors``, and Redis is then left alone for ``retry_seconds`` (``skipped`` counts the look-ups not
made), so an outage costs one timeout per ``retry_seconds``, not one per request.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Collection, Sequence
from typing import Any

import orjson

from tollway.governance.dlp.cache import Entry
from tollway.governance.dlp.policy import SharedCacheConfig

log = logging.getLogger(__name__)


class SharedVerdicts:
    """Verdicts in Redis for the gateway processes that share a ``dlp`` policy (see the module docstring)."""

    def __init__(self, config: SharedCacheConfig, fingerprint: bytes, kinds: Collection[str],
                 clock: Callable[[], float] = time.monotonic) -> None:
        import redis.asyncio as aioredis

        assert config.redis_url is not None
        self.config = config
        self.timeout = config.timeout_ms / 1000.0
        self.redis = aioredis.from_url(config.redis_url, socket_connect_timeout=self.timeout,
                                       socket_timeout=self.timeout)
        self.prefix = f"{config.key_prefix}{fingerprint.hex()[:32]}:"
        self.kinds = frozenset(kinds)
        self.clock = clock
        self.hits = 0
        self.misses = 0
        self.writes = 0
        self.errors = 0
        self.skipped = 0
        self._down_until = 0.0
        self._down = False
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def available(self) -> bool:
        """False from a failure until the next look-up or write that succeeds."""
        return not self._down

    def key(self, digest: bytes) -> str:
        return self.prefix + digest.hex()

    async def get_many(self, digests: Sequence[bytes]) -> list[Any]:
        """The stored value of each digest (decoded JSON, not yet checked: see ``check``), or None."""
        if not digests:
            return []
        if self._resting():
            self.skipped += len(digests)
            return [None] * len(digests)
        try:
            raw = await asyncio.wait_for(self.redis.mget([self.key(d) for d in digests]), self.timeout)
        except Exception as exc:  # any failure of the shared layer is a miss, never an error
            self._failed(exc)
            return [None] * len(digests)
        self._ok()
        out = []
        for value in raw:
            try:
                out.append(None if value is None else orjson.loads(value))
            except orjson.JSONDecodeError:
                out.append(None)
        found = sum(v is not None for v in out)
        self.hits += found
        self.misses += len(out) - found
        return out

    def check(self, value: Any, lengths: Sequence[int]) -> Entry | None:
        """``value`` as an entry of a unit whose strings have ``lengths``, or None when it is not a valid one."""
        if not isinstance(value, list):
            return None
        entry = []
        for item in value:
            if not (isinstance(item, list) and len(item) == 4):
                return None
            i, s, e, kind = item
            if not (type(i) is int and type(s) is int and type(e) is int and 0 <= i < len(lengths)
                    and 0 <= s < e <= lengths[i] and kind in self.kinds):
                return None
            entry.append((i, s, e, kind))
        return tuple(entry)

    def put_many(self, entries: Sequence[tuple[bytes, Entry]]) -> None:
        """Write ``entries`` in the background (the caller does not wait; ``drain`` does)."""
        entries = [(d, e) for d, e in entries if len(e) <= self.config.max_findings]
        if not entries or self._resting():
            return
        task = asyncio.get_running_loop().create_task(self._put(entries))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _put(self, entries: Sequence[tuple[bytes, Entry]]) -> None:
        try:
            pipe = self.redis.pipeline(transaction=False)
            for digest, entry in entries:
                pipe.set(self.key(digest), orjson.dumps(entry), ex=self.config.ttl_seconds)
            await asyncio.wait_for(pipe.execute(), self.timeout)
        except Exception as exc:
            self._failed(exc)
            return
        self._ok()
        self.writes += len(entries)

    async def drain(self) -> None:
        """Wait for the writes under way (tests, and shutdown)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def aclose(self) -> None:
        await self.drain()
        await self.redis.aclose()

    def _resting(self) -> bool:
        return self._down and self.clock() < self._down_until

    def _failed(self, exc: BaseException) -> None:
        self.errors += 1
        self._down_until = self.clock() + self.config.retry_seconds
        if not self._down:
            self._down = True
            log.warning("DLP shared verdict cache unavailable (%s); scanning locally, retrying every %g s",
                        type(exc).__name__, self.config.retry_seconds)

    def _ok(self) -> None:
        if self._down:
            self._down = False
            log.warning("DLP shared verdict cache reachable again")

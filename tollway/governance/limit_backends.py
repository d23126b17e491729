"""Where the limiter keeps its windows, counters and budgets: one process's memory, or Redis.

The `redis` backend runs each admission and settlement as one Lua script, so several gateway
processes share windows and reservations, and it survives what a shared server does:

* **A restart that lost the data.** A budget key is seeded from the ledger whenever it is
  missing, inside the admission script: the script reports the missing keys, the backend reads
  their spend from the ledger and runs the script again with it, and the script seeds only keys
  still missing. No per-process "seeded once" memory that a restart would make stale.
* **An outage under fail_open.** The spend of requests admitted while Redis was unreachable is
  kept here and added to the budget keys when Redis answers again (to keys that still exist; a
  key that vanished is seeded from the ledger, which has that spend).
* **A stall.** Each reservation has an id. An admission whose reply never came (a timeout, or
  the caller gave up) is released in the background: if the script ran, the release undoes it;
  if it has not run yet, the release leaves a marker that makes it a no-op when it does.
  Settlement is idempotent on the same id, so it is retried after a failure too.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

from tollway.governance.limits import Check, Denial, LimitsUnavailable

log = logging.getLogger("tollway.limits")

# (scope, scope id, first day of the budget period) -> micro-dollars the ledger holds since then.
LoadSpent = Callable[[str, str, Any], Awaitable[int]]


class MemoryBackend:
    """One process's windows and reservations. Atomic because nothing awaits mid-check."""

    def __init__(self, load_spent: LoadSpent, clock: Callable[[], float] = time.monotonic) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}
        self.counters: dict[str, int] = {}
        self.budgets: dict[str, list[int]] = {}
        self._load_spent = load_spent
        self.clock = clock

    async def admit(self, checks: list[Check], rid: str = "") -> tuple[Denial | None, list[float]]:
        for c in checks:
            if c.kind == "budget" and c.key not in self.budgets:
                spent = await self._load_spent(c.rule.scope, c.rule.scope_id, c.period_start)
                self.budgets.setdefault(c.key, [spent, 0])
        now = self.clock()
        levels: list[float] = []
        for c in checks:
            if c.kind == "bucket":
                tokens, ts = self.buckets.get(c.key, (float(c.limit), now))
                tokens = min(float(c.limit), tokens + (now - ts) * c.limit / 60.0)
                need = 1.0 if c.what == "requests" else 0.0
                if tokens < need or (c.what == "tokens" and tokens <= 0):
                    deficit = (need if need else 1.0) - tokens
                    return Denial(c, deficit * 60.0 / c.limit), []
                levels.append(tokens)
            elif c.kind == "conc":
                if self.counters.get(c.key, 0) >= c.limit:
                    return Denial(c, 1.0), []
                levels.append(float(c.limit - self.counters.get(c.key, 0)))
            else:
                spent, reserved = self.budgets[c.key]
                if spent >= c.limit or spent + reserved + c.amount > c.limit:
                    return Denial(c, -1.0, spent, reserved), []
                levels.append(float(c.limit - spent - reserved))
        for i, c in enumerate(checks):
            if c.kind == "bucket":
                level = levels[i] - c.amount
                self.buckets[c.key] = (level, now)
                levels[i] = level
            elif c.kind == "conc":
                self.counters[c.key] = self.counters.get(c.key, 0) + 1
            else:
                self.budgets[c.key][1] += c.amount
        return None, levels

    async def settle(self, checks: list[Check], corrections: list[int], rid: str = "") -> None:
        now = self.clock()
        for c, delta in zip(checks, corrections, strict=True):
            if c.kind == "bucket":
                if delta:
                    tokens, ts = self.buckets.get(c.key, (float(c.limit), now))
                    tokens = min(float(c.limit), tokens + (now - ts) * c.limit / 60.0)
                    self.buckets[c.key] = (tokens - delta, now)
            elif c.kind == "conc":
                self.counters[c.key] = max(0, self.counters.get(c.key, 0) - 1)
            else:
                entry = self.budgets.get(c.key)
                if entry is not None:
                    entry[0] += c.amount + delta
                    entry[1] -= c.amount

    def release_later(self, checks: list[Check], rid: str) -> None:
        """Nothing to do: a memory admission is applied whole or not at all, without awaiting."""

    def record_outage(self, checks: list[Check], cost_micros: int) -> None:
        """Never called: memory is never unavailable."""

    async def close(self) -> None:
        return None


# Shared head of the scripts: KEYS are the checks' keys then the reservation id's key;
# ARGV[1] = number of checks, ARGV[2] = now in seconds ('' = the server's clock).
_NOW = """
local n = tonumber(ARGV[1])
local now
if ARGV[2] ~= '' then now = tonumber(ARGV[2]) else
  local t = redis.call('TIME')
  now = tonumber(t[1]) + tonumber(t[2]) / 1000000
end
local rid = KEYS[n + 1]
"""

# ARGV[3] = the reservation id's ttl; per check (6 fields from ARGV[4]): kind, limit, amount,
# ttl, what, seed ('' = not read from the ledger yet).
# Returns {1, level...} admitted, {0, failed index, retry ms (-1 = budget), spent, reserved},
# {2, missing index...} (budget keys to seed from the ledger), or {3} (released before it ran).
_ADMIT = _NOW + """
if redis.call('EXISTS', rid) == 1 then return {3} end
local missing = {}
for i = 1, n do
  local b = 3 + (i - 1) * 6
  if ARGV[b + 1] == 'budget' and ARGV[b + 6] == '' and redis.call('EXISTS', KEYS[i]) == 0 then
    missing[#missing + 1] = i
  end
end
if #missing > 0 then
  local out = {2}
  for _, i in ipairs(missing) do out[#out + 1] = i end
  return out
end
for i = 1, n do
  local b = 3 + (i - 1) * 6
  if ARGV[b + 1] == 'budget' and ARGV[b + 6] ~= '' and redis.call('EXISTS', KEYS[i]) == 0 then
    redis.call('HSET', KEYS[i], 'spent', ARGV[b + 6], 'reserved', 0)
    redis.call('EXPIRE', KEYS[i], tonumber(ARGV[b + 4]))
  end
end
local levels = {}
for i = 1, n do
  local b = 3 + (i - 1) * 6
  local kind, limit, amount, what = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]), ARGV[b + 5]
  if kind == 'bucket' then
    local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local tokens = tonumber(v[1]) or limit
    local ts = tonumber(v[2]) or now
    tokens = math.min(limit, tokens + (now - ts) * limit / 60.0)
    local need = 0
    if what == 'requests' then need = 1 end
    if tokens < need or (what == 'tokens' and tokens <= 0) then
      local deficit = (need > 0 and need or 1) - tokens
      return {0, i, math.ceil(deficit * 60000 / limit), 0, 0}
    end
    levels[i] = tokens
  elseif kind == 'conc' then
    local c = tonumber(redis.call('GET', KEYS[i]) or '0')
    if c >= limit then return {0, i, 1000, 0, 0} end
    levels[i] = limit - c
  else
    local v = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
    local spent = tonumber(v[1]) or 0
    local reserved = tonumber(v[2]) or 0
    if spent >= limit or spent + reserved + amount > limit then return {0, i, -1, spent, reserved} end
    levels[i] = limit - spent - reserved
  end
end
for i = 1, n do
  local b = 3 + (i - 1) * 6
  local kind, amount, ttl = ARGV[b + 1], tonumber(ARGV[b + 3]), tonumber(ARGV[b + 4])
  if kind == 'bucket' then
    levels[i] = levels[i] - amount
    redis.call('HSET', KEYS[i], 'tokens', tostring(levels[i]), 'ts', tostring(now))
    redis.call('EXPIRE', KEYS[i], ttl)
  elseif kind == 'conc' then
    redis.call('INCR', KEYS[i])
    redis.call('EXPIRE', KEYS[i], ttl)
  else
    redis.call('HINCRBY', KEYS[i], 'reserved', amount)
    redis.call('EXPIRE', KEYS[i], ttl)
  end
end
redis.call('SET', rid, '1', 'EX', tonumber(ARGV[3]))
local out = {1}
for i = 1, n do out[i + 1] = tostring(levels[i]) end
return out
"""

# Per check (4 fields from ARGV[3]): kind, limit, amount (reserved), correction. Applies only
# while the reservation is held (its id is '1'), then drops the id: settling twice is harmless.
_SETTLE = _NOW + """
if redis.call('GET', rid) ~= '1' then return 0 end
for i = 1, n do
  local b = 2 + (i - 1) * 4
  local kind, limit, amount, delta = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3]),
    tonumber(ARGV[b + 4])
  if kind == 'bucket' then
    if delta ~= 0 then
      local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
      local tokens = tonumber(v[1]) or limit
      local ts = tonumber(v[2]) or now
      tokens = math.min(limit, tokens + (now - ts) * limit / 60.0) - delta
      redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'ts', tostring(now))
    end
  elseif kind == 'conc' then
    local c = redis.call('DECR', KEYS[i])
    if c < 0 then redis.call('SET', KEYS[i], 0) end
  else
    if redis.call('EXISTS', KEYS[i]) == 1 then
      redis.call('HINCRBY', KEYS[i], 'spent', amount + delta)
      local r = redis.call('HINCRBY', KEYS[i], 'reserved', -amount)
      if r < 0 then redis.call('HSET', KEYS[i], 'reserved', 0) end
    end
  end
end
redis.call('DEL', rid)
return 1
"""

# ARGV[3] = the marker's ttl; per check (3 fields from ARGV[4]): kind, limit, amount. Undoes a
# reservation that was made (the request never ran: its request and tokens are refunded too),
# or marks the id so that an admission still queued behind a stall does nothing.
_RELEASE = _NOW + """
local held = redis.call('GET', rid)
if held == false then
  redis.call('SET', rid, 'released', 'EX', tonumber(ARGV[3]))
  return 0
end
if held ~= '1' then return 0 end
for i = 1, n do
  local b = 3 + (i - 1) * 3
  local kind, limit, amount = ARGV[b + 1], tonumber(ARGV[b + 2]), tonumber(ARGV[b + 3])
  if kind == 'bucket' then
    local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    if v[1] then
      local ts = tonumber(v[2]) or now
      local tokens = math.min(limit, math.min(limit, tonumber(v[1]) + (now - ts) * limit / 60.0) + amount)
      redis.call('HSET', KEYS[i], 'tokens', tostring(tokens), 'ts', tostring(now))
    end
  elseif kind == 'conc' then
    local c = redis.call('DECR', KEYS[i])
    if c < 0 then redis.call('SET', KEYS[i], 0) end
  elseif redis.call('EXISTS', KEYS[i]) == 1 then
    local r = redis.call('HINCRBY', KEYS[i], 'reserved', -amount)
    if r < 0 then redis.call('HSET', KEYS[i], 'reserved', 0) end
  end
end
redis.call('DEL', rid)
return 1
"""

# KEYS: budget keys; ARGV: micro-dollars spent on each during an outage. A key that vanished is
# left alone: it is seeded from the ledger, which holds that spend.
_CREDIT = """
for i = 1, #KEYS do
  if redis.call('EXISTS', KEYS[i]) == 1 then redis.call('HINCRBY', KEYS[i], 'spent', tonumber(ARGV[i])) end
end
return 1
"""

# How long a reservation id lives: longer than any stream; a released id's marker only needs to
# outlast a stall.
RID_TTL = 86400
RELEASED_TTL = 3600


class RedisBackend:
    """Shared windows and reservations for several gateway processes."""

    def __init__(self, url: str, load_spent: LoadSpent, clock: Callable[[], float] | None = None,
                 timeout: float = 1.0, retry_for: float = 600.0) -> None:
        import redis.asyncio as aioredis
        from redis.asyncio.retry import Retry
        from redis.backoff import NoBackoff
        from redis.exceptions import ConnectionError as RedisConnectionError

        # One immediate retry on a broken connection (a pooled connection to a Redis that has
        # restarted fails once); never on a timeout, where the command may still run. A retried
        # admission that had run after all finds its id taken and is released.
        self.redis = aioredis.from_url(url, socket_connect_timeout=timeout, socket_timeout=timeout,
                                       retry=Retry(NoBackoff(), 1), retry_on_error=[RedisConnectionError])
        self._admit = self.redis.register_script(_ADMIT)
        self._settle = self.redis.register_script(_SETTLE)
        self._release = self.redis.register_script(_RELEASE)
        self._credit = self.redis.register_script(_CREDIT)
        self._load_spent = load_spent
        self.clock = clock
        self.retry_for = retry_for
        # Spend made while Redis was unreachable (fail_open), per budget key, to add when it returns.
        self.outage: dict[str, int] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _now(self) -> str:
        return "" if self.clock is None else repr(self.clock())

    async def admit(self, checks: list[Check], rid: str) -> tuple[Denial | None, list[float]]:
        keys = [c.key for c in checks] + [f"tw:rid:{rid}"]
        seeds = [""] * len(checks)
        try:
            if self.outage:
                await self._flush_outage()
            for _ in range(3):
                args: list[Any] = [len(checks), self._now(), RID_TTL]
                for c, seed in zip(checks, seeds, strict=True):
                    args += [c.kind, c.limit, c.amount, c.ttl, c.what, seed]
                result = await self._admit(keys=keys, args=args)
                if int(result[0]) != 2:
                    break
                for i in result[1:]:  # budget keys Redis does not hold (first use, or a restart)
                    c = checks[int(i) - 1]
                    seeds[int(i) - 1] = str(await self._load_spent(c.rule.scope, c.rule.scope_id, c.period_start))
        except Exception as exc:
            raise LimitsUnavailable(str(exc) or type(exc).__name__) from exc
        code = int(result[0])
        if code == 1:
            return None, [float(x) for x in result[1:]]
        if code == 3 or code == 2:
            raise LimitsUnavailable("the reservation was released before it was made")
        check = checks[int(result[1]) - 1]
        retry_ms = int(result[2])
        if retry_ms < 0:
            return Denial(check, -1.0, int(result[3]), int(result[4])), []
        return Denial(check, retry_ms / 1000.0), []

    async def _flush_outage(self) -> None:
        pending, self.outage = self.outage, {}
        try:
            await self._credit(keys=list(pending), args=list(pending.values()))
        except BaseException:
            for key, micros in pending.items():
                self.outage[key] = self.outage.get(key, 0) + micros
            raise
        log.warning("counted spend made while the limits backend was unreachable",
                    extra={"budgets": len(pending), "micros": sum(pending.values())})

    async def settle(self, checks: list[Check], corrections: list[int], rid: str) -> None:
        args: list[Any] = [len(checks), self._now()]
        for c, delta in zip(checks, corrections, strict=True):
            args += [c.kind, c.limit, c.amount, delta]
        keys = [c.key for c in checks] + [f"tw:rid:{rid}"]
        try:
            await self._settle(keys=keys, args=args)
        except Exception:
            log.warning("could not settle limits in Redis; retrying in the background", exc_info=True)
            self._later(lambda: self._settle(keys=keys, args=args), "settle")

    def release_later(self, checks: list[Check], rid: str) -> None:
        args: list[Any] = [len(checks), self._now(), RELEASED_TTL]
        for c in checks:
            args += [c.kind, c.limit, c.amount]
        keys = [c.key for c in checks] + [f"tw:rid:{rid}"]
        self._later(lambda: self._release(keys=keys, args=args), "release")

    def record_outage(self, checks: list[Check], cost_micros: int) -> None:
        for c in checks:
            if c.kind == "budget" and cost_micros:
                self.outage[c.key] = self.outage.get(c.key, 0) + cost_micros

    def _later(self, attempt: Callable[[], Awaitable[Any]], what: str) -> None:
        """Run an idempotent script until it goes through (or `retry_for` seconds pass)."""

        async def run() -> None:
            deadline = time.monotonic() + self.retry_for
            delay = 0.1
            while True:
                try:
                    await attempt()
                    return
                except Exception:
                    if time.monotonic() + delay > deadline:
                        log.error("gave up trying to %s a reservation in Redis; it expires on its own", what)
                        return
                    await asyncio.sleep(delay)
                    delay = min(2.0, delay * 2)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        if self._tasks:  # releases and settlements still waiting get a last short chance
            _, pending = await asyncio.wait(list(self._tasks), timeout=1.0)
            for task in pending:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        await self.redis.aclose()

"""Rate limits and budgets: reserve before forwarding, settle after.

Every rule that applies to a request (its key's, its user's, and the paying group's) becomes a
list of checks that a backend evaluates atomically: all pass and are applied together, or the
first that fails is reported and nothing changes.

* requests per minute and tokens per minute are token buckets (capacity = the limit, refilled
  continuously over a minute), as Anthropic's own limits behave. Tokens are charged the input
  estimate before and corrected to input + output after; the bucket may go into debt, which
  delays the next requests rather than cutting off the current one.
* concurrent requests is a counter held for the life of the request or stream.
* a budget reserves the worst-case cost (input estimate at the dearest input price plus
  `max_tokens` at the output price) and settles to the real cost afterwards, so a burst can
  never spend past it.

The `memory` backend serves one process; the `redis` backend runs the same checks as Lua
scripts so several gateway processes share windows and reservations.
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Protocol

from tollway.config import LimitDefaults, LimitsConfig

log = logging.getLogger("tollway.limits")

SCOPES = ("key", "user", "group")


@dataclass(frozen=True, slots=True)
class LimitRule:
    """The limits of one scope (a key, a user or a group); None means unlimited."""

    scope: str
    scope_id: str
    name: str
    rpm: int | None = None
    tpm: int | None = None
    concurrent: int | None = None
    budget_micros: int | None = None
    budget_period: str = "month"

    @classmethod
    def from_defaults(cls, scope: str, scope_id: str, name: str, d: LimitDefaults) -> LimitRule:
        budget = round(d.budget_usd * 1_000_000) if d.budget_usd is not None else None
        return cls(scope, scope_id, name, d.rpm, d.tpm, d.concurrent, budget, d.budget_period)

    @property
    def empty(self) -> bool:
        return self.rpm is None and self.tpm is None and self.concurrent is None and self.budget_micros is None


def period_bounds(period: str, now: datetime) -> tuple[str, date, datetime]:
    """The budget period's key, first day, and the moment it resets (UTC)."""
    today = now.date()
    if period == "day":
        return today.isoformat(), today, datetime.combine(today + timedelta(days=1), datetime.min.time(), UTC)
    first = today.replace(day=1)
    nxt = (first + timedelta(days=32)).replace(day=1)
    return first.strftime("%Y-%m"), first, datetime.combine(nxt, datetime.min.time(), UTC)


@dataclass(slots=True)
class Check:
    """One atomic check: kind is bucket (rpm/tpm), conc, or budget."""

    kind: str
    key: str
    limit: int
    amount: int
    rule: LimitRule
    what: str
    ttl: int = 120
    reset_at: datetime | None = None
    period_start: date | None = None


@dataclass(slots=True)
class Denial:
    check: Check
    retry_after: float


@dataclass(slots=True)
class Ticket:
    """What a request holds until it settles."""

    checks: list[Check] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False


class LimitsUnavailable(Exception):
    """The shared backend could not be reached."""


class Backend(Protocol):
    async def admit(self, checks: list[Check]) -> tuple[Denial | None, list[float]]: ...

    async def settle(self, checks: list[Check], corrections: list[int]) -> None: ...

    async def close(self) -> None: ...


class MemoryBackend:
    """One process's windows and reservations. Atomic because nothing awaits mid-check."""

    def __init__(self, load_spent: Any) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}
        self.counters: dict[str, int] = {}
        self.budgets: dict[str, list[int]] = {}
        self._load_spent = load_spent

    async def admit(self, checks: list[Check]) -> tuple[Denial | None, list[float]]:
        for c in checks:
            if c.kind == "budget" and c.key not in self.budgets:
                spent = await self._load_spent(c.rule.scope, c.rule.scope_id, c.period_start)
                self.budgets.setdefault(c.key, [spent, 0])
        now = time.monotonic()
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
                if spent + reserved + c.amount > c.limit:
                    assert c.reset_at is not None
                    return Denial(c, max(1.0, (c.reset_at - datetime.now(UTC)).total_seconds())), []
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

    async def settle(self, checks: list[Check], corrections: list[int]) -> None:
        now = time.monotonic()
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

    async def close(self) -> None:
        return None


# KEYS: one per check. ARGV: n, then per check kind, limit, amount, ttl, what.
# Returns {0, failed index (1-based), retry_after_ms} or {1, level1, level2, ...}.
_ADMIT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
local levels = {}
for i = 1, n do
  local base = 1 + (i - 1) * 5
  local kind, limit, amount, what = ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]), ARGV[base + 5]
  if kind == 'bucket' then
    local v = redis.call('HMGET', KEYS[i], 'tokens', 'ts')
    local tokens = tonumber(v[1]) or limit
    local ts = tonumber(v[2]) or now
    tokens = math.min(limit, tokens + (now - ts) * limit / 60.0)
    local need = 0
    if what == 'requests' then need = 1 end
    if tokens < need or (what == 'tokens' and tokens <= 0) then
      local deficit = (need > 0 and need or 1) - tokens
      return {0, i, math.ceil(deficit * 60000 / limit)}
    end
    levels[i] = tokens
  elseif kind == 'conc' then
    local c = tonumber(redis.call('GET', KEYS[i]) or '0')
    if c >= limit then return {0, i, 1000} end
    levels[i] = limit - c
  else
    local v = redis.call('HMGET', KEYS[i], 'spent', 'reserved')
    local spent = tonumber(v[1]) or 0
    local reserved = tonumber(v[2]) or 0
    if spent + reserved + amount > limit then return {0, i, -1} end
    levels[i] = limit - spent - reserved
  end
end
for i = 1, n do
  local base = 1 + (i - 1) * 5
  local kind, amount, ttl = ARGV[base + 1], tonumber(ARGV[base + 3]), tonumber(ARGV[base + 4])
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
local out = {1}
for i = 1, n do out[i + 1] = tostring(levels[i]) end
return out
"""

# KEYS: one per check. ARGV: n, then per check kind, limit, amount (reserved), correction.
_SETTLE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) + tonumber(t[2]) / 1000000
local n = tonumber(ARGV[1])
for i = 1, n do
  local base = 1 + (i - 1) * 4
  local kind, limit, amount, delta = ARGV[base + 1], tonumber(ARGV[base + 2]), tonumber(ARGV[base + 3]),
    tonumber(ARGV[base + 4])
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
      redis.call('HINCRBY', KEYS[i], 'reserved', -amount)
    end
  end
end
return 1
"""


class RedisBackend:
    """Shared windows and reservations for several gateway processes."""

    def __init__(self, url: str, load_spent: Any) -> None:
        import redis.asyncio as aioredis

        self.redis = aioredis.from_url(url, socket_connect_timeout=1.0, socket_timeout=1.0)
        self._admit = self.redis.register_script(_ADMIT)
        self._settle = self.redis.register_script(_SETTLE)
        self._load_spent = load_spent
        self._initialised: set[str] = set()

    async def admit(self, checks: list[Check]) -> tuple[Denial | None, list[float]]:
        try:
            for c in checks:
                if c.kind == "budget" and c.key not in self._initialised:
                    spent = await self._load_spent(c.rule.scope, c.rule.scope_id, c.period_start)
                    await self.redis.hsetnx(c.key, "spent", spent)
                    await self.redis.expire(c.key, c.ttl)
                    self._initialised.add(c.key)
            args: list[Any] = [len(checks)]
            for c in checks:
                args += [c.kind, c.limit, c.amount, c.ttl, c.what]
            result = await self._admit(keys=[c.key for c in checks], args=args)
        except Exception as exc:
            raise LimitsUnavailable(str(exc)) from exc
        if int(result[0]) == 0:
            check = checks[int(result[1]) - 1]
            retry_ms = int(result[2])
            if retry_ms < 0:
                assert check.reset_at is not None
                return Denial(check, max(1.0, (check.reset_at - datetime.now(UTC)).total_seconds())), []
            return Denial(check, retry_ms / 1000.0), []
        return None, [float(x) for x in result[1:]]

    async def settle(self, checks: list[Check], corrections: list[int]) -> None:
        args: list[Any] = [len(checks)]
        for c, delta in zip(checks, corrections, strict=True):
            args += [c.kind, c.limit, c.amount, delta]
        try:
            await self._settle(keys=[c.key for c in checks], args=args)
        except Exception:
            log.warning("could not settle limits in Redis; windows expire on their own", exc_info=True)

    async def close(self) -> None:
        await self.redis.aclose()


@dataclass(slots=True)
class Estimate:
    """What a request may cost at most, known before it is forwarded."""

    input_tokens: int
    max_tokens: int
    reserve_micros: int


def _rfc3339(ts: float) -> str:
    """A reset time in whole seconds, as Anthropic writes it; memoised, since many requests in the
    same second share it (formatting a datetime costs ~3 µs, a dict hit ~0.1 µs)."""
    second = int(ts)
    text = _RFC3339_CACHE.get(second)
    if text is None:
        if len(_RFC3339_CACHE) > 4096:
            _RFC3339_CACHE.clear()
        text = _RFC3339_CACHE[second] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(second))
    return text


_RFC3339_CACHE: dict[int, str] = {}


@dataclass(frozen=True, slots=True)
class _Period:
    key: str
    start: date
    reset_at: datetime
    reset_ts: float


def _period(period: str, now: float) -> _Period:
    """`period_bounds` for the day `now` falls in, computed once per (period, UTC day)."""
    cache_key = (period, int(now // 86400))
    found = _PERIODS.get(cache_key)
    if found is None:
        if len(_PERIODS) > 64:
            _PERIODS.clear()
        key, start, reset_at = period_bounds(period, datetime.fromtimestamp(now, UTC))
        found = _PERIODS[cache_key] = _Period(key, start, reset_at, reset_at.timestamp())
    return found


_PERIODS: dict[tuple[str, int], _Period] = {}


class Limiter:
    """Builds the checks for a request, runs them on the backend, and renders the headers."""

    def __init__(self, config: LimitsConfig, backend: Backend) -> None:
        self.config = config
        self.backend = backend
        self._unlimited_defaults = frozenset(
            s for s in SCOPES if LimitRule.from_defaults(s, "", "", getattr(config.defaults, s)).empty)
        self._defaults: dict[tuple[str, str, str], LimitRule] = {}

    def rules(self, overrides: dict[tuple[str, str], LimitRule], scopes: list[tuple[str, str, str]]) -> list[LimitRule]:
        """The rules for (scope, id, name) triples: a stored row wins over the config default."""
        out = []
        for scope, scope_id, name in scopes:
            rule = overrides.get((scope, scope_id))
            if rule is None:
                if scope in self._unlimited_defaults:
                    continue  # the common case: no default for this scope, nothing to build
                rule = self._defaults.get((scope, scope_id, name))
                if rule is None:  # built once per principal: the defaults never change while running
                    if len(self._defaults) > 65536:
                        self._defaults.clear()
                    rule = self._defaults[(scope, scope_id, name)] = LimitRule.from_defaults(
                        scope, scope_id, name, getattr(self.config.defaults, scope))
            if not rule.empty:
                out.append(rule)
        return out

    def checks(self, rules: list[LimitRule], est: Estimate, *, metered: bool) -> list[Check]:
        now = time.time()
        out: list[Check] = []
        for r in rules:
            base = f"tw:{r.scope}:{r.scope_id}"
            if r.rpm is not None:
                out.append(Check("bucket", base + ":rpm", r.rpm, 1, r, "requests"))
            if r.tpm is not None and metered:
                out.append(Check("bucket", base + ":tpm", r.tpm, est.input_tokens, r, "tokens"))
            if r.concurrent is not None:
                out.append(Check("conc", base + ":conc", r.concurrent, 1, r, "concurrent", ttl=3600))
            if r.budget_micros is not None and metered:
                p = _period(r.budget_period, now)
                out.append(Check("budget", f"{base}:budget:{p.key}", r.budget_micros, est.reserve_micros, r,
                                 "budget", ttl=int(p.reset_ts - now) + 86400, reset_at=p.reset_at,
                                 period_start=p.start))
        return out

    async def admit(self, checks: list[Check]) -> tuple[Ticket, Denial | None]:
        if not checks:
            return Ticket(), None
        try:
            denial, levels = await self.backend.admit(checks)
        except LimitsUnavailable as exc:
            if self.config.on_backend_error == "fail_open":
                log.warning("limits backend unavailable, allowing the request (fail_open): %s", exc)
                return Ticket(), None
            raise
        if denial is not None:
            return Ticket(), denial
        return Ticket(checks, self._headers(checks, levels)), None

    def _headers(self, checks: list[Check], levels: list[float]) -> dict[str, str]:
        """anthropic-ratelimit-* for the tightest request and token limits that apply."""
        headers: dict[str, str] = {}
        now = time.time()
        for what in ("requests", "tokens"):
            best: tuple[float, Check, float] | None = None
            for c, level in zip(checks, levels, strict=True):
                if c.kind == "bucket" and c.what == what and (best is None or level < best[0]):
                    best = (level, c, level)
            if best is None:
                continue
            level, c, _ = best
            remaining = max(0, math.floor(level))
            reset = now + max(0.0, (c.limit - level)) * 60.0 / c.limit
            headers[f"anthropic-ratelimit-{what}-limit"] = str(c.limit)
            headers[f"anthropic-ratelimit-{what}-remaining"] = str(remaining)
            headers[f"anthropic-ratelimit-{what}-reset"] = _rfc3339(reset)
        return headers

    async def settle(self, ticket: Ticket, tokens_used: int, cost_micros: int) -> None:
        if ticket.settled or not ticket.checks:
            return
        ticket.settled = True
        corrections = []
        for c in ticket.checks:
            if c.kind == "bucket" and c.what == "tokens":
                corrections.append(tokens_used - c.amount)
            elif c.kind == "budget":
                corrections.append(cost_micros - c.amount)
            else:
                corrections.append(0)
        await self.backend.settle(ticket.checks, corrections)

    async def close(self) -> None:
        await self.backend.close()


def denial_message(d: Denial) -> str:
    r = d.check.rule
    who = f"{r.scope} {r.name}"
    if d.check.kind == "budget":
        assert d.check.reset_at is not None
        limit = r.budget_micros / 1_000_000 if r.budget_micros else 0
        return (f"budget exhausted: the {r.budget_period}ly budget of ${limit:.2f} for {who} is spent or reserved; "
                f"it resets at {d.check.reset_at.isoformat().replace('+00:00', 'Z')}")
    if d.check.kind == "conc":
        return f"rate limit: {who} already has {d.check.limit} concurrent requests"
    unit = "requests" if d.check.what == "requests" else "tokens"
    return f"rate limit: {who} is limited to {d.check.limit} {unit} per minute"


"""Rate limits and budgets: reserve before forwarding, settle after.

Every rule that applies to a request (its key's, its user's, and the paying group's) becomes a
list of checks that a backend (tollway/governance/limit_backends.py) evaluates atomically: all
pass and are applied together, or the first that fails is reported and nothing changes.

* requests per minute and tokens per minute are token buckets (capacity = the limit, refilled
  continuously over a minute), as Anthropic's own limits behave. Tokens are charged the input
  estimate before and corrected to input + output after; the bucket may go into debt, which
  delays the next requests rather than cutting off the current one.
* concurrent requests is a counter held for the life of the request or stream.
* a budget reserves the request's cost before forwarding and settles to the real cost after.
  In `expected` mode (the default) it reserves what the request is expected to cost and admits
  while what is left covers that, so a burst may overshoot by at most what the requests in
  flight did not reserve; in `strict` mode it reserves the worst case, so a burst never
  overspends (tollway/governance/estimate.py, docs/budgets.md). Nothing is admitted once the
  settled spend has reached the budget.

Time comes from injected clocks (`clock` for budget periods, the backends' own for windows),
so the windows and periods are tested without sleeping.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol

from tollway.config import LimitDefaults, LimitsConfig, Pricing
from tollway.governance.estimate import OVERHEAD_TOKENS, GuardedTap, History, body_size, cost_of, exact_input
from tollway.wire.sse import StreamTap, Usage

if TYPE_CHECKING:
    from tollway.upstream.router import Route

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
    budget_mode: str = "expected"

    @classmethod
    def from_defaults(cls, scope: str, scope_id: str, name: str, d: LimitDefaults) -> LimitRule:
        budget = round(d.budget_usd * 1_000_000) if d.budget_usd is not None else None
        return cls(scope, scope_id, name, d.rpm, d.tpm, d.concurrent, budget, d.budget_period, d.budget_mode)

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
    """One atomic check: kind is bucket (rpm/tpm), conc, or budget. A budget's amount is what
    its mode reserves; `worst` is the most the request can cost (for the refusal message)."""

    kind: str
    key: str
    limit: int
    amount: int
    rule: LimitRule
    what: str
    ttl: int = 120
    reset_at: datetime | None = None
    period_start: date | None = None
    worst: int = 0


@dataclass(slots=True)
class Denial:
    """A failed check; for a budget, what was spent and reserved when it failed."""

    check: Check
    retry_after: float
    spent: int = 0
    reserved: int = 0


@dataclass(slots=True)
class Ticket:
    """What a request holds until it settles.

    `rid` names the reservation in a shared backend, so settling and releasing it are
    idempotent; `outage` marks a request admitted by fail_open while the backend was down, whose
    spend is kept to be counted when it returns; `allowance` is what was left of the tightest
    budget when it was admitted (for the optional stream stop)."""

    checks: list[Check] = field(default_factory=list)
    headers: dict[str, str] = field(default_factory=dict)
    settled: bool = False
    rid: str = ""
    outage: bool = False
    allowance: int | None = None
    estimate: Estimate | None = None


class LimitsUnavailable(Exception):
    """The shared backend could not be reached."""


class Backend(Protocol):
    async def admit(self, checks: list[Check], rid: str) -> tuple[Denial | None, list[float]]: ...

    async def settle(self, checks: list[Check], corrections: list[int], rid: str) -> None: ...

    def release_later(self, checks: list[Check], rid: str) -> None:
        """Undo a reservation whose admission failed or was abandoned, if it was made at all."""

    def record_outage(self, checks: list[Check], cost_micros: int) -> None:
        """Keep the spend of a request admitted fail_open, to count it when the backend returns."""

    async def close(self) -> None: ...


@dataclass(slots=True)
class Estimate:
    """What a request will cost, known before it is forwarded (tollway/governance/estimate.py):
    the expected input tokens (charged to tpm), the expected cost and the most it can cost."""

    input_tokens: int
    max_tokens: int
    reserve_micros: int
    worst_micros: int = -1
    size: int = 0
    key_id: str = ""
    model: str = ""
    pricing: Pricing | None = None

    def __post_init__(self) -> None:
        if self.worst_micros < 0:
            self.worst_micros = self.reserve_micros


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

    def __init__(self, config: LimitsConfig, backend: Backend, clock: Callable[[], float] = time.time) -> None:
        self.config = config
        self.backend = backend
        self.clock = clock
        self.history = History()
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

    def estimate(self, route: Route, body: dict[str, Any], raw: bytes | None, key_id: str,
                 size: int | None = None) -> Estimate:
        """Expected and worst cost of a request, from the body's size (never a walk of it) and the
        recent answers of this key and model; exact for routes served only by the mock. SIZE, when
        the surface knows one (the client's byte count), spares serialising a rebuilt body."""
        model = route.model
        p = model.pricing
        max_tokens = body.get("max_tokens")
        max_tokens = max_tokens if isinstance(max_tokens, int) and max_tokens > 0 else 0
        size = size or body_size(body, raw)
        expected_out = min(max_tokens, self.history.output(key_id, model.id, self.config.expected_output_tokens))
        if all(d.provider == "mock" for d in route.deployments):
            bound = expected_in = exact_input(body)  # the mock counts exactly as this does
            expected = cost_of(p, expected_in, expected_out)
        else:
            bound = size + OVERHEAD_TOKENS
            expected_in = min(bound, math.ceil(size * self.history.ratio(model.id, self.config.estimate_margin)))
            expected = (self.history.input_micros(model.id, size, self.config.estimate_margin, p)
                        + math.ceil(expected_out * p.output))
        worst = cost_of(p, bound, max_tokens)
        return Estimate(expected_in, max_tokens, min(worst, expected), worst, size, key_id, model.id, p)

    def checks(self, rules: list[LimitRule], est: Estimate, *, metered: bool) -> list[Check]:
        now = self.clock()
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
                amount = est.worst_micros if r.budget_mode == "strict" else est.reserve_micros
                out.append(Check("budget", f"{base}:budget:{p.key}", r.budget_micros, amount, r,
                                 "budget", ttl=int(p.reset_ts - now) + 86400, reset_at=p.reset_at,
                                 period_start=p.start, worst=est.worst_micros))
        return out

    async def admit(self, checks: list[Check], estimate: Estimate | None = None) -> tuple[Ticket, Denial | None]:
        """Reserve; a reservation whose answer never arrived (the backend stalled, or the caller
        gave up meanwhile) is released in the background, whether or not it was made."""
        if not checks:
            return Ticket(estimate=estimate), None
        rid = uuid.uuid4().hex
        try:
            denial, levels = await self.backend.admit(checks, rid)
        except LimitsUnavailable as exc:
            self.backend.release_later(checks, rid)
            if self.config.on_backend_error == "fail_open":
                log.warning("limits backend unavailable, allowing the request (fail_open): %s", exc)
                return Ticket(checks, rid=rid, outage=True, estimate=estimate), None
            raise
        except asyncio.CancelledError:
            self.backend.release_later(checks, rid)
            raise
        if denial is not None:
            if denial.check.kind == "budget":
                assert denial.check.reset_at is not None
                denial.retry_after = max(1.0, denial.check.reset_at.timestamp() - self.clock())
            return Ticket(estimate=estimate), denial
        allowance = [int(level) for c, level in zip(checks, levels, strict=True) if c.kind == "budget"]
        return Ticket(checks, self._headers(checks, levels), rid=rid, estimate=estimate,
                      allowance=min(allowance) if allowance else None), None

    def _headers(self, checks: list[Check], levels: list[float]) -> dict[str, str]:
        """anthropic-ratelimit-* for the tightest request and token limits that apply."""
        headers: dict[str, str] = {}
        now = self.clock()
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

    def tap(self, ticket: Ticket, max_tokens: Any, pricing: Pricing | None) -> StreamTap:
        """The metering tap for a stream, with its cut-offs (max_tokens plus a margin always; the
        budget left at admission when `stop_streams_at_budget` is on)."""
        allowance = ticket.allowance if self.config.stop_streams_at_budget else None
        limit = max_tokens if isinstance(max_tokens, int) else 0
        return GuardedTap(limit, pricing, allowance)

    async def settle(self, ticket: Ticket, tokens_used: int, cost_micros: int, usage: Usage | None = None,
                     complete: bool = True) -> None:
        """Settle the reservation to the real cost; with USAGE, learn from the answer."""
        est = ticket.estimate
        if usage is not None and est is not None and est.model and not ticket.settled:
            self.history.learn(est.key_id, est.model, est.size, usage, complete, est.pricing)
        if ticket.settled or not ticket.checks:
            return
        ticket.settled = True
        if ticket.outage:
            self.backend.record_outage(ticket.checks, cost_micros)
            return
        corrections = []
        for c in ticket.checks:
            if c.kind == "bucket" and c.what == "tokens":
                corrections.append(tokens_used - c.amount)
            elif c.kind == "budget":
                corrections.append(cost_micros - c.amount)
            else:
                corrections.append(0)
        await self.backend.settle(ticket.checks, corrections, ticket.rid)

    async def close(self) -> None:
        await self.backend.close()


def _usd(micros: int) -> str:
    dollars = micros / 1_000_000
    return f"${dollars:.2f}" if micros % 10_000 == 0 else f"${dollars:.4f}"


def denial_message(d: Denial) -> str:
    """The refusal, with the numbers a person needs to act on it."""
    r = d.check.rule
    who = f"{r.scope} {r.name}"
    if d.check.kind == "budget":
        c = d.check
        assert c.reset_at is not None
        left = max(0, c.limit - d.spent - d.reserved)
        resets = c.reset_at.isoformat().replace("+00:00", "Z")
        head = (f"budget exhausted: the {r.budget_period}ly budget of {_usd(c.limit)} for {who} "
                f"({r.budget_mode} mode) has {_usd(left)} left ({_usd(d.spent)} spent, "
                f"{_usd(d.reserved)} reserved by requests in flight); it resets at {resets}. ")
        if d.spent >= c.limit:
            return head + (f"It is spent. To go on, raise the budget (tollway limits set {r.scope} {r.scope_id} "
                           "--budget USD) or wait for the reset.")
        if r.budget_mode == "strict":
            return head + (f"This request could cost up to {_usd(c.worst)} (all of max_tokens) and strict mode "
                           "reserves that. To go on, lower max_tokens, raise the budget, or switch it to expected "
                           "mode (--budget-mode expected), which reserves the expected cost.")
        return head + (f"This request is expected to cost {_usd(c.amount)} (up to {_usd(c.worst)}). To go on, "
                       "wait for requests in flight to finish, send a smaller request, raise the budget or wait "
                       "for the reset.")
    if d.check.kind == "conc":
        return f"rate limit: {who} already has {d.check.limit} concurrent requests"
    unit = "requests" if d.check.what == "requests" else "tokens"
    return f"rate limit: {who} is limited to {d.check.limit} {unit} per minute"

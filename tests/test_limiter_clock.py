"""The limiter on injected clocks: windows, periods and budgets checked directly, without sleeping.

The memory backend runs in-process; the Redis backend runs its real Lua scripts on the shared
Redis (TOLLWAY_TEST_REDIS_URL, keys under ids unique to each test) with the script's clock given
by the test instead of the server's.
"""

from __future__ import annotations

import asyncio
import math
import os
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import orjson
import pytest

from tollway.config import LimitsConfig, ModelConfig, Pricing
from tollway.governance.estimate import GuardedTap, History, StreamCut, body_size
from tollway.governance.limit_backends import MemoryBackend, RedisBackend
from tollway.governance.limits import Estimate, Limiter, LimitRule, denial_message
from tollway.upstream.base import UpstreamFailure
from tollway.upstream.router import Route
from tollway.wire.sse import Usage, frame

REDIS_ENV = "TOLLWAY_TEST_REDIS_URL"
# 2026-01-31 23:59:00 UTC: a minute before both the day and the month roll over.
T0 = datetime(2026, 1, 31, 23, 59, tzinfo=UTC).timestamp()


class Clock:
    def __init__(self, now: float = T0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


class Ledger:
    """What `load_spent` reads: spend per (scope, id, period start), as the usage ledger would."""

    def __init__(self) -> None:
        self.spent: dict[tuple[str, str, Any], int] = {}
        self.reads = 0

    async def __call__(self, scope: str, scope_id: str, since: Any) -> int:
        self.reads += 1
        return self.spent.get((scope, scope_id, since), 0)


def rule(**kw: Any) -> LimitRule:
    return LimitRule("key", kw.pop("scope_id", uuid.uuid4().hex), "k", **kw)


def run(coro: Any) -> Any:
    return asyncio.run(coro)


@pytest.fixture(params=["memory", "redis"])
def make(request: pytest.FixtureRequest) -> Iterator[Any]:
    """A factory of (limiter, clock, ledger) on either backend, sharing one clock."""
    made: list[Limiter] = []

    def factory(**config: Any) -> tuple[Limiter, Clock, Ledger]:
        clock, ledger = Clock(), Ledger()
        if request.param == "memory":
            backend: Any = MemoryBackend(ledger, clock=clock)
        else:
            url = os.environ.get(REDIS_ENV)
            if not url:
                pytest.skip(f"the Redis backend's scripts need {REDIS_ENV}")
            backend = RedisBackend(url, ledger, clock=clock)
        limiter = Limiter(LimitsConfig(**config), backend, clock=clock)
        made.append(limiter)
        return limiter, clock, ledger

    yield factory


def est(reserve: int, worst: int | None = None, tokens: int = 0) -> Estimate:
    return Estimate(tokens, 100, reserve, worst if worst is not None else reserve)


def test_rpm_window_refills_with_the_clock(make: Any) -> None:
    limiter, clock, _ = make()
    r = [rule(rpm=10)]

    async def go() -> None:
        for _ in range(10):
            _, denial = await limiter.admit(limiter.checks(r, est(0), metered=True))
            assert denial is None
        _, denial = await limiter.admit(limiter.checks(r, est(0), metered=True))
        assert denial is not None and denial.check.what == "requests"
        assert denial.retry_after == pytest.approx(6.0, abs=0.01)  # one request refills in 60/10 s
        clock.now += 5.9
        assert (await limiter.admit(limiter.checks(r, est(0), metered=True)))[1] is not None
        clock.now += 0.2
        ticket, denial = await limiter.admit(limiter.checks(r, est(0), metered=True))
        assert denial is None and ticket.headers["anthropic-ratelimit-requests-remaining"] == "0"
        await limiter.close()

    run(go())


def test_tpm_debt_delays_the_next_request_by_the_clock(make: Any) -> None:
    limiter, clock, _ = make()
    r = [rule(tpm=600)]

    async def go() -> None:
        ticket, denial = await limiter.admit(limiter.checks(r, est(0, tokens=100), metered=True))
        assert denial is None
        await limiter.settle(ticket, 1200, 0)  # used 1,200 of 600: the bucket is 600 in debt
        _, denial = await limiter.admit(limiter.checks(r, est(0, tokens=10), metered=True))
        assert denial is not None and denial.retry_after == pytest.approx(60.1, abs=0.01)
        clock.now += 59.9  # still in debt
        assert (await limiter.admit(limiter.checks(r, est(0, tokens=10), metered=True)))[1] is not None
        clock.now += 0.3
        assert (await limiter.admit(limiter.checks(r, est(0, tokens=10), metered=True)))[1] is None
        await limiter.close()

    run(go())


def test_budget_period_rolls_over_at_midnight_utc(make: Any) -> None:
    limiter, clock, ledger = make()
    r = [rule(budget_micros=1000, budget_period="day")]

    async def go() -> None:
        ticket, denial = await limiter.admit(limiter.checks(r, est(600), metered=True))
        assert denial is None
        await limiter.settle(ticket, 0, 1000)  # spent the whole day's budget
        _, denial = await limiter.admit(limiter.checks(r, est(1), metered=True))
        assert denial is not None and denial.check.kind == "budget"
        assert denial.spent == 1000 and denial.retry_after == pytest.approx(60.0, abs=0.01)
        assert "It is spent" in denial_message(denial)
        clock.now += 60.0  # the next day: a new period, seeded from the ledger (nothing spent yet)
        reads = ledger.reads
        assert (await limiter.admit(limiter.checks(r, est(600), metered=True)))[1] is None
        assert ledger.reads == reads + 1
        await limiter.close()

    run(go())


def test_monthly_budget_is_seeded_from_the_ledger(make: Any) -> None:
    limiter, clock, ledger = make()
    r = rule(budget_micros=1000)
    ledger.spent[("key", r.scope_id, datetime(2026, 1, 1).date())] = 950

    async def go() -> None:
        _, denial = await limiter.admit(limiter.checks([r], est(100), metered=True))
        assert denial is not None and (denial.spent, denial.reserved) == (950, 0)
        message = denial_message(denial)
        assert "$0.0010" in message and "$0.0001 left" in message and "2026-02-01T00:00:00Z" in message
        clock.now += 120  # February: nothing spent
        assert (await limiter.admit(limiter.checks([r], est(100), metered=True)))[1] is None
        await limiter.close()

    run(go())


def test_expected_mode_admits_what_strict_mode_refuses(make: Any) -> None:
    limiter, _, _ = make()
    expected = rule(budget_micros=250_000)
    strict = rule(budget_micros=250_000, budget_mode="strict")
    e = est(180_000, worst=760_000)

    async def go() -> None:
        ticket, denial = await limiter.admit(limiter.checks([expected], e, metered=True))
        assert denial is None and ticket.allowance == 250_000
        _, denial = await limiter.admit(limiter.checks([strict], e, metered=True))
        assert denial is not None
        message = denial_message(denial)
        assert "could cost up to $0.76" in message and "$0.25 left" in message
        assert "--budget-mode expected" in message
        # The expected reservation holds: a second request no longer fits in what is left.
        _, denial = await limiter.admit(limiter.checks([expected], e, metered=True))
        assert denial is not None and denial.reserved == 180_000
        assert "expected to cost $0.18 (up to $0.76)" in denial_message(denial)
        await limiter.close()

    run(go())


def test_nothing_is_admitted_once_settled_spend_reaches_the_budget(make: Any) -> None:
    limiter, _, _ = make()
    r = [rule(budget_micros=1000)]

    async def go() -> None:
        ticket, _ = await limiter.admit(limiter.checks(r, est(10), metered=True))
        await limiter.settle(ticket, 0, 1500)  # the upstream cost more than expected
        _, denial = await limiter.admit(limiter.checks(r, est(0), metered=True))
        assert denial is not None and denial.spent == 1500  # even a request expected to cost nothing
        await limiter.close()

    run(go())


def test_a_reservation_released_before_redis_ran_it_is_never_made() -> None:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"needs {REDIS_ENV}")
    clock, ledger = Clock(), Ledger()
    backend = RedisBackend(url, ledger, clock=clock)
    limiter = Limiter(LimitsConfig(), backend, clock=clock)
    r = [rule(concurrent=1, budget_micros=1000)]

    async def go() -> None:
        checks = limiter.checks(r, est(100), metered=True)
        early = uuid.uuid4().hex
        backend.release_later(checks, early)  # the release overtook the admission (a stall)
        while backend._tasks:
            await asyncio.sleep(0.01)
        with pytest.raises(Exception, match="released"):
            await backend.admit(checks, early)
        assert await backend.redis.get(checks[0].key) is None  # no slot taken
        ticket, denial = await limiter.admit(checks)
        assert denial is None
        backend.release_later(checks, ticket.rid)  # the caller gave up after it was made: undone
        while backend._tasks:
            await asyncio.sleep(0.01)
        assert int(await backend.redis.get(checks[0].key)) == 0
        assert int(await backend.redis.hget(checks[1].key, "reserved")) == 0
        await limiter.settle(ticket, 0, 100)  # settling a released reservation changes nothing
        assert int(await backend.redis.hget(checks[1].key, "spent")) == 0
        await limiter.close()

    run(go())


# -- estimates and stream guards ---------------------------------------------------------------------

def _route(provider: str = "anthropic") -> Route:
    from tollway.config import Settings
    from tollway.upstream.router import Router

    model = ModelConfig.model_validate({"id": "m", "upstream": {"provider": provider, "base_url": "http://x",
                                                                 "api_key": "k"} if provider != "mock"
                                        else {"provider": "mock"},
                                        "pricing": {"input": 3.0, "output": 15.0}})
    router = Router(Settings.model_validate({"models": [model.model_dump()]}))
    route = router.get("m")
    assert route is not None
    return route


@pytest.mark.parametrize("text", ["数据" * 5000, "0123456789" * 2000, "x9$Qz" * 4000])
def test_input_bound_is_never_under_the_byte_count(text: str) -> None:
    limiter = Limiter(LimitsConfig(), MemoryBackend(Ledger()))
    body = {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": text}]}
    raw = orjson.dumps(body)
    e = limiter.estimate(_route(), body, raw, "k")
    # Worst case: every byte one token at the dearest input rate (cache write, 1.25 x 3.0), plus max_tokens.
    assert e.worst_micros >= len(text.encode()) * 3.75 + 10 * 15.0
    # Expected: never under one token per three bytes (one per CJK character).
    assert e.input_tokens >= len(raw) / 3
    assert e.size == len(raw)


def test_expected_estimate_learns_from_answers() -> None:
    limiter = Limiter(LimitsConfig(expected_output_tokens=4096), MemoryBackend(Ledger()))
    body = {"model": "m", "max_tokens": 32000, "messages": [{"role": "user", "content": "a" * 9000}]}
    raw = orjson.dumps(body)
    first = limiter.estimate(_route(), body, raw, "k")
    assert first.input_tokens == math.ceil(len(raw) / 2)  # the prior: two bytes per token
    assert first.reserve_micros == math.ceil(len(raw) / 2 * 3.0) + 4096 * 15  # at the input price
    assert first.worst_micros > 32000 * 15.0
    # A settled answer: 500 input tokens, 2,000 read from the cache, 700 output.
    usage = Usage(input_tokens=500, cache_read_input_tokens=2000, output_tokens=700)
    limiter.history.learn("k", "m", len(raw), usage, True, Pricing(input=3.0, output=15.0))
    second = limiter.estimate(_route(), body, raw, "k")
    assert second.input_tokens == math.ceil(len(raw) * max(1 / 3, 2500 / len(raw) * 1.25))
    # Input cost per byte as it came (cache reads at 0.1 x), times the margin; output as seen.
    assert second.reserve_micros == pytest.approx((500 * 3.0 + 2000 * 0.3) * 1.25 + 700 * 15, abs=1)
    # Another key on the same model starts from the model's answers.
    assert limiter.estimate(_route(), body, raw, "other").reserve_micros == second.reserve_micros


def test_body_size_needs_no_walk_when_the_raw_bytes_are_known() -> None:
    assert body_size({"ignored": True}, b"x" * 1234) == 1234
    body = {"messages": [{"role": "user", "content": "hé"}]}
    assert body_size(body, None) == len(orjson.dumps(body))
    assert History().ratio("unknown", 1.25) == 0.5


def _delta(text: str) -> bytes:
    return frame({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}})


def test_stream_is_cut_off_past_max_tokens_plus_margin() -> None:
    tap = GuardedTap(50, None, None)
    tap.feed(frame({"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}))
    fed = 0
    with pytest.raises(UpstreamFailure) as cut:
        for _ in range(100_000):
            tap.feed(_delta("y" * 40))
            fed += 1
    assert "max_tokens (50)" in cut.value.message and cut.value.error_type == "api_error"
    # The chunk that crossed the cut-off was withheld: the tap holds what was relayed.
    assert fed > 0 and (50 + 64) * 32 - 100 < tap.delta_bytes <= (50 + 64) * 32
    assert tap.at_boundary  # the error frame goes between events


def test_stream_is_cut_off_when_the_upstream_counts_past_max_tokens() -> None:
    tap = GuardedTap(50, None, None)
    tap.feed(_delta("z"))
    with pytest.raises(UpstreamFailure):
        tap.feed(frame({"type": "message_delta", "delta": {}, "usage": {"output_tokens": 5000}}))
    assert tap.usage.output_tokens == 0 and not tap.saw_delta  # the claim was withheld, not taken in


def test_stream_stops_at_the_budget_left() -> None:
    pricing = Pricing(input=3.0, output=15.0)
    tap = GuardedTap(100_000, pricing, allowance=60_000)  # $0.06 was left
    tap.feed(frame({"type": "message_start", "message": {"usage": {"input_tokens": 10_000, "output_tokens": 1}}}))
    with pytest.raises(UpstreamFailure) as cut:
        for _ in range(100_000):
            tap.feed(_delta("w" * 400))
    assert cut.value.error_type == "rate_limit_error" and "budget reached" in cut.value.message
    assert 60_000 - 100 * 15 <= tap.running_cost() < 60_000  # the crossing chunk was withheld, not billed


@pytest.mark.parametrize("read_size", [1 << 20, 65_536, 4096, 777])
def test_stream_stops_at_the_same_event_however_the_upstream_bytes_were_read(read_size: int) -> None:
    """The budget cut is per event: a busy gateway that reads message_start and hundreds of deltas
    in one chunk relays and bills the events before the crossing one, exactly as when it reads
    them one at a time — never nothing (which would bill $0 for the input the upstream used)."""
    pricing = Pricing(input=3.0, output=15.0)
    events = [frame({"type": "message_start", "message": {"usage": {"input_tokens": 10_000, "output_tokens": 1}}}),
              *(_delta("v" * 400) for _ in range(2000))]
    stream = b"".join(events)

    def run(chunks: list[bytes]) -> tuple[int, bytes, bool]:
        tap, relayed = GuardedTap(100_000, pricing, allowance=60_000), b""
        with pytest.raises(StreamCut) as cut:
            for chunk in chunks:
                tap.feed(chunk)
                relayed += chunk
        assert cut.value.error_type == "rate_limit_error"
        relayed += cut.value.relay
        # Whole events relayed (a chunk relayed before the cut may have begun the crossing event).
        return tap.running_cost(), relayed[:relayed.rfind(b"\n\n") + 2], tap.at_boundary

    cost, relayed, at_boundary = run(events)
    assert 30_015 < cost < 60_000 and relayed.startswith(events[0]) and at_boundary
    chunked = run([stream[at:at + read_size] for at in range(0, len(stream), read_size)])
    assert chunked[:2] == (cost, relayed)

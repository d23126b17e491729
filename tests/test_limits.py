"""Metering, budgets and rate limits through real HTTP, under bursts, on one and two processes.

Budgets and windows on two processes share real Redis (TOLLWAY_TEST_REDIS_URL); without it
those tests skip and say why.
"""

from __future__ import annotations

import asyncio
import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aiohttp
import httpx
import pytest

from tests.conftest import NO_RETRIES, UPSTREAM_KEY, Gateway, start_gateway
from tests.emulator import AnthropicEmulator, SSEReply, default_stream_events, sse_event

REDIS_ENV = "TOLLWAY_TEST_REDIS_URL"
PRICING = {"input": 1.0, "output": 2.0, "cache_write": 1.0, "cache_read": 0.5}
PROMPT = {"max_tokens": 3, "messages": [{"role": "user", "content": "budget me"}]}


def limits_config(upstream_url: str, **limits: Any) -> dict[str, Any]:
    emu = {"provider": "anthropic", "base_url": upstream_url, "api_key": "${TEST_UPSTREAM_KEY}"}
    return {
        "server": {"key_refresh_interval": 0.2},
        "retries": NO_RETRIES,
        "limits": limits or {"backend": "memory"},
        "models": [
            {"id": "tollway-mock", "upstream": {"provider": "mock"}, "pricing": PRICING},
            {"id": "tollway-mock-slow", "upstream": {"provider": "mock", "chunk_delay_ms": 100}, "pricing": PRICING},
            {"id": "claude-sonnet-4-5-20250929", "upstream": emu,
             "pricing": {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.3}},
        ],
    }


class Admin:
    def __init__(self, gw: Gateway) -> None:
        key = json.loads(gw.cli("keys", "create", "--name", "ops", "--admin", "--json").stdout)["key"]
        self.http = httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"x-api-key": key}, timeout=10)

    def __call__(self, method: str, path: str, expect: int = 200, **kwargs: Any) -> Any:
        resp = self.http.request(method, path, **kwargs)
        assert resp.status_code == expect, resp.text
        return resp.json() if resp.content else None

    def key(self, name: str, **limits: Any) -> dict[str, Any]:
        created = self("POST", "/keys", 201, json={"name": name})
        if limits:
            self("PUT", f"/limits/key/{created['id']}", json=limits)
        return created

    def caught_up(self, *gateways: Gateway, timeout: float = 30.0) -> None:
        """Return once each gateway process holds the store as it is now.

        A change is live at once in the process that answered it (an admin write reloads that
        process's key cache, other processes' changes included) and in other processes within
        `key_refresh_interval`. A marker key made now is answered only by a process that has
        loaded a state at least this new (an unknown key makes it check the store's version
        first), so this replaces sleeping out the refresh interval."""
        marker = self("POST", "/keys", 201, json={"name": "marker"})["key"]
        for g in gateways:
            deadline = time.monotonic() + timeout
            while httpx.post(g.base_url + "/v1/messages", headers={"x-api-key": marker},
                             json={**PROMPT, "model": "tollway-mock"}, timeout=10).status_code != 200:
                assert time.monotonic() < deadline, f"{g.base_url} never took the marker key"
                time.sleep(0.05)

    def ledger(self, key_id: str, n: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The key's ledger rows once at least N are written (the writer is behind the request path)."""
        deadline = time.monotonic() + timeout
        rows: list[dict[str, Any]] = []
        while time.monotonic() < deadline:
            rows = self("GET", "/usage/requests", params={"key_id": key_id, "limit": 1000})
            if len(rows) >= n:
                return rows
            time.sleep(0.1)
        raise AssertionError(f"only {len(rows)} of {n} ledger rows for {key_id}")


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("limits"), limits_config(emulator.base_url),
                            env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> Admin:
    return Admin(gw)


def one_cost(gw: Gateway, key: str) -> int:
    """The exact cost of PROMPT on the mock, in micro-dollars: count_tokens is free and exact."""
    n = httpx.post(gw.base_url + "/v1/messages/count_tokens", headers={"x-api-key": key},
                   json={"model": "tollway-mock", "messages": PROMPT["messages"]}).json()["input_tokens"]
    return round(n * PRICING["input"] + PROMPT["max_tokens"] * PRICING["output"])


async def _burst(urls: list[str], key: str, n: int, body: dict[str, Any]) -> list[tuple[int, dict[str, str]]]:
    async with aiohttp.ClientSession() as session:
        async def one(i: int) -> tuple[int, dict[str, str]]:
            async with session.post(urls[i % len(urls)] + "/v1/messages", json=body,
                                    headers={"x-api-key": key}) as resp:
                await resp.read()
                return resp.status, {k.lower(): v for k, v in resp.headers.items()}

        return await asyncio.gather(*(one(i) for i in range(n)))


def burst(gateways: list[Gateway], key: str, n: int = 50) -> list[tuple[int, dict[str, str]]]:
    return asyncio.run(_burst([g.base_url for g in gateways], key, n, {**PROMPT, "model": "tollway-mock"}))


def test_budget_burst_admits_exactly_what_is_affordable(gw: Gateway, admin: Admin) -> None:
    probe = admin.key("probe")
    cost = one_cost(gw, probe["key"])
    key = admin.key("budgeted", budget_usd=10 * cost / 1_000_000, budget_period="day")
    results = burst([gw], key["key"])
    statuses = [s for s, _ in results]
    assert statuses.count(200) == 10 and statuses.count(429) == 40
    refused = next(h for s, h in results if s == 429)
    assert refused["x-should-retry"] == "false" and int(refused["retry-after"]) >= 1
    rows = admin.ledger(key["id"], 50)
    assert sum(r["cost_micros"] for r in rows) == 10 * cost
    assert {r["status"] for r in rows} == {200, 429}


def test_budget_refusal_names_the_budget_and_reset(gw: Gateway, admin: Admin) -> None:
    key = admin.key("broke", budget_usd=0.0, budget_period="month")
    resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                      json={**PROMPT, "model": "tollway-mock"})
    assert resp.status_code == 429
    error = resp.json()["error"]
    assert error["type"] == "rate_limit_error"
    assert "monthly budget of $0.00 for key broke" in error["message"] and "resets at" in error["message"]


def test_rpm_burst_admits_exactly_the_limit(gw: Gateway, admin: Admin) -> None:
    key = admin.key("rpm10", rpm=10)
    statuses = [s for s, _ in burst([gw], key["key"])]
    assert statuses.count(200) == 10 and statuses.count(429) == 40


def test_ratelimit_headers_present_and_decreasing(gw: Gateway, admin: Admin) -> None:
    # rpm 3 refills one request every 20 s: at rpm 100 (one every 0.6 s) three requests on a
    # loaded machine took long enough for the count to go back up (99, 98, 99).
    key = admin.key("headers", rpm=3, tpm=600)
    seen = []
    for _ in range(3):
        resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                          json={**PROMPT, "model": "tollway-mock"})
        assert resp.status_code == 200
        seen.append(resp.headers)
    assert all(h["anthropic-ratelimit-requests-limit"] == "3" for h in seen)
    assert [int(h["anthropic-ratelimit-requests-remaining"]) for h in seen] == [2, 1, 0]
    tokens = [int(h["anthropic-ratelimit-tokens-remaining"]) for h in seen]
    assert tokens[0] > tokens[1] > tokens[2] and seen[0]["anthropic-ratelimit-tokens-limit"] == "600"
    assert seen[0]["anthropic-ratelimit-requests-reset"].endswith("Z")


def test_concurrency_limit_holds_for_the_life_of_a_stream(gw: Gateway, admin: Admin) -> None:
    key = admin.key("conc1", concurrent=1)
    body = {**PROMPT, "max_tokens": 100, "model": "tollway-mock-slow", "stream": True}
    headers = {"x-api-key": key["key"]}
    with httpx.stream("POST", gw.base_url + "/v1/messages", json=body, headers=headers) as first:
        assert first.status_code == 200
        second = httpx.post(gw.base_url + "/v1/messages", json=body, headers=headers)
        assert second.status_code == 429
        assert "concurrent" in second.json()["error"]["message"]
        first.read()
    assert httpx.post(gw.base_url + "/v1/messages", json=body, headers=headers).status_code == 200


def test_streaming_usage_equals_upstream_usage_and_cache_is_priced(gw: Gateway, admin: Admin,
                                                                   upstream: AnthropicEmulator) -> None:
    events = default_stream_events("claude-sonnet-4-5-20250929", input_tokens=1000, output_tokens=40)
    events[0]["message"]["usage"].update(cache_creation_input_tokens=2000, cache_read_input_tokens=3000)
    upstream.script(SSEReply([sse_event(e) for e in events]))
    key = admin.key("streamer")
    with httpx.stream("POST", gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                      json={**PROMPT, "max_tokens": 100, "model": "claude-sonnet-4-5-20250929",
                            "stream": True}) as resp:
        resp.read()
    row = admin.ledger(key["id"], 1)[0]
    assert (row["input_tokens"], row["output_tokens"]) == (1000, 40)
    assert (row["cache_write_tokens"], row["cache_read_tokens"]) == (2000, 3000)
    assert row["cost_micros"] == round(1000 * 3.0 + 40 * 15.0 + 2000 * 3.75 + 3000 * 0.3)
    assert row["status"] == 200 and row["route"] == "messages"


def test_abandoned_stream_is_metered_with_what_was_produced(gw: Gateway, admin: Admin) -> None:
    key = admin.key("quitter")
    long_prompt = {"max_tokens": 200, "messages": [{"role": "user", "content": "word " * 60}]}
    with httpx.stream("POST", gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                      json={**long_prompt, "model": "tollway-mock-slow", "stream": True}) as resp:
        got = b""
        for chunk in resp.iter_bytes():
            got += chunk
            if got.count(b"content_block_delta") >= 5:
                break
    row = admin.ledger(key["id"], 1)[0]
    assert row["status"] == 499 and row["error_type"] == "stream_incomplete"
    assert 1 <= row["output_tokens"] < 60
    assert row["input_tokens"] > 0 and row["cost_micros"] > 0


def test_upstream_error_is_recorded_with_zero_tokens(gw: Gateway, admin: Admin, upstream: AnthropicEmulator) -> None:
    from tests.emulator import JSONReply

    upstream.script(JSONReply(529, {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}))
    key = admin.key("unlucky")
    resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                      json={**PROMPT, "model": "claude-sonnet-4-5-20250929"})
    assert resp.status_code == 529
    row = admin.ledger(key["id"], 1)[0]
    assert row["status"] == 529 and row["input_tokens"] == 0 and row["cost_micros"] == 0


def test_usage_report_groups_by_key_and_model(gw: Gateway, admin: Admin) -> None:
    key = admin.key("reported")
    for _ in range(3):
        httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                   json={**PROMPT, "model": "tollway-mock"})
    admin.ledger(key["id"], 3)
    by_key = {r["key"]: r for r in admin("GET", "/usage", params={"by": "key"})["data"]}
    assert by_key[key["id"]]["requests"] == 3
    assert by_key[key["id"]]["cost_micros"] == 3 * one_cost(gw, key["key"])
    by_model = {r["key"] for r in admin("GET", "/usage", params={"by": "model"})["data"]}
    assert "tollway-mock" in by_model
    today = admin("GET", "/usage", params={"by": "day"})["data"]
    assert today and today[-1]["key"] == time.strftime("%Y-%m-%d", time.gmtime())


def test_redis_unreachable_fails_closed_or_open(emulator: AnthropicEmulator, tmp_path: Path) -> None:
    for policy, expect in (("fail_closed", 529), ("fail_open", 200)):
        cfg = limits_config(emulator.base_url, backend="redis", redis_url="redis://127.0.0.1:1/0",
                            on_backend_error=policy, defaults={"key": {"rpm": 100}})
        gw = start_gateway(tmp_path / policy, cfg, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
        try:
            resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": gw.key},
                              json={**PROMPT, "model": "tollway-mock"})
            assert resp.status_code == expect, resp.text
            if expect == 529:
                assert resp.json()["error"]["type"] == "overloaded_error"
        finally:
            gw.stop()


@pytest.fixture(scope="module")
def redis_pair(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[list[Gateway]]:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"two-process limits need {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0)")
    # The Redis is shared (other runs, other tests): nothing is flushed; every key here is new, so
    # its counters are too.
    workdir = tmp_path_factory.mktemp("redis-pair")
    cfg = limits_config(emulator.base_url, backend="redis", redis_url=url)
    cfg["store"] = {"url": f"sqlite:///{workdir}/shared.db"}
    first = start_gateway(workdir / "a", cfg, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    second = start_gateway(workdir / "b", dict(cfg), env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield [first, second]
    first.stop()
    second.stop()


@pytest.fixture(scope="module")
def pair_admin(redis_pair: list[Gateway]) -> Admin:
    return Admin(redis_pair[0])


def test_two_processes_share_a_budget_through_redis(redis_pair: list[Gateway], pair_admin: Admin) -> None:
    admin = pair_admin
    probe = admin.key("probe2")
    cost = one_cost(redis_pair[0], probe["key"])
    key = admin.key("shared-budget", budget_usd=10 * cost / 1_000_000, budget_period="day")
    admin.caught_up(*redis_pair)  # both processes hold the new key and its limits
    statuses = [s for s, _ in burst(redis_pair, key["key"])]
    assert statuses.count(200) == 10 and statuses.count(429) == 40
    rows = admin.ledger(key["id"], 50)
    assert sum(r["cost_micros"] for r in rows) == 10 * cost


def test_two_processes_share_an_rpm_window_through_redis(redis_pair: list[Gateway], pair_admin: Admin) -> None:
    admin = pair_admin
    key = admin.key("shared-rpm", rpm=10)
    admin.caught_up(*redis_pair)
    started = time.monotonic()
    statuses = [s for s, _ in burst(redis_pair, key["key"])]
    # rpm is a token bucket refilled continuously (10 a minute: one every 6 s); on a loaded machine
    # the burst can take that long, and what refilled meanwhile is rightly admitted. Two
    # processes with buckets of their own would admit about 20.
    refilled = int(10 * (time.monotonic() - started) / 60)
    assert 10 <= statuses.count(200) <= 10 + refilled and statuses.count(200) + statuses.count(429) == 50


def test_cli_sets_limits_and_reports_usage(gw: Gateway, admin: Admin) -> None:
    key = admin.key("cli-reported")
    gw.cli("limits", "set", "key", key["id"], "--rpm", "2")
    admin.caught_up(gw)  # the CLI is another process: the gateway sees the change within its refresh
    statuses = [httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                           json={**PROMPT, "model": "tollway-mock"}).status_code for _ in range(3)]
    assert statuses == [200, 200, 429]
    shown = json.loads(gw.cli("limits", "get", "key", key["id"], "--json").stdout)
    assert shown["rpm"] == 2 and shown["budget_usd"] is None
    admin.ledger(key["id"], 3)
    rows = {r["key"]: r for r in json.loads(gw.cli("usage", "--by", "key", "--json").stdout)}
    assert rows[key["id"]]["requests"] == 3 and rows[key["id"]]["errors"] == 1
    csv_out = gw.cli("usage", "--by", "key", "--csv").stdout.splitlines()
    assert csv_out[0].startswith("key,requests,errors,")
    assert any(line.startswith(key["id"] + ",3,1,") for line in csv_out)
    gw.cli("limits", "clear", "key", key["id"])
    assert gw.cli("limits", "get", "key", key["id"], check=False).returncode == 1

"""The shared verdict layer (``dlp.shared_cache``): several processes share what DLP found, through Redis.

Against the real Redis (TOLLWAY_TEST_REDIS_URL, else 127.0.0.1:6379; every test writes under a key
prefix of its own and deletes it), and a dead port for the failure case: engines in this process
(each with its own local cache, as separate workers have), and two `tollway serve` processes over HTTP.
"""

from __future__ import annotations

import asyncio
import copy
import json
import logging
import os
import re
import time
import uuid
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, free_port, standard_config, start_gateway
from tests.emulator import AnthropicEmulator
from tests.test_dlp_cache import AWS, EMAIL, GH, REDACT_ALL, session, summary
from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig

REDIS_URL = os.environ.get("TOLLWAY_TEST_REDIS_URL") or "redis://127.0.0.1:6379/0"


def redis_or_skip() -> Any:
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=1)
    try:
        client.ping()
    except redis.exceptions.ConnectionError:
        pytest.skip(f"no Redis at {REDIS_URL} (set TOLLWAY_TEST_REDIS_URL)")
    return client


@pytest.fixture
def prefix() -> Iterator[str]:
    """A key prefix of this test's own; its keys are deleted afterwards."""
    client = redis_or_skip()
    value = f"tollway-test:dlp:{uuid.uuid4().hex}:"
    yield value
    keys = list(client.scan_iter(match=value + "*", count=1000))
    if keys:
        client.delete(*keys)


def config(prefix: str, url: str = REDIS_URL, **extra: Any) -> DlpConfig:
    # These tests are about what is shared, not about Redis's speed: a generous time limit, so that a loaded CI
    # machine does not turn a slow write into a miss (the 50 ms default and an unreachable Redis are tested below).
    shared = {"redis_url": url, "key_prefix": prefix, "timeout_ms": 5000}
    return DlpConfig(**{**REDACT_ALL, **extra}, shared_cache=shared)


async def inspect(engine: DlpEngine, body: dict[str, Any]) -> Any:
    result = await engine.ainspect(copy.deepcopy(body))
    assert engine.shared is not None
    await engine.shared.drain()  # the writes run in the background; wait for them here
    return result


def test_a_second_process_takes_the_verdicts_from_redis_and_does_not_rescan(prefix: str) -> None:
    body = session(30, secret_at=7)

    async def run() -> None:
        first, second = DlpEngine(config(prefix)), DlpEngine(config(prefix))  # separate local caches
        a = await inspect(first, body)
        assert first.scanned_chars > 10_000 and first.shared is not None and first.shared.writes > 50
        b = await inspect(second, body)
        assert second.scanned_chars == 0 and second.scanned_units == 0
        assert second.shared is not None and second.shared.hits == first.shared.writes
        assert summary(a) == summary(b)  # the same findings and the same forwarded bytes
        assert AWS not in summary(b)[3] and GH not in json.dumps(b.body)
        # One character changed in one tool result: that unit alone is scanned again.
        changed = copy.deepcopy(body)
        changed["messages"][-1]["content"][0]["content"] += "!"
        c = await inspect(second, changed)
        assert second.scanned_units == 1
        assert [f.kind for f in c.findings].count("aws_access_key") == [f.kind for f in a.findings].count(
            "aws_access_key")
        await first.aclose()
        await second.aclose()

    asyncio.run(run())


def test_redis_holds_positions_and_kinds_with_a_ttl_never_the_text(prefix: str) -> None:
    client = redis_or_skip()

    async def run() -> None:
        engine = DlpEngine(config(prefix))
        await inspect(engine, session(12, secret_at=4))
        await engine.aclose()

    asyncio.run(run())
    keys = list(client.scan_iter(match=prefix + "*"))
    assert len(keys) > 20
    found = 0
    for key in keys:
        assert re.fullmatch(re.escape(prefix) + "[0-9a-f]{32}:[0-9a-f]{32}", key.decode())
        assert 0 < client.ttl(key) <= 86_400
        raw = client.get(key)
        for secret in (AWS, GH, EMAIL, "module", "Reading"):
            assert secret.encode() not in raw
        for item in orjson.loads(raw):
            i, s, e, kind = item
            assert isinstance(i, int) and isinstance(s, int) and isinstance(e, int) and kind in (
                "aws_access_key", "github_token", "email")
            found += 1
    assert found > 10


def test_a_policy_change_reads_and_writes_other_keys(prefix: str) -> None:
    body = session(8)

    async def run() -> None:
        first = DlpEngine(config(prefix))
        await inspect(first, body)
        stricter = DlpEngine(config(prefix, policies={"default": {"kinds": {"email": "block"}}}))
        result = await inspect(stricter, body)
        assert stricter.shared is not None and stricter.shared.hits == 0 and stricter.scanned_units > 10
        assert result.blocked and result.blocked_kinds == ["email"]
        assert stricter.fingerprint != first.fingerprint
        await first.aclose()
        await stricter.aclose()

    asyncio.run(run())


def test_a_tampered_entry_is_ignored_and_the_unit_scanned(prefix: str) -> None:
    client = redis_or_skip()
    body = session(3)

    async def run() -> tuple[Any, Any, int]:
        first = DlpEngine(config(prefix))
        a = await inspect(first, body)
        await first.aclose()
        for key in client.scan_iter(match=prefix + "*"):  # positions past the end of every string, and junk
            client.set(key, b'[[0, 0, 99999999, "email"]]' if int(key[-1:], 16) % 2 else b"not json")
        second = DlpEngine(config(prefix))
        b = await inspect(second, body)
        units = second.scanned_units
        await second.aclose()
        return a, b, units

    a, b, units = asyncio.run(run())
    assert units > 5
    assert summary(a) == summary(b)


def test_a_dead_redis_never_fails_a_scan_and_is_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    dead = f"redis://127.0.0.1:{free_port()}/0"  # nothing listens there
    body = session(6)
    local = DlpEngine(DlpConfig(**REDACT_ALL)).inspect(copy.deepcopy(body))

    async def run() -> None:
        engine = DlpEngine(DlpConfig(**REDACT_ALL, shared_cache={"redis_url": dead, "retry_seconds": 60}))
        shared = engine.shared
        assert shared is not None
        with caplog.at_level(logging.WARNING, logger="tollway.governance.dlp.shared"):
            for turn in range(3):
                result = await inspect(engine, session(6 + turn))
                if turn == 0:
                    assert summary(result) == summary(local)
        assert shared.errors == 1 and shared.skipped > 0 and not shared.available  # one failure, then it rests
        warnings = [r for r in caplog.records if "unavailable" in r.getMessage()]
        assert len(warnings) == 1 and "ConnectionError" in warnings[0].getMessage()
        await engine.aclose()

    asyncio.run(run())


# --- two gateway processes over HTTP ----------------------------------------------------------------


def metric(gw: Gateway, name: str, labels: str = "") -> float:
    text = httpx.get(gw.base_url + "/metrics", timeout=10).text
    m = re.search(rf"^{name}{re.escape(labels)} (\S+)$", text, re.M)
    assert m is not None, name
    return float(m.group(1))


@pytest.fixture(scope="module")
def pair(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Gateway, ...]]:
    client = redis_or_skip()
    prefix = f"tollway-test:dlp:{uuid.uuid4().hex}:"
    workdir = tmp_path_factory.mktemp("dlp-shared")
    cfg = standard_config(emulator.base_url)
    cfg["dlp"] = {"shared_cache": {"redis_url": REDIS_URL, "key_prefix": prefix, "timeout_ms": 5000}}  # see config()
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY}
    dead = standard_config(emulator.base_url)
    dead["dlp"] = {"shared_cache": {"redis_url": f"redis://127.0.0.1:{free_port()}/0"}}
    with ThreadPoolExecutor(3) as pool:  # started side by side: each takes seconds on a loaded machine
        gateways = tuple(pool.map(lambda a: start_gateway(workdir / a[0], a[1], env=env),
                                  [("a", cfg), ("b", copy.deepcopy(cfg)), ("dead", dead)]))
    yield gateways
    for gw in gateways:
        gw.stop()
    keys = list(client.scan_iter(match=prefix + "*", count=1000))
    if keys:
        client.delete(*keys)


def send(gw: Gateway, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(gw.base_url + "/v1/messages", json=body, timeout=30,
                      headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"})


def forwarded(emulator: AnthropicEmulator) -> str:
    return emulator.received[-1].body.decode()


def test_two_gateway_processes_share_verdicts_and_the_second_does_not_rescan(
        pair: tuple[Gateway, ...], emulator: AnthropicEmulator) -> None:
    a, b, _ = pair
    body = {**session(20, secret_at=3), "model": "claude-sonnet-4-5-20250929"}
    emulator.reset()
    assert send(a, body).status_code == 200
    first_forward = forwarded(emulator)
    assert GH not in first_forward and AWS not in first_forward and "[REDACTED:" in first_forward
    deadline = time.monotonic() + 10  # A writes in the background: wait until its writes are done
    while metric(a, "tollway_dlp_shared_writes_total") < 40 and time.monotonic() < deadline:
        time.sleep(0.05)
    before = metric(b, "tollway_dlp_scanned_chars_total")
    assert send(b, body).status_code == 200
    assert metric(b, "tollway_dlp_scanned_chars_total") == before  # nothing scanned: every unit came from Redis
    assert metric(b, "tollway_dlp_cache_lookups_total", '{layer="shared",result="hit"}') >= 40
    assert forwarded(emulator) == first_forward  # the same forwarded bytes as the process that scanned


def test_a_gateway_whose_redis_is_down_still_scans_and_answers(
        pair: tuple[Gateway, ...], emulator: AnthropicEmulator) -> None:
    dead = pair[2]
    body = {**session(4, secret_at=2), "model": "claude-sonnet-4-5-20250929"}
    emulator.reset()
    for _ in range(2):
        assert send(dead, body).status_code == 200
        assert GH not in forwarded(emulator) and "[REDACTED:" in forwarded(emulator)
    assert metric(dead, "tollway_dlp_cache_lookups_total", '{layer="shared",result="error"}') == 1
    assert metric(dead, "tollway_dlp_shared_available") == 0

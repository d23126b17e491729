"""Resilience with the upstream emulator made to misbehave: retries, breakers, fallbacks, slow
first byte and slow connect, client disconnects, SIGTERM with streams in flight. (Disconnects of
non-streaming requests on every surface: test_disconnect.py.)"""

from __future__ import annotations

import json
import signal
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, free_port, start_gateway
from tests.emulator import AnthropicEmulator, JSONReply, SSEReply, default_stream_events, sse_event

BODY: dict[str, Any] = {"max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
RATE = {"type": "error", "error": {"type": "rate_limit_error", "message": "slow down"}}


def upstream(url: str, model: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"provider": "anthropic", "base_url": url, "api_key": "${TEST_UPSTREAM_KEY}",
                           "connect_timeout": 1, "read_timeout": 2}
    if model:
        out["model"] = model
    return out


@pytest.fixture(scope="module")
def black_hole() -> Iterator[str]:
    """The URL of a port where TCP connects hang, as to a host that drops SYNs (slow connect).

    A listening socket with a backlog of 0 that never accepts: one connection, made here, fills
    its accept queue, and Linux then drops further SYNs instead of answering them, so a client's
    connect waits in SYN retransmission until its own timeout. Checked here, so a system where
    this does not hold fails loudly instead of testing nothing."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(0)
    port = listener.getsockname()[1]
    filler = socket.create_connection(("127.0.0.1", port), timeout=1)
    with socket.socket() as probe:
        probe.settimeout(0.3)
        with pytest.raises(TimeoutError):
            probe.connect(("127.0.0.1", port))
    yield f"http://127.0.0.1:{port}"
    filler.close()
    listener.close()


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, black_hole: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    dead = f"http://127.0.0.1:{free_port()}"
    config = {
        "server": {"ping_interval": 5},
        "retries": {"max_attempts": 3, "base_delay": 0.05, "max_delay": 0.2, "breaker_failures": 3,
                    "breaker_cooldown": 1.5},
        "models": [
            {"id": "claude-sonnet-4-5-20250929", "upstream": upstream(emulator.base_url)},
            {"id": "all-down", "upstream": upstream(dead), "fallbacks": ["claude-sonnet-4-5-20250929"]},
            {"id": "tollway-mock-slow", "upstream": {"provider": "mock", "chunk_delay_ms": 50}},
            {"id": "slow-first-byte", "upstream": {**upstream(emulator.base_url), "first_byte_timeout": 0.3}},
            {"id": "slow-connect", "upstream": {**upstream(black_hole), "connect_timeout": 0.5}},
        ],
    }
    gateway = start_gateway(tmp_path_factory.mktemp("resilience"), config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def balanced_gw(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A model with a dead and a live deployment, on a gateway whose breakers stay open far longer
    than the test runs: with `gw`'s 1.5 s cooldown a slow machine reaches the half-open probe
    mid-test, and which request carries the probe is then a matter of timing."""
    dead = f"http://127.0.0.1:{free_port()}"
    config = {
        "retries": {"max_attempts": 3, "base_delay": 0.05, "max_delay": 0.2, "breaker_failures": 3,
                    "breaker_cooldown": 600},
        "models": [{"id": "balanced", "deployments": [
            {"name": "dead-one", "weight": 1, "upstream": upstream(dead, "claude-dead")},
            {"name": "live-one", "weight": 1, "upstream": upstream(emulator.base_url, "claude-live")},
        ]}],
    }
    gateway = start_gateway(tmp_path_factory.mktemp("balanced"), config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gateway
    gateway.stop()


def admin_client(gateway: Gateway) -> httpx.Client:
    key = json.loads(gateway.cli("keys", "create", "--name", "ops", "--admin", "--json").stdout)["key"]
    return httpx.Client(base_url=gateway.base_url + "/admin/v1", headers={"x-api-key": key}, timeout=10)


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> httpx.Client:
    return admin_client(gw)


def ledger_row(admin: httpx.Client, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for row in admin.get("/usage/requests", params={"limit": 200}).json():
            if row["request_id"] == request_id:
                return dict(row)
        time.sleep(0.1)
    raise AssertionError(f"no ledger row for {request_id}")


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)


def test_429_with_retry_after_is_retried_after_the_wait(gw: Gateway, upstream_emu: AnthropicEmulator,
                                                        admin: httpx.Client) -> None:
    upstream_emu.script(JSONReply(429, RATE, headers={"retry-after": "0.4"}))
    started = time.monotonic()
    resp = client(gw).messages.with_raw_response.create(model="claude-sonnet-4-5-20250929", **BODY)
    assert resp.http_response.status_code == 200
    assert time.monotonic() - started >= 0.4
    assert len(upstream_emu.received) == 2
    row = ledger_row(admin, resp.http_response.headers["request-id"])
    assert row["attempts"] == 2 and row["status"] == 200 and row["deployment"] == "claude-sonnet-4-5-20250929"


def test_529_twice_then_success(gw: Gateway, upstream_emu: AnthropicEmulator) -> None:
    upstream_emu.script(JSONReply(529, OVERLOADED), JSONReply(529, OVERLOADED))
    msg = client(gw).messages.create(model="claude-sonnet-4-5-20250929", **BODY)
    assert msg.content[0].text == "Hello from the emulator." and len(upstream_emu.received) == 3


def test_retries_are_bounded_and_the_last_error_is_passed_on(gw: Gateway, upstream_emu: AnthropicEmulator) -> None:
    upstream_emu.script(*[JSONReply(529, OVERLOADED)] * 3)
    with pytest.raises(anthropic.InternalServerError) as exc:
        client(gw).messages.create(model="claude-sonnet-4-5-20250929", **BODY)
    assert exc.value.status_code == 529 and len(upstream_emu.received) == 3


def test_a_model_with_nowhere_else_to_go_is_never_refused_by_its_breaker(gw: Gateway,
                                                                         upstream_emu: AnthropicEmulator) -> None:
    """Issue 12: upstream blips opened a one-deployment model's breaker, and the next good request
    got `503 … circuit open` for everyone. A breaker exists to fail over: with one deployment and
    no fallback the request goes to the upstream, whatever the breaker thinks."""
    upstream_emu.script(*[JSONReply(529, OVERLOADED)] * 6)
    for _ in range(2):  # two requests, each retried three times: six failures, threshold 3
        with pytest.raises(anthropic.InternalServerError):
            client(gw).messages.create(model="claude-sonnet-4-5-20250929", **BODY)
    assert len(upstream_emu.received) == 6
    msg = client(gw).messages.create(model="claude-sonnet-4-5-20250929", **BODY)
    assert msg.content and len(upstream_emu.received) == 7


def test_slow_first_byte_times_out_cleanly_after_retries(gw: Gateway, upstream_emu: AnthropicEmulator) -> None:
    upstream_emu.script(*[JSONReply(200, {"late": True}, delay=1.0)] * 3)
    resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": gw.key},
                      json={**BODY, "model": "slow-first-byte"}, timeout=10)
    assert resp.status_code == 504
    assert resp.json()["error"]["type"] == "timeout_error"
    assert len(upstream_emu.received) == 3


def test_slow_connect_times_out_cleanly_after_retries(gw: Gateway, admin: httpx.Client) -> None:
    """An upstream whose TCP connect hangs (`black_hole`): each attempt gives up at the model's
    connect_timeout (0.5 s), the retries stay within their budget (3 attempts, backoff at most
    0.05 + 0.1 s here), and the client gets a clean 504 timeout_error in the Anthropic envelope,
    recorded as such."""
    started = time.monotonic()
    with pytest.raises(anthropic.GatewayTimeoutError) as exc:
        anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0, timeout=10).messages.create(
            model="slow-connect", **BODY)
    assert time.monotonic() - started >= 3 * 0.5
    assert exc.value.status_code == 504
    assert isinstance(exc.value.body, dict) and exc.value.body["type"] == "error"
    assert exc.value.body["error"]["type"] == "timeout_error"
    row = ledger_row(admin, exc.value.response.headers["request-id"])
    assert row["status"] == 504 and row["error_type"] == "timeout_error" and row["attempts"] == 3
    # The gateway's own time (client-side timing would include the SDK's first-call imports).
    assert 1500 <= row["latency_ms"] < 1500 + 150 + 1000, row["latency_ms"]


def test_client_errors_are_not_retried(gw: Gateway, upstream_emu: AnthropicEmulator) -> None:
    upstream_emu.script(JSONReply(400, {"type": "error", "error": {"type": "invalid_request_error",
                                                                   "message": "bad"}}))
    with pytest.raises(anthropic.BadRequestError):
        client(gw).messages.create(model="claude-sonnet-4-5-20250929", **BODY)
    assert len(upstream_emu.received) == 1


def test_a_dead_deployment_is_skipped_and_its_breaker_opens(balanced_gw: Gateway,
                                                            upstream_emu: AnthropicEmulator) -> None:
    rows = []
    with admin_client(balanced_gw) as admin:
        for _ in range(20):  # the dead one is picked first about half the time: 3 failures come quickly
            resp = client(balanced_gw).messages.with_raw_response.create(model="balanced", **BODY)
            assert resp.http_response.status_code == 200
            rows.append(ledger_row(admin, resp.http_response.headers["request-id"]))
    # Every request reached the live deployment, renamed for it; the dead one cost retries only
    # until its breaker opened (3 failures), after which requests go straight to the live one.
    assert {r.json["model"] for r in upstream_emu.received} == {"claude-live"}
    assert all(row["deployment"] == "live-one" for row in rows)
    assert sum(row["attempts"] - 1 for row in rows) == 3  # exactly the three failures that open it
    metrics = httpx.get(balanced_gw.base_url + "/metrics").text
    assert 'tollway_breaker_open{deployment="dead-one"} 1.0' in metrics
    assert rows[-1]["attempts"] == 1


def test_fallback_model_answers_when_all_deployments_fail(gw: Gateway, upstream_emu: AnthropicEmulator,
                                                          admin: httpx.Client) -> None:
    resp = client(gw).messages.with_raw_response.create(model="all-down", **BODY)
    assert resp.http_response.status_code == 200
    assert resp.parse().model == "all-down"
    assert upstream_emu.received[-1].json["model"] == "claude-sonnet-4-5-20250929"
    row = ledger_row(admin, resp.http_response.headers["request-id"])
    assert row["deployment"] == "claude-sonnet-4-5-20250929" and row["attempts"] >= 2


def test_stream_is_not_retried_after_it_started(gw: Gateway, upstream_emu: AnthropicEmulator) -> None:
    events = [sse_event(e) for e in default_stream_events("claude-sonnet-4-5-20250929")]
    upstream_emu.script(SSEReply([*events[:2], sse_event({"type": "error", "error": OVERLOADED["error"]})]))
    with httpx.stream("POST", gw.base_url + "/v1/messages", headers={"x-api-key": gw.key},
                      json={**BODY, "model": "claude-sonnet-4-5-20250929", "stream": True}) as resp:
        body = resp.read()
    assert resp.status_code == 200 and b"event: error" in body
    assert len(upstream_emu.received) == 1


def test_client_disconnect_cancels_the_upstream_within_a_second(gw: Gateway, upstream_emu: AnthropicEmulator,
                                                                admin: httpx.Client) -> None:
    events = [sse_event(e) for e in default_stream_events("claude-sonnet-4-5-20250929", text="x " * 40)]
    upstream_emu.script(SSEReply(events, delay=0.2))
    with httpx.stream("POST", gw.base_url + "/v1/messages", headers={"x-api-key": gw.key},
                      json={**BODY, "model": "claude-sonnet-4-5-20250929", "stream": True}) as resp:
        rid = resp.headers["request-id"]
        for chunk in resp.iter_bytes():
            if b"content_block_delta" in chunk:
                break
    left = time.monotonic()
    upstream_emu.wait_for_disconnects(1, timeout=3)
    assert time.monotonic() - left < 1.0
    row = ledger_row(admin, rid)
    assert row["status"] == 499


@pytest.fixture
def upstream_emu(emulator: AnthropicEmulator) -> AnthropicEmulator:
    emulator.reset()
    return emulator


def test_sigterm_lets_streams_in_flight_finish(tmp_path: Path) -> None:
    gw = start_gateway(tmp_path / "term", {"server": {"shutdown_grace": 10},
                                           "models": [{"id": "slow", "upstream": {"provider": "mock",
                                                                                  "chunk_delay_ms": 100}}]})
    results: list[bytes] = []
    answering = threading.Semaphore(0)

    def stream() -> None:
        with httpx.stream("POST", gw.base_url + "/v1/messages", headers={"x-api-key": gw.key}, timeout=30,
                          json={"model": "slow", "max_tokens": 100, "stream": True,
                                "messages": [{"role": "user", "content": "one two three four five six"}]}) as r:
            answering.release()  # the answer has begun: this stream is in flight
            results.append(r.read())

    def refuses_connections() -> bool:
        with socket.socket() as s:
            return s.connect_ex(("127.0.0.1", int(gw.base_url.rsplit(":", 1)[1]))) != 0

    threads = [threading.Thread(target=stream) for _ in range(3)]
    for t in threads:
        t.start()
    for _ in threads:  # all three in flight before the signal (a fixed sleep raced a loaded machine)
        assert answering.acquire(timeout=30), "a stream never began"
    gw.proc.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + 5
    while not (refused := refuses_connections()) and time.monotonic() < deadline:  # no new connections
        time.sleep(0.05)
    for t in threads:
        t.join(timeout=20)
    gw.proc.wait(timeout=20)
    assert refused
    assert len(results) == 3 and all(r.rstrip().endswith(b'{"type":"message_stop"}') for r in results)
    exported = gw.cli("audit", "export").stdout
    assert exported.count('"route":"messages"') == 3

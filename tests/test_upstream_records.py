"""What the operator learns about upstream failures (issue 12): the upstream's own request id is
returned to the client (`upstream-request-id`, beside Tollway's `request-id`) and recorded in
the usage row and the audit record, on success, on errors and on streams; every failed attempt
is logged (never a key or a prompt); breakers hear of a request's failures once, and an
upstream that says when to come back is not counted as broken. Also the header checks of
issue 17 item 13: duplicate credential headers and non-JSON bodies are refused."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, start_gateway
from tests.emulator import AnthropicEmulator, JSONReply, SSEReply, default_stream_events, sse_event
from tests.test_disconnect import gateway_log
from tests.test_resilience import OVERLOADED, admin_client, ledger_row, upstream

BODY: dict[str, Any] = {"max_tokens": 5, "messages": [{"role": "user", "content": "a secret prompt"}]}


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "retries": {"max_attempts": 3, "base_delay": 0.01, "max_delay": 0.02, "breaker_failures": 2,
                    "breaker_cooldown": 600},
        "models": [
            {"id": "solo", "upstream": upstream(emulator.base_url, "claude-solo")},
            {"id": "pair", "deployments": [
                {"name": "pair-a", "weight": 1, "upstream": upstream(emulator.base_url, "claude-a")},
                {"name": "pair-b", "weight": 1, "upstream": upstream(emulator.base_url, "claude-b")},
            ]},
        ],
    }
    gateway = start_gateway(tmp_path_factory.mktemp("records"), config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    os.set_blocking(gateway.proc.stdout.fileno(), False)  # type: ignore[union-attr]  # gateway_log reads it
    yield gateway
    os.set_blocking(gateway.proc.stdout.fileno(), True)  # type: ignore[union-attr]
    gateway.stop()


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> httpx.Client:
    return admin_client(gw)


@pytest.fixture
def emu(emulator: AnthropicEmulator) -> AnthropicEmulator:
    emulator.reset()
    return emulator


def audit_record(admin: httpx.Client, request_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        for r in admin.get("/audit", params={"limit": 100, "kind": "request"}).json()["data"]:
            if r.get("request_id") == request_id:
                return dict(r)
        time.sleep(0.1)
    raise AssertionError(f"no audit record for {request_id}")


def post(gw: Gateway, body: dict[str, Any], **headers: str) -> httpx.Response:
    return httpx.post(gw.base_url + "/v1/messages", json=body, timeout=10,
                      headers={"x-api-key": gw.key, **headers})


def assert_recorded(admin: httpx.Client, resp: httpx.Response) -> str:
    upstream_id = resp.headers.get("upstream-request-id")
    assert upstream_id and upstream_id.startswith("req_") and upstream_id != resp.headers["request-id"]
    assert ledger_row(admin, resp.headers["request-id"])["upstream_request_id"] == upstream_id
    assert audit_record(admin, resp.headers["request-id"])["upstream_request_id"] == upstream_id
    return upstream_id


def test_upstream_request_id_on_success(gw: Gateway, emu: AnthropicEmulator, admin: httpx.Client) -> None:
    resp = post(gw, {**BODY, "model": "solo"})
    assert resp.status_code == 200
    assert_recorded(admin, resp)


def test_upstream_request_id_on_an_error(gw: Gateway, emu: AnthropicEmulator, admin: httpx.Client) -> None:
    emu.script(JSONReply(400, {"type": "error", "error": {"type": "invalid_request_error", "message": "no"}}))
    resp = post(gw, {**BODY, "model": "solo"})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "no"  # the upstream's envelope still passes unchanged
    assert_recorded(admin, resp)


def test_upstream_request_id_on_a_stream(gw: Gateway, emu: AnthropicEmulator, admin: httpx.Client) -> None:
    emu.script(SSEReply([sse_event(e) for e in default_stream_events("claude-solo")]))
    with httpx.stream("POST", gw.base_url + "/v1/messages", json={**BODY, "model": "solo", "stream": True},
                      headers={"x-api-key": gw.key}, timeout=10) as resp:
        resp.read()
    assert resp.status_code == 200 and b"message_stop" in resp.content
    assert_recorded(admin, resp)


def test_failed_attempts_are_logged_without_secrets(gw: Gateway, emu: AnthropicEmulator) -> None:
    emu.script(*[JSONReply(529, OVERLOADED)] * 3)
    resp = post(gw, {**BODY, "model": "solo"})
    assert resp.status_code == 529
    deadline = time.monotonic() + 5
    lines: list[dict[str, Any]] = []
    while time.monotonic() < deadline and len(lines) < 3:
        lines = [orjson.loads(line) for line in gateway_log(gw).splitlines()
                 if line.startswith("{") and '"upstream attempt failed"' in line
                 and resp.headers["request-id"] in line]
        time.sleep(0.05)
    assert [(x["attempt"], x["status"], x["deployment"], x["model"], x["level"]) for x in lines] == [
        (n, 529, "solo", "claude-solo", "warning") for n in (1, 2, 3)]
    assert all(x["upstream_request_id"].startswith("req_") for x in lines)
    log = gateway_log(gw)
    assert UPSTREAM_KEY not in log and gw.key not in log and "a secret prompt" not in log


def breaker_open(gw: Gateway) -> list[str]:
    text = httpx.get(gw.base_url + "/metrics", timeout=5).text
    return [line for line in text.splitlines() if line.startswith("tollway_breaker_open{") and line.endswith(" 1.0")]


def test_a_requests_retries_count_once_against_a_breaker(gw: Gateway, emu: AnthropicEmulator) -> None:
    """Three 529s in one request reach both deployments of `pair`, one of them twice. With a
    threshold of 2, counting per attempt opened that one's breaker; per request, neither opens."""
    emu.script(*[JSONReply(529, OVERLOADED)] * 3)
    with pytest.raises(anthropic.InternalServerError):
        anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0).messages.create(
            model="pair", **BODY)
    assert len(emu.received) == 3
    assert breaker_open(gw) == []


def test_busy_with_retry_after_is_not_a_deployment_failure(gw: Gateway, emu: AnthropicEmulator) -> None:
    emu.script(*[JSONReply(529, OVERLOADED, headers={"retry-after": "0"})] * 6)
    for _ in range(2):
        assert post(gw, {**BODY, "model": "pair"}).status_code == 529
    assert len(emu.received) == 6
    assert breaker_open(gw) == []


def test_an_unreachable_deployment_is_named_in_the_error(tmp_path_factory: pytest.TempPathFactory) -> None:
    from tests.conftest import free_port

    dead = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(tmp_path_factory.mktemp("dead"), {
        "retries": {"max_attempts": 1},
        "models": [{"id": "gone", "deployments": [{"name": "dc-east", "weight": 1, "upstream": upstream(dead)}]}]},
        env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        resp = post(gateway, {**BODY, "model": "gone"})
        assert resp.status_code == 502
        message = resp.json()["error"]["message"]
        assert "model gone" in message and "deployment dc-east" in message
    finally:
        gateway.stop()


@pytest.mark.parametrize("header", ["x-api-key", "authorization"])
def test_duplicate_credential_headers_are_refused(gw: Gateway, header: str) -> None:
    value = gw.key if header == "x-api-key" else f"Bearer {gw.key}"
    resp = httpx.post(gw.base_url + "/v1/messages", content=orjson.dumps({**BODY, "model": "solo"}), timeout=10,
                      headers=[(header, value), (header, value), ("content-type", "application/json")])
    assert resp.status_code == 401
    assert resp.json()["error"]["type"] == "authentication_error" and "ambiguous" in resp.json()["error"]["message"]
    admin_resp = httpx.get(gw.base_url + "/admin/v1/keys", headers=[(header, value), (header, value)], timeout=10)
    assert admin_resp.status_code == 401


@pytest.mark.parametrize("path,envelope", [("/v1/messages", "anthropic"), ("/v1/chat/completions", "openai")])
def test_a_body_that_is_not_json_is_415_in_the_dialects_envelope(gw: Gateway, path: str, envelope: str) -> None:
    resp = httpx.post(gw.base_url + path, content=b"model=solo", timeout=10,
                      headers={"x-api-key": gw.key, "content-type": "application/x-www-form-urlencoded"})
    assert resp.status_code == 415
    body = resp.json()
    if envelope == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    else:
        assert body["error"]["type"] == "invalid_request_error" and body["error"]["code"] == "unsupported_media_type"
    assert "content-type" in body["error"]["message"]
    ok = httpx.post(gw.base_url + path, json={**BODY, "model": "solo"}, timeout=10,
                    headers={"x-api-key": gw.key, "content-type": "application/json; charset=utf-8"})
    assert ok.status_code == 200


def test_a_stream_the_upstream_cut_is_recorded_as_an_upstream_error(gw: Gateway, emu: AnthropicEmulator,
                                                                    admin: httpx.Client) -> None:
    events = [sse_event(e) for e in default_stream_events("claude-solo")]
    emu.script(SSEReply(events[:3]))  # ends cleanly, but before message_stop
    with httpx.stream("POST", gw.base_url + "/v1/messages", json={**BODY, "model": "solo", "stream": True},
                      headers={"x-api-key": gw.key}, timeout=10) as resp:
        resp.read()
    row = ledger_row(admin, resp.headers["request-id"])
    assert (row["status"], row["error_type"]) == (502, "api_error")


def test_a_fallback_the_caller_may_not_use_is_skipped(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Issue 17 item 7: a key granted only `open-model` was served by `secret-model` when
    `open-model` fell back to it. Every model a request may reach is checked against the grants;
    the skip is logged."""
    from tests.conftest import free_port
    from tests.test_access import Admin

    dead = f"http://127.0.0.1:{free_port()}"
    gateway = start_gateway(tmp_path_factory.mktemp("fallback-grants"), {
        "retries": {"max_attempts": 1},
        "models": [{"id": "open-model", "upstream": upstream(dead), "fallbacks": ["secret-model"]},
                   {"id": "secret-model", "upstream": {"provider": "mock"}}]},
        env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    os.set_blocking(gateway.proc.stdout.fileno(), False)  # type: ignore[union-attr]
    try:
        admin = Admin(gateway)
        admin("POST", "/groups", 201, json={"name": "open-only", "grants": ["open-model"]})
        admin("POST", "/groups", 201, json={"name": "everything", "grants": ["*"]})
        limited = admin("POST", "/keys", 201, json={"name": "limited", "group_id": "open-only"})["key"]
        full = admin("POST", "/keys", 201, json={"name": "full", "group_id": "everything"})["key"]
        body = {**BODY, "model": "open-model"}
        resp = httpx.post(gateway.base_url + "/v1/messages", json=body, headers={"x-api-key": limited}, timeout=10)
        assert resp.status_code == 502 and "deployment open-model" in resp.json()["error"]["message"]
        deadline = time.monotonic() + 5
        while '"fallback skipped' not in gateway_log(gateway) and time.monotonic() < deadline:
            time.sleep(0.05)
        skipped = [orjson.loads(line) for line in gateway_log(gateway).splitlines() if '"fallback skipped' in line]
        assert skipped and skipped[-1]["fallback"] == "secret-model" and skipped[-1]["level"] == "warning"
        # A key that may use the fallback still gets it.
        ok = httpx.post(gateway.base_url + "/v1/messages", json=body, headers={"x-api-key": full}, timeout=10)
        assert ok.status_code == 200
    finally:
        os.set_blocking(gateway.proc.stdout.fileno(), True)  # type: ignore[union-attr]
        gateway.stop()

"""DLP through real HTTP on every route, streaming included, and through Claude Code: what the
upstream sees, what the client gets, what the audit keeps (kinds and places, never values)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, start_gateway
from tests.emulator import AnthropicEmulator
from tests.test_node_clients import run_claude

AWS = "AKIAQWERTYUIOPASDFGH"
EMAIL = "jane.doe@example.org"
SONNET = "claude-sonnet-4-5-20250929"


def config(upstream_url: str, dlp: dict[str, Any] | None = None) -> dict[str, Any]:
    cfg: dict[str, Any] = {
        "server": {"key_refresh_interval": 0.2},
        "models": [
            {"id": "tollway-mock", "upstream": {"provider": "mock"}},
            {"id": SONNET, "upstream": {"provider": "anthropic", "base_url": upstream_url,
                                        "api_key": "${TEST_UPSTREAM_KEY}"}},
        ],
    }
    if dlp is not None:
        cfg["dlp"] = dlp
    return cfg


@pytest.fixture(scope="module")
def redacting(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """The default policy: secrets are redacted, personal data is logged."""
    gw = start_gateway(tmp_path_factory.mktemp("dlp-default"), config(emulator.base_url),
                       env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def blocking(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    policy = {"policies": {"default": {"actions": {"secrets": "block", "pii": "log"}},
                           "groups": {"contractors": {"actions": {"pii": "block"}}}},
              "custom": [{"name": "project_codename", "pattern": "PROJECT-[A-Z]{5}", "action": "redact"}]}
    gw = start_gateway(tmp_path_factory.mktemp("dlp-block"), config(emulator.base_url, policy),
                       env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gw
    gw.stop()


def admin_key(gw: Gateway) -> str:
    return str(json.loads(gw.cli("keys", "create", "--name", "ops", "--admin", "--json").stdout)["key"])


def audit_of(gw: Gateway, request_id: str) -> dict[str, Any]:
    key = admin_key(gw)
    # Records are written behind the request, and the first admin call loads the admin API: on a
    # loaded machine that took longer than httpx's default 5 s timeout once.
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        data = httpx.get(gw.base_url + "/admin/v1/audit", params={"request_id": request_id},
                         headers={"x-api-key": key}, timeout=30).json()["data"]
        if data:
            return dict(data[0])
        time.sleep(0.1)
    raise AssertionError("no audit record")


def body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": SONNET, "max_tokens": 20, "messages": [{"role": "user", "content": text}], **extra}


def send(gw: Gateway, path: str, payload: dict[str, Any]) -> httpx.Response:
    with httpx.stream("POST", gw.base_url + path, json=payload, headers={"x-api-key": gw.key}) as resp:
        resp.read()
        return resp


@pytest.mark.parametrize(("path", "stream"), [("/v1/messages", False), ("/v1/messages", True),
                                               ("/v1/messages/count_tokens", False)],
                         ids=["messages", "messages-stream", "count_tokens"])
def test_secrets_are_redacted_before_the_upstream_on_every_route(redacting: Gateway, upstream: AnthropicEmulator,
                                                                 path: str, stream: bool) -> None:
    payload = body(f"deploy with {AWS} then {AWS} again, mail {EMAIL}", **({"stream": True} if stream else {}))
    if path.endswith("count_tokens"):
        payload.pop("max_tokens")
    resp = send(redacting, path, payload)
    assert resp.status_code == 200
    seen = upstream.received[-1].body.decode()
    assert AWS not in seen
    assert seen.count("[REDACTED:aws_access_key:1]") == 2  # the same value, the same placeholder
    assert EMAIL in seen  # personal data is only logged under the default policy
    record = audit_of(redacting, resp.headers["request-id"])
    kinds = {f["kind"]: f for f in record["dlp"]}
    assert kinds["aws_access_key"]["action"] == "redact" and kinds["aws_access_key"]["count"] == 2
    assert kinds["email"]["action"] == "log" and kinds["email"]["where"] == "messages[0].content"
    assert AWS not in json.dumps(record) and EMAIL not in json.dumps(record)


def test_every_place_the_upstream_reads_is_scanned(redacting: Gateway, upstream: AnthropicEmulator) -> None:
    token = "ghp_" + "a1B2c3D4e5F6g7H8i9J0k1L2m3N4o5P6q7R8"
    payload = {
        "model": SONNET, "max_tokens": 20,
        "system": [{"type": "text", "text": f"ops token {token}"}],
        "tools": [{"name": "Bash", "description": "run", "input_schema": {"type": "object"}}],
        "messages": [
            {"role": "user", "content": "go"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "toolu_1", "name": "Bash",
                                               "input": {"command": f"export AWS_KEY={AWS}"}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1",
                                          "content": [{"type": "text", "text": f"echoed {AWS}"}]}]},
        ],
    }
    assert send(redacting, "/v1/messages", payload).status_code == 200
    seen = upstream.received[-1].json
    dumped = json.dumps(seen)
    assert token not in dumped and AWS not in dumped
    assert seen["system"][0]["text"].startswith("ops token [REDACTED:github_token:1]")
    assert seen["messages"][1]["content"][0]["input"]["command"] == "export AWS_KEY=[REDACTED:aws_access_key:1]"
    assert seen["messages"][2]["content"][0]["content"][0]["text"] == "echoed [REDACTED:aws_access_key:1]"


def test_fields_outside_the_content_are_redacted_before_the_upstream(redacting: Gateway,
                                                                     upstream: AnthropicEmulator) -> None:
    """Issue 17.6: stop sequences, tool names, extra tool fields and unknown fields are forwarded, so scanned."""
    payload = body("go", stop_sequences=[f"halt {AWS}"],
                   tools=[{"name": "Bash", "description": "run", "input_schema": {"type": "object"},
                           "x_note": f"key {AWS}"}],
                   x_client_field={"k": f"v {AWS}"})
    assert send(redacting, "/v1/messages", payload).status_code == 200
    seen = upstream.received[-1].json
    assert AWS not in json.dumps(seen)
    assert seen["stop_sequences"] == ["halt [REDACTED:aws_access_key:1]"]
    assert seen["tools"][0]["x_note"] == "key [REDACTED:aws_access_key:1]"


def test_block_names_the_policy_and_kinds_never_the_data(blocking: Gateway, upstream: AnthropicEmulator) -> None:
    resp = send(blocking, "/v1/messages", body(f"here is {AWS}"))
    assert resp.status_code == 400
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["message"] == "blocked by DLP policy 'default': the request contains aws_access_key"
    assert resp.headers["x-should-retry"] == "false"
    assert AWS not in resp.text and upstream.received == []
    stream = send(blocking, "/v1/messages", body(f"here is {AWS}", stream=True))
    assert stream.status_code == 400 and upstream.received == []
    record = audit_of(blocking, resp.headers["request-id"])
    assert record["status"] == 400 and record["dlp"][0]["action"] == "block"


def test_custom_patterns_and_group_overrides(blocking: Gateway, upstream: AnthropicEmulator) -> None:
    assert send(blocking, "/v1/messages", body("ship PROJECT-ZEBRA today")).status_code == 200
    assert "PROJECT-ZEBRA" not in upstream.received[-1].body.decode()
    assert send(blocking, "/v1/messages", body(f"mail {EMAIL}")).status_code == 200
    admin = admin_key(blocking)
    h = {"x-api-key": admin}
    httpx.post(blocking.base_url + "/admin/v1/groups", json={"name": "contractors", "grants": ["*"]}, headers=h)
    key = httpx.post(blocking.base_url + "/admin/v1/keys", json={"name": "c", "group_id": "contractors"},
                     headers=h).json()["key"]
    resp = httpx.post(blocking.base_url + "/v1/messages", json=body(f"mail {EMAIL}"), headers={"x-api-key": key})
    assert resp.status_code == 400
    assert resp.json()["error"]["message"] == "blocked by DLP policy 'contractors': the request contains email"


def test_dlp_fails_closed(emulator: AnthropicEmulator, tmp_path: Path, upstream: AnthropicEmulator) -> None:
    # A scan budget no real scan can meet: the engine reports a timeout and the request is refused, as too
    # large to inspect (413, not a 500 that SDKs retry: the same request would fail the same way).
    gw = start_gateway(tmp_path / "closed", config(emulator.base_url, {"timeout_ms": 0.000001, "timeout_ms_per_mb": 0}),
                       env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        before = len(upstream.received)
        resp = send(gw, "/v1/messages", body("word " * 2000))
        assert resp.status_code == 413 and resp.json()["error"]["type"] == "request_too_large"
        assert resp.headers["x-should-retry"] == "false"
        assert len(upstream.received) == before
        assert audit_of(gw, resp.headers["request-id"])["status"] == 413
    finally:
        gw.stop()


def test_claude_code_prompt_with_a_secret_is_redacted(redacting: Gateway, tmp_path: Path) -> None:
    result = run_claude(redacting, f"use the key {AWS} please", tmp_path)
    assert result["is_error"] is False, result
    # The mock quotes the prompt it was given: the placeholder, never the key.
    assert "[REDACTED:aws_access_key:1]" in result["result"] and AWS not in result["result"]


def test_claude_code_prompt_with_a_secret_is_blocked(blocking: Gateway, tmp_path: Path) -> None:
    result = run_claude(blocking, f"use the key {AWS} please", tmp_path)
    assert result["is_error"] is True
    assert result.get("api_error_status") == 400
    assert AWS not in json.dumps(result)


def test_payload_capture_keeps_redacted_bodies_for_chosen_groups(emulator: AnthropicEmulator, tmp_path: Path) -> None:
    cfg = {**config(emulator.base_url), "audit": {"payload_groups": ["recorded"]}}
    gw = start_gateway(tmp_path / "capture", cfg, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    try:
        h = {"x-api-key": admin_key(gw)}
        httpx.post(gw.base_url + "/admin/v1/groups", json={"name": "recorded", "grants": ["*"]}, headers=h)
        key = httpx.post(gw.base_url + "/admin/v1/keys", json={"name": "r", "group_id": "recorded"},
                         headers=h).json()["key"]
        captured = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key},
                              json={**body(f"key {AWS}"), "model": "tollway-mock"})
        plain = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": gw.key},
                           json={**body("not recorded"), "model": "tollway-mock"})
        rid = captured.headers["request-id"]
        audit_of(gw, rid)
        payload = httpx.get(gw.base_url + f"/admin/v1/audit/payloads/{rid}", headers=h).json()
        assert "[REDACTED:aws_access_key:1]" in payload["request_body"] and AWS not in payload["request_body"]
        assert "You said: key [REDACTED:aws_access_key:1]" in payload["response_body"]
        audit_of(gw, plain.headers["request-id"])
        missing = httpx.get(gw.base_url + f"/admin/v1/audit/payloads/{plain.headers['request-id']}", headers=h)
        assert missing.status_code == 404
        assert "Pruned 0 audit record(s) and 1 payload(s)." in gw.cli("audit", "prune", "--payloads-older-than",
                                                                     "0s").stdout
        assert httpx.get(gw.base_url + f"/admin/v1/audit/payloads/{rid}", headers=h).status_code == 404
    finally:
        gw.stop()

"""Vertex AI ingress: the real `AnthropicVertex` client against a real `tollway serve`, answered as
Vertex's Anthropic publisher endpoints answer (JSON, plain Anthropic SSE, Google error envelopes)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest
from anthropic import AnthropicVertex

from tests.conftest import UPSTREAM_KEY, Gateway, standard_config, start_gateway
from tests.emulator import AnthropicEmulator, JSONReply
from tests.test_ingress_bedrock import streamed

BASH = {"name": "Bash", "description": "Run a shell command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
HI = [{"role": "user", "content": "ping"}]
PREFIX = "/v1/projects/p/locations/us-east5/publishers/anthropic/models"


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("ingress-vertex"), standard_config(emulator.base_url),
                            env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gateway
    gateway.stop()


def client(gw: Gateway, key: str | None = None) -> AnthropicVertex:
    # access_token: the SDK sends it as `Authorization: Bearer`, as it would a Google token.
    return AnthropicVertex(base_url=gw.base_url + "/v1", project_id="p", region="us-east5",
                           access_token=key or gw.key, max_retries=0)


def test_raw_predict_answers_a_message(gw: Gateway) -> None:
    msg = client(gw).messages.create(model="tollway-mock", max_tokens=100, messages=HI)  # type: ignore[arg-type]
    assert msg.content[0].text == "Hello from the Tollway mock model. You said: ping"  # type: ignore[union-attr]


def test_stream_raw_predict(gw: Gateway) -> None:
    deltas, final = streamed(client(gw), "tollway-mock-slow", "stream this please")
    assert len(deltas) > 3 and "".join(deltas) == final.content[0].text


def test_tool_use_round_trip(gw: Gateway) -> None:
    sdk = client(gw)
    ask = {"role": "user", "content": 'call Bash with {"command": "ls"}'}
    first = sdk.messages.create(model="tollway-mock", max_tokens=200, tools=[BASH],  # type: ignore[list-item]
                                messages=[ask])  # type: ignore[list-item]
    use = next(b for b in first.content if b.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.input == {"command": "ls"}
    second = sdk.messages.create(model="tollway-mock", max_tokens=200, tools=[BASH],  # type: ignore[list-item]
                                 messages=[ask, {"role": "assistant", "content": first.content},  # type: ignore[list-item]
                                           {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id,
                                                                         "content": "file-b"}]}])
    assert second.stop_reason == "end_turn" and "file-b" in second.content[0].text  # type: ignore[union-attr]


def test_count_tokens_uses_the_sdks_path(gw: Gateway) -> None:
    counted = client(gw).messages.count_tokens(model="tollway-mock", messages=HI)  # type: ignore[arg-type]
    assert counted.input_tokens > 0


def test_errors(gw: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError) as unauth:
        client(gw, "tw-wrong").messages.create(model="tollway-mock", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert unauth.value.response.json()["error"]["status"] == "UNAUTHENTICATED"
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(gw).messages.create(model="no-such-model", max_tokens=10, messages=HI)  # type: ignore[arg-type]
    assert missing.value.response.json()["error"] == {"code": 404, "message": "model: no-such-model",
                                                     "status": "NOT_FOUND"}
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(gw).messages.create(model="tollway-mock", max_tokens=10, messages=[])
    assert bad.value.response.json()["error"]["status"] == "INVALID_ARGUMENT"
    narrow = json.loads(gw.cli("keys", "create", "--name", "narrow", "--models", "tollway-mock", "--json").stdout)
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client(gw, narrow["key"]).messages.create(model="claude-sonnet-4-5-20250929", max_tokens=10,
                                                  messages=HI)  # type: ignore[arg-type]
    assert denied.value.response.json()["error"]["status"] == "PERMISSION_DENIED"
    verb = httpx.post(gw.base_url + PREFIX + "/tollway-mock:predict", json={}, headers={"x-api-key": gw.key})
    assert verb.status_code == 404 and verb.json()["error"]["status"] == "NOT_FOUND"


def test_upstream_error_passes_through_in_anthropics_envelope(gw: Gateway, upstream: AnthropicEmulator) -> None:
    upstream.script(JSONReply(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    resp = httpx.post(gw.base_url + PREFIX + "/claude-sonnet-4-5-20250929:rawPredict", timeout=10,
                      headers={"authorization": f"Bearer {gw.key}"},
                      json={"anthropic_version": "vertex-2023-10-16", "max_tokens": 10, "messages": HI})
    assert resp.status_code == 529 and resp.json()["error"]["type"] == "overloaded_error"


def test_vertex_model_version_and_audit_route(gw: Gateway, upstream: AnthropicEmulator) -> None:
    resp = httpx.post(gw.base_url + PREFIX + "/claude-sonnet-4-5@20250929:rawPredict", timeout=10,
                      headers={"x-api-key": gw.key},
                      json={"anthropic_version": "vertex-2023-10-16", "max_tokens": 10, "messages": HI})
    assert resp.status_code == 404  # `claude-sonnet-4-5` is not in the catalogue: stripping `@…` finds nothing
    ok = httpx.post(gw.base_url + PREFIX + "/claude-sonnet-4-5-20250929@20250929:rawPredict", timeout=10,
                    headers={"x-api-key": gw.key},
                    json={"anthropic_version": "vertex-2023-10-16", "max_tokens": 10, "messages": HI})
    assert ok.status_code == 200, ok.text
    assert json.loads(upstream.received[-1].body)["model"] == "claude-sonnet-4-5-20250929"
    assert "anthropic_version" not in json.loads(upstream.received[-1].body)
    admin = json.loads(gw.cli("keys", "create", "--name", "auditor", "--admin", "--json").stdout)["key"]
    deadline = time.monotonic() + 30  # the new admin key and the record both land behind the request
    records: list[dict[str, Any]] = []
    while not records and time.monotonic() < deadline:
        records = httpx.get(gw.base_url + "/admin/v1/audit", params={"request_id": ok.headers["request-id"]},
                            headers={"x-api-key": admin}).json()["data"]
        time.sleep(0.1)
    assert records and records[0]["route"] == "vertex_raw_predict"
    assert records[0]["deployment"] == "claude-sonnet-4-5-20250929"

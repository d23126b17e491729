"""Tollway → Google Vertex AI, driven by the real anthropic SDK through a real `tollway serve`. The
gateway authenticates with google-auth's service-account flow, using a key generated here, against
the emulator's OAuth token endpoint (tests/vertex_emulator.py)."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.conftest import NO_RETRIES, Gateway, start_gateway
from tests.vertex_emulator import Scripted, VertexEmulator
from tollway.wire.tokens import count_input_tokens

MODEL = "claude-sonnet-4-5@20250929"
TOOLS = [{"name": "Bash", "description": "run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}]


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)


def service_account_file(path: Path, key: rsa.RSAPrivateKey, token_uri: str) -> Path:
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption()).decode()
    path.write_text(json.dumps({
        "type": "service_account", "project_id": "tollway-test", "private_key_id": "k1", "private_key": pem,
        "client_email": "tollway@tollway-test.iam.gserviceaccount.com", "client_id": "1", "token_uri": token_uri}))
    return path


def vertex(emu: VertexEmulator, creds: Path, **extra: Any) -> dict[str, Any]:
    return {"provider": "vertex", "base_url": emu.base_url + "/v1", "project": emu.project, "region": emu.region,
            "credentials_file": str(creds), "model": MODEL, **extra}


@pytest.fixture(scope="module")
def key() -> rsa.RSAPrivateKey:
    return new_key()


@pytest.fixture(scope="module")
def emu(key: rsa.RSAPrivateKey) -> Iterator[VertexEmulator]:
    with VertexEmulator(public_pem(key)) as e:
        yield e


@pytest.fixture
def vertex_emu(emu: VertexEmulator) -> VertexEmulator:
    emu.reset()
    return emu


@pytest.fixture(scope="module")
def gw(emu: VertexEmulator, key: rsa.RSAPrivateKey, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    work = tmp_path_factory.mktemp("vertex")
    creds = service_account_file(work / "sa.json", key, emu.token_uri)
    config = {"retries": NO_RETRIES, "models": [{"id": "claude-vertex", "upstream": vertex(emu, creds)}]}
    gateway = start_gateway(work, config)
    yield gateway
    gateway.stop()


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)


def test_message_goes_to_raw_predict_with_a_service_account_token(gw: Gateway, vertex_emu: VertexEmulator) -> None:
    resp = client(gw).messages.with_raw_response.create(
        model="claude-vertex", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14,effort-2025-11-24"})
    assert resp.parse().content[0].text == "Hello from the Tollway mock model. You said: hi"
    seen = vertex_emu.received[-1]
    assert seen.path == f"/v1/projects/tollway-test/locations/us-east5/publishers/anthropic/models/{MODEL}:rawPredict"
    assert seen.json["anthropic_version"] == "vertex-2023-10-16" and "model" not in seen.json
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14"  # effort is not on Vertex
    assert seen.headers["authorization"].startswith("Bearer ya29.emu-")
    assert resp.http_response.headers["x-request-id"].startswith("vertex-")


def test_stream_and_tool_round_trip(gw: Gateway, vertex_emu: VertexEmulator) -> None:
    c = client(gw)
    ask = [{"role": "user", "content": 'call Bash with {"command": "ls"}'}]
    with c.messages.stream(model="claude-vertex", max_tokens=200, tools=TOOLS, messages=ask) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    assert vertex_emu.received[-1].path.endswith(":streamRawPredict") and vertex_emu.received[-1].json["stream"]
    use = next(b for b in first.content if b.type == "tool_use")
    follow = [*ask, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "a.txt"}]}]
    final = c.messages.create(model="claude-vertex", max_tokens=200, tools=TOOLS, messages=follow)
    assert final.content[0].text == "The tool returned: a.txt"


def test_stream_bytes_are_relayed_unchanged(gw: Gateway, vertex_emu: VertexEmulator) -> None:
    body = {"model": "claude-vertex", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": [{"type": "text", "text": "cache me",
                                                        "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}]}
    with httpx.stream("POST", gw.base_url + "/v1/messages", json=body, timeout=10,
                      headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"}) as r:
        raw = b"".join(r.iter_bytes())
    start = orjson.loads(raw.split(b"\n\n")[0].split(b"data: ", 1)[1])
    assert start["message"]["usage"]["cache_creation_input_tokens"] > 0  # cache usage from Vertex
    assert raw.rstrip().endswith(b'event: message_stop\ndata: {"type":"message_stop"}')
    sent = vertex_emu.received[-1].json
    assert sent["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}  # ttl needs the beta


def test_count_tokens_is_vertex_exact_count(gw: Gateway, vertex_emu: VertexEmulator) -> None:
    messages = [{"role": "user", "content": "how many tokens is this"}]
    counted = client(gw).messages.count_tokens(model="claude-vertex", messages=messages)
    seen = vertex_emu.received[-1]
    assert seen.path.endswith("/publishers/anthropic/models/count-tokens:rawPredict")
    assert seen.json["model"] == MODEL
    assert counted.input_tokens == count_input_tokens({"messages": messages}) > 0


def test_token_is_reused_then_refused_token_is_replaced(gw: Gateway, vertex_emu: VertexEmulator) -> None:
    grants = vertex_emu.token_requests
    for _ in range(3):
        client(gw).messages.create(model="claude-vertex", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert vertex_emu.token_requests == grants  # one token, reused while valid
    vertex_emu.revoke_all()
    with pytest.raises(anthropic.InternalServerError) as err:
        client(gw).messages.create(model="claude-vertex", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 502 and err.value.response.headers["x-should-retry"] == "false"
    assert "vertex (tollway-test/us-east5)" in err.value.body["error"]["message"]
    assert "refused the gateway's credentials (Request had invalid authentication" in err.value.body["error"]["message"]
    msg = client(gw).messages.create(model="claude-vertex", max_tokens=50, messages=[{"role": "user", "content": "y"}])
    assert msg.content[0].text.endswith("You said: y") and vertex_emu.token_requests == grants + 1


def test_vertex_errors_keep_their_status(gw: Gateway, vertex_emu: VertexEmulator) -> None:
    vertex_emu.script(Scripted(429, {"error": {"code": 429, "message": "Quota exceeded for aiplatform.googleapis.com",
                                               "status": "RESOURCE_EXHAUSTED"}}, {"retry-after": "2"}))
    with pytest.raises(anthropic.RateLimitError) as err:
        client(gw).messages.create(model="claude-vertex", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "2"
    assert "Quota exceeded" in err.value.body["error"]["message"]


def test_token_is_refreshed_before_it_expires(tmp_path: Path) -> None:
    """Tokens that live 228 s: google-auth treats them as stale 225 s before expiry, so after ~3 s
    the gateway fetches a new one while the old one would still have been accepted."""
    key = new_key()
    with VertexEmulator(public_pem(key), token_lifetime=228) as emu:
        creds = service_account_file(tmp_path / "sa.json", key, emu.token_uri)
        gateway = start_gateway(tmp_path / "gw", {"retries": NO_RETRIES, "models": [
            {"id": "claude-vertex", "upstream": vertex(emu, creds)}]})
        try:
            deadline = time.monotonic() + 15
            while emu.token_requests < 2 and time.monotonic() < deadline:
                msg = client(gateway).messages.create(model="claude-vertex", max_tokens=50,
                                                      messages=[{"role": "user", "content": "x"}])
                assert msg.content[0].text.endswith("You said: x")
                time.sleep(0.2)
            assert emu.token_requests == 2
            first_expiry = min(emu.tokens.values())
            assert first_expiry - time.time() > 200  # the old token was far from expired when it was replaced
        finally:
            gateway.stop()


def test_a_key_the_token_endpoint_rejects_is_a_clear_502(tmp_path: Path) -> None:
    with VertexEmulator(public_pem(new_key())) as emu:
        creds = service_account_file(tmp_path / "sa.json", new_key(), emu.token_uri)  # not the trusted key
        gateway = start_gateway(tmp_path / "gw", {"retries": NO_RETRIES, "models": [
            {"id": "claude-vertex", "upstream": vertex(emu, creds)}]})
        try:
            for _ in range(3):
                r = httpx.post(gateway.base_url + "/v1/messages", timeout=10, headers={"x-api-key": gateway.key},
                               json={"model": "claude-vertex", "max_tokens": 5,
                                     "messages": [{"role": "user", "content": "x"}]})
                assert r.status_code == 502
                message = r.json()["error"]["message"]
                assert "the upstream vertex (tollway-test/us-east5) is unavailable" in message
                assert "RefreshError" in message and "BEGIN PRIVATE KEY" not in message
            assert emu.token_requests == 1 and emu.received == []  # remembered: no storm of token requests
        finally:
            gateway.stop()

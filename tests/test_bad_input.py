"""Bad input is refused by the gateway itself: it never reaches the upstream, and the client always
gets the right status in Anthropic's envelope with a matching `request-id`, never a 500 or a
traceback. Requests name a model served by the emulator, so a wrongly forwarded request would
show up in `upstream.received`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import Gateway
from tests.emulator import AnthropicEmulator

MODEL = "claude-sonnet-4-5-20250929"
LIMIT = 1024 * 1024  # server.max_body_bytes in standard_config
USER_HI = [{"role": "user", "content": "hi"}]
VALID = {"model": MODEL, "max_tokens": 10, "messages": USER_HI}


def _headers(gateway: Gateway, **extra: str) -> dict[str, str]:
    return {"x-api-key": gateway.key, "anthropic-version": "2023-06-01",
            "content-type": "application/json", **extra}


def _json(body: Any) -> bytes:
    return orjson.dumps(body)


def _without(key: str, base: dict[str, Any] | None = None) -> bytes:
    return _json({k: v for k, v in (base or VALID).items() if k != key})


def _with(**fields: Any) -> bytes:
    return _json({**VALID, **fields})


def assert_envelope(resp: httpx.Response, status: int, error_type: str, names: str | None = None) -> None:
    """The exact envelope Anthropic answers with, request-id header equal to the body's id."""
    assert resp.status_code == status, resp.text
    assert resp.headers["content-type"].startswith("application/json")
    body = resp.json()
    assert set(body) == {"type", "error", "request_id"}, body
    assert body["type"] == "error"
    assert body["error"]["type"] == error_type, body
    message = body["error"]["message"]
    assert isinstance(message, str) and message
    assert "Traceback" not in resp.text
    assert body["request_id"].startswith("req_")
    assert resp.headers["request-id"] == body["request_id"]
    if names is not None:
        assert names in message, message


# (id, path, body bytes, substring the message must contain: the offending field)
BAD_BODIES: list[tuple[str, str, bytes, str | None]] = [
    ("non-json", "/v1/messages", b'{"model": "claude-sonnet-4-5-20250929", max_tokens: 10', None),
    ("invalid-utf8", "/v1/messages", b'{"model": "\xff\xfe", "max_tokens": 10, "messages": []}', None),
    ("empty-body", "/v1/messages", b"", None),
    ("json-array", "/v1/messages", _json([VALID]), None),
    ("json-null", "/v1/messages", b"null", None),
    ("missing-model", "/v1/messages", _without("model"), "model"),
    ("model-not-string", "/v1/messages", _with(model=42), "model"),
    ("model-empty", "/v1/messages", _with(model=""), "model"),
    ("missing-messages", "/v1/messages", _without("messages"), "messages"),
    ("messages-not-list", "/v1/messages", _with(messages="hi"), "messages"),
    ("messages-empty", "/v1/messages", _with(messages=[]), "messages"),
    ("message-not-object", "/v1/messages", _with(messages=["hi"]), "messages.0"),
    ("bad-role", "/v1/messages", _with(messages=[{"role": "robot", "content": "hi"}]), "messages.0.role"),
    ("missing-role", "/v1/messages", _with(messages=[{"content": "hi"}]), "messages.0.role"),
    ("first-from-assistant", "/v1/messages",
     _with(messages=[{"role": "assistant", "content": "hi"}, {"role": "user", "content": "yo"}]), "messages"),
    ("two-users-in-a-row", "/v1/messages",
     _with(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
     'messages: roles must alternate between "user" and "assistant"'),
    ("missing-content", "/v1/messages", _with(messages=[{"role": "user"}]), "messages.0.content"),
    ("content-not-string-or-list", "/v1/messages", _with(messages=[{"role": "user", "content": 5}]),
     "messages.0.content"),
    ("max-tokens-missing", "/v1/messages", _without("max_tokens"), "max_tokens"),
    ("max-tokens-string", "/v1/messages", _with(max_tokens="10"), "max_tokens"),
    ("max-tokens-zero", "/v1/messages", _with(max_tokens=0), "max_tokens"),
    ("max-tokens-negative", "/v1/messages", _with(max_tokens=-5), "max_tokens"),
    ("max-tokens-true", "/v1/messages", _with(max_tokens=True), "max_tokens"),
    ("max-tokens-float", "/v1/messages", _with(max_tokens=1.5), "max_tokens"),
    ("max-tokens-beyond-64-bit", "/v1/messages",
     b'{"model": "claude-sonnet-4-5-20250929", "max_tokens": 100000000000000000000000, "messages": []}', None),
    ("stream-string", "/v1/messages", _with(stream="true"), "stream"),
    ("tollway-extension", "/v1/messages", _with(tollway={"tags": ["x"]}), "tollway"),
    ("count-tokens-stream-true", "/v1/messages/count_tokens",
     _json({"model": MODEL, "messages": USER_HI, "stream": True}), "stream"),
    ("count-tokens-missing-messages", "/v1/messages/count_tokens", _json({"model": MODEL}), "messages"),
    ("count-tokens-tollway-extension", "/v1/messages/count_tokens",
     _json({"model": MODEL, "messages": USER_HI, "tollway": {}}), "tollway"),
]


@pytest.mark.parametrize(("path", "body", "names"), [c[1:] for c in BAD_BODIES], ids=[c[0] for c in BAD_BODIES])
def test_invalid_body_is_400_and_never_forwarded(gateway: Gateway, upstream: AnthropicEmulator, path: str,
                                                 body: bytes, names: str | None) -> None:
    """DECISIONS.md 1, 12, 16: invalid requests get 400 invalid_request_error naming the field."""
    resp = httpx.post(gateway.base_url + path, content=body, headers=_headers(gateway), timeout=10)
    assert_envelope(resp, 400, "invalid_request_error", names)
    assert upstream.received == []


def test_valid_baseline_is_forwarded(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """Control: the same request, made valid, does reach the upstream (so `received == []` means something)."""
    resp = httpx.post(gateway.base_url + "/v1/messages", content=_json(VALID), headers=_headers(gateway), timeout=10)
    assert resp.status_code == 200, resp.text
    assert len(upstream.received) == 1


# ----- body size -----

def _oversize() -> bytes:
    """A valid request just over the limit, so only its size is wrong."""
    body = _json({**VALID, "messages": [{"role": "user", "content": "x" * LIMIT}]})
    assert LIMIT < len(body) < LIMIT + 1024
    return body


def test_oversize_body_with_content_length_is_413(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """DECISIONS.md 7: over the configured limit is 413 request_too_large, decided from content-length."""
    resp = httpx.post(gateway.base_url + "/v1/messages", content=_oversize(), headers=_headers(gateway),
                      timeout=10)
    assert_envelope(resp, 413, "request_too_large")
    assert upstream.received == []


def test_body_exactly_at_limit_is_accepted(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """The limit is inclusive: a body of exactly max_body_bytes is read and forwarded whole."""
    head = _json({**VALID, "messages": [{"role": "user", "content": ""}]})
    body = head.replace(b'"content":""', b'"content":"' + b"y" * (LIMIT - len(head)) + b'"')
    assert len(body) == LIMIT
    resp = httpx.post(gateway.base_url + "/v1/messages", content=body, headers=_headers(gateway), timeout=10)
    assert resp.status_code == 200, resp.text
    assert upstream.received[0].body == body


def test_oversize_chunked_body_is_413(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """Without content-length (chunked), the limit is enforced while reading."""
    data = _oversize()

    def chunks() -> Iterator[bytes]:
        for i in range(0, len(data), 64 * 1024):
            yield data[i:i + 64 * 1024]

    resp = httpx.post(gateway.base_url + "/v1/messages", content=chunks(), headers=_headers(gateway), timeout=10)
    assert resp.request.headers.get("transfer-encoding") == "chunked"
    assert "content-length" not in resp.request.headers
    assert_envelope(resp, 413, "request_too_large")
    assert upstream.received == []


def test_chunked_body_under_limit_is_accepted(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """Control for the chunked case: a small chunked body is read whole and forwarded unchanged."""
    data = _json(VALID)
    resp = httpx.post(gateway.base_url + "/v1/messages", content=iter([data[:7], data[7:]]),
                      headers=_headers(gateway), timeout=10)
    assert resp.status_code == 200, resp.text
    assert upstream.received[0].body == data


# ----- routes and methods -----

def test_unknown_route_is_404_envelope(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """Unknown paths answer in the envelope (not HTML/plain text), naming the path."""
    resp = httpx.post(gateway.base_url + "/v1/nothing-here", content=_json(VALID), headers=_headers(gateway),
                      timeout=10)
    assert_envelope(resp, 404, "not_found_error", "/v1/nothing-here")
    assert upstream.received == []


def test_get_on_messages_is_405_envelope(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """A wrong method is a 405 in the envelope, with Allow naming POST."""
    resp = httpx.get(gateway.base_url + "/v1/messages", headers=_headers(gateway), timeout=10)
    assert_envelope(resp, 405, "invalid_request_error", "GET")
    assert "POST" in resp.headers["allow"]
    assert upstream.received == []


# ----- authentication -----

AUTH_CASES: list[tuple[str, dict[str, str | None], str]] = [
    ("missing-key", {"x-api-key": None}, "x-api-key"),
    ("wrong-key", {"x-api-key": "tw-not-a-real-key"}, "API key"),
    ("wrong-bearer", {"x-api-key": None, "authorization": "Bearer tw-not-a-real-key"}, "API key"),
    ("basic-auth-with-valid-x-api-key", {"authorization": "Basic xyz"}, "Authorization"),
    ("empty-authorization-with-valid-x-api-key", {"authorization": ""}, "Authorization"),
]


@pytest.mark.parametrize(("changes", "names"), [c[1:] for c in AUTH_CASES], ids=[c[0] for c in AUTH_CASES])
def test_bad_credentials_are_401_and_never_forwarded(gateway: Gateway, upstream: AnthropicEmulator,
                                                     changes: dict[str, str | None], names: str) -> None:
    """DECISIONS.md 6: no valid key, or a malformed Authorization (no fallback), is 401."""
    headers: dict[str, str] = _headers(gateway)
    for name, value in changes.items():
        if value is None:
            headers.pop(name, None)
        else:
            headers[name] = value
    resp = httpx.post(gateway.base_url + "/v1/messages", content=_json(VALID), headers=headers, timeout=10)
    assert_envelope(resp, 401, "authentication_error", names)
    assert upstream.received == []


def test_bad_credentials_raise_authentication_error_in_sdk(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """The stock SDK sees a gateway 401 as AuthenticationError."""
    sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key="tw-not-a-real-key", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        sdk.messages.create(model=MODEL, max_tokens=10, messages=USER_HI)
    assert upstream.received == []


# ----- unknown model -----

@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_unknown_model_is_404_not_found(gateway: Gateway, upstream: AnthropicEmulator, path: str) -> None:
    """DECISIONS.md 5: an unknown model is Anthropic's own 404 with message `model: <id>`."""
    body = {**VALID, "model": "claude-does-not-exist"}
    if path.endswith("count_tokens"):
        del body["max_tokens"]
    resp = httpx.post(gateway.base_url + path, content=_json(body), headers=_headers(gateway), timeout=10)
    assert_envelope(resp, 404, "not_found_error")
    assert resp.json()["error"]["message"] == "model: claude-does-not-exist"
    assert upstream.received == []


def test_unknown_model_raises_not_found_in_sdk(client: Any, upstream: AnthropicEmulator) -> None:
    """Stock SDKs raise NotFoundError, exactly as against Anthropic."""
    with pytest.raises(anthropic.NotFoundError) as info:
        client.messages.create(model="claude-does-not-exist", max_tokens=10, messages=USER_HI)
    assert info.value.body["error"] == {"type": "not_found_error", "message": "model: claude-does-not-exist"}
    assert upstream.received == []

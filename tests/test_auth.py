"""Authentication on every route (DECISIONS.md 6): both headers, Bearer precedence, malformed
Authorization is final, revoked keys stop working."""

from __future__ import annotations

import time

import anthropic
import httpx
import pytest

from tests.conftest import Gateway

BODY = {"model": "tollway-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "x"}]}
ROUTES = [("POST", "/v1/messages", BODY), ("POST", "/v1/messages/count_tokens", BODY),
          ("GET", "/v1/models", None), ("GET", "/v1/models/tollway-mock", None)]


def _call(gw: Gateway, method: str, path: str, body: object, headers: dict[str, str]) -> httpx.Response:
    return httpx.request(method, gw.base_url + path, json=body, headers=headers, timeout=10)


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_both_headers_resolve_to_the_key(gateway: Gateway, method: str, path: str, body: object) -> None:
    assert _call(gateway, method, path, body, {"x-api-key": gateway.key}).status_code == 200
    assert _call(gateway, method, path, body, {"authorization": f"Bearer {gateway.key}"}).status_code == 200


@pytest.mark.parametrize(("method", "path", "body"), ROUTES)
def test_missing_or_wrong_key_is_401_in_the_envelope(gateway: Gateway, method: str, path: str, body: object) -> None:
    for headers in ({}, {"x-api-key": "tw-not-a-key"}, {"authorization": "Bearer tw-not-a-key"}):
        resp = _call(gateway, method, path, body, headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["type"] == "authentication_error"
        assert resp.headers["request-id"] == resp.json()["request_id"]


def test_bearer_wins_over_x_api_key(gateway: Gateway) -> None:
    good = {"authorization": f"Bearer {gateway.key}", "x-api-key": "tw-wrong"}
    bad = {"authorization": "Bearer tw-wrong", "x-api-key": gateway.key}
    assert _call(gateway, "POST", "/v1/messages", BODY, good).status_code == 200
    assert _call(gateway, "POST", "/v1/messages", BODY, bad).status_code == 401


@pytest.mark.parametrize("value", ["", "Basic dXNlcjpwYXNz", "Bearer", "Token abc", "tw-bare-key"])
def test_malformed_authorization_is_refused_without_fallback(gateway: Gateway, value: str) -> None:
    resp = _call(gateway, "POST", "/v1/messages", BODY, {"authorization": value, "x-api-key": gateway.key})
    assert resp.status_code == 401
    assert "Authorization" in resp.json()["error"]["message"]


def test_sdk_raises_authentication_error(gateway: Gateway) -> None:
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key="tw-wrong", max_retries=0)
    with pytest.raises(anthropic.AuthenticationError):
        client.messages.create(**BODY)  # type: ignore[arg-type]


def test_new_key_works_at_once_and_revoked_key_stops(gateway: Gateway) -> None:
    key_id, secret = gateway.new_key("short-lived")
    headers = {"x-api-key": secret}
    assert _call(gateway, "POST", "/v1/messages", BODY, headers).status_code == 200
    gateway.cli("keys", "revoke", key_id)
    # Another process (the CLI) made the change: it is seen within the key refresh interval
    # (0.2 s in the test config), with no per-request database query.
    deadline = time.monotonic() + 2.0
    status = 200
    while time.monotonic() < deadline and status == 200:
        status = _call(gateway, "POST", "/v1/messages", BODY, headers).status_code
        time.sleep(0.05)
    assert status == 401
    assert _call(gateway, "POST", "/v1/messages", BODY, {"x-api-key": gateway.key}).status_code == 200

"""Sign-in events in the audit log (kind `signin`), read back through the admin API: a person
provisioned, their groups synchronised, a device authorised or denied, tokens issued, refreshed,
refused and revoked, a sign-in refused, a person deprovisioned by the IdP — and never a token,
device code or user code in a record. Also: a revoked or expired bearer gets `x-should-retry:
false` on the data plane's 401, so Claude Code asks for a new sign-in instead of retrying."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import Gateway
from tests.emulator import AnthropicEmulator
from tests.oidc_provider import IdpUser, OidcProvider
from tests.signin_flow import (
    CLIENT_ID,
    CLIENT_SECRET,
    UA,
    approve,
    device_authorization,
    poll_token,
    sign_in,
    signin_config,
    start_signin_gateway,
)

MESSAGE = {"model": "tollway-mock", "max_tokens": 16, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(CLIENT_ID, CLIENT_SECRET) as provider:
        for name in ("ann", "ben", "cat", "dan"):
            provider.users[name] = IdpUser("pw-" + name, f"{name}@example.com", name, ["eng-core"])
        yield provider


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, idp: OidcProvider, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = signin_config(emulator.base_url, idp, access_token_ttl=600)
    gateway = start_signin_gateway(tmp_path_factory.mktemp("signin-audit"), config)
    yield gateway
    gateway.stop()


@pytest.fixture(scope="module")
def admin(gw: Gateway) -> httpx.Client:
    key = json.loads(gw.cli("keys", "create", "--name", "ops", "--admin", "--json").stdout)
    client = httpx.Client(base_url=gw.base_url + "/admin/v1", headers={"x-api-key": key["key"]}, timeout=10)
    assert client.post("/groups", json={"name": "engineering", "grants": ["*"]}).status_code == 201
    return client


def events(admin: httpx.Client) -> list[dict[str, Any]]:
    resp = admin.get("/audit", params={"kind": "signin", "limit": 100})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def wait_for(admin: httpx.Client, match: Callable[[dict[str, Any]], bool], seconds: float = 10.0) -> dict[str, Any]:
    """The newest sign-in record MATCH accepts, polled until it has been written (write-behind)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        found = [e for e in events(admin) if match(e)]
        if found:
            return found[0]
        time.sleep(0.1)
    pytest.fail(f"no matching sign-in record within {seconds} s: {events(admin)[:5]}")


def user_id(admin: httpx.Client, name: str) -> str:
    return str(admin.get(f"/users/{name}").json()["id"])


def refresh(gw: Gateway, token: str) -> httpx.Response:
    return httpx.post(gw.base_url + "/oauth/token", data={"grant_type": "refresh_token", "refresh_token": token},
                      headers=UA)


def test_a_first_sign_in_is_recorded_from_provisioning_to_token(gw: Gateway, admin: httpx.Client) -> None:
    tokens = sign_in(gw, "ann")
    uid = user_id(admin, "ann")
    for action in ("user.provisioned", "user.groups_synced", "signin.device_authorized", "signin.token_issued"):
        record = wait_for(admin, lambda e, a=action: e["action"] == a and e["target"] == uid)
        assert record["kind"] == "signin" and record["actor"]["user_id"] == uid and record["actor"]["via"] == "signin"
        assert record["actor"]["remote_addr"] == "127.0.0.1"
    issued = wait_for(admin, lambda e: e["action"] == "signin.token_issued" and e["target"] == uid)
    assert issued["details"]["token_id"].startswith("tok_") and issued["details"]["session"].startswith("ses_")
    assert wait_for(admin, lambda e: e["action"] == "user.provisioned" and e["target"] == uid)["details"]["how"] \
        == "created"
    # Refresh, replay, revoke: each recorded, in the same session.
    fresh = refresh(gw, tokens["refresh_token"])
    assert fresh.status_code == 200
    refreshed = wait_for(admin, lambda e: e["action"] == "signin.token_refreshed" and e["target"] == uid)
    assert refreshed["details"]["session"] == issued["details"]["session"]
    assert refresh(gw, tokens["refresh_token"]).status_code == 401  # a replay: the session ends
    replay = wait_for(admin, lambda e: e["action"] == "signin.refresh_refused" and e["target"] == uid)
    assert replay["details"]["reason"] in ("replayed", "revoked")
    assert httpx.post(gw.base_url + "/oauth/revoke", data={"token": fresh.json()["access_token"]}).status_code == 200
    wait_for(admin, lambda e: e["action"] == "signin.token_revoked" and e["target"] == uid)
    assert_no_secrets(admin, [tokens["access_token"], tokens["refresh_token"], fresh.json()["access_token"],
                              fresh.json()["refresh_token"]])


def test_a_denied_device_and_a_disabled_person_are_recorded(gw: Gateway, admin: httpx.Client) -> None:
    device = device_authorization(gw)
    page = approve(gw, device["user_code"], "ben", "pw-ben", decision="deny")
    assert page.status_code == 200
    uid = user_id(admin, "ben")
    denied = wait_for(admin, lambda e: e["action"] == "signin.device_denied" and e["target"] == uid)
    assert denied["details"]["surface"] == "claude_code"
    assert poll_token(gw, device).json()["error"] == "access_denied"
    assert admin.post(f"/users/{uid}/disable").status_code == 200
    device = device_authorization(gw)
    assert approve(gw, device["user_code"], "ben", "pw-ben").status_code == 403
    refused = wait_for(admin, lambda e: e["action"] == "signin.refused" and e["target"] == uid)
    assert refused["details"]["reason"] == "user_disabled"
    assert_no_secrets(admin, [device["device_code"], device["user_code"]])


def test_a_person_removed_at_the_idp_is_recorded_as_deprovisioned(gw: Gateway, admin: httpx.Client,
                                                                  idp: OidcProvider) -> None:
    tokens = sign_in(gw, "cat")
    uid = user_id(admin, "cat")
    idp.remove_user("cat")
    resp = refresh(gw, tokens["refresh_token"])
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_grant"
    gone = wait_for(admin, lambda e: e["action"] == "user.deprovisioned" and e["target"] == uid)
    assert gone["details"]["reason"] == "idp_refused_refresh"


def test_a_revoked_bearer_is_told_not_to_retry(gw: Gateway, admin: httpx.Client) -> None:
    tokens = sign_in(gw, "dan")
    headers = {"authorization": f"Bearer {tokens['access_token']}", "anthropic-version": "2023-06-01"}
    assert httpx.post(gw.base_url + "/v1/messages", json=MESSAGE, headers=headers).status_code == 200
    assert httpx.post(gw.base_url + "/oauth/revoke", data={"token": tokens["refresh_token"]}).status_code == 200
    for path, body in (("/v1/messages", MESSAGE), ("/v1/chat/completions", {**MESSAGE, "max_tokens": 16})):
        resp = httpx.post(gw.base_url + path, json=body, headers=headers)
        assert resp.status_code == 401 and resp.headers["x-should-retry"] == "false", (path, resp.text)
    # A revoked API key the same way (Claude Code with ANTHROPIC_API_KEY).
    made = admin.post("/keys", json={"name": "to-revoke"}).json()
    key_id, secret = made["id"], made["key"]
    assert admin.post(f"/keys/{key_id}/revoke").status_code == 200
    resp = httpx.post(gw.base_url + "/v1/messages", json=MESSAGE,
                      headers={"x-api-key": secret, "anthropic-version": "2023-06-01"})
    assert resp.status_code == 401 and resp.headers["x-should-retry"] == "false"
    assert resp.json()["error"]["type"] == "authentication_error"


def assert_no_secrets(admin: httpx.Client, secrets: list[str]) -> None:
    text = json.dumps(events(admin))
    for secret in secrets:
        assert secret not in text
    assert "twa-" not in text and "twr-" not in text

"""Developer sign-in end to end: Claude Code's device flow against a real `tollway serve`, the
verification page driven in headless Chromium (Playwright) through a loopback OIDC provider,
and the minted token used by the real Claude Code CLI and the Anthropic SDK.

Claude Code's interactive `/login` is not driven here (see docs/sign-in.md, "Testing"): these
tests perform the identical HTTP sequence it performs (metadata, device authorization with
`surface=claude_code`, polling at `interval`) and then run `claude -p` with the minted token.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from playwright.sync_api import Browser, sync_playwright

from tests.conftest import Gateway
from tests.emulator import AnthropicEmulator
from tests.oidc_provider import IdpUser, OidcProvider
from tests.signin_flow import CLIENT_ID, CLIENT_SECRET, signin_config, start_signin_gateway

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
CLAUDE = Path(__file__).parent / "js" / "node_modules" / ".bin" / "claude"
DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
UA = {"user-agent": "claude-code/2.1.330"}
MESSAGE = {"model": "tollway-mock", "max_tokens": 32, "messages": [{"role": "user", "content": "hi"}]}


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(CLIENT_ID, CLIENT_SECRET) as provider:
        provider.users["ada"] = IdpUser("pw-ada", "ada@example.com", "ada", ["eng-platform", "everyone"])
        provider.users["bob"] = IdpUser("pw-bob", "bob@example.com", "bob", ["sales"])
        provider.users["cy"] = IdpUser("pw-cy", "cy@example.com", "cy", ["eng-web"])
        provider.users["dee"] = IdpUser("pw-dee", "dee@example.com", "dee", ["eng-web"])
        yield provider


MANAGED = {"engineering": {"env": {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"},
                           "permissions": {"deny": ["WebFetch"]}}}


def _start(tmp: Path, emulator: AnthropicEmulator, idp: OidcProvider, **overrides: Any) -> Gateway:
    gw = start_signin_gateway(tmp, signin_config(emulator.base_url, idp, managed_settings=MANAGED, **overrides))
    gw.cli("groups", "create", "engineering", "--grant", "*")
    return gw


@pytest.fixture(scope="module")
def gateway(emulator: AnthropicEmulator, idp: OidcProvider, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Gateway]:
    gw = _start(tmp_path_factory.mktemp("signin"), emulator, idp, access_token_ttl=600)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def until(what: Callable[[], Any], seconds: float = 15.0, step: float = 0.1) -> Any:
    """Poll WHAT until it returns something truthy, or fail at the deadline."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if out := what():
            return out
        time.sleep(step)
    pytest.fail(f"condition not met within {seconds} s")


def start_device(gw: Gateway) -> dict[str, Any]:
    meta = httpx.get(gw.base_url + "/.well-known/oauth-authorization-server", headers=UA).json()
    resp = httpx.post(meta["device_authorization_endpoint"], data={"surface": "claude_code"}, headers=UA)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def poll(gw: Gateway, device_code: str) -> httpx.Response:
    return httpx.post(gw.base_url + "/oauth/token", data={"grant_type": DEVICE_GRANT, "device_code": device_code},
                      headers=UA)


def approve_in_browser(browser: Browser, url: str, user_code: str, username: str, password: str,
                       decision: str = "approve") -> None:
    page = browser.new_page()
    try:
        page.goto(url)
        # RFC 8628 §5.4: the code in the link only pre-fills the form; nothing is submitted for us.
        assert page.input_value("#user_code") == user_code
        assert page.url == url
        page.click("#continue")
        page.wait_for_selector("#username")  # now at the IdP's login form
        page.fill("#username", username)
        page.fill("#password", password)
        page.click("#signin")
        page.wait_for_selector("#approve")  # back at Tollway: which code, and as whom
        assert page.inner_text("#code") == user_code
        page.click("#" + decision)
        page.wait_for_selector("#done")
    finally:
        page.close()


def wait_for_tokens(gw: Gateway, device: dict[str, Any]) -> dict[str, Any]:
    interval = device["interval"]
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        resp = poll(gw, device["device_code"])
        if resp.status_code == 200:
            return dict(resp.json())
        error = resp.json()["error"]
        assert error in ("authorization_pending", "slow_down"), resp.text
        interval += 5 if error == "slow_down" else 0
        time.sleep(interval)  # the client's own pacing (RFC 8628 §3.5), not a wait for a result
    pytest.fail("no token within 20 s")


def sign_in(gw: Gateway, browser: Browser, username: str) -> dict[str, Any]:
    device = start_device(gw)
    approve_in_browser(browser, device["verification_uri_complete"], device["user_code"], username,
                       "pw-" + username)
    return wait_for_tokens(gw, device)


def refresh(gw: Gateway, refresh_token: str) -> httpx.Response:
    return httpx.post(gw.base_url + "/oauth/token", data={"grant_type": "refresh_token",
                                                          "refresh_token": refresh_token}, headers=UA)


def message_status(gw: Gateway, token: str) -> int:
    return httpx.post(gw.base_url + "/v1/messages", json=MESSAGE,
                      headers={"authorization": f"Bearer {token}", "anthropic-version": "2023-06-01"}).status_code


def user(gw: Gateway, name: str) -> dict[str, Any]:
    return dict(json.loads(gw.cli("users", "get", name, "--json").stdout))


def group_names(gw: Gateway, info: dict[str, Any]) -> list[str]:
    names = {g["id"]: g["name"] for g in json.loads(gw.cli("groups", "list", "--json").stdout)}
    return sorted(names[g] for g in info["groups"])


def run_claude(gw: Gateway, token: str, prompt: str, tmp_path: Path) -> dict[str, Any]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home), "ANTHROPIC_BASE_URL": gw.base_url,
           "ANTHROPIC_AUTH_TOKEN": token, "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
           "DISABLE_AUTOUPDATER": "1", "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_MAX_RETRIES": "0"}
    proc = subprocess.run([str(CLAUDE), "-p", prompt, "--output-format", "json", "--model", "tollway-mock"],
                          capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL)
    try:
        return dict(json.loads(proc.stdout))
    except json.JSONDecodeError:
        pytest.fail(f"claude printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")


# ----- discovery and the device endpoint ------------------------------------------------------

def test_metadata_names_same_origin_endpoints(gateway: Gateway) -> None:
    meta = httpx.get(gateway.base_url + "/.well-known/oauth-authorization-server").json()
    assert meta["issuer"] == gateway.base_url
    assert meta["device_authorization_endpoint"] == gateway.base_url + "/oauth/device_authorization"
    assert meta["token_endpoint"] == gateway.base_url + "/oauth/token"
    assert meta["revocation_endpoint"] == gateway.base_url + "/oauth/revoke"
    assert DEVICE_GRANT in meta["grant_types_supported"] and "authorization_endpoint" not in meta


def test_device_codes_are_long_user_codes_base20_and_polling_is_paced(gateway: Gateway) -> None:
    device = start_device(gateway)
    assert len(device["device_code"]) >= 43  # 32 random bytes, base64url: 256 bits
    assert re.fullmatch(r"[BCDFGHJKLMNPQRSTVWXZ]{4}-[BCDFGHJKLMNPQRSTVWXZ]{4}", device["user_code"])
    assert device["verification_uri"] == gateway.base_url + "/device"
    assert device["interval"] == 1 and device["expires_in"] == 600
    first, second = poll(gateway, device["device_code"]), poll(gateway, device["device_code"])
    assert first.status_code == 400 and first.json()["error"] == "authorization_pending"
    assert second.status_code == 400 and second.json()["error"] == "slow_down"
    unknown = poll(gateway, "x" * 43)
    assert unknown.status_code == 400 and unknown.json()["error"] == "invalid_grant"
    assert set(unknown.json()) == {"error", "error_description"}
    bad = httpx.post(gateway.base_url + "/oauth/token", data={"grant_type": "password"})
    assert bad.json()["error"] == "unsupported_grant_type"


def test_a_wrong_user_code_is_refused_on_the_page(gateway: Gateway, browser: Browser) -> None:
    page = browser.new_page()
    try:
        page.goto(gateway.base_url + "/device")
        page.fill("#user_code", "BBBB-BBBB")
        page.click("#continue")
        assert "not valid" in page.inner_text("#error")
    finally:
        page.close()


# ----- the whole flow -------------------------------------------------------------------------

def test_sign_in_then_claude_code_answers_through_tollway(gateway: Gateway, browser: Browser, idp: OidcProvider,
                                                          tmp_path: Path) -> None:
    checked = idp.pkce_checked
    tokens = sign_in(gateway, browser, "ada")
    assert idp.pkce_checked == checked + 1  # the IdP saw the S256 verifier match
    assert tokens["token_type"] == "Bearer" and tokens["expires_in"] == 600
    assert tokens["email"] == "ada@example.com" and tokens["refresh_token"]
    # Provisioned just in time, in the Tollway group the rule maps eng-* to.
    ada = user(gateway, "ada")
    assert ada["email"] == "ada@example.com"
    assert group_names(gateway, ada) == ["engineering"]
    result = run_claude(gateway, tokens["access_token"], "say hi", tmp_path)
    assert result["is_error"] is False, result
    assert result["result"] == "Hello from the Tollway mock model. You said: say hi"
    # The device code is single use.
    again = httpx.post(gateway.base_url + "/oauth/token", data={"grant_type": DEVICE_GRANT, "device_code": "x"})
    assert again.json()["error"] == "invalid_grant"


def test_the_token_works_on_other_data_plane_routes(gateway: Gateway, browser: Browser) -> None:
    token = sign_in(gateway, browser, "cy")["access_token"]
    client = anthropic.Anthropic(base_url=gateway.base_url, auth_token=token, max_retries=0)
    assert client.messages.count_tokens(model="tollway-mock", messages=[{"role": "user", "content": "hi"}]
                                        ).input_tokens > 0
    assert "tollway-mock" in [m.id for m in client.models.list().data]
    chat = httpx.post(gateway.base_url + "/v1/chat/completions", headers={"authorization": f"Bearer {token}"},
                      json={"model": "tollway-mock", "messages": [{"role": "user", "content": "hi"}]})
    assert chat.status_code == 200, chat.text


def test_a_denied_sign_in_gets_access_denied(gateway: Gateway, browser: Browser) -> None:
    device = start_device(gateway)
    approve_in_browser(browser, device["verification_uri_complete"], device["user_code"], "ada", "pw-ada", "deny")
    resp = poll(gateway, device["device_code"])
    assert resp.status_code == 400 and resp.json()["error"] == "access_denied"


def test_an_unmapped_person_is_provisioned_without_model_access(gateway: Gateway, browser: Browser) -> None:
    token = sign_in(gateway, browser, "bob")["access_token"]
    assert user(gateway, "bob")["groups"] == []
    assert message_status(gateway, token) in (403, 404)  # no group grants any model
    settings = httpx.get(gateway.base_url + "/managed/settings", headers={"authorization": f"Bearer {token}"})
    assert settings.status_code == 404


# ----- refresh, revocation, deprovisioning ----------------------------------------------------

def test_refresh_rotates_and_a_replayed_refresh_token_ends_the_session(gateway: Gateway, browser: Browser) -> None:
    first = sign_in(gateway, browser, "cy")
    second = refresh(gateway, first["refresh_token"])
    assert second.status_code == 200, second.text
    new = second.json()
    assert new["refresh_token"] != first["refresh_token"] and new["access_token"] != first["access_token"]
    assert message_status(gateway, new["access_token"]) == 200
    replay = refresh(gateway, first["refresh_token"])
    assert replay.status_code == 401 and replay.json()["error"] == "invalid_grant"
    # Replay detection revokes the whole session: the rotated tokens stop too.
    assert refresh(gateway, new["refresh_token"]).json()["error"] == "invalid_grant"
    until(lambda: message_status(gateway, new["access_token"]) == 401)


def test_revocation_endpoint_ends_the_session(gateway: Gateway, browser: Browser) -> None:
    tokens = sign_in(gateway, browser, "cy")
    assert message_status(gateway, tokens["access_token"]) == 200
    resp = httpx.post(gateway.base_url + "/oauth/revoke", data={"token": tokens["access_token"]})
    assert resp.status_code == 200
    until(lambda: message_status(gateway, tokens["access_token"]) == 401)
    assert refresh(gateway, tokens["refresh_token"]).json()["error"] == "invalid_grant"


def test_a_user_disabled_in_tollway_is_refused(gateway: Gateway, browser: Browser) -> None:
    tokens = sign_in(gateway, browser, "dee")
    assert message_status(gateway, tokens["access_token"]) == 200
    gateway.cli("users", "disable", "dee")
    until(lambda: message_status(gateway, tokens["access_token"]) == 401)  # within the key refresh interval
    resp = refresh(gateway, tokens["refresh_token"])
    assert resp.status_code == 401 and resp.json()["error"] == "invalid_grant"
    gateway.cli("users", "enable", "dee")


def test_a_person_removed_from_the_idp_gets_invalid_grant_at_refresh(
        gateway: Gateway, idp: OidcProvider, browser: Browser) -> None:
    idp.users["eve"] = IdpUser("pw-eve", "eve@example.com", "eve", ["eng-data"])
    tokens = sign_in(gateway, browser, "eve")
    ok = refresh(gateway, tokens["refresh_token"])  # the IdP still knows eve: refreshed, groups re-read
    assert ok.status_code == 200, ok.text
    idp.remove_user("eve")
    gone = refresh(gateway, ok.json()["refresh_token"])
    assert gone.status_code == 401 and gone.json()["error"] == "invalid_grant"
    until(lambda: message_status(gateway, ok.json()["access_token"]) == 401)


def test_an_expired_access_token_is_refused_and_refresh_brings_a_working_one(
        emulator: AnthropicEmulator, idp: OidcProvider, browser: Browser, tmp_path: Path) -> None:
    gw = _start(tmp_path / "gw", emulator, idp, access_token_ttl=2)
    try:
        tokens = sign_in(gw, browser, "cy")
        assert tokens["expires_in"] == 2
        until(lambda: message_status(gw, tokens["access_token"]) == 401, seconds=10)
        resp = refresh(gw, tokens["refresh_token"])
        assert resp.status_code == 200, resp.text
        client = anthropic.Anthropic(base_url=gw.base_url, auth_token=resp.json()["access_token"], max_retries=0)
        reply = client.messages.create(model="tollway-mock", max_tokens=32,
                                       messages=[{"role": "user", "content": "hi"}])
        assert reply.content[0].type == "text" and reply.content[0].text.startswith("Hello from the Tollway mock")
    finally:
        gw.stop()


# ----- optional endpoints ---------------------------------------------------------------------

def test_managed_settings_per_group_with_etag(gateway: Gateway, browser: Browser) -> None:
    token = sign_in(gateway, browser, "cy")["access_token"]
    auth = {"authorization": f"Bearer {token}"}
    resp = httpx.get(gateway.base_url + "/managed/settings", headers=auth)
    assert resp.status_code == 200, resp.text
    body = resp.json()
    assert body["settings"]["env"] == {"CLAUDE_CODE_ENABLE_GATEWAY_MODEL_DISCOVERY": "1"}
    assert body["checksum"].startswith("sha256:") and resp.headers["etag"] == f'"{body["checksum"]}"'
    same = httpx.get(gateway.base_url + "/managed/settings", headers={**auth, "if-none-match": resp.headers["etag"]})
    assert same.status_code == 304
    assert httpx.get(gateway.base_url + "/managed/settings").status_code == 401


def test_otlp_sinks_accept_with_a_token_and_refuse_without(gateway: Gateway, browser: Browser) -> None:
    token = sign_in(gateway, browser, "cy")["access_token"]
    for signal in ("metrics", "logs", "traces"):
        ok = httpx.post(f"{gateway.base_url}/v1/{signal}", content=b"{}",
                        headers={"authorization": f"Bearer {token}", "content-type": "application/json"})
        assert ok.status_code == 200, ok.text
        refused = httpx.post(f"{gateway.base_url}/v1/{signal}", content=b"{}")
        assert refused.status_code == 401 and refused.json()["error"]["type"] == "authentication_error"


# ----- abuse resistance ------------------------------------------------------------------------

def test_rate_limits_and_code_expiry(emulator: AnthropicEmulator, idp: OidcProvider, tmp_path: Path) -> None:
    gw = _start(tmp_path / "gw", emulator, idp, page_rate_per_minute=5, token_rate_per_minute=6,
                device_code_ttl=1)
    try:
        pages = [httpx.get(gw.base_url + "/device").status_code for _ in range(6)]
        assert pages == [200] * 5 + [429]
        device = start_device(gw)
        until(lambda: poll(gw, device["device_code"]).json()["error"] == "expired_token", seconds=5, step=0.5)
        statuses = [poll(gw, device["device_code"]).status_code for _ in range(6)]
        assert statuses[-1] == 429
        assert poll(gw, device["device_code"]).json()["error"] == "slow_down"
    finally:
        gw.stop()

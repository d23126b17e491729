"""Sign a person in through a running gateway with plain HTTP: the same requests Claude Code and
a browser make (device authorization, the verification page's forms, the IdP's login form, the
approval, the token poll), with no browser. For tests that need signed-in people quickly
(roles, sign-in audit); tests/test_signin.py drives the pages in a real Chromium."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any
from urllib.parse import urljoin

import httpx
from cryptography.fernet import Fernet

from tests.conftest import UPSTREAM_KEY, Gateway, standard_config, start_gateway
from tests.oidc_provider import OidcProvider

CLIENT_ID, CLIENT_SECRET = "tollway-gateway", "idp-client-secret"

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
UA = {"user-agent": "claude-code/2.1.330"}
_HIDDEN = re.compile(r"<input type=hidden name=(\w+) value='([^']*)'>")


def signin_config(upstream_url: str, idp: OidcProvider, client_id: str = CLIENT_ID, **signin: Any) -> dict[str, Any]:
    """A gateway config with sign-in through IDP: the IdP's `eng-*` groups map to `engineering`,
    rates high enough for tests, SIGNIN overriding or adding keys of the `signin` block."""
    config = standard_config(upstream_url)
    config["signin"] = {
        "enabled": True,
        "oidc": {"issuer": idp.issuer, "client_id": client_id, "client_secret": "${TEST_IDP_SECRET}",
                 "scopes": ["openid", "profile", "email", "groups"]},
        "group_rules": [{"match": "eng-*", "group": "engineering"}],
        "encryption_key": "${TEST_SIGNIN_KEY}", "poll_interval": 1,
        "token_rate_per_minute": 1000, "page_rate_per_minute": 1000,
        **signin,
    }
    return config


def start_signin_gateway(workdir: Path, config: dict[str, Any], client_secret: str = CLIENT_SECRET) -> Gateway:
    """`start_gateway` with the secrets a `signin_config` names in its environment (a fresh Fernet key)."""
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TEST_IDP_SECRET": client_secret,
           "TEST_SIGNIN_KEY": Fernet.generate_key().decode()}
    return start_gateway(workdir, config, env=env)


def _hidden(page: str) -> dict[str, str]:
    import html

    return {k: html.unescape(v) for k, v in _HIDDEN.findall(page)}


def device_authorization(gw: Gateway) -> dict[str, Any]:
    resp = httpx.post(gw.base_url + "/oauth/device_authorization", data={"surface": "claude_code"}, headers=UA)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())


def approve(gw: Gateway, user_code: str, username: str, password: str, decision: str = "approve") -> httpx.Response:
    """The browser's part: enter the code, sign in at the IdP, approve (or deny). The last page."""
    with httpx.Client(follow_redirects=False, timeout=10) as web:
        to_idp = web.post(gw.base_url + "/device", data={"user_code": user_code})
        assert to_idp.status_code == 303, to_idp.text
        login = web.get(to_idp.headers["location"])
        assert login.status_code == 200, login.text
        authorize = urljoin(to_idp.headers["location"], "/authorize")
        back = web.post(authorize, data={**_hidden(login.text), "username": username, "password": password})
        assert back.status_code == 302, back.text
        approval = web.get(back.headers["location"])
        if approval.status_code != 200:
            return approval
        return web.post(gw.base_url + "/device/decision",
                        data={"approval": _hidden(approval.text)["approval"], "decision": decision})


def poll_token(gw: Gateway, device: dict[str, Any], seconds: float = 15.0) -> httpx.Response:
    """Poll the token endpoint at the device's interval until it answers something final."""
    deadline = time.monotonic() + seconds
    while True:
        resp = httpx.post(gw.base_url + "/oauth/token",
                          data={"grant_type": DEVICE_GRANT, "device_code": device["device_code"]}, headers=UA)
        if resp.status_code == 200 or resp.json().get("error") not in ("authorization_pending", "slow_down"):
            return resp
        if time.monotonic() > deadline:
            raise AssertionError(f"no token within {seconds} s: {resp.text}")
        time.sleep(device["interval"])


def sign_in(gw: Gateway, username: str, password: str | None = None) -> dict[str, Any]:
    """Tokens for USERNAME (an account of tests/oidc_provider.py), after a full device sign-in."""
    device = device_authorization(gw)
    done = approve(gw, device["user_code"], username, password or "pw-" + username)
    assert done.status_code == 200 and "id=done" in done.text, done.text
    resp = poll_token(gw, device)
    assert resp.status_code == 200, resp.text
    return dict(resp.json())

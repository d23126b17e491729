"""The web console (/console) end to end: a real `tollway serve`, Debian's Chromium driven by
Playwright, the loopback OIDC provider for single sign-on, and the Anthropic SDK on the data plane.

One gateway and one browser for the module. Every page must load with no console error and no
request to any other host; a failing test leaves a screenshot under .pytest_artifacts/console/.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import anthropic
import httpx
import pytest
from playwright.sync_api import Browser, BrowserContext, ConsoleMessage, Page, sync_playwright

from tests.conftest import Gateway
from tests.emulator import AnthropicEmulator
from tests.oidc_provider import IdpUser, OidcProvider
from tests.signin_flow import signin_config, start_signin_gateway
from tests.test_signin import CHROMIUM, CHROMIUM_ARGS, until

CLIENT_ID, CLIENT_SECRET = "tollway-console", "console-idp-secret"
ARTEFACTS = Path(__file__).resolve().parent.parent / ".pytest_artifacts" / "console"
PAGES = ("overview", "people", "keys", "models", "usage", "requests", "audit", "dlp", "limits", "alerts")


@pytest.fixture(scope="module")
def idp() -> Iterator[OidcProvider]:
    with OidcProvider(CLIENT_ID, CLIENT_SECRET) as provider:
        provider.users["ada"] = IdpUser("pw-ada", "ada@example.com", "Ada Lovelace", ["eng-platform"])
        yield provider


@pytest.fixture(scope="module")
def gateway(emulator: AnthropicEmulator, idp: OidcProvider, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[Gateway]:
    config = signin_config(emulator.base_url, idp, CLIENT_ID, access_token_ttl=600)
    config["audit"] = {"payload_groups": ["engineering"]}
    gw = start_signin_gateway(tmp_path_factory.mktemp("console"), config, CLIENT_SECRET)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def admin_key(gateway: Gateway) -> str:
    """The admin key the console signs in with; also makes the group the IdP rule maps to."""
    key = str(json.loads(gateway.cli("keys", "create", "--name", "console-admin", "--admin", "--json").stdout)["key"])
    admin(gateway, key, "/groups", {"name": "engineering", "grants": ["*"]})
    return key


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watch:
    """Every request the browser made and every console error it printed, for one context."""

    def __init__(self, context: BrowserContext) -> None:
        self.requests: list[str] = []
        self.errors: list[str] = []
        context.on("request", lambda r: self.requests.append(r.url))
        context.on("console", self._console)
        context.on("weberror", lambda e: self.errors.append(f"page error: {e.error}"))

    def _console(self, msg: ConsoleMessage) -> None:
        if msg.type != "error":
            return
        where = msg.location.get("url", "") if msg.location else ""
        self.errors.append(f"{msg.text} ({where})")

    def foreign(self, base: str) -> list[str]:
        host = urlsplit(base).netloc
        return [u for u in self.requests if urlsplit(u).scheme not in ("blob", "data")
                and urlsplit(u).netloc != host]


@contextmanager
def artefacts(page: Page, name: str) -> Iterator[None]:
    """On failure, keep a screenshot of the page (CI uploads .pytest_artifacts/)."""
    try:
        yield
    except BaseException:
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / f"{name}.png"), full_page=True)
        raise


@pytest.fixture
def console(browser: Browser, gateway: Gateway, admin_key: str, request: pytest.FixtureRequest
            ) -> Iterator[tuple[Page, Watch]]:
    """A fresh tab signed in with the admin key (pasted into the login form)."""
    context = browser.new_context()
    watch = Watch(context)
    page = context.new_page()
    with artefacts(page, request.node.name):
        page.goto(gateway.base_url + "/console/")
        page.fill("#admin-key", admin_key)
        page.click("#signin-key")
        page.wait_for_selector("#page-overview[data-loaded='1']")
        assert page.inner_text("#whoami").endswith("org admin")
    try:
        with artefacts(page, request.node.name):
            yield page, watch
    finally:
        context.close()


def visit(page: Page, name: str) -> None:
    page.goto(page.url.split("#")[0] + f"#/{name}")
    page.wait_for_selector(f"#page-{name}[data-loaded='1']")
    if os.environ.get("TOLLWAY_CONSOLE_SCREENSHOTS"):  # every page, for a look (docs, reviews)
        ARTEFACTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(ARTEFACTS / f"page-{name}.png"), full_page=True)


def admin(gw: Gateway, key: str, path: str, body: Any = None) -> Any:
    """The admin API, for what a test sets up or checks outside the browser (faster than the CLI)."""
    url, headers = gw.base_url + "/admin/v1" + path, {"authorization": f"Bearer {key}"}
    resp = httpx.get(url, headers=headers) if body is None else httpx.post(url, headers=headers, json=body)
    assert resp.status_code in (200, 201), resp.text
    return resp.json()


def test_every_page_loads_offline_with_a_strict_csp(console: tuple[Page, Watch], gateway: Gateway) -> None:
    page, watch = console
    for name in PAGES:
        visit(page, name)
    # Alerts: a rule added in the console is listed (the admin API stores it), with its delivery log.
    page.fill("#alert-name", "team spend")
    page.fill("#alert-webhook", "https://hooks.example.invalid/tollway")
    page.click("#alert-save")
    page.wait_for_selector("#alert-rules td:has-text('team spend')")
    assert "50 %, 80 %, 100 %" in page.inner_text("#alert-rules")
    assert page.is_visible("#alert-deliveries")
    assert watch.errors == []
    assert watch.foreign(gateway.base_url) == []
    assert any("/admin/v1/insights/overview" in u for u in watch.requests)
    csp = httpx.get(gateway.base_url + "/console/").headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "default-src 'none'" in csp
    assert httpx.get(gateway.base_url + "/console/static/app.js").headers["content-type"].startswith(
        ("text/javascript", "application/javascript"))


def test_a_key_made_in_the_console_works_until_revoked_there(console: tuple[Page, Watch], gateway: Gateway,
                                                             admin_key: str) -> None:
    page, watch = console
    visit(page, "people")
    page.fill("#new-user-name", "grace")
    page.fill("#new-user-email", "grace@example.com")
    page.fill("#new-user-groups", "engineering")
    page.click("#create-user")
    page.wait_for_selector("#users-table td:text-is('grace')")
    visit(page, "keys")
    page.fill("#key-name", "grace-laptop")
    page.fill("#key-user", "grace")
    page.click("#create-key")
    secret = page.inner_text("#key-secret-value", timeout=10_000)
    key_id = page.inner_text("#key-secret p.muted").removeprefix("Key id ")
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=secret, max_retries=0)
    msg = client.messages.create(model="tollway-mock", max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].type == "text"

    page.click(f"#key-revoke-{key_id}")
    page.click(f"#key-revoke-{key_id}")  # the second click confirms
    page.wait_for_selector(f"#key-status-{key_id}:text-is('revoked')")

    def refused() -> bool:
        try:
            client.messages.create(model="tollway-mock", max_tokens=16, messages=[{"role": "user", "content": "x"}])
        except anthropic.AuthenticationError:
            return True
        return False

    until(refused, 10)

    # Done through the admin API, so audited as changes by the console's credential (records are
    # written behind the request: poll until the newest one is stored).
    def audited() -> bool:
        changes = admin(gateway, admin_key, "/audit?kind=change&limit=20")["data"]
        actions = {(c["action"], c["target"]) for c in changes}
        return ("key.revoke", key_id) in actions and ("key.create", key_id) in actions

    until(audited, 10)
    assert watch.errors == []


def test_a_budget_set_in_the_console_shows_with_what_is_left(console: tuple[Page, Watch], gateway: Gateway,
                                                            admin_key: str) -> None:
    page, _ = console
    admin(gateway, admin_key, "/users", {"name": "hopper"})
    visit(page, "limits")
    page.select_option("#lim-scope", "user")
    page.fill("#lim-ref", "hopper")
    page.fill("#lim-rpm", "30")
    page.fill("#lim-budget", "5")
    page.click("#lim-save")
    row = page.wait_for_selector("#limits-table tr:has(td:text-is('hopper'))")
    assert row is not None
    text = row.inner_text()
    assert "$5.00 / month" in text and "0 / 30" in text
    visit(page, "usage")
    page.select_option("#usage-by", "user")
    page.click("#usage-run")
    page.wait_for_selector("#usage-table")
    with page.expect_download() as download:
        page.click("#usage-csv")
    header = Path(download.value.path()).read_text().splitlines()[0]
    assert header.startswith("key,name,requests,errors")


def test_a_request_is_found_by_id_with_its_dlp_finding_and_payload(console: tuple[Page, Watch], gateway: Gateway,
                                                                    admin_key: str) -> None:
    page, _ = console
    lin = admin(gateway, admin_key, "/users", {"name": "lin", "groups": ["engineering"]})
    out = admin(gateway, admin_key, "/keys", {"name": "lin-key", "user_id": lin["id"]})
    client = anthropic.Anthropic(base_url=gateway.base_url, api_key=out["key"], max_retries=0)
    raw = client.messages.with_raw_response.create(
        model="tollway-mock", max_tokens=16,
        messages=[{"role": "user", "content": "write to lin.person@example.org about the invoice"}])
    request_id = raw.headers["request-id"]
    until(lambda: admin(gateway, admin_key, f"/insights/requests?request_id={request_id}")["data"])
    visit(page, "requests")
    page.fill("#req-id", request_id)
    page.click("#req-search")
    page.wait_for_selector("#req-detail:not([hidden])")
    assert request_id in page.inner_text("#req-detail h2")
    assert "email" in page.inner_text("#req-dlp-table")
    assert "lin" in page.inner_text("#req-detail dl")
    page.click("#req-payload-show")
    captured = page.inner_text("#req-payload pre >> nth=0")
    assert '"tollway-mock"' in captured
    visit(page, "dlp")
    assert re.search(r"email\s+log\s+\d", page.inner_text("#dlp-kinds"))
    # The overview's figures come from the hourly rollup the writer keeps beside the ledger.
    ledger = len(admin(gateway, admin_key, "/usage/requests?limit=1000"))
    assert admin(gateway, admin_key, "/insights/overview?days=1")["totals"]["requests"] == ledger
    visit(page, "overview")
    assert page.inner_text("#tile-requests .v") == f"{ledger:,}"


def test_the_audit_chain_is_verified_from_the_console(console: tuple[Page, Watch]) -> None:
    page, _ = console
    visit(page, "audit")
    page.click("#verify")
    page.wait_for_selector("#verify-status[data-state='done']", timeout=20_000)
    assert page.inner_text("#verify-status").startswith("Chain intact:")
    page.select_option("#audit-kind", "change")
    page.click("#audit-search")
    page.wait_for_selector("#audit-table td:text-is('change')")


def sso(page: Page, base: str, link: bool = True) -> None:
    """Through the console's SSO link (or straight to where it leads) and the IdP's login form,
    back to Tollway's callback."""
    if link:
        page.goto(base + "/console/")
        page.click("#sso")
    else:
        page.goto(base + "/console/login")
    page.wait_for_selector("#username")  # the IdP's login form
    page.fill("#username", "ada")
    page.fill("#password", "pw-ada")
    page.click("#signin")


def test_single_sign_on_mints_a_token_for_the_person(browser: Browser, gateway: Gateway, admin_key: str,
                                                     idp: OidcProvider) -> None:
    # First with scripts off, so the hand-off page stays and shows what it carries.
    context = browser.new_context(java_script_enabled=False)
    page = context.new_page()
    try:
        with artefacts(page, "sso-handoff"):
            sso(page, gateway.base_url, link=False)  # (the page's script shows the link)
            page.wait_for_selector("#handoff")
            token = page.get_attribute("meta[name=tollway-token]", "content")
            assert token and token.startswith("twa-") and token not in page.url
            assert page.get_attribute("meta[name=tollway-email]", "content") == "ada@example.com"
    finally:
        context.close()
    # The token is the person's: the data plane takes it, and the sign-in was audited.
    sdk = anthropic.Anthropic(base_url=gateway.base_url, api_key=token, max_retries=0)
    assert sdk.messages.create(model="tollway-mock", max_tokens=8, messages=[{"role": "user", "content": "hi"}]).content
    ada = next(u for u in admin(gateway, admin_key, "/users?limit=100")["data"] if u["name"] == "Ada Lovelace")
    assert ada["email"] == "ada@example.com"  # provisioned just in time from the ID token
    until(lambda: any(c["action"] == "console.sign_in" and c["target"] == ada["id"]  # written behind: poll
                      for c in admin(gateway, admin_key, "/audit?kind=change&limit=50")["data"]), 10)

    # Then as a person does it: the console takes the token and asks the admin API who this is.
    context = browser.new_context()
    watch = Watch(context)
    page = context.new_page()
    try:
        with artefacts(page, "sso"):
            sso(page, gateway.base_url)
            page.wait_for_url(re.compile(r"/console/#/overview$"))  # the hand-off page opened the console
            # A person signed in without an admin role is a developer: the console shows their own
            # keys and usage only, and the organisation-wide views refuse their token.
            page.wait_for_selector("#whoami:has-text('ada@example.com · developer')")
            assert [a.inner_text() for a in page.query_selector_all("#nav a")] == ["Keys", "Usage"]
            page.wait_for_selector("#page-keys[data-loaded='1']")
            page.fill("#key-name", "ada-laptop")
            page.click("#create-key")
            secret = page.inner_text("#key-secret-value").strip()
            assert secret.startswith("tw-")
            mine = httpx.get(gateway.base_url + "/admin/v1/me/keys", headers={"authorization": f"Bearer {token}"})
            assert [(k["name"], k["user_id"]) for k in mine.json()["data"]] == [("ada-laptop", ada["id"])]
            refused = httpx.get(gateway.base_url + "/admin/v1/insights/overview",
                                headers={"authorization": f"Bearer {token}"})
            assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
            assert anthropic.Anthropic(base_url=gateway.base_url, api_key=secret, max_retries=0).messages.create(
                model="tollway-mock", max_tokens=8, messages=[{"role": "user", "content": "hi"}]).content
            # Nothing but this gateway and the IdP's own sign-in pages.
            assert [u for u in watch.foreign(gateway.base_url) if not u.startswith(idp.issuer)] == []
    finally:
        context.close()


def test_console_routes_answer_without_sso_pages_leaking(gateway: Gateway) -> None:
    resp = httpx.get(gateway.base_url + "/console", follow_redirects=False)
    assert resp.status_code == 308 and resp.headers["location"] == "/console/"
    bad = httpx.get(gateway.base_url + "/console/callback?state=x&code=y")
    assert bad.status_code == 400 and "unknown or has expired" in bad.text

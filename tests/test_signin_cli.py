"""The real Claude Code `/login` against Tollway, typed into a terminal.

Claude Code runs interactively in tmux (send-keys / capture-pane) with a throwaway HOME whose
user settings name Tollway as the gateway (`forceLoginMethod: gateway`, `forceLoginGatewayUrl`),
so its sign-in screen is the gateway `/login`. The test answers its screens, reads the user code
it shows, approves that code in headless Chromium through the loopback OIDC provider, and then
asks a question: the answer comes from Tollway's mock model with the token Claude Code stored.
With a short access-token lifetime, a second question after expiry works only if Claude Code's
refresh (and Tollway's refresh at the IdP) worked.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Browser

from tests.conftest import Gateway
from tests.emulator import AnthropicEmulator
from tests.oidc_provider import IdpUser, OidcProvider
from tests.test_signin import CLAUDE, _start, approve_in_browser, browser, idp  # noqa: F401 - fixtures

pytestmark = pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")

# The access tokens' lifetime (signin.access_token_ttl). Short, so the wait for the first token to
# expire before the second question is (nearly) over by the time the first answer is on screen (the
# screens after sign-in took 14-16 s on this 2-core machine at load 8). Claude Code refreshes any token
# within five minutes of expiry before using it, so a short lifetime changes nothing else.
TTL = 8


class Terminal:
    """One tmux session running a command; screens are read with capture-pane."""

    def __init__(self, command: str) -> None:
        self.name = "tollway-" + uuid.uuid4().hex[:8]
        subprocess.run(["tmux", "new-session", "-d", "-s", self.name, "-x", "200", "-y", "50", command], check=True)

    def screen(self) -> str:
        out = subprocess.run(["tmux", "capture-pane", "-p", "-J", "-t", self.name], capture_output=True, text=True)
        return out.stdout

    def wait_for(self, text: str, seconds: float = 60.0) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            screen = self.screen()
            if text in screen:
                return screen
            time.sleep(0.3)
        pytest.fail(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def keys(self, *keys: str) -> None:
        for key in keys:
            subprocess.run(["tmux", "send-keys", "-t", self.name, key], check=True)
            time.sleep(0.3)  # let the TUI redraw between keys, as a person's typing does

    def press_until(self, key: str, text: str, tries: int = 10) -> None:
        """Send KEY until TEXT shows: a dialog drawn a moment ago may not take keys yet."""
        for _ in range(tries):
            self.keys(key)
            deadline = time.monotonic() + 3
            while time.monotonic() < deadline:
                if text in self.screen():
                    return
                time.sleep(0.3)
        pytest.fail(f"{text!r} never appeared; the screen was:\n{self.screen()}")

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


@pytest.fixture
def short_lived(emulator: AnthropicEmulator, idp: OidcProvider, tmp_path: Path) -> Iterator[Gateway]:  # noqa: F811
    idp.users["fay"] = IdpUser("pw-fay", "fay@example.com", "fay", ["eng-tools"])
    gw = _start(tmp_path / "gw", emulator, idp, access_token_ttl=TTL, poll_interval=1)
    yield gw
    gw.stop()


def test_claude_code_login_in_a_terminal_then_answers_and_refreshes(
        short_lived: Gateway, browser: Browser, idp: OidcProvider, tmp_path: Path) -> None:  # noqa: F811
    home = tmp_path / "home"
    (home / ".claude").mkdir(parents=True)
    (home / ".claude" / "settings.json").write_text(json.dumps(
        {"forceLoginMethod": "gateway", "forceLoginGatewayUrl": short_lived.base_url}))
    env = (f"env -i PATH=/usr/bin:/bin HOME={home} TERM=xterm-256color DISABLE_TELEMETRY=1 DISABLE_AUTOUPDATER=1 "
           "DISABLE_ERROR_REPORTING=1 CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC=1")
    term = Terminal(f"cd {tmp_path} && {env} {CLAUDE} --model tollway-mock; sleep 600")
    try:
        term.wait_for("Choose the text style")
        term.keys("Enter")
        screen = term.wait_for("Enter to connect")
        assert short_lived.base_url in screen
        term.keys("Enter")
        term.wait_for("Yes, trust this gateway")  # first contact: the loopback "fingerprint" prompt
        term.keys("Up", "Enter")
        screen = term.wait_for("Waiting for sign-in")
        code = re.search(r"Code:\s+([A-Z]{4}-[A-Z]{4})", screen)
        assert code, screen
        approve_in_browser(browser, f"{short_lived.base_url}/device?user_code={code.group(1)}", code.group(1),
                           "fay", "pw-fay")
        term.wait_for("Signed in to Cloud gateway as fay@example.com")  # the `email` from the token answer
        term.keys("Up", "Enter")
        term.wait_for("Connected to Cloud gateway")
        signed_in = time.monotonic()
        term.keys("Enter")
        term.wait_for("Press Enter to continue")  # security notes
        term.keys("Enter")
        term.wait_for("Yes, I trust this folder")
        term.keys("Down", "Enter")
        # fay's group has managed settings: Claude Code fetched /managed/settings and asks about them.
        term.wait_for("Managed settings require approval")
        term.press_until("Enter", "tollway-mock · Cloud gateway")
        term.keys("say hi", "Enter")
        term.wait_for("Hello from the Tollway mock model. You said: say hi")
        stored = json.loads((home / ".claude" / ".credentials.json").read_text())["enterpriseGateway"]
        assert stored["url"] == short_lived.base_url and stored["jwt"].startswith("twa-")
        # After the first access token's lifetime, a new question needs a refreshed token.
        refreshes = idp.refreshes
        time.sleep(max(0.0, TTL + 1 - (time.monotonic() - signed_in)))  # the clock must pass expiry
        term.keys("say again", "Enter")
        term.wait_for("Hello from the Tollway mock model. You said: say again")
        assert idp.refreshes > refreshes  # Tollway's refresh asked the IdP, so the client did refresh
        renewed = json.loads((home / ".claude" / ".credentials.json").read_text())["enterpriseGateway"]
        assert renewed["jwt"] != stored["jwt"] and renewed["idpRefreshToken"] != stored["idpRefreshToken"]
    finally:
        term.close()

"""Tollway → Microsoft Foundry (tests/foundry_emulator.py) with the real anthropic SDK: an API key,
and an Entra ID token printed by a configured command, fetched again after the resource refuses it."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import anthropic
import pytest

from tests.conftest import NO_RETRIES, Gateway, start_gateway
from tests.foundry_emulator import FoundryEmulator

FOUNDRY_KEY = "foundry-test-key"
TOOLS = [{"name": "Bash", "description": "run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}]


@pytest.fixture(scope="module")
def emu() -> Iterator[FoundryEmulator]:
    with FoundryEmulator(api_key=FOUNDRY_KEY) as e:
        yield e


@pytest.fixture(scope="module")
def gw(emu: FoundryEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {"retries": NO_RETRIES, "models": [{"id": "claude-foundry", "upstream": {
        "provider": "foundry", "base_url": emu.base_url, "api_key": "${TEST_FOUNDRY_KEY}",
        "model": "claude-sonnet-4-5"}}]}
    gateway = start_gateway(tmp_path_factory.mktemp("foundry"), config, env={"TEST_FOUNDRY_KEY": FOUNDRY_KEY})
    yield gateway
    gateway.stop()


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)


def test_api_key_message_stream_tools_and_count(gw: Gateway, emu: FoundryEmulator) -> None:
    emu.reset()
    c = client(gw)
    resp = c.messages.with_raw_response.create(
        model="claude-foundry", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "fast-mode-2026-02-01,interleaved-thinking-2025-05-14"})
    assert resp.parse().content[0].text == "Hello from the Tollway mock model. You said: hi"
    assert resp.http_response.headers["apim-request-id"].startswith("foundry-")
    seen = emu.received[-1]
    assert seen.path == "/anthropic/v1/messages" and seen.headers["api-key"] == FOUNDRY_KEY
    assert seen.headers["anthropic-beta"] == "interleaved-thinking-2025-05-14" and seen.json["model"] == (
        "claude-sonnet-4-5")
    ask = [{"role": "user", "content": 'call Bash with {"command": "pwd"}'}]
    with c.messages.stream(model="claude-foundry", max_tokens=200, tools=TOOLS, messages=ask) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use" and first.content[-1].input == {"command": "pwd"}
    counted = c.messages.count_tokens(model="claude-foundry", messages=[{"role": "user", "content": "count"}])
    assert counted.input_tokens > 0 and emu.received[-1].path == "/anthropic/v1/messages/count_tokens"


TOKEN_SCRIPT = "import pathlib, sys; print(pathlib.Path(sys.argv[1]).read_text().strip())"


def test_entra_token_from_a_command_is_reused_and_fetched_again_when_refused(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text("entra-token-1")
    runs = tmp_path / "runs"
    script = tmp_path / "token.py"
    script.write_text(f"import pathlib\np = pathlib.Path({str(runs)!r})\n"
                      "p.write_text(str(int(p.read_text()) + 1) if p.exists() else '1')\n" + TOKEN_SCRIPT)
    with FoundryEmulator(entra_tokens=("entra-token-1",)) as emu:
        config = {"retries": NO_RETRIES, "models": [{"id": "claude-foundry", "upstream": {
            "provider": "foundry", "base_url": emu.base_url, "model": "claude-sonnet-4-5",
            "token_command": [sys.executable, str(script), str(token_file)]}}]}
        gateway = start_gateway(tmp_path / "gw", config)
        try:
            for _ in range(2):
                client(gateway).messages.create(model="claude-foundry", max_tokens=20,
                                                messages=[{"role": "user", "content": "x"}])
            assert runs.read_text() == "1"  # reused for token_ttl
            assert emu.received[-1].headers["authorization"] == "Bearer entra-token-1"
            # The token is rotated at the identity provider: the old one is refused once, then replaced.
            emu.entra_tokens = {"entra-token-2"}
            token_file.write_text("entra-token-2")
            with pytest.raises(anthropic.InternalServerError) as err:
                client(gateway).messages.create(model="claude-foundry", max_tokens=20,
                                                messages=[{"role": "user", "content": "x"}])
            assert err.value.status_code == 502 and "foundry (127.0.0.1)" in err.value.body["error"]["message"]
            msg = client(gateway).messages.create(model="claude-foundry", max_tokens=50,
                                                  messages=[{"role": "user", "content": "again"}])
            assert msg.content[0].text.endswith("You said: again")
            assert runs.read_text() == "2" and emu.received[-1].headers["authorization"] == "Bearer entra-token-2"
        finally:
            gateway.stop()

"""Claude Code (the real CLI, in its Anthropic mode) through Tollway to a Bedrock upstream: its
beta flags pass the compatibility table (the emulator refuses any Bedrock does not know), its
requests are SigV4-signed, and an agent turn runs a real tool and sends the tool_result back."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.bedrock_emulator import BedrockEmulator
from tests.conftest import NO_RETRIES, Gateway, start_gateway
from tests.test_bedrock import ISOLATED_AWS, KEY_ID, PROFILE_MODEL, SECRET, bedrock
from tests.test_node_clients import run_claude


@pytest.fixture(scope="module")
def emu() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(credentials={KEY_ID: (SECRET, None)}) as e:
        yield e


@pytest.fixture(scope="module")
def gw(emu: BedrockEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    # Claude Code is started with --model tollway-mock (tests/test_node_clients.py): here that id is on Bedrock.
    config = {"retries": NO_RETRIES, "models": [{"id": "tollway-mock", "upstream": bedrock(emu.base_url,
                                                                                           PROFILE_MODEL)}]}
    env = {**ISOLATED_AWS, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET}
    gateway = start_gateway(tmp_path_factory.mktemp("cc-bedrock"), config, env=env)
    yield gateway
    gateway.stop()


def test_claude_code_agent_turn_on_bedrock(gw: Gateway, emu: BedrockEmulator, tmp_path: Path) -> None:
    emu.reset()
    result = run_claude(gw, 'call Bash with {"command": "echo bedrock-$((6*7))"}', tmp_path, "--allowedTools", "Bash")
    assert result["is_error"] is False, result
    assert result["num_turns"] >= 2 and "bedrock-42" in result["result"]
    invokes = [s for s in emu.received if s.path.startswith(f"/model/{PROFILE_MODEL}/invoke")]
    assert len(invokes) >= 2 and all(s.access_key_id == KEY_ID for s in invokes)
    # The second turn carried the tool's result back to the model.
    assert any('"tool_result"' in s.body.decode() and "bedrock-42" in s.body.decode() for s in invokes)

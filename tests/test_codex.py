"""The Codex CLI (`@openai/codex`, pinned in tests/js/package.json) against Tollway's `/v1/responses`.

Codex runs `codex exec --json` with a custom model provider pointed at the gateway
(`wire_api = "responses"`, the key from an environment variable), a throwaway HOME and CODEX_HOME,
and every proxy variable pointing at a closed port, so nothing it does can reach the internet:
it needs only the gateway. Its native binary comes from the npm optional dependency
`@openai/codex-linux-x64`. What Codex 0.169 sends, so the tests know what the mock sees: a
streamed request with `store: false`, its system prompt as `developer` messages, function tools
(`exec_command` with `{"cmd": …}`, `write_stdin`, …), a `namespace` tool (sub-agents) and a
`web_search` tool; the shell tool is `exec_command`, so the prompt `call exec_command with
{"cmd": "…"}` makes the mock ask Codex to run that command.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import Gateway

JS = Path(__file__).parent / "js"
CODEX = JS / "node_modules" / ".bin" / "codex"
NOWHERE = "http://127.0.0.1:9"  # a closed port: any request that leaves loopback fails at once


def run_codex(gateway: Gateway, prompt: str,
              tmp_path: Path) -> tuple[list[dict[str, Any]], subprocess.CompletedProcess[str]]:
    """`codex exec --json PROMPT` on the mock model through the gateway; returns its JSONL events."""
    home = tmp_path / "home"
    codex_home = home / ".codex"
    codex_home.mkdir(parents=True, exist_ok=True)
    (codex_home / "config.toml").write_text(
        'model = "tollway-mock"\n'
        'model_provider = "tollway"\n'
        "check_for_update_on_startup = false\n"
        "[analytics]\n"
        "enabled = false\n"
        "[model_providers.tollway]\n"
        'name = "Tollway"\n'
        f'base_url = "{gateway.base_url}/v1"\n'
        'env_key = "TOLLWAY_API_KEY"\n'
        'wire_api = "responses"\n'
    )
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "CODEX_HOME": str(codex_home),
        "TOLLWAY_API_KEY": gateway.key,
        "HTTP_PROXY": NOWHERE, "HTTPS_PROXY": NOWHERE, "ALL_PROXY": NOWHERE,
        "NO_PROXY": "127.0.0.1,localhost",
    }
    proc = subprocess.run(
        [str(CODEX), "exec", "--json", "--ephemeral", "--strict-config", "--skip-git-repo-check", prompt],
        capture_output=True, text=True, env=env, timeout=120, cwd=work, stdin=subprocess.DEVNULL,
    )
    events = []
    for line in proc.stdout.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            pytest.fail(f"codex printed a line that is not JSON: {line!r}\nstderr:\n{proc.stderr}")
    return events, proc


def _items(events: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [e["item"] for e in events if e.get("type") == "item.completed" and e["item"].get("type") == kind]


def test_codex_plain_prompt(gateway: Gateway, tmp_path: Path) -> None:
    events, proc = run_codex(gateway, "say hi", tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert [m["text"] for m in _items(events, "agent_message")] == [
        "Hello from the Tollway mock model. You said: say hi"]
    done = [e for e in events if e.get("type") == "turn.completed"]
    assert len(done) == 1 and done[0]["usage"]["output_tokens"] == 10
    assert not [e for e in events if e.get("type") in ("turn.failed", "error")], events


def test_codex_runs_the_shell_command_the_model_asks_for(gateway: Gateway, tmp_path: Path) -> None:
    # The prompt holds $((6*7)), the output holds 42: only a real shell run produces it.
    events, proc = run_codex(gateway, 'call exec_command with {"cmd": "echo tollway-codex-$((6*7))"}', tmp_path)
    assert proc.returncode == 0, proc.stderr
    runs = _items(events, "command_execution")
    assert len(runs) == 1, events
    assert runs[0]["exit_code"] == 0 and runs[0]["aggregated_output"] == "tollway-codex-42\n"
    messages = [m["text"] for m in _items(events, "agent_message")]
    assert messages[0] == "I'll call exec_command."
    # The second turn sent the command's output back as a function_call_output: the mock quotes it.
    assert messages[-1].startswith("The tool returned:") and "tollway-codex-42" in messages[-1]

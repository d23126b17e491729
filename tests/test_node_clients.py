"""Real JavaScript clients against Tollway: the TypeScript SDK and the Claude Code CLI.

Both are pinned in tests/js/package.json and installed by `make test` (`npm ci`). Claude Code
runs with a throwaway HOME, telemetry and non-essential traffic off, and no retries, so a
failure shows at once instead of after back-off.
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
CLAUDE = JS / "node_modules" / ".bin" / "claude"


def test_typescript_sdk_create_stream_and_tools(gateway: Gateway) -> None:
    env = {**os.environ, "TOLLWAY_BASE_URL": gateway.base_url, "TOLLWAY_API_KEY": gateway.key,
           "TOLLWAY_MODEL": "tollway-mock"}
    proc = subprocess.run(["node", str(JS / "sdk_check.mjs")], capture_output=True, text=True, env=env,
                          timeout=60, cwd=JS)
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["create"]["stop_reason"] == "end_turn"
    assert out["create"]["text"].startswith("Hello from the Tollway mock model.")
    assert out["stream"]["deltas"] > 3 and out["stream"]["stop_reason"] == "end_turn"
    assert out["tool"]["first_stop_reason"] == "tool_use"
    assert out["tool"]["tool_name"] == "Bash" and out["tool"]["tool_input"] == {"command": "echo hi"}
    assert out["tool"]["final_text"] == "The tool returned: hi"


def run_claude(gateway: Gateway, prompt: str, tmp_path: Path, *flags: str, key: str | None = None) -> dict[str, Any]:
    """`claude -p PROMPT --output-format json` pointed at the gateway; returns the result object."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "ANTHROPIC_BASE_URL": gateway.base_url,
        "ANTHROPIC_API_KEY": key or gateway.key,
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    proc = subprocess.run(
        [str(CLAUDE), "-p", prompt, "--output-format", "json", "--model", "tollway-mock", *flags],
        capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    try:
        result: dict[str, Any] = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"claude printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return result


def test_claude_code_plain_prompt(gateway: Gateway, tmp_path: Path) -> None:
    result = run_claude(gateway, "say hi", tmp_path)
    assert result["is_error"] is False, result
    assert result["result"] == "Hello from the Tollway mock model. You said: say hi"


def test_claude_code_runs_bash_and_quotes_its_output(gateway: Gateway, tmp_path: Path) -> None:
    # The prompt holds $((6*7)), the answer holds 42: only a real shell run produces it.
    result = run_claude(gateway, 'call Bash with {"command": "echo tollway-$((6*7))"}', tmp_path,
                        "--allowedTools", "Bash")
    assert result["is_error"] is False, result
    assert result["num_turns"] >= 2
    assert "tollway-42" in result["result"]
    assert result["result"].startswith("The tool returned:")


def test_claude_code_with_a_wrong_key_reports_401(gateway: Gateway, tmp_path: Path) -> None:
    result = run_claude(gateway, "say hi", tmp_path, key="tw-wrong")
    assert result["is_error"] is True
    assert result.get("api_error_status") == 401

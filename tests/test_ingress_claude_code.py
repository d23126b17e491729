"""Claude Code (the real CLI) in Bedrock mode and in Vertex mode, pointed at Tollway's cloud
ingress: plain prompts, an agent turn that runs a real tool and sends the tool_result back, and
a wrong key. The environment is the one docs/providers.md documents for each mode."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import UPSTREAM_KEY, Gateway, standard_config, start_gateway
from tests.emulator import AnthropicEmulator
from tests.test_node_clients import CLAUDE


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gateway = start_gateway(tmp_path_factory.mktemp("ingress-cc"), standard_config(emulator.base_url),
                            env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gateway
    gateway.stop()


def cloud_env(gw: Gateway, mode: str, key: str) -> dict[str, str]:
    """The documented environment for MODE ("bedrock" or "vertex")."""
    if mode == "bedrock-bearer":  # Bedrock's API-key variable: Claude Code sends it as a bearer token
        return {"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_BEDROCK_BASE_URL": gw.base_url,
                "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1", "AWS_REGION": "us-east-1", "AWS_BEARER_TOKEN_BEDROCK": key}
    if mode == "bedrock":
        return {"CLAUDE_CODE_USE_BEDROCK": "1", "ANTHROPIC_BEDROCK_BASE_URL": gw.base_url,
                "CLAUDE_CODE_SKIP_BEDROCK_AUTH": "1", "AWS_REGION": "us-east-1",
                "ANTHROPIC_CUSTOM_HEADERS": f"x-api-key: {key}"}
    return {"CLAUDE_CODE_USE_VERTEX": "1", "ANTHROPIC_VERTEX_BASE_URL": gw.base_url + "/v1",
            "CLAUDE_CODE_SKIP_VERTEX_AUTH": "1", "ANTHROPIC_VERTEX_PROJECT_ID": "p", "CLOUD_ML_REGION": "us-east5",
            "ANTHROPIC_CUSTOM_HEADERS": f"x-api-key: {key}"}


def run_claude_in(mode: str, gw: Gateway, prompt: str, tmp_path: Path, *flags: str,
                  key: str | None = None) -> dict[str, Any]:
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(home),
        "DISABLE_TELEMETRY": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_MAX_RETRIES": "0",
        "ANTHROPIC_SMALL_FAST_MODEL": "tollway-mock",
        **cloud_env(gw, mode, key or gw.key),
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


def answered_on(gw: Gateway, admin: str, route: str) -> int:
    """How many requests on ROUTE this gateway's audit log holds as answered (200)."""
    count, params = 0, {"limit": 100, "kind": "request", "status": 200}
    while True:
        page = httpx.get(gw.base_url + "/admin/v1/audit", params=params, headers={"x-api-key": admin}).json()
        count += sum(1 for r in page["data"] if r["route"] == route)
        if not page["has_more"]:
            return count
        params = {**params, "after": page["last_id"]}


@pytest.mark.parametrize("mode", ["bedrock", "bedrock-bearer", "vertex"])
def test_plain_prompt(mode: str, gw: Gateway, tmp_path: Path) -> None:
    result = run_claude_in(mode, gw, "say hi", tmp_path)
    assert result["is_error"] is False, result
    assert result["result"] == "Hello from the Tollway mock model. You said: say hi"


@pytest.mark.parametrize("mode", ["bedrock", "vertex"])
def test_agent_turn_runs_a_tool(mode: str, gw: Gateway, tmp_path: Path) -> None:
    admin = json.loads(gw.cli("keys", "create", "--name", "cc-auditor", "--admin", "--json").stdout)["key"]
    route = "bedrock_invoke_stream" if mode == "bedrock" else "vertex_stream_raw_predict"
    before = answered_on(gw, admin, route)
    result = run_claude_in(mode, gw, f'call Bash with {{"command": "echo {mode}-$((6*7))"}}', tmp_path,
                           "--allowedTools", "Bash")
    assert result["is_error"] is False, result
    assert result["num_turns"] >= 2 and f"{mode}-42" in result["result"]
    assert result["result"].startswith("The tool returned:")
    deadline = time.monotonic() + 8  # the audit log is written behind: poll until both turns are in
    while answered_on(gw, admin, route) - before < 2 and time.monotonic() < deadline:
        time.sleep(0.1)
    assert answered_on(gw, admin, route) - before >= 2


@pytest.mark.parametrize("mode", ["bedrock", "bedrock-bearer", "vertex"])
def test_wrong_key_is_401(mode: str, gw: Gateway, tmp_path: Path) -> None:
    result = run_claude_in(mode, gw, "say hi", tmp_path, key="tw-wrong")
    assert result["is_error"] is True
    assert result.get("api_error_status") == 401 or "401" in str(result.get("result")), result

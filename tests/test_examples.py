"""The two-models example does what its comments say: the CLI commands written in it, run as
written on its config, give the `senior` group both models and everyone else only the cheap one.
A real gateway on the example's config; /v1/models and the refusal come before any upstream call."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import time
from pathlib import Path

import httpx

from tests.conftest import BIN, free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "two-models-access.yaml"


def test_the_two_models_example_grants_what_it_says(tmp_path: Path) -> None:
    config = tmp_path / "two-models-access.yaml"
    shutil.copy(EXAMPLE, config)
    env = {**os.environ, "ANTHROPIC_API_KEY": "sk-ant-placeholder", "COLUMNS": "200"}
    commands = [line.split("#", 1)[1].strip() for line in EXAMPLE.read_text().splitlines()
                if line.startswith("#   tollway ")]
    assert len(commands) >= 5
    for command in commands:
        args = shlex.split(command)[1:]
        proc = subprocess.run([str(BIN), *args, "--config", str(config)], capture_output=True, text=True,
                              env=env, timeout=60)
        assert proc.returncode == 0, (command, proc.stderr)

    def key(*owner: str) -> str:
        out = subprocess.run([str(BIN), "keys", "create", "--name", "probe", *owner, "--json", "--config",
                              str(config)], capture_output=True, text=True, env=env, timeout=60)
        return str(json.loads(out.stdout)["key"])

    senior, everyone = key("--user", "ann"), key()
    port = free_port()
    proc = subprocess.Popen([str(BIN), "serve", "--config", str(config), "--port", str(port)], cwd=tmp_path,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        base = f"http://127.0.0.1:{port}"

        def models(secret: str) -> list[str]:
            return sorted(m["id"] for m in httpx.get(base + "/v1/models", headers={"x-api-key": secret}).json()["data"])

        deadline = time.monotonic() + 30
        while True:
            try:
                if httpx.get(base + "/ready", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None
            time.sleep(0.2)
        assert models(senior) == ["claude-haiku-4-5", "claude-opus-4-1"]
        assert models(everyone) == ["claude-haiku-4-5"]
        refused = httpx.post(base + "/v1/messages", headers={"x-api-key": everyone}, json={
            "model": "claude-opus-4-1", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]})
        assert refused.status_code == 403 and refused.json()["error"]["type"] == "permission_error"
    finally:
        proc.terminate()
        proc.communicate(timeout=15)

"""The command line on a fresh directory: config check, keys, and serve's first start."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import stat
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import BIN, free_port, run_cli


def _write(tmp_path: Path, config: object) -> Path:
    path = tmp_path / "tollway.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_config_check_accepts_the_documented_example(tmp_path: Path) -> None:
    path = _write(tmp_path, {
        "store": {"url": f"sqlite:///{tmp_path}/t.db"},
        "models": [
            {"id": "claude-sonnet-4-5-20250929", "display_name": "Claude Sonnet 4.5",
             "upstream": {"provider": "anthropic", "base_url": "https://api.anthropic.com",
                          "api_key": "${ANTHROPIC_API_KEY}", "model": "claude-sonnet-4-5-20250929"},
             "pricing": {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.3}},
            {"id": "tollway-mock", "upstream": {"provider": "mock"}},
        ],
    })
    out = run_cli("config", "check", config=path, env={"ANTHROPIC_API_KEY": "sk-test"})
    assert "config OK: 2 model(s)" in out.stdout
    assert "tollway-mock -> mock:tollway-mock (tollway-mock, weight 1)" in out.stdout


def test_missing_environment_variable_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": [{"id": "m", "upstream": {"provider": "anthropic",
                                                                  "api_key": "${TOLLWAY_TEST_UNSET_VAR}"}}]})
    env = {k: v for k, v in os.environ.items() if k != "TOLLWAY_TEST_UNSET_VAR"}
    proc = subprocess.run([str(BIN), "config", "check", "--config", str(path)], capture_output=True, text=True,
                          env=env)
    assert proc.returncode == 2
    assert "models.0.upstream.api_key: environment variable TOLLWAY_TEST_UNSET_VAR is not set" in proc.stderr


def test_invalid_field_names_the_field_and_reason(tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": [{"id": "m", "upstream": {"provider": "openai-ish"}}],
                             "server": {"port": "not-a-port"}})
    proc = run_cli("config", "check", config=path, check=False)
    assert proc.returncode == 2
    assert "models.0.upstream.provider" in proc.stderr
    assert "'anthropic', 'openai', 'mock', 'bedrock', 'vertex' or 'foundry'" in proc.stderr
    assert "server.port" in proc.stderr


def test_duplicate_model_ids_are_refused(tmp_path: Path) -> None:
    model = {"id": "same", "upstream": {"provider": "mock"}}
    proc = run_cli("config", "check", config=_write(tmp_path, {"models": [model, model]}), check=False)
    assert proc.returncode == 2 and "model id 'same' appears twice" in proc.stderr


def test_config_path_from_environment(tmp_path: Path) -> None:
    path = _write(tmp_path, {"models": [{"id": "from-env", "upstream": {"provider": "mock"}}]})
    out = run_cli("config", "check", env={"TOLLWAY_CONFIG": str(path)})
    assert "from-env -> mock" in out.stdout


def test_keys_create_list_revoke_on_a_fresh_directory(tmp_path: Path) -> None:
    created = json.loads(run_cli("keys", "create", "--name", "ci", "--json", cwd=tmp_path).stdout)
    assert {"id", "name", "key"} <= set(created) and created["name"] == "ci"
    assert created["key"].startswith("tw-") and len(created["key"]) >= 40
    assert (tmp_path / "tollway.db").exists()
    listed = json.loads(run_cli("keys", "list", "--json", cwd=tmp_path).stdout)
    assert [k["id"] for k in listed] == [created["id"]]
    assert listed[0]["prefix"] == created["key"][:10]
    assert created["key"] not in json.dumps(listed)
    table = run_cli("keys", "list", cwd=tmp_path).stdout
    assert created["id"] in table and "active" in table
    run_cli("keys", "revoke", created["id"], cwd=tmp_path)
    assert json.loads(run_cli("keys", "list", "--json", cwd=tmp_path).stdout)[0]["revoked_at"] is not None
    again = run_cli("keys", "revoke", created["id"], cwd=tmp_path, check=False)
    assert again.returncode == 1


def test_the_secret_is_stored_only_as_a_hash(tmp_path: Path) -> None:
    created = json.loads(run_cli("keys", "create", "--name", "ci", "--json", cwd=tmp_path).stdout)
    raw = b"".join(p.read_bytes() for p in tmp_path.glob("tollway.db*"))
    assert created["key"].encode() not in raw
    assert created["key"][3:].encode() not in raw


def test_serve_first_start_writes_a_working_key_to_a_private_file(tmp_path: Path) -> None:
    """Not attached to a terminal (as under systemd or Docker): the key goes to a 0600 file and
    only its location is printed, so it never lands in a log."""
    port = free_port()
    env = {**os.environ, "TOLLWAY_DATA_DIR": str(tmp_path)}  # the default store, in this test's directory
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True, env=env)
    try:
        base = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                if httpx.get(base + "/ready", timeout=0.5).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        key = json.loads(run_cli("keys", "list", "--json", cwd=tmp_path).stdout)
        assert [k["name"] for k in key] == ["default"]
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    key_file = tmp_path / "tollway-first-key"
    assert "tw-" not in out and str(key_file) in out
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    secret = key_file.read_text().strip()
    assert secret.startswith("tw-")
    key_file.unlink()
    # The printed key worked while the gateway ran: check against a second start, which must
    # not print another key.
    proc2 = subprocess.Popen([str(BIN), "serve", "--port", str(port)], cwd=tmp_path, stdout=subprocess.PIPE,
                             stderr=subprocess.STDOUT, text=True, env=env)
    try:
        deadline = time.monotonic() + 20
        status = 0
        while time.monotonic() < deadline:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"x-api-key": secret}).status_code
                break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert status == 200
    finally:
        proc2.terminate()
        out2, _ = proc2.communicate(timeout=15)
    assert "tw-" not in out2 and not key_file.exists()


def test_serve_first_start_on_a_terminal_prints_the_key(tmp_path: Path) -> None:
    """`make run` in a terminal: the key is printed there, once, and no file is written."""
    port = free_port()
    leader, follower = pty.openpty()
    # Its own data directory: without a config the store lives in the per-user data dir.
    env = {**os.environ, "TOLLWAY_DATA_DIR": str(tmp_path)}
    proc = subprocess.Popen([str(BIN), "serve", "--port", str(port)], cwd=tmp_path, stdout=follower,
                            stderr=follower, stdin=subprocess.DEVNULL, env=env)
    os.close(follower)
    shown = b""
    try:
        deadline = time.monotonic() + 20
        while b"listening" not in shown and time.monotonic() < deadline:
            ready, _, _ = select.select([leader], [], [], 0.5)
            if ready:
                try:
                    shown += os.read(leader, 4096)
                except OSError:
                    break
    finally:
        proc.terminate()
        proc.wait(timeout=15)
        os.close(leader)
    text = re.sub(r"\x1b\[[0-9;]*m", "", shown.decode(errors="replace"))  # rich's colours
    assert "First start: created API key 'default'" in text and "listening" in text
    secret = next(word for word in text.split() if word.startswith("tw-"))
    assert len(secret) >= 40
    assert not (tmp_path / "tollway-first-key").exists()

"""Where the CLI finds the store, and what it needs: the admin commands run without the providers'
secrets, the default store is found wherever the command is started, and a command that would
create a new, empty store says so (a read refuses instead)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from pathlib import Path

import httpx
import yaml

from tests.conftest import BIN, free_port

UNSET = "TOLLWAY_TEST_NEVER_SET_SECRET"


def tollway(*args: str, cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """The real binary, with a clean view of the data directory: only what ENV says."""
    base = {k: v for k, v in os.environ.items() if k not in ("TOLLWAY_DATA_DIR", "XDG_DATA_HOME", "TOLLWAY_CONFIG",
                                                             UNSET)}
    return subprocess.run([str(BIN), *args], cwd=cwd, capture_output=True, text=True, timeout=60,
                          env={**base, "COLUMNS": "200", **(env or {})})


def ok(proc: subprocess.CompletedProcess[str]) -> subprocess.CompletedProcess[str]:
    assert proc.returncode == 0, (proc.args, proc.stdout, proc.stderr)
    return proc


def secret_config(path: Path) -> Path:
    """A config whose upstream key comes from a variable that is not set, with its store beside it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump({"models": [
        {"id": "claude-x", "upstream": {"provider": "anthropic", "api_key": "${" + UNSET + "}"}},
        {"id": "tollway-mock", "upstream": {"provider": "mock"}},
    ]}))
    return path


def test_admin_commands_do_not_need_the_upstream_secrets(tmp_path: Path) -> None:
    config = str(secret_config(tmp_path / "tollway.yaml"))
    key = json.loads(ok(tollway("keys", "create", "--name", "ci", "--json", "-c", config, cwd=tmp_path)).stdout)
    assert [k["id"] for k in json.loads(ok(tollway("keys", "list", "--json", "-c", config, cwd=tmp_path)).stdout)
            ] == [key["id"]]
    ok(tollway("users", "create", "alice", "-c", config, cwd=tmp_path))
    ok(tollway("groups", "list", "-c", config, cwd=tmp_path))
    ok(tollway("limits", "set", "user", "alice", "--rpm", "5", "-c", config, cwd=tmp_path))
    ok(tollway("usage", "--json", "-c", config, cwd=tmp_path))
    ok(tollway("audit", "verify", "-c", config, cwd=tmp_path))
    # The commands that talk to upstreams still resolve them, and name what is missing.
    for args in (("config", "check"), ("serve", "--port", str(free_port()))):
        proc = tollway(*args, "-c", config, cwd=tmp_path)
        assert proc.returncode == 2 and f"environment variable {UNSET} is not set" in proc.stderr, proc.stderr


def test_the_store_beside_the_config_is_found_from_any_directory(tmp_path: Path) -> None:
    config = str(secret_config(tmp_path / "etc" / "tollway.yaml"))
    elsewhere = tmp_path / "somewhere" / "else"
    elsewhere.mkdir(parents=True)
    created = tollway("keys", "create", "--name", "ci", "--json", "-c", config, cwd=tmp_path)
    ok(created)
    store = tmp_path / "etc" / "tollway.db"
    assert store.exists() and not (tmp_path / "tollway.db").exists()
    assert f"Creating a new, empty store: {store}" in created.stderr
    listed = ok(tollway("keys", "list", "--json", "-c", config, cwd=elsewhere))
    assert [k["name"] for k in json.loads(listed.stdout)] == ["ci"] and "Creating" not in listed.stderr
    again = ok(tollway("keys", "create", "--name", "two", "-c", config, cwd=elsewhere))
    assert "Creating" not in again.stderr and not (elsewhere / "tollway.db").exists()


def test_without_a_config_the_store_is_in_the_per_user_data_directory(tmp_path: Path) -> None:
    home, a, b = tmp_path / "home", tmp_path / "a", tmp_path / "b"
    for d in (home, a, b):
        d.mkdir()
    env = {"HOME": str(home)}
    ok(tollway("users", "create", "alice", cwd=a, env=env))
    assert (home / ".local" / "share" / "tollway" / "tollway.db").exists()
    shown = json.loads(ok(tollway("users", "list", "--json", cwd=b, env=env)).stdout)
    assert [u["name"] for u in shown] == ["alice"]
    xdg = tmp_path / "xdg"
    ok(tollway("users", "create", "bob", cwd=a, env={**env, "XDG_DATA_HOME": str(xdg)}))
    assert (xdg / "tollway" / "tollway.db").exists()
    explicit = tmp_path / "explicit"
    ok(tollway("users", "create", "carol", cwd=a, env={**env, "TOLLWAY_DATA_DIR": str(explicit)}))
    assert (explicit / "tollway.db").exists()
    assert not list(a.iterdir()) and not list(b.iterdir())  # nothing written where the commands ran


def test_a_read_on_a_missing_store_refuses_and_creates_nothing(tmp_path: Path) -> None:
    data = tmp_path / "data"
    for args in (("keys", "list"), ("users", "list"), ("usage",), ("audit", "verify"), ("limits", "list")):
        proc = tollway(*args, cwd=tmp_path, env={"TOLLWAY_DATA_DIR": str(data)})
        assert proc.returncode == 1, (args, proc.stdout, proc.stderr)
        assert f"no store at {data / 'tollway.db'}" in proc.stderr and "Traceback" not in proc.stderr
        assert "--config" in proc.stderr
    assert not (data / "tollway.db").exists()


def test_serve_uses_the_store_the_cli_wrote_from_another_directory(tmp_path: Path) -> None:
    config = tmp_path / "conf" / "tollway.yaml"
    config.parent.mkdir()
    config.write_text(yaml.safe_dump({"models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]}))
    key = json.loads(ok(tollway("keys", "create", "--name", "k", "--json", "-c", str(config), cwd=tmp_path)).stdout)
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    port = free_port()
    proc = subprocess.Popen([str(BIN), "serve", "-c", str(config), "--port", str(port)], cwd=run_dir,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        deadline, status = time.monotonic() + 20, 0
        while time.monotonic() < deadline and status != 200:
            try:
                status = httpx.get(f"http://127.0.0.1:{port}/v1/models", headers={"x-api-key": key["key"]}).status_code
            except httpx.HTTPError:
                time.sleep(0.1)
        assert status == 200
    finally:
        proc.terminate()
        out, _ = proc.communicate(timeout=15)
    assert f"Store: {config.parent / 'tollway.db'}" in out
    assert "First start" not in out  # the CLI's key was there: no second store, no new default key
    assert not (run_dir / "tollway.db").exists()

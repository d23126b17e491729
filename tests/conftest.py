"""Shared fixtures: a real Tollway process on 127.0.0.1 and the Anthropic emulator it forwards to.

Tollway runs as `tollway serve` in a subprocess, exactly as an operator runs it, so every test
goes through real HTTP, the real CLI and a real SQLite file.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.emulator import AnthropicEmulator

BIN = Path(sys.executable).parent / "tollway"
UPSTREAM_KEY = "sk-ant-upstream-test"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def run_cli(*args: str, config: Path | None = None, cwd: Path | None = None,
            env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    cmd = [str(BIN), *args]
    if config is not None:
        cmd += ["--config", str(config)]
    # With a working directory and no config, that directory is the per-user data directory: each
    # test gets its own default store (never the real ~/.local/share/tollway).
    data = {"TOLLWAY_DATA_DIR": str(cwd)} if cwd is not None else {}
    full_env = {**os.environ, "COLUMNS": "200", **data, **(env or {})}
    proc = subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, env=full_env, timeout=60)
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


@dataclass
class Gateway:
    """A running Tollway process and one key for it."""

    base_url: str
    key: str
    config: Path
    workdir: Path
    proc: subprocess.Popen[str]
    env: dict[str, str]
    _key_id: str | None = None

    @property
    def key_id(self) -> str:
        """KEY's id, looked up with `tollway keys list` the first time a test asks (few do)."""
        if self._key_id is None:
            listed = json.loads(self.cli("keys", "list", "--json").stdout)
            self._key_id = next(k["id"] for k in listed if self.key.startswith(k["prefix"]))
        return self._key_id

    def cli(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """Run a `tollway` command on this gateway's config and store."""
        return run_cli(*args, config=self.config, env=self.env, check=check)

    def new_key(self, name: str = "extra") -> tuple[str, str]:
        out = json.loads(self.cli("keys", "create", "--name", name, "--json").stdout)
        return out["id"], out["key"]

    def stop(self) -> str:
        self.proc.terminate()
        try:
            out, _ = self.proc.communicate(timeout=15)
        except subprocess.TimeoutExpired:
            kill_group(self.proc)
            out, _ = self.proc.communicate()
        kill_group(self.proc)  # a worker the supervisor left behind would keep the port and load the machine
        return out or ""


def kill_group(proc: subprocess.Popen[str]) -> None:
    """SIGKILL every process of a gateway started by `start_gateway` (its own process group): with
    `--workers N`, killing only the supervisor orphans the workers, still listening."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)


# Where `tollway serve` (run in the gateway's workdir) hands over the key it creates on an empty
# store: server.first_key_file's default, relative to its working directory.
FIRST_KEY_FILE = "tollway-first-key"


def start_gateway(workdir: Path, config: dict[str, Any], env: dict[str, str] | None = None,
                  serve_args: tuple[str, ...] = ()) -> Gateway:
    """Write CONFIG, start `tollway serve` (with SERVE_ARGS), wait until /ready, and return it with a
    key: the first key `serve` creates on an empty store, as an operator gets it, or on a store
    that already has keys (a restart) a new one from `tollway keys create`.

    Taking the first key saves a CLI process per gateway (about a second of CPU, and the suite
    starts hundreds of gateways on two cores)."""
    workdir.mkdir(parents=True, exist_ok=True)
    config.setdefault("store", {"url": f"sqlite:///{workdir}/tollway.db"})
    path = workdir / "tollway.yaml"
    path.write_text(yaml.safe_dump(config))
    first_key = workdir / FIRST_KEY_FILE
    first_key.unlink(missing_ok=True)
    port = free_port()
    proc = subprocess.Popen(
        [str(BIN), "serve", "--config", str(path), "--port", str(port), *serve_args],
        cwd=workdir, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        env={**os.environ, **(env or {})}, start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60  # generous: a loaded shared machine starts slowly
    while True:
        if proc.poll() is not None:
            raise AssertionError(f"tollway exited early:\n{proc.stdout.read() if proc.stdout else ''}")
        try:
            if httpx.get(base + "/ready", timeout=0.5).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            kill_group(proc)
            raise AssertionError("tollway did not become ready in 60 s")
        time.sleep(0.05)
    if first_key.exists():  # written before serve listens
        return Gateway(base, first_key.read_text().strip(), path, workdir, proc, env or {})
    created = json.loads(run_cli("keys", "create", "--name", "test", "--json", config=path, env=env).stdout)
    return Gateway(base, created["key"], path, workdir, proc, env or {}, created["id"])


NO_RETRIES = {"max_attempts": 1, "breaker_failures": 1000}


def standard_config(upstream_url: str) -> dict[str, Any]:
    """The catalogue most tests share: the mock, two models on the emulator, one renamed."""
    return {
        "server": {"ping_interval": 0.3, "max_body_bytes": 1024 * 1024, "key_refresh_interval": 0.2},
        # One attempt: these tests check what the client gets from a single upstream answer;
        # retries and breakers have their own tests (test_resilience.py).
        "retries": NO_RETRIES,
        "models": [
            {"id": "tollway-mock", "display_name": "Tollway mock", "upstream": {"provider": "mock"}},
            {"id": "tollway-mock-slow", "upstream": {"provider": "mock", "chunk_delay_ms": 20}},
            {
                "id": "claude-sonnet-4-5-20250929",
                "display_name": "Claude Sonnet 4.5",
                "created_at": "2025-09-29T00:00:00Z",
                "upstream": {"provider": "anthropic", "base_url": upstream_url, "api_key": "${TEST_UPSTREAM_KEY}"},
                "pricing": {"input": 3.0, "output": 15.0, "cache_write": 3.75, "cache_read": 0.3},
            },
            {
                "id": "claude-renamed",
                "upstream": {"provider": "anthropic", "base_url": upstream_url, "api_key": "${TEST_UPSTREAM_KEY}",
                             "model": "claude-haiku-4-5-20251001"},
            },
        ],
    }


@pytest.fixture(scope="session")
def emulator() -> Iterator[AnthropicEmulator]:
    with AnthropicEmulator(api_key=UPSTREAM_KEY) as emu:
        yield emu


@pytest.fixture
def upstream(emulator: AnthropicEmulator) -> AnthropicEmulator:
    """The emulator with nothing recorded or scripted from earlier tests."""
    emulator.reset()
    return emulator


@pytest.fixture(scope="session")
def gateway(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    gw = start_gateway(tmp_path_factory.mktemp("gateway"), standard_config(emulator.base_url),
                       env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gw
    gw.stop()


@pytest.fixture
def client(gateway: Gateway) -> Any:
    import anthropic

    return anthropic.Anthropic(base_url=gateway.base_url, api_key=gateway.key, max_retries=0)

"""`tollway serve --workers N`: N processes on one port, sharing the store and the limits.

Each process draws its request ids from its own random prefix (surfaces/common.py), so the ids
tell which process answered. Runs with Redis (TOLLWAY_TEST_REDIS_URL, set by `.ci/run`): more
than one worker is refused with the in-memory limits backend.
"""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import BIN, UPSTREAM_KEY, Gateway, free_port, kill_group, start_gateway
from tests.emulator import AnthropicEmulator
from tests.test_limits import Admin, limits_config

REDIS_ENV = "TOLLWAY_TEST_REDIS_URL"
BODY = {"model": "tollway-mock", "max_tokens": 8, "messages": [{"role": "user", "content": "which process?"}]}


@pytest.fixture(scope="module")
def workers(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"more than one worker needs Redis limits: set {REDIS_ENV} (e.g. redis://127.0.0.1:6379/0)")
    config = limits_config(emulator.base_url, backend="redis", redis_url=url)
    gateway = start_gateway(tmp_path_factory.mktemp("workers"), config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY},
                            serve_args=("--workers", "2"))
    yield gateway
    gateway.stop()


def process_of(request_id: str) -> str:
    return request_id[: len("req_") + 12]  # "req_" and the process's 6 random bytes in hex


def post_fresh(gw: Gateway, key: str) -> httpx.Response:
    """One request on a new connection: the kernel hands each connection to one process."""
    with httpx.Client(timeout=10) as http:
        return http.post(gw.base_url + "/v1/messages", json=BODY, headers={"x-api-key": key})


def test_two_workers_answer_on_one_port_and_record_every_request(workers: Gateway) -> None:
    answered: list[httpx.Response] = []
    # Rounds of 16 concurrent connections until both processes have answered. To a deadline, not
    # a number of rounds: /ready was answered by one process, and on a loaded machine the other
    # may still be starting (the kernel then hands every connection to the first).
    deadline = time.monotonic() + 60
    with ThreadPoolExecutor(8) as pool:
        while time.monotonic() < deadline:
            answered += pool.map(lambda _: post_fresh(workers, workers.key), range(16))
            if len({process_of(r.headers["request-id"]) for r in answered}) == 2:
                break
    assert all(r.status_code == 200 for r in answered)
    assert len({process_of(r.headers["request-id"]) for r in answered}) == 2
    admin = Admin(workers)
    rows = admin.ledger(workers.key_id, len(answered))
    assert {r["request_id"] for r in rows} == {r.headers["request-id"] for r in answered}


def wait_until_every_process_has(gw: Gateway, admin: Admin, timeout: float = 60.0) -> None:
    """Return once both processes have loaded the store's state as it is now.

    A change made through the admin API is live at once in the process that answered it and in
    the others within `key_refresh_interval` (docs/governance.md). A marker key created now is
    answered by a process only once it has loaded a state at least this new (an unknown key makes
    it check the store's version first), so both processes answering it proves both hold
    everything written before it — without spending the limited key's own requests.
    """
    marker = admin.key("marker")["key"]
    seen: set[str] = set()
    deadline = time.monotonic() + timeout
    with ThreadPoolExecutor(8) as pool:
        while len(seen) < 2:
            assert time.monotonic() < deadline, f"only {len(seen)} process(es) answered the marker key"
            for r in pool.map(lambda _: post_fresh(gw, marker), range(8)):
                assert r.status_code == 200, r.text
                seen.add(process_of(r.headers["request-id"]))


def test_a_rate_limit_holds_across_workers(workers: Gateway) -> None:
    admin = Admin(workers)
    key = admin.key("limited", rpm=12)
    wait_until_every_process_has(workers, admin)
    started = time.monotonic()
    with ThreadPoolExecutor(8) as pool:
        answered = list(pool.map(lambda _: post_fresh(workers, key["key"]), range(36)))
    took = time.monotonic() - started
    statuses = [r.status_code for r in answered]
    # rpm is a token bucket refilled continuously (12 a minute: one every 5 s), and the burst on a
    # fresh connection each time takes seconds on a loaded machine: what refilled while it ran may
    # be admitted too (CI once admitted 14 in a slow burst). Two processes each with a bucket of
    # their own would admit about 24.
    refilled = int(12 * took / 60)
    assert 12 <= statuses.count(200) <= 12 + refilled, (statuses.count(200), took)
    assert statuses.count(200) + statuses.count(429) == 36
    assert len({process_of(r.headers["request-id"]) for r in answered}) == 2, "both processes took part"


def test_the_memory_limits_backend_is_refused_with_two_workers(emulator: AnthropicEmulator, tmp_path: Any) -> None:
    path = tmp_path / "tollway.yaml"
    config = {**limits_config(emulator.base_url), "store": {"url": f"sqlite:///{tmp_path}/tollway.db"}}
    path.write_text(yaml.safe_dump(config))
    proc = subprocess.run([str(BIN), "serve", "--config", str(path), "--port", str(free_port()), "--workers", "2"],
                          capture_output=True, text=True, timeout=60,
                          env={**os.environ, "TEST_UPSTREAM_KEY": UPSTREAM_KEY, "COLUMNS": "200"})
    assert proc.returncode == 2
    assert "limits.backend 'memory'" in proc.stderr and "redis" in proc.stderr


def children_of(pid: int) -> set[int]:
    """The pids whose parent is PID, from /proc (the workers of a supervisor)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.add(int(entry))
    return found


def alive(pid: int) -> bool:
    """PID is a running process (not gone, not a zombie waiting to be reaped)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_workers_stop_and_flush_their_records_when_the_supervisor_is_killed(
        emulator: AnthropicEmulator, tmp_path: Path) -> None:
    url = os.environ.get(REDIS_ENV)
    if not url:
        pytest.skip(f"more than one worker needs Redis limits: set {REDIS_ENV}")
    config = limits_config(emulator.base_url, backend="redis", redis_url=url)
    gw = start_gateway(tmp_path, config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY}, serve_args=("--workers", "2"))
    try:
        deadline = time.monotonic() + 30
        while len(workers := children_of(gw.proc.pid)) < 2:
            assert time.monotonic() < deadline, "the supervisor did not start two workers"
            time.sleep(0.05)
        with ThreadPoolExecutor(8) as pool:
            answered = list(pool.map(lambda _: post_fresh(gw, gw.key), range(16)))
        assert all(r.status_code == 200 for r in answered)
        # The supervisor dies without a chance to stop its workers (SIGKILL, the OOM killer).
        os.kill(gw.proc.pid, signal.SIGKILL)
        gw.proc.wait(10)
        deadline = time.monotonic() + 30
        while any(alive(pid) for pid in workers):
            assert time.monotonic() < deadline, "orphaned workers kept running after their supervisor died"
            time.sleep(0.1)
        # They stopped the graceful way: every request they answered is in the ledger.
        with sqlite3.connect(tmp_path / "tollway.db") as db:
            recorded = {row[0] for row in db.execute("SELECT request_id FROM usage")}
        assert {r.headers["request-id"] for r in answered} <= recorded
    finally:
        kill_group(gw.proc)

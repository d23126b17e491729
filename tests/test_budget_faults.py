"""Budgets and limits when Redis restarts, goes away or stalls: nothing forgotten, nothing leaked.

Each test runs its own `redis-server` (no persistence, so it starts empty) and restarts, stops or
SIGSTOPs it by PID; the shared Redis is never touched. The module's two gateways (fail_closed and
fail_open) are shared: one private redis-server, restarted empty for each test, and keys of each
test's own.
"""

from __future__ import annotations

import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from tests.conftest import UPSTREAM_KEY, Gateway, start_gateway
from tests.emulator import AnthropicEmulator
from tests.test_limits import PROMPT, Admin, limits_config, one_cost


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class RedisServer:
    """A private redis-server without persistence: a restart loses everything, as in the report."""

    def __init__(self, workdir: Path) -> None:
        self.port = free_port()
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.url = f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis.from_url(self.url, socket_timeout=0.5)
        until(lambda: _pings(client), "redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.send_signal(signal.SIGCONT)
            self.proc.terminate()
            self.proc.wait(10)
            self.proc = None

    def pause(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGSTOP)

    def resume(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGCONT)

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, socket_timeout=2)


def _pings(client: redis.Redis) -> bool:
    try:
        return bool(client.ping())
    except redis.RedisError:
        return False


def until(check: Callable[[], Any], message: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        got = check()
        if got:
            return got
        time.sleep(0.05)
    raise AssertionError(message)


@pytest.fixture(scope="module")
def module_redis(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    yield server
    server.stop()


@pytest.fixture
def private_redis(module_redis: RedisServer) -> RedisServer:
    """The module's redis-server, restarted for each test: empty (it has no persistence)."""
    module_redis.stop()
    module_redis.start()
    return module_redis


def gateway(emulator: AnthropicEmulator, workdir: Path, url: str, policy: str) -> tuple[Gateway, Admin]:
    cfg = limits_config(emulator.base_url, backend="redis", redis_url=url, on_backend_error=policy)
    gw = start_gateway(workdir, cfg, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    return gw, Admin(gw)


@pytest.fixture(scope="module")
def fail_closed(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory,
                module_redis: RedisServer) -> Iterator[tuple[Gateway, Admin]]:
    gw, admin = gateway(emulator, tmp_path_factory.mktemp("closed"), module_redis.url, "fail_closed")
    yield gw, admin
    gw.stop()


@pytest.fixture(scope="module")
def fail_open(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory,
              module_redis: RedisServer) -> Iterator[tuple[Gateway, Admin]]:
    gw, admin = gateway(emulator, tmp_path_factory.mktemp("open"), module_redis.url, "fail_open")
    yield gw, admin
    gw.stop()


def post(gw: Gateway, key: str, **extra: Any) -> httpx.Response:
    return httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key},
                      json={**PROMPT, "model": "tollway-mock", **extra}, timeout=30)


def budget_key(key_id: str) -> str:
    return f"tw:key:{key_id}:budget:{datetime.now(UTC).date().isoformat()}"


def budgeted(admin: Admin, gw: Gateway, name: str, n: int, **limits: Any) -> tuple[dict[str, Any], int]:
    """A key whose daily budget affords exactly N requests of PROMPT, and what one costs."""
    cost = one_cost(gw, admin.key(name + "-probe")["key"])
    key = admin.key(name, budget_usd=n * cost / 1_000_000, budget_period="day", **limits)
    # No wait: an admin API change is live at once in the process that answered it (this one).
    return key, cost


def test_budget_survives_a_redis_restart(fail_closed: tuple[Gateway, Admin], private_redis: RedisServer) -> None:
    gw, admin = fail_closed
    key, cost = budgeted(admin, gw, "restarted", 6)
    assert [post(gw, key["key"]).status_code for _ in range(4)] == [200] * 4
    admin.ledger(key["id"], 4)
    private_redis.stop()
    private_redis.start()  # empty: the budget key is gone
    assert private_redis.client().exists(budget_key(key["id"])) == 0
    statuses = [post(gw, key["key"]).status_code for _ in range(4)]
    assert statuses == [200, 200, 429, 429]  # seeded from the ledger: 4 spent, 2 left
    spent = int(private_redis.client().hget(budget_key(key["id"]), "spent") or 0)
    assert spent == 6 * cost


def test_spend_during_a_fail_open_outage_is_counted_when_redis_returns(
        fail_open: tuple[Gateway, Admin], private_redis: RedisServer) -> None:
    gw, admin = fail_open
    key, cost = budgeted(admin, gw, "outage", 6)
    assert [post(gw, key["key"]).status_code for _ in range(2)] == [200, 200]
    private_redis.stop()
    # Redis is down: fail_open serves, past the budget.
    assert [post(gw, key["key"]).status_code for _ in range(6)] == [200] * 6
    admin.ledger(key["id"], 8)
    private_redis.start()
    resp = post(gw, key["key"])
    assert resp.status_code == 429, resp.text  # 8 spent of 6: nothing more
    assert f"${8 * cost / 1e6:.4f} spent" in resp.json()["error"]["message"]


def test_spend_during_a_fail_open_stall_is_added_when_redis_answers(
        fail_open: tuple[Gateway, Admin], private_redis: RedisServer) -> None:
    gw, admin = fail_open
    key, cost = budgeted(admin, gw, "stalled", 10)
    assert post(gw, key["key"]).status_code == 200
    bkey = budget_key(key["id"])
    r = private_redis.client()
    until(lambda: int(r.hget(bkey, "spent") or 0) == cost, "the first request was not settled")
    private_redis.pause()
    try:
        assert [post(gw, key["key"]).status_code for _ in range(3)] == [200] * 3  # each after a 1 s timeout
    finally:
        private_redis.resume()
    assert post(gw, key["key"]).status_code == 200  # Redis answers again: the stall's spend is added
    until(lambda: int(r.hget(bkey, "spent") or 0) == 5 * cost and int(r.hget(bkey, "reserved") or 0) == 0,
          f"budget key holds {r.hgetall(bkey)}, not 5 requests' spend and nothing reserved")


def test_a_stall_leaks_no_slot_and_no_reservation_for_refused_requests(
        fail_closed: tuple[Gateway, Admin], private_redis: RedisServer) -> None:
    gw, admin = fail_closed
    key, cost = budgeted(admin, gw, "leak", 10, concurrent=1)
    r = private_redis.client()
    conc, bkey = f"tw:key:{key['id']}:conc", budget_key(key["id"])
    assert post(gw, key["key"]).status_code == 200
    private_redis.pause()
    try:
        resp = post(gw, key["key"])
        assert resp.status_code == 529 and resp.json()["error"]["type"] == "overloaded_error"
        # The caller gives up while the admission waits on the stalled Redis.
        with pytest.raises(httpx.TimeoutException):
            httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": key["key"]},
                       json={**PROMPT, "model": "tollway-mock"}, timeout=0.3)
    finally:
        private_redis.resume()
    until(lambda: r.get(conc) in (b"0", None) and int(r.hget(bkey, "reserved") or 0) == 0,
          f"leaked: conc={r.get(conc)!r} budget={r.hgetall(bkey)}")
    assert int(r.hget(bkey, "spent") or 0) == cost
    assert r.keys("tw:rid:*") == [] or all(r.get(k) == b"released" for k in r.keys("tw:rid:*"))
    assert post(gw, key["key"]).status_code == 200  # the slot is free

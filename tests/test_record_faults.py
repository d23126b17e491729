"""Records lost under each fault, measured end to end (issue 17, items 1-3; docs/reliability.md).

A real `tollway serve` on its own PostgreSQL database, reached through a relay the test can
freeze (a hung database, as a SIGSTOPped server looks to a client: connections accepted, nothing
answered) — the shared server itself is never stopped. Requests go through the real Anthropic SDK
to the built-in mock model; afterwards the test counts, straight from the database, the usage
and audit rows of the requests that were answered. Each test prints its fault-table line.
"""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import anthropic
import asyncpg
import httpx
import pytest

from tests.conftest import Gateway, start_gateway
from tests.freezable_proxy import FreezableProxy
from tests.stores import store_url

MODEL = "tollway-mock"


@pytest.fixture
def pg(tmp_path: Path) -> Iterator[tuple[str, str, FreezableProxy]]:
    with store_url("postgresql", tmp_path) as url:
        parts = urlsplit(url)
        proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
        try:
            yield url, urlunsplit(parts._replace(netloc=netloc)), proxy
        finally:
            proxy.close()


def config(url: str, workdir: Path) -> dict[str, Any]:
    return {"server": {"key_refresh_interval": 0.2, "shutdown_grace": 5},
            "store": {"url": url, "spill_dir": str(workdir / "spill"), "flush_timeout": 1.0},
            "models": [{"id": MODEL, "upstream": {"provider": "mock"}}]}


def counts(url: str, ids: list[str]) -> tuple[int, int]:
    async def run() -> tuple[int, int]:
        conn = await asyncpg.connect(url)
        try:
            used = await conn.fetchval("SELECT count(*) FROM usage WHERE request_id = ANY($1)", ids)
            audited = await conn.fetchval("SELECT count(DISTINCT request_id) FROM audit_log "
                                          "WHERE request_id = ANY($1)", ids)
            return int(used), int(audited)
        finally:
            await conn.close()

    return asyncio.run(run())


def wait_counts(url: str, ids: list[str], timeout: float = 30, settled: float | None = None) -> tuple[int, int]:
    """The rows written for IDS, once all are there or TIMEOUT passed. With SETTLED (where some loss
    is allowed, so waiting for all could only end at the timeout), also once rows have arrived
    and the counts have not moved for that long: a restarted gateway replays its whole spill
    file in one flush round, so rows come in one rush, not a trickle."""
    deadline = time.monotonic() + timeout
    got = counts(url, ids)
    since = time.monotonic()
    while time.monotonic() < deadline and got != (len(ids), len(ids)):
        if settled is not None and got != (0, 0) and time.monotonic() - since >= settled:
            break
        time.sleep(0.2)
        now = counts(url, ids)
        if now != got:
            got, since = now, time.monotonic()
    return got


def ask(gw: Gateway, n: int, model: str = MODEL, pause: float = 0.0) -> list[str]:
    client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
    ids = []
    for _ in range(n):
        raw = client.messages.with_raw_response.create(model=model, max_tokens=5,
                                                       messages=[{"role": "user", "content": "hi"}])
        ids.append(raw.headers["request-id"])
        time.sleep(pause)
    return ids


def report(fault: str, sent: int, got: tuple[int, int]) -> None:
    print(f"\nFAULT | {fault} | sent {sent} | usage lost {sent - got[0]} | audit lost {sent - got[1]}")


def test_a_poisoned_value_does_not_wedge_the_writers(pg: tuple[str, str, FreezableProxy], tmp_path: Path) -> None:
    """17.1: a 300-character model id and a NUL byte (each answered 404) are recorded, bounded,
    and every later request still gets its usage and audit rows; /ready stays honest."""
    direct, _relayed, _proxy = pg
    gw = start_gateway(tmp_path / "gw", config(direct, tmp_path / "gw"))
    try:
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)
        bad = []
        for model in ("x" * 300, "bad\x00model"):
            with pytest.raises(anthropic.NotFoundError) as err:
                client.messages.create(model=model, max_tokens=5, messages=[{"role": "user", "content": "hi"}])
            bad.append(err.value.response.headers["request-id"])
        good = ask(gw, 20)
        got = wait_counts(direct, bad + good)
        report("poisoned values (300-char model id, NUL byte)", 22, got)
        assert got == (22, 22)
        assert httpx.get(gw.base_url + "/ready").status_code == 200
        assert all(r["ok"] for r in json.loads(gw.cli("audit", "verify", "--json").stdout))
    finally:
        gw.stop()
    assert not list((tmp_path / "gw" / "spill").glob("*.quarantine.jsonl"))


def test_a_hung_database_then_sigterm_loses_nothing(pg: tuple[str, str, FreezableProxy], tmp_path: Path) -> None:
    """17.2: PostgreSQL hangs for the rest of the run under load: requests are served, /ready
    says 503 within seconds, SIGTERM exits within the grace with everything spilled, and the
    next start replays all of it."""
    direct, relayed, proxy = pg
    workdir = tmp_path / "gw"
    gw = start_gateway(workdir, config(relayed, workdir))
    ids: list[str] = []
    try:
        ids += ask(gw, 10)
        proxy.freeze()
        t0 = time.monotonic()
        ids += ask(gw, 60, pause=0.05)
        assert time.monotonic() - t0 < 20, "requests must not wait on the hung database"
        t0 = time.monotonic()
        ready = httpx.get(gw.base_url + "/ready", timeout=10)
        assert ready.status_code == 503 and time.monotonic() - t0 < 4
        gw.proc.send_signal(signal.SIGTERM)
        t0 = time.monotonic()
        try:
            gw.proc.wait(timeout=25)
        except subprocess.TimeoutExpired:
            gw.proc.kill()
            raise AssertionError("SIGTERM did not end the gateway with the database hung") from None
        print(f"\nexit after SIGTERM with the database hung: {time.monotonic() - t0:.1f} s")
    finally:
        proxy.thaw()
        if gw.proc.poll() is None:
            gw.stop()
    again = start_gateway(workdir, config(direct, workdir))
    try:
        got = wait_counts(direct, ids)
    finally:
        again.stop()
    report("PostgreSQL hung under load, then SIGTERM, then restart", len(ids), got)
    assert got == (len(ids), len(ids))


def test_a_hung_database_then_sigkill_loses_at_most_the_last_interval(pg: tuple[str, str, FreezableProxy],
                                                                     tmp_path: Path) -> None:
    """17.2: the same hang ended by SIGKILL: what was spilled survives; at most the records of
    the last flush interval (0.2 s) can be lost, and the loss is measured."""
    direct, relayed, proxy = pg
    workdir = tmp_path / "gw"
    gw = start_gateway(workdir, config(relayed, workdir))
    ids: list[str] = []
    try:
        proxy.freeze()
        ids += ask(gw, 80, pause=0.05)
        gw.proc.kill()
        gw.proc.wait(timeout=10)
    finally:
        proxy.thaw()
    again = start_gateway(workdir, config(direct, workdir))
    try:
        got = wait_counts(direct, ids, timeout=15, settled=3)
    finally:
        again.stop()
    report("PostgreSQL hung under load, then SIGKILL, then restart", len(ids), got)
    # 80 requests in >= 4 s: a flush interval (0.2 s) holds a handful; the first hung write
    # holds its batch for the flush timeout (1 s) before spilling it.
    assert len(ids) - got[0] <= 10 and len(ids) - got[1] <= 10


def test_a_full_disk_during_an_outage_refuses_new_requests_and_loses_nothing(
        pg: tuple[str, str, FreezableProxy], tmp_path: Path) -> None:
    """17.3: database hung and the spill files on a full disk (/dev/full, ENOSPC): records stay
    in memory, the audit writer's default `on_record_loss: refuse` turns new requests away with
    a 503 in the caller's dialect, /ready says 503; once the database answers, every answered
    request's records are written and requests are served again."""
    direct, relayed, proxy = pg
    workdir = tmp_path / "gw"
    spill = workdir / "spill"
    spill.mkdir(parents=True)
    for name in ("usage", "audit"):
        (spill / f"{name}.spill.jsonl").symlink_to("/dev/full")
    gw = start_gateway(workdir, config(relayed, workdir))
    ids: list[str] = []
    try:
        proxy.freeze()
        deadline = time.monotonic() + 20
        refused = None
        while time.monotonic() < deadline and refused is None:
            try:
                ids += ask(gw, 1, pause=0.05)
            except anthropic.APIStatusError as exc:
                refused = exc
        assert refused is not None and refused.status_code == 503
        assert refused.body["error"]["type"] == "overloaded_error" or refused.body["type"] == "error"
        assert httpx.get(gw.base_url + "/ready", timeout=10).status_code == 503
        metrics = httpx.get(gw.base_url + "/metrics").text
        assert 'tollway_writer_at_risk{writer="audit"} 1.0' in metrics
        proxy.thaw()
        for name in ("usage", "audit"):
            (spill / f"{name}.spill.jsonl").unlink()
        got = wait_counts(direct, ids)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                ids += ask(gw, 1)
                break
            except anthropic.APIStatusError:
                time.sleep(0.2)
        got = wait_counts(direct, ids)
    finally:
        proxy.thaw()
        gw.stop()
    report("PostgreSQL hung and spill disk full (ENOSPC), on_record_loss: refuse", len(ids), got)
    assert got == (len(ids), len(ids))


def test_sigkill_with_a_healthy_database_loses_at_most_the_last_interval(pg: tuple[str, str, FreezableProxy],
                                                                         tmp_path: Path) -> None:
    """The baseline: SIGKILL with the database answering; the records of the last flush interval
    (0.2 s) at most are lost, and the loss is measured."""
    direct, _relayed, _proxy = pg
    workdir = tmp_path / "gw"
    gw = start_gateway(workdir, config(direct, workdir))
    ids = ask(gw, 80, pause=0.05)
    gw.proc.kill()
    gw.proc.wait(timeout=10)
    # Nothing runs to write more (the gateway is gone): the counts are final once they stop moving.
    got = wait_counts(direct, ids, timeout=5, settled=1)
    report("SIGKILL, database healthy", len(ids), got)
    assert len(ids) - got[0] <= 10 and len(ids) - got[1] <= 10

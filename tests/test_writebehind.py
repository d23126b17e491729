"""The write-behind writers against real SQLite and PostgreSQL, under the faults a red-team run
found (issue 17, items 1-3): a value the database refuses, a torn spill file, a full disk during
an outage, a hung database, a full queue. Every test counts the records that reached the
database, the spill file and the quarantine file: none may vanish.

The writers here are the gateway's own (`WriteBehind` with the real ledger and audit batch
writers); the hung database is a real PostgreSQL database behind a relay this test freezes
(tests/freezable_proxy.py), the full disk is /dev/full, whose writes fail with ENOSPC."""

from __future__ import annotations

import asyncio
import errno
import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import orjson
import pytest
from sqlalchemy import func, select

from tests.freezable_proxy import FreezableProxy
from tests.stores import store_url
from tollway.governance.audit import AuditLog
from tollway.store import audit as audit_store
from tollway.store import usage as usage_store
from tollway.store.bounded import TRUNCATED
from tollway.store.db import Database
from tollway.store.tables import audit_log, usage
from tollway.store.writebehind import WriteBehind

BACKENDS = ["sqlite", "postgresql"]


def ledger_record(model: str = "m", **over: Any) -> dict[str, Any]:
    return {
        "request_id": "req_" + uuid.uuid4().hex[:24], "ts": time.time(), "route": "messages", "key_id": "key_a",
        "user_id": None, "group_id": "grp_default", "requested_model": model, "upstream_model": model,
        "input_tokens": 10, "output_tokens": 5, "cache_write_tokens": 0, "cache_read_tokens": 0,
        "cost_micros": 7, "latency_ms": 3, "status": 200, "error_type": None, "deployment": "m", "attempts": 1,
        **over,
    }


async def count(db: Database, table: Any = usage) -> int:
    async with db.engine.connect() as conn:
        return int(await conn.scalar(select(func.count()).select_from(table)) or 0)


def lines(path: Path) -> list[bytes]:
    return [line for line in path.read_bytes().split(b"\n") if line.strip()] if path.exists() else []


@pytest.mark.parametrize("backend", BACKENDS)
def test_values_too_long_or_with_nul_are_bounded_and_cleaned(backend: str, tmp_path: Path) -> None:
    """Item 17.1: a 300-character model id, a NUL byte, a 100-character error type are stored
    (cut, with the marker) instead of failing the batch they are in."""
    async def run(url: str) -> None:
        db = Database(url)
        await db.migrate()
        try:
            long_id = "m" * 300
            recs = [ledger_record(long_id), ledger_record("bad\x00model", error_type="e" * 100), ledger_record()]
            assert await usage_store.write_batch(db, recs) == 3
            rows = {r["request_id"]: r for r in await usage_store.ledger(db)}
            first = rows[recs[0]["request_id"]]["requested_model"]
            assert len(first) == 200 and first.endswith(TRUNCATED) and first.startswith("m" * 100)
            assert rows[recs[1]["request_id"]]["requested_model"] == "badmodel"
            assert len(rows[recs[1]["request_id"]]["error_type"]) == 64
            audit: list[dict[str, Any]] = []
            log = AuditLog(audit.append, "gateway:test")
            log.record("request", request_id="req_x", requested_model=long_id + "\x00", status=200)
            await audit_store.write_batch(db, audit)
            async with db.engine.connect() as conn:
                model = await conn.scalar(select(audit_log.c.model))
            assert model is not None and len(model) == 200 and model.endswith(TRUNCATED)
            assert all(r.ok for r in await audit_store.verify(db))
        finally:
            await db.close()

    with store_url(backend, tmp_path) as url:
        asyncio.run(run(url))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_record_the_database_refuses_is_quarantined_and_nothing_else_is_held_back(backend: str,
                                                                                    tmp_path: Path) -> None:
    """Item 17.1: one record no cleaning can save (a status that is not a number) is isolated by
    splitting the batch, quarantined with its error, counted; the 49 others and every later
    record are written — the writer is not wedged, in this process or after a restart."""
    async def run(url: str) -> None:
        db = Database(url)
        await db.migrate()
        spill = tmp_path / "spill"
        try:
            writer = WriteBehind("usage", lambda b: usage_store.write_batch(db, b), spill, batch_size=64)
            await writer.start()
            good = [ledger_record() for _ in range(49)]
            for rec in [*good[:20], ledger_record(status="not-a-number"), *good[20:]]:
                writer.put(rec)
            await writer.flush()
            assert await count(db) == 49
            assert writer.quarantined == 1 and writer.healthy
            [entry] = [orjson.loads(line) for line in lines(writer.quarantine_path)]
            assert '"not-a-number"' in entry["record"] and entry["error"]
            for _ in range(5):
                writer.put(ledger_record())
            await writer.stop()
            assert await count(db) == 54
            assert not writer.spill_path.exists()
        finally:
            await db.close()

    with store_url(backend, tmp_path) as url:
        asyncio.run(run(url))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_poisoned_or_torn_spill_file_replays_its_good_lines(backend: str, tmp_path: Path) -> None:
    """Items 17.1 and 17.3: a spill file with a record the database refuses and a torn last line
    (a crash mid-append) replays every good line, quarantines the two others, and newer records
    are written too."""
    async def run(url: str) -> None:
        db = Database(url)
        await db.migrate()
        spill = tmp_path / "spill"
        spill.mkdir()
        try:
            good = [ledger_record() for _ in range(10)]
            body = b"".join(orjson.dumps(r) + b"\n" for r in [*good[:5], ledger_record(status="x"), *good[5:]])
            torn = orjson.dumps(ledger_record())[:40]
            (spill / "usage.spill.jsonl").write_bytes(body + torn)
            writer = WriteBehind("usage", lambda b: usage_store.write_batch(db, b), spill)
            await writer.start()
            assert writer.spill_records == 12
            newer = ledger_record()
            writer.put(newer)
            await writer.stop()
            assert await count(db) == 11
            assert writer.quarantined == 2
            quarantined = [orjson.loads(line)["record"] for line in lines(writer.quarantine_path)]
            assert torn.decode() in quarantined
            assert not writer.spill_path.exists()
        finally:
            await db.close()

    with store_url(backend, tmp_path) as url:
        asyncio.run(run(url))


def test_a_full_disk_during_an_outage_keeps_every_record_in_memory_until_it_is_durable(tmp_path: Path) -> None:
    """Item 17.3: with the database unreachable and the spill file on a full disk (/dev/full:
    ENOSPC), no record leaves memory; the writer reports it (metric counters, at_risk, not
    healthy). Once the disk has room they are spilled, and once the database is back, written."""
    if not os.path.exists("/dev/full"):
        pytest.fail("/dev/full is needed to produce a real ENOSPC")

    async def run() -> None:
        target = Database(f"sqlite:///{tmp_path}/live.db")
        await target.migrate()
        dead_port = _free_port()
        current = [Database(f"postgresql://postgres@127.0.0.1:{dead_port}/none", connect_timeout=1)]
        spill = tmp_path / "spill"
        spill.mkdir()
        (spill / "usage.spill.jsonl").symlink_to("/dev/full")
        with pytest.raises(OSError) as full, open(spill / "usage.spill.jsonl", "ab") as fh:
            fh.write(b"x")
            fh.flush()
        assert full.value.errno == errno.ENOSPC
        writer = WriteBehind("usage", lambda b: usage_store.write_batch(current[0], b), spill, flush_timeout=2)
        writer.spill_path.parent.mkdir(exist_ok=True)
        try:
            recs = [ledger_record() for _ in range(30)]
            for rec in recs:
                writer.put(rec)
            await writer.flush()
            assert writer.depth == 30 and writer.spill_errors >= 1 and writer.spilled == 0
            assert writer.at_risk and not writer.healthy
            # Room on disk again (the symlink goes): the next round spills them.
            (spill / "usage.spill.jsonl").unlink()
            await writer.flush()
            assert writer.depth == 0 and len(lines(writer.spill_path)) == 30 and not writer.at_risk
            # The database is back: everything is replayed, nothing twice.
            await current[0].close()
            current[0] = target
            await writer.flush()
            assert await count(target) == 30 and not writer.spill_path.exists() and writer.healthy
        finally:
            await current[0].close()

    asyncio.run(run())


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def frozen_pg(tmp_path: Path) -> Iterator[tuple[str, str, FreezableProxy]]:
    """(direct url, url through a freezable relay, the relay) for a fresh PostgreSQL database."""
    with store_url("postgresql", tmp_path) as url:
        parts = urlsplit(url)
        proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
        try:
            yield url, urlunsplit(parts._replace(netloc=netloc)), proxy
        finally:
            proxy.close()


def test_a_hung_database_costs_one_timeout_then_everything_spills(frozen_pg: tuple[str, str, FreezableProxy],
                                                                  tmp_path: Path) -> None:
    """Item 17.2: with PostgreSQL hung, a flush gives up after the timeout and spills; later
    flushes spill at once (no second hung write); a full queue spills from the request path;
    the readiness ping answers False quickly; once thawed, every record is written once."""
    direct, relayed, proxy = frozen_pg

    async def run() -> None:
        db = Database(relayed, connect_timeout=2)
        await db.migrate()
        check = Database(direct)
        writer = WriteBehind("usage", lambda b: usage_store.write_batch(db, b), tmp_path / "spill",
                             flush_timeout=1.0, max_queue=50)
        await writer.start()
        try:
            proxy.freeze()
            first = [ledger_record() for _ in range(20)]
            for rec in first:
                writer.put(rec)
            t0 = time.monotonic()
            await writer.flush()
            assert time.monotonic() - t0 < 3
            assert writer.depth == 0 and writer.spill_records == 20 and not writer.healthy
            t0 = time.monotonic()
            for _ in range(120):  # more than max_queue: the request path spills the buffer
                writer.put(ledger_record())
            assert writer.depth <= 50 and writer.spill_records >= 120
            await writer.flush()
            assert time.monotonic() - t0 < 1, "a second flush must not wait on the hung one"
            t0 = time.monotonic()
            assert await db.ping() is False
            assert time.monotonic() - t0 < 3
            proxy.thaw()
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline and (writer.spill_path.exists() or writer.depth):
                await asyncio.sleep(0.1)
            assert await count(check) == 140 and writer.healthy
        finally:
            proxy.thaw()
            await writer.stop()
            await db.close()
            await check.close()

    asyncio.run(run())

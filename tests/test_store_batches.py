"""The write-behind batch writers on a real SQLite file and a real PostgreSQL database.

A batch is normally written with one plain executemany; a replayed batch (the process died
between commit and acknowledgement, or the spill file is replayed) collides with rows already
there and must then count only what is new. These tests write the same records twice, and a
batch that mixes old and new records, and read the ledger, the rollup and the audit log back.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.stores import store_url
from tollway.governance.audit import AuditLog
from tollway.store import audit as audit_store
from tollway.store import usage as usage_store
from tollway.store.db import Database
from tollway.store.tables import audit_log, usage, usage_daily

BACKENDS = ["sqlite", "postgresql"]


def _ledger_record(cost: int, status: int = 200) -> dict[str, Any]:
    return {
        "request_id": "req_" + uuid.uuid4().hex[:24], "ts": time.time(), "route": "messages", "key_id": "key_a",
        "user_id": None, "group_id": "grp_default", "requested_model": "m", "upstream_model": "m",
        "input_tokens": 10, "output_tokens": 5, "cache_write_tokens": 0, "cache_read_tokens": 0,
        "cost_micros": cost, "latency_ms": 3, "status": status, "error_type": None, "deployment": "m",
        "attempts": 1,
    }


async def _totals(db: Database) -> tuple[int, int, int, int]:
    async with db.engine.connect() as conn:
        rows = await conn.scalar(select(func.count()).select_from(usage))
        cost = await conn.scalar(select(func.coalesce(func.sum(usage_daily.c.cost_micros), 0)))
        requests = await conn.scalar(select(func.coalesce(func.sum(usage_daily.c.requests), 0)))
        errors = await conn.scalar(select(func.coalesce(func.sum(usage_daily.c.errors), 0)))
    return int(rows or 0), int(cost or 0), int(requests or 0), int(errors or 0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replayed_ledger_batch_is_counted_once(backend: str, tmp_path: Path) -> None:
    async def run(url: str) -> None:
        db = Database(url)
        await db.migrate()
        try:
            first = [_ledger_record(100), _ledger_record(200, status=500)]
            assert await usage_store.write_batch(db, first) == 2
            assert await _totals(db) == (2, 300, 2, 1)
            # The same batch again: nothing new, nothing counted twice.
            assert await usage_store.write_batch(db, first) == 0
            assert await _totals(db) == (2, 300, 2, 1)
            # Old and new mixed: only the new record is added to the rollup.
            assert await usage_store.write_batch(db, [first[0], _ledger_record(1000)]) == 1
            assert await _totals(db) == (3, 1300, 3, 1)
            # The row reads back with the timestamp it was given (to the microsecond, in UTC).
            ts = 1_790_000_000.123456
            rec = {**_ledger_record(7), "ts": ts}
            assert await usage_store.write_batch(db, [rec]) == 1
            row = (await usage_store.ledger(db, limit=10_000))
            mine = next(r for r in row if r["request_id"] == rec["request_id"])
            got = mine["ts"] if mine["ts"].tzinfo else mine["ts"].replace(tzinfo=UTC)
            assert got == datetime.fromtimestamp(ts, UTC)
        finally:
            await db.close()

    with store_url(backend, tmp_path) as url:
        asyncio.run(run(url))


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_replayed_audit_batch_is_written_once_and_verifies(backend: str, tmp_path: Path) -> None:
    async def run(url: str) -> None:
        db = Database(url)
        await db.migrate()
        try:
            records: list[dict[str, Any]] = []
            log = AuditLog(records.append, "test:" + uuid.uuid4().hex[:8])
            payload = {"request_id": "req_p", "ts": time.time(), "request_body": "{}", "response_body": None}
            log.record("request", payload, request_id="req_p", route="messages", status=200,
                       actor={"key_id": "key_a", "user_id": None, "group_id": "g"}, dlp=[{"kind": "email"}])
            log.record("request", None, request_id="req_q", route="messages", status=429, actor=None)
            await audit_store.write_batch(db, records)
            await audit_store.write_batch(db, records)  # replayed
            async with db.engine.connect() as conn:
                rows = (await conn.execute(select(audit_log).order_by(audit_log.c.seq))).mappings().all()
            assert [(r["seq"], r["request_id"], r["status"], r["dlp_hit"], r["actor_key_id"]) for r in rows] == [
                (1, "req_p", 200, True, "key_a"), (2, "req_q", 429, False, None)]
            reports = await audit_store.verify(db)
            # The chain, and the writer registry holding its one `open` entry (the replay added none).
            assert [(r.writer, r.records, r.ok) for r in reports] == [(log.writer, 2, True), ("writers", 1, True)]
        finally:
            await db.close()

    with store_url(backend, tmp_path) as url:
        asyncio.run(run(url))

"""The console's store side on a real SQLite file and a real PostgreSQL database: migration 0014
fills the hourly rollup from the ledger rows already stored, the usage writer keeps it (a replayed
batch counted once), and it agrees with a GROUP BY over the raw ledger; the request log's search
pages newest first with its cursor; DLP findings are rolled up from the audit log once."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import func, select

from tests.stores import store_url
from tollway.governance.audit import AuditLog
from tollway.store import audit as audit_store
from tollway.store import findings
from tollway.store import usage as usage_store
from tollway.store.db import MIGRATIONS, Database
from tollway.store.tables import usage, usage_daily, usage_hourly

BACKENDS = ["sqlite", "postgresql"]
NOW = datetime.now(UTC).replace(minute=30, second=0, microsecond=0)


def record(hours_ago: int, latency: int, status: int = 200, user: str = "usr_a") -> dict[str, Any]:
    return {
        "request_id": "req_" + uuid.uuid4().hex[:24], "ts": (NOW - timedelta(hours=hours_ago)).timestamp(),
        "route": "messages", "key_id": "key_a", "user_id": user, "group_id": "grp_a", "requested_model": "m",
        "upstream_model": "m", "input_tokens": 10, "output_tokens": 5, "cache_write_tokens": 0,
        "cache_read_tokens": 0, "cost_micros": 100, "latency_ms": latency, "status": status, "error_type": None,
        "deployment": "m", "attempts": 1,
    }


def _to(revision: str) -> Any:
    def upgrade(sync_conn: Any) -> None:
        cfg = AlembicConfig()
        cfg.set_main_option("script_location", str(MIGRATIONS))
        cfg.attributes["connection"] = sync_conn
        command.upgrade(cfg, revision)
    return upgrade


async def raw_hours(db: Database) -> dict[str, tuple[int, int, int]]:
    """hour -> (requests, errors, latency sum), straight from the ledger."""
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(usage.c.ts, usage.c.status, usage.c.latency_ms))).all()
    out: dict[str, tuple[int, int, int]] = {}
    for ts, status, latency in rows:
        hour = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).strftime("%Y-%m-%dT%H")
        n, e, s = out.get(hour, (0, 0, 0))
        out[hour] = (n + 1, e + (status >= 400), s + latency)
    return out


async def rollup_hours(db: Database) -> dict[str, tuple[int, int, int]]:
    async with db.engine.connect() as conn:
        rows = (await conn.execute(select(usage_hourly.c.hour, usage_hourly.c.requests, usage_hourly.c.errors,
                                          usage_hourly.c.latency_ms_sum))).all()
    return {h: (int(n), int(e), int(s)) for h, n, e, s in rows}


async def full_report(db: Database, by: str, user: str | None = None) -> list[dict[str, Any]]:
    """A report grouped over the five-dimension daily rollup (what `report` did before 0014)."""
    column = usage_daily.c[usage_store.GROUPINGS[by]]
    q = select(column, *(func.sum(usage_daily.c[c]) for c in usage_store.SUM_COLUMNS)).group_by(column)
    if user:
        q = q.where(usage_daily.c.user_id == user)
    async with db.engine.connect() as conn:
        rows = (await conn.execute(q.order_by(column))).all()
    return [{by: r[0], **{c: int(r[i + 1]) for i, c in enumerate(usage_store.SUM_COLUMNS)}} for r in rows]


@pytest.mark.parametrize("backend", BACKENDS)
def test_the_rollups_are_filled_by_the_migration_and_kept_by_the_writer(backend: str, tmp_path: Path) -> None:
    async def run(url: str) -> None:
        db = Database(url)
        try:
            async with db.engine.begin() as conn:  # a store as it was before the console
                await conn.run_sync(_to("0010"))
            old = [record(30, 50), record(30, 700, status=500), record(5, 20_000, user="usr_b")]
            stored = [{**r, "ts": datetime.fromtimestamp(r["ts"], UTC)} for r in old]
            async with db.engine.begin() as conn:  # the ledger and daily rollup 0010's writer kept
                await conn.execute(usage.insert(), stored)
                await conn.execute(usage_daily.insert(), usage_store._rollup(stored))
            await db.migrate()
            assert await rollup_hours(db) == await raw_hours(db)

            new = [record(5, 90), record(0, 400_000), record(0, 120, status=429)]
            assert await usage_store.write_batch(db, new) == 3
            assert await usage_store.write_batch(db, new) == 0  # replayed: not counted again
            hours = await rollup_hours(db)
            assert hours == await raw_hours(db)
            assert sum(n for n, _, _ in hours.values()) == 6

            # Reports read the one-dimension rollup when they can: the same totals as the full one.
            for by in ("key", "user", "group", "model", "day"):
                assert await usage_store.report(db, by) == await full_report(db, by), by
            assert await usage_store.report(db, "user", user_id="usr_b") == await full_report(db, "user", "usr_b")

            rows = await usage_store.hourly(db, NOW - timedelta(days=2), NOW, width=10)
            assert sum(int(r["requests"]) for r in rows) == 6 and sum(int(r["errors"]) for r in rows) == 2
            buckets = [sum(int(r[f"lat_{i}"]) for r in rows) for i in range(len(usage_store.LATENCY_BOUNDS) + 1)]
            # 50, 90, 120, 700, 20 000 and 400 000 ms: the median's bucket ends at 250 ms, the
            # slowest is past every bound (reported as the last bound, a floor).
            assert buckets[0] == 2 and buckets[-1] == 1
            assert usage_store.percentile(buckets, 0.5) == 250
            assert usage_store.percentile(buckets, 0.95) == usage_store.LATENCY_BOUNDS[-1]
        finally:
            await db.close()

    with store_url(backend, tmp_path) as url:
        asyncio.run(run(url))


def test_the_request_log_pages_newest_first(tmp_path: Path) -> None:
    async def run() -> None:
        db = Database(f"sqlite:///{tmp_path}/t.db")
        await db.migrate()
        try:
            batch = [record(h, 10, user="usr_b" if h % 2 else "usr_a") for h in range(10)]
            await usage_store.write_batch(db, batch)
            first = await usage_store.search(db, user_id="usr_a", limit=3)
            assert [r["user_id"] for r in first] == ["usr_a"] * 3
            assert [r["ts"] for r in first] == sorted((r["ts"] for r in first), reverse=True)
            rest = await usage_store.search(db, user_id="usr_a", before=first[-1]["ts"], limit=10)
            seen = {r["request_id"] for r in first}
            assert len(first) + len(rest) == 5 and not seen & {r["request_id"] for r in rest}
            assert len(await usage_store.search(db, errors=True)) == 0
            assert [r["request_id"] for r in await usage_store.search(db, request_id=batch[3]["request_id"])] == [
                batch[3]["request_id"]]
        finally:
            await db.close()

    asyncio.run(run())


def test_dlp_findings_are_counted_once_whether_rolled_up_or_read_live(tmp_path: Path) -> None:
    async def run() -> None:
        db = Database(f"sqlite:///{tmp_path}/t.db")
        await db.migrate()
        pending: list[dict[str, Any]] = []
        log = AuditLog(pending.append, "gateway:test", key=b"")

        def finding(kind: str, count: int) -> list[dict[str, Any]]:
            return [{"kind": kind, "category": "pii", "action": "log", "where": ["messages"], "count": count}]

        async def summary() -> dict[tuple[str, str], tuple[int, int]]:
            got = await findings.by_kind(db, datetime.now(UTC) - timedelta(days=1), datetime.now(UTC))
            assert not got["truncated"]
            return {(r["kind"], r["action"]): (r["requests"], r["matches"]) for r in got["data"]}

        try:
            for kind, count in (("email", 2), ("email", 1), ("iban", 1), (None, 0)):
                log.record("request", None, request_id=uuid.uuid4().hex, dlp=finding(kind, count) if kind else None)
            await audit_store.write_batch(db, pending)
            pending.clear()
            expected = {("email", "log"): (2, 3), ("iban", "log"): (1, 1)}
            assert await summary() == expected  # too young to roll up: read live
            mark = await findings.catch_up(db, now=datetime.now(UTC) + timedelta(hours=1))
            assert mark > 0
            assert await findings.catch_up(db, now=datetime.now(UTC) + timedelta(hours=1)) == mark  # nothing new
            assert await summary() == expected  # now from the rollup, not counted twice
            log.record("request", None, request_id=uuid.uuid4().hex, dlp=finding("email", 5))
            await audit_store.write_batch(db, pending)
            assert await summary() == {("email", "log"): (3, 8), ("iban", "log"): (1, 1)}
        finally:
            await db.close()

    asyncio.run(run())

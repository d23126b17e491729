"""The writer registry under concurrency and replay, on SQLite and PostgreSQL, and the migration
that registers the writers of a log written before the registry existed."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest
from alembic import command
from alembic.config import Config as AlembicConfig
from sqlalchemy import create_engine, select

from tests.stores import store_url
from tollway.governance.audit import AuditLog
from tollway.store.audit import AUDIT_COLUMNS, _row, verify, write_batch
from tollway.store.bulk import insert_many
from tollway.store.db import MIGRATIONS, Database
from tollway.store.tables import audit_writers

KEY = b"registry-test-key"


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    with store_url(request.param, tmp_path) as u:
        yield u


def _writer_batches(name: str, records: int) -> list[list[dict]]:
    """One writer's records in batches of two, ending with its `close`."""
    out: list[dict] = []
    log = AuditLog(out.append, name, key=KEY)
    for i in range(records):
        log.record("request", request_id=f"req_{name}_{i}", status=200)
    log.close()
    return [out[i:i + 2] for i in range(0, len(out), 2)]


async def _registry(db: Database) -> list[tuple[int, str, str, int]]:
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(audit_writers.c.n, audit_writers.c.writer, audit_writers.c.event,
                                         audit_writers.c.seq).order_by(audit_writers.c.n))
        return [(int(n), w, e, int(s)) for n, w, e, s in rows]


def test_concurrent_writers_share_one_unbroken_registry_and_replays_add_nothing(
        url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TOLLWAY_AUDIT_KEY", KEY.decode())  # the registry is keyed from the environment
    async def run() -> None:
        db = Database(url)
        await db.migrate()
        writers = [f"gateway:test:{i}:registry" for i in range(12)]
        batches = {w: _writer_batches(w, 3) for w in writers}

        async def one(w: str) -> None:
            for batch in batches[w]:
                await write_batch(db, batch)

        await asyncio.gather(*(one(w) for w in writers))
        registry = await _registry(db)
        assert [n for n, *_ in registry] == list(range(1, 2 * len(writers) + 1))
        assert {(w, e) for _, w, e, _ in registry} == {(w, e) for w in writers for e in ("open", "close")}
        assert all(s == 4 for _, _, e, s in registry if e == "close")  # three records, then the close
        # A replay of every batch (an uncertain commit retried) registers nothing twice.
        await asyncio.gather(*(one(w) for w in writers[:4]))
        assert await _registry(db) == registry
        reports = await verify(db, KEY)
        assert all(r.ok for r in reports), [r for r in reports if not r.ok]
        assert next(r for r in reports if r.writer == "writers").records == 2 * len(writers)
        await db.close()

    asyncio.run(run())


def test_the_migration_registers_the_writers_of_an_older_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    engine = create_engine(url)
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0010")

    async def write_old() -> None:
        db = Database(url)
        for name in ("gateway:old:1:aaaa", "cli:old:2:bbbb"):
            # Written as the old code did: records only (the registry table does not exist yet).
            out: list[dict] = []
            log = AuditLog(out.append, name, key=KEY)
            log.record("request", status=200)
            log.record("request", status=200)
            async with db.engine.begin() as conn:
                await insert_many(conn, "audit_log", AUDIT_COLUMNS, [_row(r) for r in out])
        await db.close()

    asyncio.run(write_old())
    monkeypatch.setenv("TOLLWAY_AUDIT_KEY", KEY.decode())
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0011")
    engine.dispose()

    async def check() -> None:
        db = Database(url)
        assert [(n, w, e) for n, w, e, _ in await _registry(db)] == [
            (1, "gateway:old:1:aaaa", "open"), (2, "cli:old:2:bbbb", "open")]
        reports = await verify(db, KEY)
        assert all(r.ok for r in reports), [r for r in reports if not r.ok]
        await db.close()

    asyncio.run(check())

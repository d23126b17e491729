"""The database handle: engine creation, migrations on start, and the readiness check."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import ColumnElement, Table, and_, event, or_, select, text, update
from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, create_async_engine

from tollway.store.tables import state_version

MIGRATIONS = Path(__file__).parent / "migrations"
# The newest revision under migrations/versions. Checked against Alembic by a test, so it cannot
# drift; it lets a short CLI command skip importing Alembic when the schema is already current.
SCHEMA_HEAD = "0014"
# A readiness check answers within this, whatever the database does (a hung server included).
PING_TIMEOUT = 2.0
CLOSE_TIMEOUT = 3.0

T = TypeVar("T")


async def bounded(work: Awaitable[T], timeout: float) -> T:
    """`work`'s result, or TimeoutError after `timeout` s — without waiting for its cancellation.

    `asyncio.wait_for` waits until the cancelled work has finished cleaning up, and cleaning up a
    connection to a hung server (a stopped process) can itself hang; here the work is cancelled
    and left behind."""
    task = asyncio.ensure_future(work)
    done, _ = await asyncio.wait({task}, timeout=timeout)
    if not done:
        task.cancel()
        task.add_done_callback(lambda t: t.cancelled() or t.exception())
        raise TimeoutError(f"no answer within {timeout:g} s")
    return task.result()


def async_url(url: str) -> str:
    """Map the plain URLs people write in config to the async drivers we ship."""
    if url.startswith("sqlite:///"):
        return "sqlite+aiosqlite:///" + url[len("sqlite:///") :]
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+asyncpg://" + url[len(prefix) :]
    return url


def after_cursor(table: Table, after_id: str) -> ColumnElement[bool]:
    """Rows after `after_id` in (created_at, id) order: the keyset cursor every listing uses."""
    created = select(table.c.created_at).where(table.c.id == after_id).scalar_subquery()
    return or_(table.c.created_at > created, and_(table.c.created_at == created, table.c.id > after_id))


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    # WAL lets readers (the gateway) and a writer (the CLI) work at once; the busy timeout
    # turns a brief lock into a short wait instead of an error.
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA busy_timeout=5000")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.close()


def _upgrade(sync_conn: Connection) -> None:
    from alembic import command
    from alembic.config import Config as AlembicConfig

    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    command.upgrade(cfg, "head")


class Database:
    """One async engine per process; every repository borrows connections from it."""

    def __init__(self, url: str, connect_timeout: float = 5.0) -> None:
        self.url = async_url(url)
        self.is_sqlite = self.url.startswith("sqlite")
        if self.is_sqlite:
            Path(self.url.split("///", 1)[1]).parent.mkdir(parents=True, exist_ok=True)
        # asyncpg's own connect timeout (60 s by default) bounds opening a connection to a server
        # that accepts TCP but never answers; statements are bounded by their callers.
        connect_args = {} if self.is_sqlite else {"timeout": connect_timeout}
        self.engine: AsyncEngine = create_async_engine(self.url, pool_pre_ping=not self.is_sqlite,
                                                       connect_args=connect_args)
        if self.is_sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)

    async def migrate(self) -> None:
        """Bring the schema to the newest revision; safe to call on every start."""
        async with self.engine.connect() as conn:
            try:
                current = await conn.scalar(text("SELECT version_num FROM alembic_version"))
            except Exception:
                current = None
        if current == SCHEMA_HEAD:
            return
        async with self.engine.begin() as conn:
            await conn.run_sync(_upgrade)

    async def ping(self, timeout: float = PING_TIMEOUT) -> bool:
        """True when the database answers a query within `timeout` s (a hung one is False, quickly)."""
        async def query() -> None:
            async with self.engine.connect() as conn:
                await conn.execute(text("SELECT 1"))

        try:
            await bounded(query(), timeout)
            return True
        except Exception:
            return False

    async def state_version(self, conn: AsyncConnection | None = None) -> int:
        query = select(state_version.c.version).where(state_version.c.id == 1)
        if conn is not None:
            return int(await conn.scalar(query) or 0)
        async with self.engine.connect() as own:
            return int(await own.scalar(query) or 0)

    @staticmethod
    async def bump_state(conn: AsyncConnection) -> None:
        """Tell every gateway process that cached control-plane state changed."""
        await conn.execute(
            update(state_version).where(state_version.c.id == 1).values(version=state_version.c.version + 1)
        )

    async def close(self) -> None:
        """Close the pool; bounded, so a hung server cannot keep the process from exiting."""
        with contextlib.suppress(TimeoutError):
            await bounded(self.engine.dispose(), CLOSE_TIMEOUT)

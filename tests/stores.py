"""Store back-ends for tests: a SQLite file, or a fresh PostgreSQL database per use.

PostgreSQL runs when TOLLWAY_TEST_DATABASE_URL is set (`.ci/run` sets it to the local server);
otherwise those tests skip and say why. Each use gets its own database, created and dropped
here, so runs never see each other's rows.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pytest

PG_ENV = "TOLLWAY_TEST_DATABASE_URL"


async def _admin(url: str, sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@contextmanager
def store_url(backend: str, workdir: Path) -> Iterator[str]:
    if backend == "sqlite":
        yield f"sqlite:///{workdir}/tollway.db"
        return
    base = os.environ.get(PG_ENV)
    if not base:
        pytest.skip(f"PostgreSQL tests need {PG_ENV} (e.g. postgresql://postgres@127.0.0.1:5432/test)")
    name = "tollway_test_" + secrets.token_hex(6)
    asyncio.run(_admin(base, f'CREATE DATABASE "{name}"'))
    parts = urlsplit(base)
    try:
        yield urlunsplit(parts._replace(path="/" + name))
    finally:
        asyncio.run(_admin(base, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))

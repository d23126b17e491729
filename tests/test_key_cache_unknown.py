"""The key cache's handling of unknown keys and of time, on a real SQLite store and a real
PostgreSQL database made to hang (issue 17.11, issue 12.5).

Time is injected (`clock`, `monotonic`), so expiry and the check gap are tested without sleeping.
Version checks are counted by the cache itself and, independently, by a SQLAlchemy event on the
engine that sees every statement sent to the database."""

from __future__ import annotations

import asyncio
import secrets
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from sqlalchemy import event, update

from tests.freezable_proxy import FreezableProxy
from tests.stores import store_url
from tollway.governance.identity import KeyCache, create_key
from tollway.store.db import Database
from tollway.store.keys import KeyStore
from tollway.store.tables import api_keys


class FakeClock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

def statements(db: Database) -> list[str]:
    seen: list[str] = []

    def count(_conn: Any, _cursor: Any, sql: str, *_: Any) -> None:
        seen.append(sql)

    event.listen(db.engine.sync_engine, "before_cursor_execute", count)
    return seen

def test_an_unknown_key_is_remembered_until_the_state_version_moves(tmp_path: Path) -> None:
    async def run() -> None:
        url = f"sqlite:///{tmp_path}/keys.db"
        db, cli = Database(url), Database(url)
        await db.migrate()
        clock = FakeClock()
        cache = KeyCache(db, refresh_interval=3600, clock=clock, monotonic=clock, min_check_gap=0)
        await cache.reload()
        sent = statements(db)
        try:
            bogus = "tw-" + secrets.token_urlsafe(32)
            assert await cache.authenticate(bogus) is None
            assert cache.version_checks == 1
            before = len(sent)
            for _ in range(50):  # the same bad key again: answered from the negative cache
                assert await cache.authenticate(bogus) is None
            assert cache.version_checks == 1 and len(sent) == before
            # A key created a moment ago by another process authenticates on its first request.
            row, secret = await create_key(KeyStore(cli), name="fresh")
            principal = await cache.authenticate(secret)
            assert principal is not None and principal.key_id == row.id
            # A key unknown here because it was revoked... then a newer state (another key's
            # creation) is loaded: the negative entry made at the old version is not honoured.
            await KeyStore(cli).revoke(row.id)
            await cache.refresh()
            assert await cache.authenticate(secret) is None
            async with cli.engine.begin() as conn:  # un-revoked by another process
                await conn.execute(update(api_keys).where(api_keys.c.id == row.id).values(revoked_at=None))
                await Database.bump_state(conn)
            assert await cache.authenticate(secret) is None, "within the poll interval the entry may stand"
            await cache.refresh()  # the poller's round
            assert await cache.authenticate(secret) is not None
        finally:
            await cli.close()
            await db.close()

    asyncio.run(run())

def test_expiry_follows_the_injected_clock(tmp_path: Path) -> None:
    async def run() -> None:
        from datetime import UTC, datetime, timedelta

        db = Database(f"sqlite:///{tmp_path}/keys.db")
        await db.migrate()
        clock = FakeClock()
        try:
            ends = datetime.now(UTC) + timedelta(hours=1)
            _, secret = await create_key(KeyStore(db), name="short", expires_at=ends)
            cache = KeyCache(db, refresh_interval=3600, clock=clock, monotonic=clock, min_check_gap=0)
            await cache.reload()
            assert await cache.authenticate(secret) is not None
            clock.now = ends.timestamp() + 1
            assert await cache.authenticate(secret) is None
        finally:
            await db.close()

    asyncio.run(run())

def test_a_flood_of_unknown_keys_costs_a_few_queries_and_a_fresh_key_still_passes(tmp_path: Path) -> None:
    """500 random keys at once share their version checks (the red-team run counted 783
    transactions); a key created during the flood authenticates on its first request."""
    async def run() -> None:
        url = f"sqlite:///{tmp_path}/keys.db"
        db, cli = Database(url), Database(url)
        await db.migrate()
        cache = KeyCache(db, refresh_interval=3600)
        await cache.reload()
        try:
            bogus = ["tw-" + secrets.token_urlsafe(32) for _ in range(500)]
            _, secret = await create_key(KeyStore(cli), name="during")
            results = await asyncio.gather(*(cache.authenticate(k) for k in bogus), cache.authenticate(secret))
            assert all(r is None for r in results[:-1]) and results[-1] is not None
            assert cache.version_checks <= 3
        finally:
            await cli.close()
            await db.close()

    asyncio.run(run())

def test_unknown_keys_are_refused_quickly_while_the_database_hangs(tmp_path: Path) -> None:
    """The store hung (a frozen relay to a real PostgreSQL database): a known key still passes,
    an unknown key is None (401) within the check timeout — no exception, no hang."""
    async def run(url: str, proxy: FreezableProxy) -> None:
        db = Database(url, connect_timeout=2)
        await db.migrate()
        _, secret = await create_key(KeyStore(db), name="known")
        cache = KeyCache(db, refresh_interval=3600, check_timeout=0.5)
        await cache.reload()
        try:
            proxy.freeze()
            t0 = time.monotonic()
            assert await cache.authenticate("tw-" + secrets.token_urlsafe(32)) is None
            assert time.monotonic() - t0 < 2
            assert await cache.authenticate(secret) is not None
        finally:
            proxy.thaw()
            await cache.stop()
            await db.close()

    with store_url("postgresql", tmp_path) as direct:
        parts = urlsplit(direct)
        proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
        try:
            asyncio.run(run(urlunsplit(parts._replace(netloc=netloc)), proxy))
        finally:
            proxy.close()



def test_an_unknown_key_is_401_and_audited_while_the_database_hangs(tmp_path: Path) -> None:
    """End to end: a real gateway whose PostgreSQL hangs answers an unknown key 401 (the red-team
    run got unaudited 500s), and the refusal is in the audit log once the database is back."""
    import httpx

    from tests.conftest import start_gateway

    with store_url("postgresql", tmp_path) as direct:
        parts = urlsplit(direct)
        proxy = FreezableProxy(parts.hostname or "127.0.0.1", parts.port or 5432)
        netloc = f"{parts.username}@127.0.0.1:{proxy.port}" if parts.username else f"127.0.0.1:{proxy.port}"
        relayed = urlunsplit(parts._replace(netloc=netloc))
        gw = start_gateway(tmp_path / "gw", {
            "server": {"key_refresh_interval": 0.2, "shutdown_grace": 2},
            "store": {"url": relayed, "spill_dir": str(tmp_path / "gw" / "spill"), "flush_timeout": 1.0},
            "models": [{"id": "tollway-mock", "upstream": {"provider": "mock"}}]})
        try:
            proxy.freeze()
            t0 = time.monotonic()
            resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": "tw-" + secrets.token_urlsafe(32)},
                              json={"model": "tollway-mock", "max_tokens": 5,
                                    "messages": [{"role": "user", "content": "hi"}]}, timeout=10)
            assert resp.status_code == 401 and resp.json()["error"]["type"] == "authentication_error"
            assert time.monotonic() - t0 < 3
            request_id = resp.headers["request-id"]
            proxy.thaw()
            deadline = time.monotonic() + 20
            found = ""
            while time.monotonic() < deadline and request_id not in found:
                found = gw.cli("audit", "export").stdout
                time.sleep(0.3)
            assert request_id in found and '"status":401' in found
        finally:
            proxy.thaw()
            gw.stop()
            proxy.close()

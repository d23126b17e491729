"""The key cache against a real SQLite store, with the gateway's poller and a request racing.

A key created by another process (the CLI) must authenticate on its first request however that
request interleaves with the cache's own periodic reload."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from pathlib import Path
from typing import TypeVar

from tollway.governance.identity import KeyCache, create_key
from tollway.store.db import Database
from tollway.store.keys import KeyStore

T = TypeVar("T")


async def later(delay: float, work: Awaitable[T]) -> T:
    await asyncio.sleep(delay)
    return await work


def test_a_fresh_key_authenticates_while_the_poller_reloads(tmp_path: Path) -> None:
    async def scenario() -> list[int]:
        url = f"sqlite:///{tmp_path}/keys.db"
        gateway_db, cli_db = Database(url), Database(url)
        await gateway_db.migrate()
        cache = KeyCache(gateway_db, refresh_interval=3600)  # the poller's role is played below
        await cache.reload()
        refused = []
        try:
            for i in range(120):
                _, secret = await create_key(KeyStore(cli_db), name=f"k{i}")
                # The poller's refresh starts, and the key's first request arrives a little later
                # each round, sweeping every point of the reload: the request must see the key
                # whether it or the poller reloads, and whichever finishes first.
                _, principal = await asyncio.gather(cache.refresh(), later(i * 0.00025, cache.authenticate(secret)))
                if principal is None:
                    refused.append(i)
        finally:
            await cli_db.close()
            await gateway_db.close()
        return refused

    assert asyncio.run(scenario()) == []

"""Who is calling: key secrets, their hashes, and the in-memory key cache the data plane reads.

Secrets are `tw-` plus 256 random bits. They are stored only as SHA-256: a key has far more
entropy than any password, so a slow hash would add cost per request and no safety. The data
plane never queries the database for a known key; a background task polls one version counter
and reloads the cache when any process (this one, another worker, the CLI) changed keys.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import time
from dataclasses import dataclass

from tollway.store.db import Database
from tollway.store.keys import KeyRow, KeyStore

log = logging.getLogger("tollway.identity")

SECRET_PREFIX = "tw-"
DISPLAY_PREFIX_LEN = 10
_NEGATIVE_TTL = 1.0
_NEGATIVE_MAX = 10_000


def new_secret() -> str:
    return SECRET_PREFIX + secrets.token_urlsafe(32)


def hash_secret(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def display_prefix(secret: str) -> str:
    return secret[:DISPLAY_PREFIX_LEN]


@dataclass(frozen=True, slots=True)
class Principal:
    """The identity a request acts as."""

    key_id: str
    key_name: str


async def create_key(keys: KeyStore, name: str) -> tuple[KeyRow, str]:
    """Create a key; the secret is returned once and never stored."""
    secret = new_secret()
    row = await keys.create(name, display_prefix(secret), hash_secret(secret))
    return row, secret


class KeyCache:
    """Active keys by hash, kept fresh by polling the store's state version."""

    def __init__(self, db: Database, refresh_interval: float) -> None:
        self.db = db
        self.keys = KeyStore(db)
        self.refresh_interval = refresh_interval
        self._by_hash: dict[str, Principal] = {}
        self._unknown: dict[str, float] = {}
        self._version = -1
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.reload()
        self._task = asyncio.create_task(self._poll(), name="tollway-key-cache")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    async def reload(self) -> None:
        version = await self.db.state_version()
        rows = await self.keys.active()
        self._by_hash = {r.secret_hash: Principal(r.id, r.name) for r in rows}
        self._unknown.clear()
        self._version = version

    async def _poll(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval)
            try:
                if await self.db.state_version() != self._version:
                    await self.reload()
            except Exception:  # the store may be briefly down; keep serving from the cache
                log.warning("key cache refresh failed; serving the last known keys", exc_info=True)

    async def authenticate(self, secret: str) -> Principal | None:
        """The principal for a secret, or None. A known key costs one hash and one dict lookup."""
        digest = hash_secret(secret)
        principal = self._by_hash.get(digest)
        if principal is not None:
            return principal
        # Unknown here: it may have been created a moment ago by another process. Ask the store,
        # but remember misses briefly so a flood of bad keys cannot hammer the database.
        now = time.monotonic()
        if self._unknown.get(digest, 0.0) > now:
            return None
        row = await self.keys.by_hash(digest)
        if row is not None and row.active:
            principal = Principal(row.id, row.name)
            self._by_hash[digest] = principal
            return principal
        if len(self._unknown) >= _NEGATIVE_MAX:
            self._unknown.clear()
        self._unknown[digest] = now + _NEGATIVE_TTL
        return None

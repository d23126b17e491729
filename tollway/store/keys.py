"""API key rows: create, list, revoke, and the lookups the identity cache needs."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select, update

from tollway.store.db import Database
from tollway.store.tables import api_keys


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    name: str
    prefix: str
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        return self.revoked_at is None


def _row(r: object) -> KeyRow:
    m = r._mapping  # type: ignore[attr-defined]
    return KeyRow(m["id"], m["name"], m["prefix"], m["secret_hash"], m["created_at"], m["revoked_at"])


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def create(self, name: str, prefix: str, secret_hash: str) -> KeyRow:
        row = KeyRow(
            id="key_" + secrets.token_hex(8),
            name=name,
            prefix=prefix,
            secret_hash=secret_hash,
            created_at=datetime.now(UTC),
            revoked_at=None,
        )
        async with self.db.engine.begin() as conn:
            await conn.execute(
                api_keys.insert().values(
                    id=row.id, name=name, prefix=prefix, secret_hash=secret_hash, created_at=row.created_at
                )
            )
            await self.db.bump_state(conn)
        return row

    async def all(self) -> list[KeyRow]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id))
            return [_row(r) for r in rows]

    async def count(self) -> int:
        async with self.db.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(api_keys)) or 0)

    async def revoke(self, key_id: str) -> bool:
        """Mark a key revoked; False when there is no such active key."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys)
                .where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if result.rowcount:
                await self.db.bump_state(conn)
            return bool(result.rowcount)

    async def by_hash(self, secret_hash: str) -> KeyRow | None:
        async with self.db.engine.connect() as conn:
            r = (await conn.execute(select(api_keys).where(api_keys.c.secret_hash == secret_hash))).first()
        return _row(r) if r else None

    async def active(self) -> list[KeyRow]:
        async with self.db.engine.connect() as conn:
            rows = await conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None)))
            return [_row(r) for r in rows]

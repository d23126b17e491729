"""Stored rate limits and budgets per key, user or group (a row replaces the config default)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select

from tollway.store.db import Database
from tollway.store.errors import NotFound
from tollway.store.tables import api_keys, groups, limits, users

SCOPE_TABLES = {"key": api_keys, "user": users, "group": groups}


@dataclass(frozen=True, slots=True)
class LimitRow:
    scope: str
    scope_id: str
    rpm: int | None
    tpm: int | None
    concurrent: int | None
    budget_micros: int | None
    budget_period: str | None
    budget_mode: str = "expected"


def limit_row(r: Any) -> LimitRow:
    m = r._mapping
    return LimitRow(m["scope"], m["scope_id"], m["rpm"], m["tpm"], m["concurrent"], m["budget_micros"],
                    m["budget_period"], m["budget_mode"] or "expected")


class LimitStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _resolve(self, conn: Any, scope: str, ref: str) -> str:
        table = SCOPE_TABLES[scope]
        cond = table.c.id == ref if scope == "key" else (table.c.id == ref) | (table.c.name == ref)
        found = await conn.scalar(select(table.c.id).where(cond))
        if found is None:
            raise NotFound(f"no {scope} {ref}")
        return str(found)

    async def set(self, scope: str, ref: str, *, rpm: int | None = None, tpm: int | None = None,
                  concurrent: int | None = None, budget_micros: int | None = None,
                  budget_period: str | None = None, budget_mode: str | None = None) -> LimitRow:
        """Replace the scope's limits (None = unlimited for that kind; the budget mode defaults to
        expected)."""
        async with self.db.engine.begin() as conn:
            scope_id = await self._resolve(conn, scope, ref)
            await conn.execute(delete(limits).where(limits.c.scope == scope, limits.c.scope_id == scope_id))
            row = LimitRow(scope, scope_id, rpm, tpm, concurrent, budget_micros, budget_period or "month",
                           budget_mode or "expected")
            await conn.execute(limits.insert().values(
                scope=scope, scope_id=scope_id, rpm=rpm, tpm=tpm, concurrent=concurrent,
                budget_micros=budget_micros, budget_period=row.budget_period, budget_mode=row.budget_mode))
            await self.db.bump_state(conn)
        return row

    async def get(self, scope: str, ref: str) -> LimitRow | None:
        async with self.db.engine.connect() as conn:
            scope_id = await self._resolve(conn, scope, ref)
            r = (await conn.execute(select(limits).where(limits.c.scope == scope, limits.c.scope_id == scope_id))
                 ).first()
        return limit_row(r) if r else None

    async def clear(self, scope: str, ref: str) -> None:
        async with self.db.engine.begin() as conn:
            scope_id = await self._resolve(conn, scope, ref)
            result = await conn.execute(delete(limits).where(limits.c.scope == scope, limits.c.scope_id == scope_id))
            if not result.rowcount:
                raise NotFound(f"{scope} {ref} has no limits of its own")
            await self.db.bump_state(conn)

    async def all(self) -> list[LimitRow]:
        async with self.db.engine.connect() as conn:
            return [limit_row(r) for r in await conn.execute(select(limits).order_by(limits.c.scope,
                                                                                      limits.c.scope_id))]

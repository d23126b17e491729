"""API key rows: create, list, get, revoke, rotate."""

from __future__ import annotations

import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func, select, update
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.db import Database, after_cursor
from tollway.store.errors import Conflict, NotFound
from tollway.store.tables import api_keys, groups, limits, users

KINDS = ("data", "admin")
# What an admin key may do (docs/roles.md); NULL in the store is org_admin, today's admin key.
ADMIN_KEY_ROLES = ("org_admin", "group_admin", "auditor")


@dataclass(frozen=True, slots=True)
class KeyRow:
    id: str
    name: str
    prefix: str
    secret_hash: str
    created_at: datetime
    revoked_at: datetime | None
    kind: str = "data"
    user_id: str | None = None
    group_id: str | None = None
    models: tuple[str, ...] | None = None
    expires_at: datetime | None = None
    replaced_by: str | None = None
    role: str | None = None  # admin keys: org_admin (None), group_admin or auditor
    role_groups: tuple[str, ...] = ()  # the group ids a group_admin key administers

    def status(self, now: datetime | None = None) -> str:
        if self.revoked_at is not None:
            return "revoked"
        if self.expires_at is not None and _aware(self.expires_at) <= (now or datetime.now(UTC)):
            return "expired"
        return "active"

    @property
    def active(self) -> bool:
        return self.status() == "active"


def _aware(ts: datetime) -> datetime:
    """SQLite hands back naive datetimes; every timestamp we write is UTC."""
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


def key_row(r: Any) -> KeyRow:
    m = r._mapping
    models = m["models"]
    return KeyRow(
        m["id"], m["name"], m["prefix"], m["secret_hash"], _aware(m["created_at"]),
        _aware(m["revoked_at"]) if m["revoked_at"] else None, m["kind"], m["user_id"], m["group_id"],
        tuple(models) if models is not None else None,
        _aware(m["expires_at"]) if m["expires_at"] else None, m["replaced_by"],
        m.get("role"), tuple(m.get("role_groups") or ()),
    )


@dataclass(frozen=True, slots=True)
class NewKey:
    """What a caller asks for; the secret's hash and prefix come from the identity module."""

    name: str
    prefix: str
    secret_hash: str
    kind: str = "data"
    user_id: str | None = None
    group_id: str | None = None
    models: Sequence[str] | None = None
    expires_at: datetime | None = None
    role: str | None = None
    role_groups: Sequence[str] = ()


DEFAULT_GROUP_ID = "grp_default"


class KeyStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    async def _check_owner(self, conn: AsyncConnection, new: NewKey) -> NewKey:
        if new.kind not in KINDS:
            raise Conflict(f"kind must be one of {', '.join(KINDS)}")
        if new.user_id and new.group_id:
            raise Conflict("a key belongs to a user or to a group, not both")
        if new.kind == "admin":
            if new.user_id or new.group_id or new.models:
                raise Conflict("admin keys have no owner and no model list: they open only the control plane")
            if new.role not in (None, *ADMIN_KEY_ROLES):
                raise Conflict(f"an admin key's role is one of {', '.join(ADMIN_KEY_ROLES)}")
            if (new.role == "group_admin") != bool(new.role_groups):
                raise Conflict("a group_admin key names the groups it administers, and only it does")
            for gid in new.role_groups:
                if not await conn.scalar(select(groups.c.id).where(groups.c.id == gid)):
                    raise NotFound(f"no group {gid}")
            return new
        if new.role or new.role_groups:
            raise Conflict("only admin keys have a role; a data key acts as its owner")
        if new.user_id:
            if not await conn.scalar(select(users.c.id).where(users.c.id == new.user_id)):
                raise NotFound(f"no user {new.user_id}")
            return new
        group_id = new.group_id or DEFAULT_GROUP_ID
        if not await conn.scalar(select(groups.c.id).where(groups.c.id == group_id)):
            raise NotFound(f"no group {group_id}")
        return NewKey(new.name, new.prefix, new.secret_hash, new.kind, None, group_id, new.models, new.expires_at)

    async def _insert(self, conn: AsyncConnection, new: NewKey) -> KeyRow:
        new = await self._check_owner(conn, new)
        now = datetime.now(UTC)
        row = KeyRow(
            id="key_" + secrets.token_hex(8), name=new.name, prefix=new.prefix, secret_hash=new.secret_hash,
            created_at=now, revoked_at=None, kind=new.kind, user_id=new.user_id, group_id=new.group_id,
            models=tuple(new.models) if new.models is not None else None, expires_at=new.expires_at,
            role=new.role if new.role != "org_admin" else None, role_groups=tuple(new.role_groups),
        )
        await conn.execute(api_keys.insert().values(
            id=row.id, name=row.name, prefix=row.prefix, secret_hash=row.secret_hash, created_at=now,
            kind=row.kind, user_id=row.user_id, group_id=row.group_id,
            models=list(row.models) if row.models is not None else None, expires_at=row.expires_at,
            role=row.role, role_groups=list(row.role_groups) or None,
        ))
        await self.db.bump_state(conn)
        return row

    async def create(self, new: NewKey) -> KeyRow:
        async with self.db.engine.begin() as conn:
            return await self._insert(conn, new)

    async def get(self, key_id: str) -> KeyRow:
        async with self.db.engine.connect() as conn:
            r = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
        if r is None:
            raise NotFound(f"no key {key_id}")
        return key_row(r)

    async def all(
        self, *, limit: int | None = None, after: str | None = None, user_id: str | None = None,
        group_id: str | None = None, kind: str | None = None,
    ) -> list[KeyRow]:
        q = select(api_keys).order_by(api_keys.c.created_at, api_keys.c.id)
        if user_id:
            q = q.where(api_keys.c.user_id == user_id)
        if group_id:
            q = q.where(api_keys.c.group_id == group_id)
        if kind:
            q = q.where(api_keys.c.kind == kind)
        if after:
            q = q.where(after_cursor(api_keys, after))
        if limit:
            q = q.limit(limit)
        async with self.db.engine.connect() as conn:
            return [key_row(r) for r in await conn.execute(q)]

    async def count(self) -> int:
        async with self.db.engine.connect() as conn:
            return int(await conn.scalar(select(func.count()).select_from(api_keys)) or 0)

    async def revoke(self, key_id: str) -> KeyRow:
        """Mark a key revoked. Revoking twice is a conflict, so scripts notice a wrong id."""
        async with self.db.engine.begin() as conn:
            result = await conn.execute(
                update(api_keys).where(api_keys.c.id == key_id, api_keys.c.revoked_at.is_(None))
                .values(revoked_at=datetime.now(UTC))
            )
            if not result.rowcount:
                exists = await conn.scalar(select(api_keys.c.id).where(api_keys.c.id == key_id))
                if exists:
                    raise Conflict(f"key {key_id} is already revoked")
                raise NotFound(f"no key {key_id}")
            await self.db.bump_state(conn)
        return await self.get(key_id)

    async def rotate(self, key_id: str, prefix: str, secret_hash: str, grace: timedelta) -> tuple[KeyRow, KeyRow]:
        """A new key with the same owner, kind and models; the old one expires after `grace`."""
        async with self.db.engine.begin() as conn:
            r = (await conn.execute(select(api_keys).where(api_keys.c.id == key_id))).first()
            if r is None:
                raise NotFound(f"no key {key_id}")
            old = key_row(r)
            if old.status() != "active":
                raise Conflict(f"key {key_id} is {old.status()}; only an active key can be rotated")
            if old.replaced_by:
                raise Conflict(f"key {key_id} was already rotated (replaced by {old.replaced_by}); rotate that one")
            new = await self._insert(conn, NewKey(old.name, prefix, secret_hash, old.kind, old.user_id,
                                                  old.group_id, old.models, old.expires_at, old.role,
                                                  old.role_groups))
            ends = datetime.now(UTC) + grace
            if old.expires_at is not None and old.expires_at < ends:
                ends = old.expires_at
            await conn.execute(update(api_keys).where(api_keys.c.id == key_id)
                               .values(expires_at=ends, replaced_by=new.id))
            # The new key inherits the old one's limits (its own row, so `limits get` shows them);
            # counters and spend are shared through the lineage (see `lineage`).
            row = (await conn.execute(select(limits).where(limits.c.scope == "key",
                                                           limits.c.scope_id == key_id))).first()
            if row is not None:
                await conn.execute(limits.insert().values({**row._mapping, "scope_id": new.id}))
        return await self.get(key_id), new


def lineage_roots(keys: Sequence[KeyRow]) -> dict[str, str]:
    """Key id -> the first key of its rotation lineage (itself when never rotated into).

    A rotated key is the same credential under a new secret: its rate counters, concurrency and
    budget are kept under the lineage's first id, so every gateway process (and the ledger seed
    of a budget) agree on one counter through the store alone."""
    before = {k.replaced_by: k.id for k in keys if k.replaced_by}
    roots: dict[str, str] = {}
    for key in keys:
        root, seen = key.id, {key.id}
        while root in before and before[root] not in seen:
            root = before[root]
            seen.add(root)
        roots[key.id] = root
    return roots


async def lineage(conn: AsyncConnection, root: str) -> list[str]:
    """Every key id rotated from `root`, `root` included (followed through `replaced_by`)."""
    ids = [root]
    while True:
        nxt = await conn.scalar(select(api_keys.c.replaced_by).where(api_keys.c.id == ids[-1]))
        if not nxt or nxt in ids:
            return ids
        ids.append(nxt)

"""Users, groups, memberships and grants, plus the snapshot the identity cache is built from.

Every change bumps the state version in the same transaction, so gateway processes reload
their caches within one refresh interval of the commit.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.db import Database, after_cursor
from tollway.store.errors import Conflict, NotFound
from tollway.store.keys import DEFAULT_GROUP_ID, KeyRow, key_row
from tollway.store.limit_rows import LimitRow, limit_row
from tollway.store.tables import api_keys, grants, groups, limits, memberships, users


def _aware(ts: datetime) -> datetime:
    return ts if ts.tzinfo else ts.replace(tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class UserRow:
    id: str
    name: str
    email: str | None
    disabled: bool
    created_at: datetime
    groups: tuple[str, ...] = ()
    role: str | None = None  # set by an org admin; None = from the config's rules, else developer
    role_groups: tuple[str, ...] = ()  # the group ids a group_admin administers (empty: their own groups)


USER_ROLES = ("org_admin", "group_admin", "auditor", "developer")


@dataclass(frozen=True, slots=True)
class GroupRow:
    id: str
    name: str
    description: str
    created_at: datetime
    grants: tuple[str, ...] = ()
    members: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Snapshot:
    """Everything the data plane needs to authenticate and authorise, read in one go."""

    users: dict[str, UserRow]
    grants: dict[str, tuple[str, ...]]
    member_of: dict[str, tuple[str, ...]]
    keys: list[KeyRow]
    group_names: dict[str, str]
    limits: list[LimitRow]


class Directory:
    """Users and groups. Names are unique; ids are `usr_…` and `grp_…`."""

    def __init__(self, db: Database) -> None:
        self.db = db

    # -- users ----------------------------------------------------------------------------

    async def _user(self, conn: AsyncConnection, ref: str) -> UserRow:
        # An id match wins over a name match, so a user named like another's id cannot shadow it.
        r = (await conn.execute(select(users).where(users.c.id == ref))).first()
        if r is None:
            r = (await conn.execute(select(users).where(users.c.name == ref))).first()
        if r is None:
            raise NotFound(f"no user {ref}")
        m = r._mapping
        gids = (await conn.execute(select(memberships.c.group_id).where(memberships.c.user_id == m["id"])
                                   .order_by(memberships.c.group_id))).scalars().all()
        return UserRow(m["id"], m["name"], m["email"], bool(m["disabled"]), _aware(m["created_at"]), tuple(gids),
                       m["role"], tuple(m["role_groups"] or ()))

    async def create_user(self, name: str, email: str | None = None) -> UserRow:
        uid = "usr_" + secrets.token_hex(8)
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(users.insert().values(id=uid, name=name, email=email, disabled=False,
                                                         created_at=datetime.now(UTC)))
                await self.db.bump_state(conn)
        except IntegrityError:
            raise Conflict(f"a user named {name!r} or with email {email!r} already exists") from None
        return await self.get_user(uid)

    async def get_user(self, ref: str) -> UserRow:
        async with self.db.engine.connect() as conn:
            return await self._user(conn, ref)

    async def list_users(self, *, limit: int | None = None, after: str | None = None,
                         disabled: bool | None = None, group: str | None = None) -> list[UserRow]:
        q = select(users.c.id).order_by(users.c.created_at, users.c.id)
        if after:
            q = q.where(after_cursor(users, after))
        if disabled is not None:
            q = q.where(users.c.disabled == disabled)
        async with self.db.engine.connect() as conn:
            if group:
                gid = (await self._group(conn, group)).id
                q = q.where(users.c.id.in_(select(memberships.c.user_id).where(memberships.c.group_id == gid)))
            if limit:
                q = q.limit(limit)
            ids = (await conn.execute(q)).scalars().all()
            return [await self._user(conn, i) for i in ids]

    async def update_user(self, ref: str, **changes: Any) -> UserRow:
        """Change name, email or disabled; None values are left as they are."""
        values = {k: v for k, v in changes.items() if v is not None and k in ("name", "email", "disabled")}
        try:
            async with self.db.engine.begin() as conn:
                user = await self._user(conn, ref)
                if values:
                    await conn.execute(update(users).where(users.c.id == user.id).values(**values))
                    await self.db.bump_state(conn)
        except IntegrityError:
            raise Conflict("another user already has that name or email") from None
        return await self.get_user(user.id)

    async def set_role(self, ref: str, role: str | None, group_refs: list[str] | None = None) -> UserRow:
        """Store a person's admin role (None: back to the config's rules). Bumps no state version:
        roles open only the control plane, which reads them on every request."""
        if role is not None and role not in USER_ROLES:
            raise Conflict(f"role must be one of {', '.join(USER_ROLES)}")
        if group_refs and role != "group_admin":
            raise Conflict("only a group_admin role names groups")
        async with self.db.engine.begin() as conn:
            user = await self._user(conn, ref)
            gids = [(await self._group(conn, g)).id for g in group_refs or ()]
            await conn.execute(update(users).where(users.c.id == user.id)
                               .values(role=role, role_groups=list(dict.fromkeys(gids)) or None))
        return await self.get_user(user.id)

    # -- groups ---------------------------------------------------------------------------

    async def _group(self, conn: AsyncConnection, ref: str) -> GroupRow:
        r = (await conn.execute(select(groups).where(groups.c.id == ref))).first()
        if r is None:
            r = (await conn.execute(select(groups).where(groups.c.name == ref))).first()
        if r is None:
            raise NotFound(f"no group {ref}")
        m = r._mapping
        pats = (await conn.execute(select(grants.c.pattern).where(grants.c.group_id == m["id"])
                                   .order_by(grants.c.pattern))).scalars().all()
        mem = (await conn.execute(select(memberships.c.user_id).where(memberships.c.group_id == m["id"])
                                  .order_by(memberships.c.user_id))).scalars().all()
        return GroupRow(m["id"], m["name"], m["description"], _aware(m["created_at"]), tuple(pats), tuple(mem))

    async def create_group(self, name: str, description: str = "", grant: list[str] | None = None) -> GroupRow:
        gid = "grp_" + secrets.token_hex(8)
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(groups.insert().values(id=gid, name=name, description=description,
                                                          created_at=datetime.now(UTC)))
                for pattern in dict.fromkeys(grant or ()):
                    await conn.execute(grants.insert().values(group_id=gid, pattern=pattern))
                await self.db.bump_state(conn)
        except IntegrityError:
            raise Conflict(f"a group named {name!r} already exists") from None
        return await self.get_group(gid)

    async def get_group(self, ref: str) -> GroupRow:
        async with self.db.engine.connect() as conn:
            return await self._group(conn, ref)

    async def list_groups(self, *, limit: int | None = None, after: str | None = None) -> list[GroupRow]:
        q = select(groups.c.id).order_by(groups.c.created_at, groups.c.id)
        if after:
            q = q.where(after_cursor(groups, after))
        if limit:
            q = q.limit(limit)
        async with self.db.engine.connect() as conn:
            ids = (await conn.execute(q)).scalars().all()
            return [await self._group(conn, i) for i in ids]

    async def update_group(self, ref: str, name: str | None = None, description: str | None = None) -> GroupRow:
        values = {k: v for k, v in (("name", name), ("description", description)) if v is not None}
        try:
            async with self.db.engine.begin() as conn:
                group = await self._group(conn, ref)
                if values:
                    await conn.execute(update(groups).where(groups.c.id == group.id).values(**values))
                    await self.db.bump_state(conn)
        except IntegrityError:
            raise Conflict(f"a group named {name!r} already exists") from None
        return await self.get_group(group.id)

    async def delete_group(self, ref: str) -> None:
        """Delete a group with its grants and memberships; refused while it owns unrevoked keys."""
        async with self.db.engine.begin() as conn:
            group = await self._group(conn, ref)
            if group.id == DEFAULT_GROUP_ID:
                raise Conflict("the built-in default group cannot be deleted; change its grants instead")
            now = datetime.now(UTC)
            owned = await conn.scalar(select(api_keys.c.id).where(
                api_keys.c.group_id == group.id, api_keys.c.revoked_at.is_(None),
                api_keys.c.expires_at.is_(None) | (api_keys.c.expires_at > now)).limit(1))
            if owned:
                raise Conflict(f"group {group.name} still owns active keys; revoke them first")
            await conn.execute(delete(grants).where(grants.c.group_id == group.id))
            await conn.execute(delete(memberships).where(memberships.c.group_id == group.id))
            await conn.execute(update(api_keys).where(api_keys.c.group_id == group.id).values(group_id=None))
            await conn.execute(delete(groups).where(groups.c.id == group.id))
            await self.db.bump_state(conn)

    async def set_grants(self, ref: str, patterns: list[str]) -> GroupRow:
        async with self.db.engine.begin() as conn:
            group = await self._group(conn, ref)
            await conn.execute(delete(grants).where(grants.c.group_id == group.id))
            for pattern in dict.fromkeys(patterns):
                await conn.execute(grants.insert().values(group_id=group.id, pattern=pattern))
            await self.db.bump_state(conn)
        return await self.get_group(group.id)

    async def add_grant(self, ref: str, pattern: str) -> GroupRow:
        group = await self.get_group(ref)
        return await self.set_grants(group.id, [*group.grants, pattern])

    async def remove_grant(self, ref: str, pattern: str) -> GroupRow:
        group = await self.get_group(ref)
        if pattern not in group.grants:
            raise NotFound(f"group {group.name} has no grant {pattern!r}")
        return await self.set_grants(group.id, [p for p in group.grants if p != pattern])

    async def add_member(self, group_ref: str, user_ref: str) -> GroupRow:
        async with self.db.engine.begin() as conn:
            group = await self._group(conn, group_ref)
            user = await self._user(conn, user_ref)
            if group.id in user.groups:
                raise Conflict(f"user {user.name} is already in group {group.name}")
            await conn.execute(memberships.insert().values(user_id=user.id, group_id=group.id))
            await self.db.bump_state(conn)
        return await self.get_group(group.id)

    async def remove_member(self, group_ref: str, user_ref: str) -> GroupRow:
        async with self.db.engine.begin() as conn:
            group = await self._group(conn, group_ref)
            user = await self._user(conn, user_ref)
            result = await conn.execute(delete(memberships).where(memberships.c.group_id == group.id,
                                                                  memberships.c.user_id == user.id))
            if not result.rowcount:
                raise NotFound(f"user {user.name} is not in group {group.name}")
            await self.db.bump_state(conn)
        return await self.get_group(group.id)

    # -- the data plane's view ------------------------------------------------------------

    async def snapshot(self) -> tuple[int, Snapshot]:
        """The state version and every row the identity cache needs, in one read transaction."""
        async with self.db.engine.connect() as conn:
            version = await self.db.state_version(conn)
            user_rows = {
                r.id: UserRow(r.id, r.name, r.email, bool(r.disabled), _aware(r.created_at))
                for r in await conn.execute(select(users))
            }
            by_group: dict[str, list[str]] = {}
            for r in await conn.execute(select(grants)):
                by_group.setdefault(r.group_id, []).append(r.pattern)
            member_of: dict[str, list[str]] = {}
            for r in await conn.execute(select(memberships)):
                member_of.setdefault(r.user_id, []).append(r.group_id)
            keys = [key_row(r) for r in await conn.execute(select(api_keys).where(api_keys.c.revoked_at.is_(None)))]
            group_names = {r.id: r.name for r in await conn.execute(select(groups.c.id, groups.c.name))}
            limit_rows = [limit_row(r) for r in await conn.execute(select(limits))]
        return version, Snapshot(
            user_rows,
            {g: tuple(p) for g, p in by_group.items()},
            {u: tuple(g) for u, g in member_of.items()},
            keys,
            group_names,
            limit_rows,
        )

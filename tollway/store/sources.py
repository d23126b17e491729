"""Where people and grants come from, read in bulk for the console's directory and models pages:
which users were provisioned from an identity provider (sign-in), and every group's grants."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import select

from tollway.store.db import Database
from tollway.store.tables import api_keys, grants, groups, signin_identities


async def idp_links(db: Database, user_ids: Sequence[str]) -> dict[str, list[str]]:
    """user id -> the issuers of the IdP accounts linked to it (absent: a local user)."""
    # A user id is at most 40 printable characters: anything else matches no row, and some of it
    # (a NUL byte) PostgreSQL refuses outright — so it is not sent.
    wanted = [u for u in set(user_ids) if u and len(u) <= 40 and u.isprintable()]
    if not wanted:
        return {}
    q = select(signin_identities.c.user_id, signin_identities.c.issuer).where(signin_identities.c.user_id.in_(wanted))
    out: dict[str, list[str]] = {}
    async with db.engine.connect() as conn:
        for uid, issuer in await conn.execute(q):
            out.setdefault(str(uid), []).append(str(issuer))
    return out


async def all_grants(db: Database) -> list[tuple[str, str, str]]:
    """(group id, group name, pattern) for every grant, in one query."""
    q = (select(groups.c.id, groups.c.name, grants.c.pattern).join(grants, grants.c.group_id == groups.c.id)
         .order_by(groups.c.name, grants.c.pattern))
    async with db.engine.connect() as conn:
        return [(str(a), str(b), str(c)) for a, b, c in await conn.execute(q)]


async def successors(db: Database) -> dict[str, str]:
    """key id -> the key that replaced it, for every rotated key (to fold rotation lineages)."""
    q = select(api_keys.c.id, api_keys.c.replaced_by).where(api_keys.c.replaced_by.is_not(None))
    async with db.engine.connect() as conn:
        return {str(a): str(b) for a, b in await conn.execute(q)}

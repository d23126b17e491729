"""Store rows as the admin API shows them, and the one paging shape every list answers with."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from tollway.admin.schemas import Group, Key, Limits, UsageRow, User
from tollway.store.keys import KeyRow
from tollway.store.limit_rows import LimitRow
from tollway.store.principals import GroupRow, UserRow

T = TypeVar("T")


def user_out(u: UserRow) -> User:
    return User(id=u.id, name=u.name, email=u.email, disabled=u.disabled, created_at=u.created_at,
                groups=list(u.groups), role=u.role, role_groups=list(u.role_groups))


def group_out(g: GroupRow) -> Group:
    return Group(id=g.id, name=g.name, description=g.description, created_at=g.created_at,
                 grants=list(g.grants), members=list(g.members))


def key_out(k: KeyRow) -> Key:
    return Key(id=k.id, name=k.name, prefix=k.prefix, kind=k.kind, user_id=k.user_id, group_id=k.group_id,
               models=list(k.models) if k.models is not None else None, created_at=k.created_at,
               expires_at=k.expires_at, revoked_at=k.revoked_at, replaced_by=k.replaced_by, status=k.status(),
               role=(k.role or "org_admin") if k.kind == "admin" else None, role_groups=list(k.role_groups))


def limits_out(r: LimitRow) -> Limits:
    return Limits(scope=r.scope, scope_id=r.scope_id, rpm=r.rpm, tpm=r.tpm, concurrent=r.concurrent,
                  budget_usd=r.budget_micros / 1_000_000 if r.budget_micros is not None else None,
                  budget_period=r.budget_period or "month", budget_mode=r.budget_mode)


def usage_out(row: dict[str, Any], by: str) -> UsageRow:
    b = row.get("budget")
    return UsageRow(key=str(row[by]), requests=row["requests"], errors=row["errors"],
                    input_tokens=row["input_tokens"], output_tokens=row["output_tokens"],
                    cache_write_tokens=row["cache_write_tokens"], cache_read_tokens=row["cache_read_tokens"],
                    cost_usd=row["cost_micros"] / 1_000_000, cost_micros=row["cost_micros"], name=row.get("name"),
                    budget_usd=b.limit_micros / 1_000_000 if b else None, budget_period=b.period if b else None,
                    budget_spent_usd=b.spent_micros / 1_000_000 if b else None,
                    budget_remaining_usd=b.left_micros / 1_000_000 if b else None,
                    budget_resets_at=b.resets_at if b else None)


def page(items: Sequence[T], limit: int, ident: Callable[[T], str]) -> dict[str, Any]:
    """A page from `limit + 1` fetched rows: the extra row only says whether more exist."""
    data = list(items[:limit])
    return {"object": "list", "data": data, "has_more": len(items) > limit,
            "first_id": ident(data[0]) if data else None, "last_id": ident(data[-1]) if data else None}

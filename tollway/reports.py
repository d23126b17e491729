"""Usage reports people can read: the rollup's totals with names beside ids and, for keys, users
and groups, the budget that applies and what is left of it in the current period.

Shared by `tollway usage` and `GET /admin/v1/usage`, so both say the same thing. The budget is
the one the gateway enforces: the scope's own limits row when it has one, else the config
default for its kind; "spent" is the ledger's settled cost since the period began (UTC), which
is what the gateway counts against the budget at start-up.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from tollway.config import LimitsConfig
from tollway.governance.limits import period_bounds
from tollway.store.db import Database
from tollway.store.limit_rows import LimitStore
from tollway.store.usage import display_names, report, spent_micros

SCOPES = ("key", "user", "group")


@dataclass(frozen=True, slots=True)
class Filters:
    """One key, user, group and/or model a report is narrowed to (ids, already resolved)."""

    key_id: str | None = None
    user_id: str | None = None
    group_id: str | None = None
    model: str | None = None


@dataclass(frozen=True, slots=True)
class BudgetState:
    limit_micros: int
    period: str
    spent_micros: int
    resets_at: datetime

    @property
    def left_micros(self) -> int:
        return max(0, self.limit_micros - self.spent_micros)


async def budget_state(db: Database, limits: LimitsConfig, scope: str, scope_id: str,
                       now: datetime | None = None) -> BudgetState | None:
    """The budget the gateway enforces on this key, user or group, and its state; None when unlimited."""
    own = await LimitStore(db).get(scope, scope_id)
    if own is not None:
        micros, period = own.budget_micros, own.budget_period or "month"
    else:
        default = getattr(limits.defaults, scope)
        micros = round(default.budget_usd * 1_000_000) if default.budget_usd is not None else None
        period = default.budget_period
    if micros is None:
        return None
    _, start, resets = period_bounds(period, now or datetime.now(UTC))
    return BudgetState(micros, period, await spent_micros(db, scope, scope_id, start), resets)


async def usage_report(db: Database, limits: LimitsConfig, by: str, since: date | None = None,
                       until: date | None = None, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """The rollup's rows for BY, each with `name` (keys, users, groups; else None) and `budget`
    (a BudgetState for keys, users and groups with a budget; else None)."""
    rows = await report(db, by, since, until, key_id=filters.key_id, user_id=filters.user_id,
                        group_id=filters.group_id, model=filters.model)
    names = await display_names(db, by, [r[by] for r in rows]) if by in SCOPES else {}
    for r in rows:
        ident = r[by]
        r["name"] = names.get(ident) if ident else None
        r["budget"] = await budget_state(db, limits, by, ident) if by in SCOPES and ident else None
    return rows

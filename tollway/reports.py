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
from tollway.store.sources import successors
from tollway.store.usage import display_names, report, spent_by, spent_micros

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


async def budget_states(db: Database, limits: LimitsConfig, scope: str, ids: list[str],
                        now: datetime | None = None) -> dict[str, BudgetState]:
    """`budget_state` for many keys, users or groups at once: one query for the limits, one for
    the rotation lineages (keys), one spend query per budget period in use — never one per id."""
    now = now or datetime.now(UTC)
    own = {r.scope_id: r for r in await LimitStore(db).all() if r.scope == scope}
    default = getattr(limits.defaults, scope)
    wanted: dict[str, tuple[int, str]] = {}
    for ident in ids:
        row = own.get(ident)
        if row is not None:
            micros, period = row.budget_micros, row.budget_period or "month"
        else:
            micros = round(default.budget_usd * 1_000_000) if default.budget_usd is not None else None
            period = default.budget_period
        if micros is not None:
            wanted[ident] = (micros, period)
    nexts = await successors(db) if scope == "key" and wanted else {}

    def lineage(ident: str) -> list[str]:
        chain = [ident]
        while (n := nexts.get(chain[-1])) and n not in chain:
            chain.append(n)
        return chain

    out: dict[str, BudgetState] = {}
    for period in {p for _, p in wanted.values()}:
        members = [i for i, (_, p) in wanted.items() if p == period]
        _, start, resets = period_bounds(period, now)
        spent = await spent_by(db, scope, [j for i in members for j in lineage(i)], start)
        for i in members:
            out[i] = BudgetState(wanted[i][0], period, sum(spent.get(j, 0) for j in lineage(i)), resets)
    return out


async def usage_report(db: Database, limits: LimitsConfig, by: str, since: date | None = None,
                       until: date | None = None, filters: Filters = Filters()) -> list[dict[str, Any]]:
    """The rollup's rows for BY, each with `name` (keys, users, groups; else None) and `budget`
    (a BudgetState for keys, users and groups with a budget; else None). A fixed number of
    queries whatever the number of rows (the console's usage page on a large store)."""
    rows = await report(db, by, since, until, key_id=filters.key_id, user_id=filters.user_id,
                        group_id=filters.group_id, model=filters.model)
    ids = [r[by] for r in rows if r[by]]
    names = await display_names(db, by, ids) if by in SCOPES else {}
    budgets = await budget_states(db, limits, by, ids) if by in SCOPES else {}
    for r in rows:
        ident = r[by]
        r["name"] = names.get(ident) if ident else None
        r["budget"] = budgets.get(ident) if ident else None
    return rows

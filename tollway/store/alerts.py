"""Alert rules, the thresholds they have fired, and webhook deliveries with their attempts.

Firing is an insert keyed by (rule, subject, period, threshold) that does nothing when the row
exists, so however many gateway processes evaluate the same spend, each threshold fires once per
budget period. A delivery is claimed by one conditional UPDATE before it is sent, so two
processes never send the same attempt.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import case, delete, func, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.db import Database
from tollway.store.errors import Conflict, NotFound
from tollway.store.tables import alert_deliveries, alert_firings, alert_rules, usage

RULE_FIELDS = ("name", "kind", "scope", "scope_id", "thresholds", "error_rate", "window_seconds", "min_requests",
               "webhook_url", "format", "enabled")


def _aware(ts: datetime | None) -> datetime | None:
    return None if ts is None else (ts if ts.tzinfo else ts.replace(tzinfo=UTC))


CONFIG_PREFIX = "cfg_"  # the id of a rule written in the config: cfg_<name>


@dataclass(frozen=True, slots=True)
class RuleRow:
    id: str
    name: str
    kind: str
    scope: str | None
    scope_id: str | None
    thresholds: tuple[float, ...]
    error_rate: float | None
    window_seconds: int | None
    min_requests: int | None
    webhook_url: str
    format: str
    enabled: bool
    created_at: datetime


def _rule(r: Any) -> RuleRow:
    m = r._mapping
    return RuleRow(m["id"], m["name"], m["kind"], m["scope"], m["scope_id"], tuple(m["thresholds"] or ()),
                   m["error_rate"], m["window_seconds"], m["min_requests"], m["webhook_url"], m["format"],
                   bool(m["enabled"]), _aware(m["created_at"]) or datetime.now(UTC))


@dataclass(frozen=True, slots=True)
class DeliveryRow:
    id: str
    rule_id: str
    created_at: datetime
    event: dict[str, Any]
    url: str
    format: str
    status: str
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


def _delivery(r: Any) -> DeliveryRow:
    m = r._mapping
    return DeliveryRow(m["id"], m["rule_id"], _aware(m["created_at"]) or datetime.now(UTC), orjson.loads(m["event"]),
                       m["url"], m["format"], m["status"], m["attempts"], _aware(m["next_attempt_at"]),
                       m["last_status"], m["last_error"], _aware(m["delivered_at"]))


async def _insert_new(conn: AsyncConnection, is_sqlite: bool, values: dict[str, Any]) -> bool:
    """Insert a firing unless it exists; True when this call inserted it."""
    stmt = (sqlite.insert(alert_firings) if is_sqlite else postgresql.insert(alert_firings)).values(**values)
    result = await conn.execute(stmt.on_conflict_do_nothing())
    return bool(result.rowcount)


class AlertStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- rules ------------------------------------------------------------------------------

    async def create_rule(self, **fields: Any) -> RuleRow:
        rid = "alr_" + secrets.token_hex(8)
        values = {k: fields.get(k) for k in RULE_FIELDS}
        try:
            async with self.db.engine.begin() as conn:
                await conn.execute(alert_rules.insert().values(id=rid, created_at=datetime.now(UTC), **values))
        except IntegrityError:
            raise Conflict(f"an alert rule named {fields.get('name')!r} already exists") from None
        return await self.get_rule(rid)

    async def get_rule(self, rule_id: str) -> RuleRow:
        async with self.db.engine.connect() as conn:
            r = (await conn.execute(select(alert_rules).where(alert_rules.c.id == rule_id))).first()
        if r is None:
            raise NotFound(f"no alert rule {rule_id}")
        return _rule(r)

    async def rules(self, *, enabled_only: bool = False) -> list[RuleRow]:
        q = select(alert_rules).order_by(alert_rules.c.created_at, alert_rules.c.id)
        if enabled_only:
            q = q.where(alert_rules.c.enabled.is_(True))
        async with self.db.engine.connect() as conn:
            return [_rule(r) for r in await conn.execute(q)]

    async def update_rule(self, rule_id: str, **changes: Any) -> RuleRow:
        values = {k: v for k, v in changes.items() if k in RULE_FIELDS}
        if not values:
            return await self.get_rule(rule_id)
        try:
            async with self.db.engine.begin() as conn:
                res = await conn.execute(update(alert_rules).where(alert_rules.c.id == rule_id).values(**values))
                if not res.rowcount:
                    raise NotFound(f"no alert rule {rule_id}")
        except IntegrityError:
            raise Conflict("another alert rule has that name") from None
        return await self.get_rule(rule_id)

    async def delete_rule(self, rule_id: str) -> None:
        async with self.db.engine.begin() as conn:
            res = await conn.execute(delete(alert_rules).where(alert_rules.c.id == rule_id))
            if not res.rowcount:
                raise NotFound(f"no alert rule {rule_id}")
            await conn.execute(delete(alert_firings).where(alert_firings.c.rule_id == rule_id))

    # -- firing and delivering --------------------------------------------------------------

    async def fire(self, rule: RuleRow, subject: str, period: str, thresholds: list[str],
                   event: dict[str, Any], now: datetime) -> bool:
        """Mark THRESHOLDS fired for SUBJECT in PERIOD; when any was new, queue one delivery of
        EVENT with `threshold` set to the highest new one (THRESHOLDS ascending, numbers as text).
        All in one transaction: a crash leaves neither or both."""
        async with self.db.engine.begin() as conn:
            fresh = [t for t in thresholds
                     if await _insert_new(conn, self.db.is_sqlite, {"rule_id": rule.id, "subject": subject,
                                                                    "period": period, "threshold": t,
                                                                    "fired_at": now})]
            if not fresh:
                return False
            body = {**event, "threshold": float(fresh[-1])}
            await conn.execute(alert_deliveries.insert().values(
                id="dlv_" + secrets.token_hex(8), rule_id=rule.id, created_at=now, event=orjson.dumps(body).decode(),
                url=rule.webhook_url, format=rule.format, status="pending", attempts=0, next_attempt_at=now))
        return True

    async def due(self, now: datetime, limit: int = 50) -> list[DeliveryRow]:
        q = (select(alert_deliveries).where(alert_deliveries.c.status == "pending",
                                            alert_deliveries.c.next_attempt_at <= now)
             .order_by(alert_deliveries.c.next_attempt_at).limit(limit))
        async with self.db.engine.connect() as conn:
            return [_delivery(r) for r in await conn.execute(q)]

    async def claim(self, row: DeliveryRow, now: datetime, lease_until: datetime) -> bool:
        """Take one attempt of a due delivery; False when another process took it first."""
        async with self.db.engine.begin() as conn:
            res = await conn.execute(update(alert_deliveries).where(
                alert_deliveries.c.id == row.id, alert_deliveries.c.status == "pending",
                alert_deliveries.c.attempts == row.attempts, alert_deliveries.c.next_attempt_at <= now)
                .values(next_attempt_at=lease_until))
        return bool(res.rowcount)

    async def attempted(self, row: DeliveryRow, *, status: str, http_status: int | None, error: str | None,
                        now: datetime, next_at: datetime | None) -> None:
        async with self.db.engine.begin() as conn:
            await conn.execute(update(alert_deliveries).where(alert_deliveries.c.id == row.id).values(
                status=status, attempts=row.attempts + 1, last_status=http_status,
                last_error=error[:500] if error else None, next_attempt_at=next_at,
                delivered_at=now if status == "delivered" else None))

    async def deliveries(self, *, limit: int = 50, rule_id: str | None = None,
                         status: str | None = None) -> list[DeliveryRow]:
        q = select(alert_deliveries).order_by(alert_deliveries.c.created_at.desc(), alert_deliveries.c.id).limit(limit)
        if rule_id:
            q = q.where(alert_deliveries.c.rule_id == rule_id)
        if status:
            q = q.where(alert_deliveries.c.status == status)
        async with self.db.engine.connect() as conn:
            return [_delivery(r) for r in await conn.execute(q)]

    # -- what the ledger says ---------------------------------------------------------------

    async def error_counts(self, since: datetime, scope: str | None, scope_id: str | None) -> tuple[int, int]:
        """(requests, failed requests: status 5xx) in the ledger since SINCE, for one scope or all."""
        failed = func.coalesce(func.sum(case((usage.c.status >= 500, 1), else_=0)), 0)
        q = select(func.count(), failed).where(usage.c.ts >= since)
        if scope and scope_id:
            q = q.where(usage.c[f"{scope}_id"] == scope_id)
        async with self.db.engine.connect() as conn:
            row = (await conn.execute(q)).one()
        return int(row[0] or 0), int(row[1] or 0)


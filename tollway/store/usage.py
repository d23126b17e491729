"""The usage ledger and its daily rollup: batch writes, reports, and spend for budgets.

A batch is written in one transaction: ledger rows are inserted with "on conflict do nothing"
and only the rows that were new are added to the rollup, so replaying a batch (after a crash
between commit and acknowledgement, or from the spill file) never counts a request twice.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, date, datetime
from functools import lru_cache
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import IntegrityError

from tollway.store.bounded import clean_row
from tollway.store.bulk import insert_many
from tollway.store.db import Database
from tollway.store.keys import lineage
from tollway.store.tables import (
    LATENCY_BUCKETS,
    api_keys,
    groups,
    usage,
    usage_daily,
    usage_daily_by,
    usage_hourly,
    users,
)

TOKEN_COLUMNS = ("input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens")
SUM_COLUMNS = ("requests", "errors", *TOKEN_COLUMNS, "cost_micros")
GROUPINGS = {"key": "key_id", "user": "user_id", "group": "group_id", "model": "model", "day": "day"}
# Upper bounds (ms) of the hourly rollup's latency buckets (the last bucket: slower than all).
LATENCY_BOUNDS = (100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000, 300000)
assert len(LATENCY_BOUNDS) + 1 == LATENCY_BUCKETS
HOURLY_SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cost_micros", "latency_ms_sum",
               *(f"lat_{i}" for i in range(LATENCY_BUCKETS)))


@lru_cache(maxsize=4)
def _statements(dialect: str) -> tuple[Any, Any, Any, Any]:
    """The ledger insert and the rollup upsert, built once per dialect and run as executemany:
    compiling a fresh multi-row VALUES statement per batch cost ~0.2 ms of event-loop time per row."""
    insert = postgresql.insert if dialect == "postgresql" else sqlite.insert
    ledger = insert(usage).on_conflict_do_nothing(index_elements=["request_id"]).returning(usage.c.request_id)
    up = insert(usage_daily)
    up = up.on_conflict_do_update(
        index_elements=["day", "key_id", "user_id", "group_id", "model"],
        set_={c: usage_daily.c[c] + up.excluded[c] for c in SUM_COLUMNS},
    )
    hourly = insert(usage_hourly)
    hourly = hourly.on_conflict_do_update(index_elements=["hour"],
                                          set_={c: usage_hourly.c[c] + hourly.excluded[c] for c in HOURLY_SUMS})
    by = insert(usage_daily_by)
    by = by.on_conflict_do_update(index_elements=["dim", "day", "value"],
                                  set_={c: usage_daily_by.c[c] + by.excluded[c] for c in SUM_COLUMNS})
    return ledger, up, hourly, by


def _by_dimension(rollup: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The daily rollup's rows summed per (dimension, day, value): what `usage_daily_by` gains."""
    totals: dict[tuple[str, str, str], dict[str, int]] = {}
    for row in rollup:
        for dim in ("key", "user", "group", "model"):
            k = (dim, row["day"], row[GROUPINGS[dim]])
            agg = totals.get(k)
            if agg is None:
                agg = totals[k] = dict.fromkeys(SUM_COLUMNS, 0)
            for c in SUM_COLUMNS:
                agg[c] += row[c]
    # In key order, so two writers upserting the same rows lock them in the same order (PostgreSQL).
    return [{"dim": d, "day": day, "value": v, **t} for (d, day, v), t in sorted(totals.items())]


def _bucket(latency_ms: int) -> int:
    for i, bound in enumerate(LATENCY_BOUNDS):
        if latency_ms <= bound:
            return i
    return len(LATENCY_BOUNDS)


def _hourly(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows summed per UTC hour: what the console's hourly rollup gains."""
    totals: dict[str, dict[str, int]] = {}
    for row in rows:
        # `isoformat`, not `strftime`: the same text ("2026-01-31T12") at a fraction of the cost.
        hour = row["ts"].astimezone(UTC).replace(tzinfo=None).isoformat(timespec="hours")
        agg = totals.get(hour)
        if agg is None:
            agg = totals[hour] = dict.fromkeys(HOURLY_SUMS, 0)
        latency = int(row["latency_ms"] or 0)
        agg["requests"] += 1
        agg["errors"] += 1 if row["status"] >= 400 else 0
        agg["input_tokens"] += int(row["input_tokens"] or 0)
        agg["output_tokens"] += int(row["output_tokens"] or 0)
        agg["cost_micros"] += int(row["cost_micros"] or 0)
        agg["latency_ms_sum"] += latency
        agg[f"lat_{_bucket(latency)}"] += 1
    return [{"hour": h, **v} for h, v in sorted(totals.items())]  # key order: see _by_dimension


LEDGER_COLUMNS = tuple(c.name for c in usage.columns)


def _ledger_row(record: dict[str, Any]) -> dict[str, Any]:
    row = dict(zip(LEDGER_COLUMNS, map(record.get, LEDGER_COLUMNS), strict=True))  # picked in C
    # Records written before a column existed (replayed from a spill file) take its default.
    row["attempts"] = row["attempts"] or 1
    ts = row["ts"]
    row["ts"] = datetime.fromtimestamp(ts, UTC) if isinstance(ts, int | float) else ts
    return clean_row(usage, row)


def _rollup(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows summed per (day, key, user, group, model): what the daily rollup gains."""
    totals: dict[tuple[str, ...], dict[str, int]] = {}
    for row in rows:
        key = (row["ts"].date().isoformat(), row["key_id"], row["user_id"] or "", row["group_id"] or "",
               row["requested_model"])
        agg = totals.get(key)
        if agg is None:
            agg = totals[key] = dict.fromkeys(SUM_COLUMNS, 0)
        agg["requests"] += 1
        agg["errors"] += 1 if row["status"] >= 400 else 0
        for col in (*TOKEN_COLUMNS, "cost_micros"):
            agg[col] += int(row[col] or 0)
    return [dict(zip(("day", "key_id", "user_id", "group_id", "model"), k, strict=True), **v)
            for k, v in totals.items()]


async def write_batch(db: Database, records: Sequence[dict[str, Any]]) -> int:
    """Insert ledger rows and roll them up; returns how many were new.

    A fresh batch is sent as one plain executemany (see `store.bulk`): its request ids are new,
    so every row counts. Only a batch written before — replayed after a crash between commit and
    acknowledgement — collides on the primary key; that rolls the transaction back, and the batch
    is then written the careful way, counting only the rows the database did not have.
    """
    if not records:
        return 0
    rows = [_ledger_row(r) for r in records]
    try:
        async with db.engine.begin() as conn:
            await insert_many(conn, "usage", LEDGER_COLUMNS, rows)
            _, rollup_stmt, hourly_stmt, by_stmt = _statements(conn.dialect.name)
            daily = _rollup(rows)
            await conn.execute(rollup_stmt, daily)
            await conn.execute(by_stmt, _by_dimension(daily))
            await conn.execute(hourly_stmt, _hourly(rows))
        return len(rows)
    except IntegrityError:
        pass
    async with db.engine.begin() as conn:
        ledger_stmt, rollup_stmt, hourly_stmt, by_stmt = _statements(conn.dialect.name)
        new_ids = set((await conn.execute(ledger_stmt, rows)).scalars())
        fresh = [row for row in rows if row["request_id"] in new_ids]
        if fresh:
            daily = _rollup(fresh)
            await conn.execute(rollup_stmt, daily)
            await conn.execute(by_stmt, _by_dimension(daily))
            await conn.execute(hourly_stmt, _hourly(fresh))
    return len(new_ids)


async def report(db: Database, by: str, since: date | None = None, until: date | None = None, *,
                 key_id: str | None = None, user_id: str | None = None, group_id: str | None = None,
                 model: str | None = None) -> list[dict[str, Any]]:
    """Totals grouped by key, user, group, model or day, from the rollup (dates inclusive, UTC),
    optionally narrowed to one key, user, group and/or model (ids, already resolved).

    Without a filter on another dimension, the one-dimension rollup answers (a row per value and
    day, not per combination): a month by user on a million-request ledger reads thousands of rows
    instead of hundreds of thousands. A day report without filters reads the model dimension."""
    narrowed = {"key": key_id, "user": user_id, "group": group_id, "model": model}
    others = [d for d, v in narrowed.items() if v is not None and d != by]
    if not others:
        dim = "model" if by == "day" else by
        t = usage_daily_by
        column = t.c.day if by == "day" else t.c.value
        q = select(column.label(by), *(func.sum(t.c[c]).label(c) for c in SUM_COLUMNS)).where(t.c.dim == dim)
        if by != "day" and narrowed[by] is not None:
            q = q.where(t.c.value == narrowed[by])
    else:
        t = usage_daily
        column = t.c[GROUPINGS[by]]
        q = select(column.label(by), *(func.sum(t.c[c]).label(c) for c in SUM_COLUMNS))
        for name, value in (("key_id", key_id), ("user_id", user_id), ("group_id", group_id), ("model", model)):
            if value is not None:
                q = q.where(t.c[name] == value)
    if since:
        q = q.where(t.c.day >= since.isoformat())
    if until:
        q = q.where(t.c.day <= until.isoformat())
    q = q.group_by(column).order_by(column)
    async with db.engine.connect() as conn:
        return [{by: r[0], **{c: int(r[i + 1] or 0) for i, c in enumerate(SUM_COLUMNS)}}
                for r in await conn.execute(q)]


async def spent_micros(db: Database, scope: str, scope_id: str, since: date) -> int:
    """What a key, user or group has spent since a day (UTC), for budget accounting at start."""
    column = usage_daily.c[{"key": "key_id", "user": "user_id", "group": "group_id"}[scope]]
    async with db.engine.connect() as conn:
        # A key's budget counts every key of its rotation lineage (a rotated key keeps its spend).
        ids = await lineage(conn, scope_id) if scope == "key" else [scope_id]
        q = select(func.coalesce(func.sum(usage_daily.c.cost_micros), 0)).where(
            column.in_(ids), usage_daily.c.day >= since.isoformat()
        )
        return int(await conn.scalar(q) or 0)


async def ledger(db: Database, *, key_id: str | None = None, limit: int = 1000) -> list[dict[str, Any]]:
    """The most recent ledger rows (newest first); for tests and `tollway usage --raw`."""
    q = select(usage).order_by(usage.c.ts.desc()).limit(limit)
    if key_id:
        q = q.where(usage.c.key_id == key_id)
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(q)]


NAMED_TABLES = {"key": api_keys, "user": users, "group": groups}


async def display_names(db: Database, scope: str, ids: Sequence[str]) -> dict[str, str]:
    """id -> name for keys, users or groups, so a report shows what people recognise beside the id.
    Ids of rows since deleted are simply absent."""
    wanted = [i for i in set(ids) if i]
    if not wanted:
        return {}
    table = NAMED_TABLES[scope]
    async with db.engine.connect() as conn:
        rows = await conn.execute(select(table.c.id, table.c.name).where(table.c.id.in_(wanted)))
        return {str(r[0]): str(r[1]) for r in rows}


# -- what the console reads (GET /admin/v1/insights/...) -------------------------------------------


async def hourly(db: Database, since: datetime, until: datetime, width: int = 13) -> list[dict[str, int | str]]:
    """The hourly rollup from SINCE to UNTIL (UTC, inclusive by hour), summed per bucket: WIDTH 13
    is per hour ("YYYY-MM-DDTHH"), 10 per day. Oldest first; at most a few hundred rows."""
    lo, hi = since.astimezone(UTC).strftime("%Y-%m-%dT%H"), until.astimezone(UTC).strftime("%Y-%m-%dT%H")
    bucket = func.substr(usage_hourly.c.hour, 1, width)
    q = (select(bucket.label("hour"), *(func.sum(usage_hourly.c[c]).label(c) for c in HOURLY_SUMS))
         .where(usage_hourly.c.hour >= lo, usage_hourly.c.hour <= hi).group_by(bucket).order_by(bucket))
    async with db.engine.connect() as conn:
        return [{k: (v if k == "hour" else int(v or 0)) for k, v in r._mapping.items()} for r in await conn.execute(q)]


def percentile(buckets: Sequence[int], fraction: float) -> int | None:
    """The upper bound (ms) of the histogram bucket holding that fraction of requests; None when
    empty, and the last bound when it lies in the open-ended bucket (a floor, not an estimate)."""
    total = sum(buckets)
    if not total:
        return None
    rank, seen = fraction * total, 0
    for i, n in enumerate(buckets):
        seen += n
        if seen >= rank:
            return LATENCY_BOUNDS[min(i, len(LATENCY_BOUNDS) - 1)]
    return LATENCY_BOUNDS[-1]


async def search(db: Database, *, request_id: str | None = None, key_id: str | None = None,
                 user_id: str | None = None, group_id: str | None = None, model: str | None = None,
                 status: int | None = None, errors: bool = False, since: datetime | None = None,
                 until: datetime | None = None, before: datetime | None = None,
                 limit: int = 50) -> list[dict[str, Any]]:
    """Ledger rows newest first, narrowed by any of the filters; BEFORE is the page cursor (the
    last row's `ts`). Each filter column leads an index with `ts` (migration 0014), so a page
    reads about LIMIT rows whatever the ledger's size."""
    q = select(usage)
    if request_id:
        q = q.where(usage.c.request_id == request_id)
    for column, value in (("key_id", key_id), ("user_id", user_id), ("group_id", group_id),
                          ("requested_model", model), ("status", status)):
        if value is not None:
            q = q.where(usage.c[column] == value)
    if errors:
        q = q.where(usage.c.status >= 400)
    if since:
        q = q.where(usage.c.ts >= since)
    if until:
        q = q.where(usage.c.ts <= until)
    if before:
        q = q.where(usage.c.ts < before)
    q = q.order_by(usage.c.ts.desc()).limit(limit)
    async with db.engine.connect() as conn:
        return [dict(r._mapping) for r in await conn.execute(q)]


async def recent_windows(db: Database, scope: str, ids: Sequence[str], since: datetime) -> dict[str, tuple[int, int]]:
    """id -> (requests, tokens) in the ledger since SINCE for keys, users or groups: the rate
    windows as recorded (the ledger lags the gateway's own counters by up to a flush interval)."""
    if not ids:
        return {}
    column = usage.c[GROUPINGS[scope]]
    tokens = usage.c.input_tokens + usage.c.output_tokens + usage.c.cache_write_tokens
    q = (select(column, func.count(), func.coalesce(func.sum(tokens), 0))
         .where(column.in_(list(ids)), usage.c.ts >= since).group_by(column))
    async with db.engine.connect() as conn:
        return {str(r[0]): (int(r[1]), int(r[2])) for r in await conn.execute(q)}


async def spent_by(db: Database, scope: str, ids: Sequence[str], since: date) -> dict[str, int]:
    """id -> cost (micro-USD) since a day for many keys, users or groups in one query (a key's
    spend here is its own; the caller folds rotation lineages)."""
    if not ids:
        return {}
    column = usage_daily.c[GROUPINGS[scope]]
    q = (select(column, func.coalesce(func.sum(usage_daily.c.cost_micros), 0))
         .where(column.in_(list(ids)), usage_daily.c.day >= since.isoformat()).group_by(column))
    async with db.engine.connect() as conn:
        return {str(r[0]): int(r[1]) for r in await conn.execute(q)}

"""DLP findings as the audit log recorded them: by kind over time, and per request.

Read-only over the audit log, for the console (GET /admin/v1/insights/dlp). A request record
carries its findings (kind, category, action, where, count — never the matched text). Reading
them means parsing each record, so they are rolled up per day, kind and action into `dlp_daily`
by the readers themselves: each summary first counts the records written since the last one
(`rollup_marks`: the last audit id counted, read through the (dlp_hit, id) index) and then reads
the rollup. Only records older than SETTLE seconds are counted, in id order, stopping at the
first younger one, so a batch still being committed by another writer (ids are not committed in
order across writers) is counted later rather than skipped; the younger records are read live.
Two readers racing both count, but only the one that moves the mark from where it found it
commits. The rollup outlives pruning: it is the history of findings, not of records.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
from sqlalchemy import func, select, update
from sqlalchemy.dialects import postgresql, sqlite

from tollway.store.db import Database
from tollway.store.tables import audit_log, audit_payloads, dlp_daily, rollup_marks

SETTLE = 300.0
CATCH_UP = 20_000  # records counted per summary at most (the first summary after an upgrade: several)
MARK = "dlp_daily"


def _day(ts: datetime) -> str:
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d")


def _add(totals: dict[tuple[str, str, str], list[int]], day: str, body: str) -> None:
    for f in orjson.loads(body).get("dlp") or ():
        agg = totals.setdefault((day, str(f.get("kind"))[:64], str(f.get("action"))[:16]), [0, 0])
        agg[0] += 1
        agg[1] += int(f.get("count") or 1)


class _Raced(Exception):
    """Another reader moved the mark first: this reader's counting is rolled back."""


async def catch_up(db: Database, now: datetime | None = None) -> int:
    """Count settled findings written since the mark into `dlp_daily`; returns the new mark."""
    try:
        return await _catch_up(db, (now or datetime.now(UTC)) - timedelta(seconds=SETTLE))
    except _Raced:  # read where the other reader left the mark
        async with db.engine.connect() as conn:
            return int(await conn.scalar(select(rollup_marks.c.last_id).where(rollup_marks.c.name == MARK)) or 0)


async def _catch_up(db: Database, cutoff: datetime) -> int:
    async with db.engine.begin() as conn:
        mark = await conn.scalar(select(rollup_marks.c.last_id).where(rollup_marks.c.name == MARK))
        if mark is None:
            ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(rollup_marks)
            await conn.execute(ins.values(name=MARK, last_id=0).on_conflict_do_nothing(index_elements=["name"]))
            mark = 0
        rows = (await conn.execute(
            select(audit_log.c.id, audit_log.c.ts, audit_log.c.body)
            .where(audit_log.c.dlp_hit.is_(True), audit_log.c.id > mark)
            .order_by(audit_log.c.id).limit(CATCH_UP))).all()
        totals: dict[tuple[str, str, str], list[int]] = {}
        last = int(mark)
        for rid, ts, body in rows:
            if (ts if ts.tzinfo else ts.replace(tzinfo=UTC)) >= cutoff:
                break
            _add(totals, _day(ts), body)
            last = int(rid)
        if last == mark:
            return last
        moved = await conn.execute(update(rollup_marks).where(rollup_marks.c.name == MARK,
                                                              rollup_marks.c.last_id == mark).values(last_id=last))
        if moved.rowcount != 1:  # another reader counted these first: leave it to them
            raise _Raced
        if totals:
            ins = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(dlp_daily)
            up = ins.on_conflict_do_update(index_elements=["day", "kind", "action"],
                                           set_={"requests": dlp_daily.c.requests + ins.excluded.requests,
                                                 "matches": dlp_daily.c.matches + ins.excluded.matches})
            await conn.execute(up, [{"day": d, "kind": k, "action": a, "requests": n, "matches": m}
                                    for (d, k, a), (n, m) in totals.items()])
    return last


async def by_kind(db: Database, since: datetime, until: datetime) -> dict[str, Any]:
    """Findings per (UTC day, kind, action) from SINCE's day to UNTIL's: requests and matches."""
    mark = await catch_up(db)
    lo, hi = _day(since), _day(until)
    totals: dict[tuple[str, str, str], list[int]] = {}
    async with db.engine.connect() as conn:
        for day, kind, action, n, m in await conn.execute(
                select(dlp_daily).where(dlp_daily.c.day >= lo, dlp_daily.c.day <= hi)):
            totals[(day, kind, action)] = [int(n), int(m)]
        live = await conn.execute(select(audit_log.c.ts, audit_log.c.body).where(
            audit_log.c.dlp_hit.is_(True), audit_log.c.id > mark).order_by(audit_log.c.id).limit(CATCH_UP))
        pending = 0
        for ts, body in live:
            pending += 1
            if lo <= _day(ts) <= hi:
                _add(totals, _day(ts), body)
        behind = int(await conn.scalar(select(func.count()).where(audit_log.c.dlp_hit.is_(True),
                                                                  audit_log.c.id > mark))
                     or 0) if pending >= CATCH_UP else pending
    rows = [{"day": d, "kind": k, "action": a, "requests": n, "matches": m}
            for (d, k, a), (n, m) in sorted(totals.items())]
    return {"data": rows, "truncated": behind > pending}


async def for_requests(db: Database, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """request id -> its audit record (the hashed body), for one page of the request log at once.
    Looked up by request id alone (its index); the kind is checked here, since a condition on it
    lets the planner pick the (kind, id) index and walk every request record."""
    wanted = [r for r in set(request_ids) if r]
    if not wanted:
        return {}
    q = select(audit_log.c.request_id, audit_log.c.kind, audit_log.c.body).where(audit_log.c.request_id.in_(wanted))
    async with db.engine.connect() as conn:
        return {str(rid): orjson.loads(body) for rid, kind, body in await conn.execute(q) if kind == "request"}


async def captured(db: Database, request_ids: Sequence[str]) -> set[str]:
    """Which of these requests had their payloads captured (their group has capture on)."""
    wanted = [r for r in set(request_ids) if r]
    if not wanted:
        return set()
    q = select(audit_payloads.c.request_id).where(audit_payloads.c.request_id.in_(wanted))
    async with db.engine.connect() as conn:
        return {str(r) for (r,) in await conn.execute(q)}

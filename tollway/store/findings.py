"""DLP findings as the audit log recorded them: by kind over time, and per request.

Read-only, for the console (GET /admin/v1/insights/dlp). A request record carries its findings
(kind, category, action, where, count — never the matched text); only records with `dlp_hit`
are read, through the (dlp_hit, ts) index of migration 0014, so the cost follows the number of
findings in the window, not the size of the log.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import select

from tollway.store.db import Database
from tollway.store.tables import audit_log, audit_payloads

# Beyond this many findings in one window the summary says so instead of reading on.
MAX_RECORDS = 50_000


async def by_kind(db: Database, since: datetime, until: datetime) -> dict[str, Any]:
    """Findings per (UTC day, kind, action): requests and matches, plus whether the window was cut."""
    q = (select(audit_log.c.ts, audit_log.c.body)
         .where(audit_log.c.dlp_hit.is_(True), audit_log.c.ts >= since, audit_log.c.ts <= until)
         .order_by(audit_log.c.ts.desc()).limit(MAX_RECORDS + 1))
    totals: dict[tuple[str, str, str], list[int]] = {}
    seen = 0
    async with db.engine.connect() as conn:
        result = await conn.stream(q)
        async for ts, body in result:
            seen += 1
            if seen > MAX_RECORDS:
                break
            day = (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).strftime("%Y-%m-%d")
            for f in orjson.loads(body).get("dlp") or ():
                agg = totals.setdefault((day, str(f.get("kind")), str(f.get("action"))), [0, 0])
                agg[0] += 1
                agg[1] += int(f.get("count") or 1)
        await result.close()
    rows = [{"day": d, "kind": k, "action": a, "requests": n, "matches": m}
            for (d, k, a), (n, m) in sorted(totals.items())]
    return {"data": rows, "truncated": seen > MAX_RECORDS}


async def for_requests(db: Database, request_ids: Sequence[str]) -> dict[str, dict[str, Any]]:
    """request id -> its audit record (the hashed body), for one page of the request log at once."""
    wanted = [r for r in set(request_ids) if r]
    if not wanted:
        return {}
    q = select(audit_log.c.request_id, audit_log.c.body).where(audit_log.c.request_id.in_(wanted),
                                                               audit_log.c.kind == "request")
    async with db.engine.connect() as conn:
        return {str(rid): orjson.loads(body) for rid, body in await conn.execute(q)}


async def captured(db: Database, request_ids: Sequence[str]) -> set[str]:
    """Which of these requests had their payloads captured (their group has capture on)."""
    wanted = [r for r in set(request_ids) if r]
    if not wanted:
        return set()
    q = select(audit_payloads.c.request_id).where(audit_payloads.c.request_id.in_(wanted))
    async with db.engine.connect() as conn:
        return {str(r) for (r,) in await conn.execute(q)}

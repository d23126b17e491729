"""Read-only admin endpoints the console's pages need beyond the resource API (api.py): the
overview's time series, the request log, DLP findings by kind, limit windows, the catalogue with
its grants, where users came from, and the audit chain's verification status.

Every one answers from an index or a rollup (migration 0014), in a fixed number of queries per
call whatever the store's size: bench/console.py measures them on 1,000,000 ledger rows and
1,000,000 audit records (docs/console.md). Mounted under /admin/v1/insights by api.py, behind the
admin API's own authentication.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from tollway.admin.params import TEXT, PathRef
from tollway.admin.roles import require_org
from tollway.config import ModelConfig, Settings
from tollway.governance.access import matches
from tollway.governance.identity import KeyCache
from tollway.reports import budget_states
from tollway.store import audit as audit_store
from tollway.store import findings, sources
from tollway.store import usage as usage_store
from tollway.store.db import Database
from tollway.store.errors import NotFound
from tollway.store.limit_rows import LimitStore

log = logging.getLogger("tollway.admin")
Ref = Annotated[str | None, Query(max_length=200, pattern=TEXT)]
Days = Annotated[int, Query(ge=1, le=400, description="how many days back from now")]
SCOPE_COLUMN = {"key": "key_id", "user": "user_id", "group": "group_id"}


def _usd(micros: int | None) -> float | None:
    return None if micros is None else micros / 1_000_000


def _utc(ts: datetime | None) -> datetime | None:
    """A query's time, UTC when it names no zone (as the console sends them)."""
    return ts.replace(tzinfo=UTC) if ts is not None and ts.tzinfo is None else ts


def _iso(ts: Any) -> str | None:
    if not isinstance(ts, datetime):
        return None
    return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).astimezone(UTC).isoformat()


def series(rows: list[dict[str, Any]], since: datetime, until: datetime, bucket: str) -> list[dict[str, Any]]:
    """Rollup rows already summed per BUCKET (hour or day), every bucket present (zeros included),
    with latency average and histogram percentiles (upper bounds of the bucket they fall in)."""
    width = 13 if bucket == "hour" else 10
    step = timedelta(hours=1) if bucket == "hour" else timedelta(days=1)
    start = since.astimezone(UTC).replace(minute=0, second=0, microsecond=0)
    if bucket == "day":
        start = start.replace(hour=0)
    sums = {str(r["hour"])[:width]: r for r in rows}
    hist = [f"lat_{i}" for i in range(len(usage_store.LATENCY_BOUNDS) + 1)]
    out, t = [], start
    while t <= until:
        label = t.strftime("%Y-%m-%dT%H" if bucket == "hour" else "%Y-%m-%d")
        s = sums.get(label, {})
        n = s.get("requests", 0)
        buckets = [s.get(h, 0) for h in hist]
        out.append({"t": label, "requests": n, "errors": s.get("errors", 0), "cost_usd": _usd(s.get("cost_micros", 0)),
                    "input_tokens": s.get("input_tokens", 0), "output_tokens": s.get("output_tokens", 0),
                    "latency_avg_ms": round(s.get("latency_ms_sum", 0) / n) if n else None,
                    "latency_p50_ms": usage_store.percentile(buckets, 0.5),
                    "latency_p95_ms": usage_store.percentile(buckets, 0.95)})
        t += step
    return out


class Verification:
    """The audit chains' verification, run in the background (a full check reads every record:
    seconds on a million), its last outcome kept for the console to show. One run at a time per
    process; the outcome is this process's, stamped with when it ran."""

    def __init__(self, cache: KeyCache) -> None:
        self.cache = cache
        self.state: dict[str, Any] = {"state": "never", "ok": None, "started_at": None, "finished_at": None,
                                      "records": None, "chains": []}
        self._task: asyncio.Task[None] | None = None

    def start(self) -> dict[str, Any]:
        if self._task is None or self._task.done():
            self.state = {**self.state, "state": "running", "started_at": datetime.now(UTC).isoformat()}
            self._task = asyncio.create_task(self._run(), name="tollway-audit-verify")
        return self.state

    @staticmethod
    def _verify(url: str) -> list[audit_store.ChainReport]:
        """The whole check on its own thread, event loop and connection: it is CPU work (a hash per
        record), and on the gateway's loop it would hold up every request for as long as it runs."""
        async def run() -> list[audit_store.ChainReport]:
            db = Database(url)
            try:
                return await audit_store.verify(db)
            finally:
                await db.close()

        return asyncio.run(run())

    async def _run(self) -> None:
        try:
            reports = await asyncio.to_thread(self._verify, self.cache.db.url)
        except Exception as exc:  # reported to the console, logged for the operator
            log.error("audit verification failed: %s", type(exc).__name__, exc_info=exc)
            self.state = {**self.state, "state": "failed", "ok": None, "finished_at": datetime.now(UTC).isoformat(),
                          "error": "the verification could not run (see the gateway's log)"}
            return
        chains = [{"writer": r.writer, "records": r.records, "ok": r.ok, "problem": r.problem} for r in reports]
        self.state = {"state": "done", "ok": all(c["ok"] for c in chains), "started_at": self.state["started_at"],
                      "finished_at": datetime.now(UTC).isoformat(), "records": sum(r.records for r in reports),
                      "chains": chains}


def _providers(m: ModelConfig) -> list[str]:
    ups = [m.upstream] if m.upstream is not None else [d.upstream for d in m.deployments]
    return sorted({u.provider for u in ups})


def insights_router(settings: Settings, cache: KeyCache) -> APIRouter:
    """The /insights routes; the caller includes them in its authenticated admin router."""
    db, directory = cache.db, cache.directory
    api = APIRouter(prefix="/insights", tags=["insights"])
    verification = Verification(cache)

    async def resolve(kind: str, ref: str | None) -> str | None:
        if not ref:
            return None
        if kind == "user":
            return (await directory.get_user(ref)).id
        if kind == "group":
            return (await directory.get_group(ref)).id
        return (await cache.keys.get(ref)).id

    @api.get("/overview", dependencies=[Depends(require_org("usage.read"))])
    async def overview(days: Days = 30,
                       bucket: Annotated[str | None, Query(pattern="^(hour|day)$")] = None) -> dict[str, Any]:
        """Requests, errors, spend, tokens and latency per hour or day over the last DAYS days,
        from the hourly rollup (a few hundred rows, whatever the ledger's size)."""
        until = datetime.now(UTC)
        since = until - timedelta(days=days)
        chosen = bucket or ("hour" if days <= 2 else "day")
        data = series(await usage_store.hourly(db, since, until, 13 if chosen == "hour" else 10), since, until,
                      chosen)
        totals = {k: sum(p[k] for p in data) for k in ("requests", "errors", "input_tokens", "output_tokens")}
        totals["cost_usd"] = round(sum(p["cost_usd"] for p in data), 6)
        return {"bucket": chosen, "since": since.isoformat(), "until": until.isoformat(), "data": data,
                "totals": totals}

    async def rows_out(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Ledger rows with names beside ids, DLP findings and the capture flag: six queries for a
        whole page, none per row."""
        ids = [r["request_id"] for r in rows]
        names = {s: await usage_store.display_names(db, s, [r[c] for r in rows if r[c]])
                 for s, c in SCOPE_COLUMN.items()}
        audits = await findings.for_requests(db, ids)
        captured = await findings.captured(db, ids)
        out = []
        for r in rows:
            a = audits.get(r["request_id"], {})
            out.append({
                "request_id": r["request_id"], "ts": _iso(r["ts"]), "route": r["route"],
                "key_id": r["key_id"], "key_name": names["key"].get(r["key_id"]),
                "user_id": r["user_id"], "user_name": names["user"].get(r["user_id"] or ""),
                "group_id": r["group_id"], "group_name": names["group"].get(r["group_id"] or ""),
                "model": r["requested_model"], "upstream_model": r["upstream_model"], "status": r["status"],
                "error_type": r["error_type"], "latency_ms": r["latency_ms"], "input_tokens": r["input_tokens"],
                "output_tokens": r["output_tokens"], "cache_write_tokens": r["cache_write_tokens"],
                "cache_read_tokens": r["cache_read_tokens"], "cost_usd": _usd(r["cost_micros"]),
                "deployment": r["deployment"], "attempts": r["attempts"],
                "upstream_request_id": r["upstream_request_id"], "dlp": a.get("dlp"),
                "attempt_log": a.get("attempts"), "client": a.get("client"),
                "captured": r["request_id"] in captured,
            })
        return out

    @api.get("/requests", dependencies=[Depends(require_org("requests.read"))])
    async def requests(
        request_id: Ref = None, key_id: Ref = None, user: Ref = None, group: Ref = None, model: Ref = None,
        status: Annotated[int | None, Query(ge=100, le=599)] = None,
        errors: Annotated[bool, Query(description="only statuses of 400 and over")] = False,
        since: datetime | None = None, until: datetime | None = None,
        before: Annotated[datetime | None, Query(description="cursor: the last row's ts")] = None,
        limit: Annotated[int, Query(ge=1, le=200)] = 50,
    ) -> dict[str, Any]:
        """The request log, newest first: search by request id, key, user, group (ids or names),
        model, status and time; each row with names, timing, the upstream's request id and the
        DLP findings its audit record holds."""
        since, until, before = _utc(since), _utc(until), _utc(before)
        rows = await usage_store.search(
            db, request_id=request_id, key_id=await resolve("key", key_id), user_id=await resolve("user", user),
            group_id=await resolve("group", group), model=model, status=status, errors=errors, since=since,
            until=until, before=before, limit=limit + 1)
        data = await rows_out(rows[:limit])
        return {"object": "list", "data": data, "has_more": len(rows) > limit,
                "next_before": data[-1]["ts"] if data and len(rows) > limit else None}

    @api.get("/requests/{request_id}", dependencies=[Depends(require_org("requests.read"))])
    async def request_detail(request_id: PathRef) -> dict[str, Any]:
        """One request: its ledger row with names, and its audit record (the hashed body)."""
        rows = await usage_store.search(db, request_id=request_id, limit=1)
        audits = await findings.for_requests(db, [request_id])
        if not rows and request_id not in audits:
            raise NotFound(f"no request {request_id} in the ledger or the audit log")
        out = (await rows_out(rows))[0] if rows else {"request_id": request_id, "captured": bool(
            await findings.captured(db, [request_id]))}
        out["audit"] = audits.get(request_id)
        return out

    @api.get("/dlp", dependencies=[Depends(require_org("audit.read"))])
    async def dlp(days: Days = 30) -> dict[str, Any]:
        """The DLP policy in force (as configured) and the findings per day, kind and action."""
        until = datetime.now(UTC)
        found = await findings.by_kind(db, until - timedelta(days=days), until)
        cfg = settings.dlp
        return {"enabled": cfg.enabled, "policies": cfg.policies.model_dump(mode="json"),
                "custom": [{"name": c.name, "action": c.action} for c in cfg.custom], "binary": cfg.binary,
                "since": (until - timedelta(days=days)).isoformat(), **found}

    @api.get("/limits", dependencies=[Depends(require_org("limits.read"))])
    async def limits() -> dict[str, Any]:
        """Every stored limit with its current windows: requests and tokens in the last minute (from
        the ledger) and the budget spent and left in its period; plus the config defaults. A fixed
        number of queries per scope, whatever the number of rows."""
        rows = await LimitStore(db).all()
        now = datetime.now(UTC)
        by_scope: dict[str, list[str]] = {}
        for r in rows:
            by_scope.setdefault(r.scope, []).append(r.scope_id)
        minute = {s: await usage_store.recent_windows(db, s, ids, now - timedelta(minutes=1))
                  for s, ids in by_scope.items()}
        budgets = {s: await budget_states(db, settings.limits, s, ids, now) for s, ids in by_scope.items()}
        names = {s: await usage_store.display_names(db, s, ids) for s, ids in by_scope.items()}
        data = []
        for r in rows:
            used = minute[r.scope].get(r.scope_id, (0, 0))
            b = budgets[r.scope].get(r.scope_id)
            data.append({
                "scope": r.scope, "scope_id": r.scope_id, "name": names[r.scope].get(r.scope_id),
                "rpm": r.rpm, "tpm": r.tpm, "concurrent": r.concurrent, "requests_last_minute": used[0],
                "tokens_last_minute": used[1], "budget_usd": _usd(r.budget_micros),
                "budget_period": r.budget_period or "month", "budget_mode": r.budget_mode,
                "spent_usd": _usd(b.spent_micros) if b else None, "remaining_usd": _usd(b.left_micros) if b else None,
                "resets_at": b.resets_at.isoformat() if b else None,
            })
        return {"data": data, "defaults": settings.limits.defaults.model_dump(mode="json"),
                "backend": settings.limits.backend}

    @api.get("/models", dependencies=[Depends(require_org("groups.read"))])
    async def models() -> dict[str, Any]:
        """The catalogue: each model with its providers, prices, aliases and the groups whose grants
        allow it."""
        grants = await sources.all_grants(db)
        data = []
        for m in settings.models:
            granted = sorted({(gid, name) for gid, name, pattern in grants if matches([pattern], m.id)})
            data.append({"id": m.id, "display_name": m.display_name or m.id, "providers": _providers(m),
                         "pricing": m.pricing.model_dump(mode="json"), "fallbacks": list(m.fallbacks),
                         "aliases": sorted(a for a, target in settings.aliases.items() if target == m.id),
                         "groups": [{"id": g, "name": n} for g, n in granted]})
        return {"data": data, "grants": [{"group_id": g, "group": n, "pattern": p} for g, n, p in grants]}

    @api.get("/identities", dependencies=[Depends(require_org("users.read"))])
    async def identities(user_id: Annotated[list[str], Query(max_length=200)] = []) -> dict[str, Any]:  # noqa: B006
        """Which of these users came from an identity provider (and which), and the sign-in rules
        that map IdP groups to Tollway groups."""
        signin = settings.signin
        return {"users": await sources.idp_links(db, [u[:200] for u in user_id]),
                "signin_enabled": signin.enabled, "issuer": signin.oidc.issuer if signin.oidc else None,
                "group_rules": [r.model_dump() for r in signin.group_rules],
                "default_groups": list(signin.default_groups)}

    @api.get("/audit/verification", dependencies=[Depends(require_org("audit.read"))])
    async def verification_status() -> dict[str, Any]:
        """The last verification of every audit chain in this process (or that none ran yet)."""
        return verification.state

    @api.post("/audit/verification", status_code=202, dependencies=[Depends(require_org("audit.read"))])
    async def verify_now() -> JSONResponse:
        """Start verifying every chain in the background (no-op while a run is going)."""
        return JSONResponse(verification.start(), status_code=202)

    return api

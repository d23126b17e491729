"""`/limits`, `/usage`, `/usage/requests` and `/audit`: budgets and rate limits, what was spent,
and the audit trail. A group admin sees and sets only their groups', their people's and those
keys' limits, and reads usage narrowed to one of their groups; the audit log is for org admins
and auditors."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from fastapi.responses import Response

from tollway.admin.context import AdminContext, AdminError, Ctx
from tollway.admin.keys import reaches_key
from tollway.admin.params import After, Limit, PathRef, Scope, text_query
from tollway.admin.roles import AdminPrincipal, forbid, require
from tollway.admin.schemas import AuditPage, LedgerRow, Limits, LimitsIn, Payload, UsageReport
from tollway.admin.views import limits_out, usage_out
from tollway.reports import Filters
from tollway.reports import usage_report as named_usage
from tollway.store import audit as audit_store
from tollway.store.errors import NotFound
from tollway.store.usage import ledger

router = APIRouter()


async def _reaches(ctx: AdminContext, who: AdminPrincipal, scope: str, scope_id: str) -> bool:
    if not who.scoped:
        return True
    try:
        if scope == "group":
            return who.reaches_group(scope_id)
        if scope == "user":
            return who.reaches_user(await ctx.directory.get_user(scope_id))
        return await reaches_key(ctx, who, await ctx.keys.get(scope_id))
    except NotFound:
        return False


async def _scope_id(ctx: AdminContext, scope: str, ref: str) -> str:
    if scope == "group":
        return await ctx.group_id(ref)
    if scope == "user":
        return await ctx.user_id(ref)
    return (await ctx.keys.get(ref)).id


async def _reachable(ctx: AdminContext, request: Request, who: AdminPrincipal, scope: str, ref: str) -> str:
    scope_id = await _scope_id(ctx, scope, ref)
    if not await _reaches(ctx, who, scope, scope_id):
        raise forbid(request, who, f"{scope} {ref} is outside the groups you administer")
    return scope_id


@router.get("/limits", response_model=list[Limits], tags=["limits"])
async def list_limits(ctx: Ctx, who: Annotated[AdminPrincipal, Depends(require("limits.read"))]) -> list[Limits]:
    return [limits_out(r) for r in await ctx.limits.all() if await _reaches(ctx, who, r.scope, r.scope_id)]


@router.get("/limits/{scope}/{ref}", response_model=Limits, tags=["limits"])
async def get_limits(scope: Scope, ref: PathRef, request: Request, ctx: Ctx,
                     who: Annotated[AdminPrincipal, Depends(require("limits.read"))]) -> Limits:
    await _reachable(ctx, request, who, scope, ref)
    row = await ctx.limits.get(scope, ref)
    if row is None:
        raise NotFound(f"{scope} {ref} has no limits of its own (config defaults apply)")
    return limits_out(row)


@router.put("/limits/{scope}/{ref}", response_model=Limits, tags=["limits"])
async def set_limits(scope: Scope, ref: PathRef, body: LimitsIn, request: Request, ctx: Ctx,
                     who: Annotated[AdminPrincipal, Depends(require("limits.write"))]) -> Limits:
    await _reachable(ctx, request, who, scope, ref)
    budget = round(body.budget_usd * 1_000_000) if body.budget_usd is not None else None
    row = await ctx.changed(ctx.limits.set(scope, ref, rpm=body.rpm, tpm=body.tpm, concurrent=body.concurrent,
                                           budget_micros=budget, budget_period=body.budget_period,
                                           budget_mode=body.budget_mode),
                            "limits.set", who.actor, f"{scope}:{ref}", **body.model_dump())
    return limits_out(row)


@router.delete("/limits/{scope}/{ref}", status_code=204, tags=["limits"])
async def clear_limits(scope: Scope, ref: PathRef, request: Request, ctx: Ctx,
                       who: Annotated[AdminPrincipal, Depends(require("limits.write"))]) -> Response:
    await _reachable(ctx, request, who, scope, ref)
    await ctx.changed(ctx.limits.clear(scope, ref), "limits.clear", who.actor, f"{scope}:{ref}")
    return Response(status_code=204)


async def report(ctx: AdminContext, by: str, since: date | None, until: date | None,
                 filters: Filters) -> UsageReport:
    rows = await named_usage(ctx.cache.db, ctx.settings.limits, by, since, until, filters)
    return UsageReport(by=by, since=since.isoformat() if since else None,
                       until=until.isoformat() if until else None, data=[usage_out(r, by) for r in rows])


By = Annotated[str, Query(pattern="^(key|user|group|model|day)$")]


@router.get("/usage", response_model=UsageReport, tags=["usage"])
async def usage_report(
    request: Request, ctx: Ctx, who: Annotated[AdminPrincipal, Depends(require("usage.read"))],
    by: By = "key", since: date | None = None, until: date | None = None,
    key_id: Annotated[str | None, text_query("only this key")] = None,
    user: Annotated[str | None, text_query("only this user (id or name)")] = None,
    group: Annotated[str | None, text_query("only this group (id or name)")] = None,
    model: Annotated[str | None, text_query("only this model id")] = None,
) -> UsageReport:
    """Totals grouped by key, user, group, model or day, with names beside ids and, for keys,
    users and groups, the budget in force, spent and remaining in its current period. A group
    admin's report is narrowed to one of their groups (`group`, required when they run several)."""
    group_id = await ctx.group_id(group) if group else None
    if who.scoped:
        if group_id is None:
            if len(who.group_ids) != 1:
                raise AdminError(400, "invalid_request_error", "name one of the groups you administer: ?group=")
            group_id = who.group_ids[0]
        elif not who.reaches_group(group_id):
            raise forbid(request, who, "you do not administer this group")
    filters = Filters(key_id=(await ctx.keys.get(key_id)).id if key_id else None,
                      user_id=await ctx.user_id(user) if user else None, group_id=group_id, model=model)
    return await report(ctx, by, since, until, filters)


@router.get("/usage/requests", response_model=list[LedgerRow], tags=["usage"])
async def usage_requests(ctx: Ctx, who: Annotated[AdminPrincipal, Depends(require("requests.read"))],
                         key_id: After = None,
                         limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[LedgerRow]:
    """The newest ledger rows, one per request (a group admin's: their groups' requests)."""
    rows = await ledger(ctx.cache.db, key_id=key_id, limit=1000 if who.scoped else limit)
    if who.scoped:
        rows = [r for r in rows if r["group_id"] in who.group_ids][:limit]
    return [LedgerRow(**r) for r in rows]


@router.get("/audit", response_model=AuditPage, tags=["audit"])
async def audit_records(
    ctx: Ctx, _who: Annotated[AdminPrincipal, Depends(require("audit.read"))],
    limit: Limit = 50,
    after: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="cursor: the last id seen")] = None,
    actor: After = None, model: After = None, status: Annotated[int | None, Query(ge=100, le=599)] = None,
    since: datetime | None = None, until: datetime | None = None, dlp: bool | None = None,
    kind: Annotated[str | None, Query(pattern="^(request|change|signin|refusal)$")] = None, request_id: After = None,
) -> AuditPage:
    """Audit records, newest first, filtered by actor (key, user or group id), model, status,
    time, DLP hit and kind (request, change, signin, refusal)."""
    rows = await audit_store.query(ctx.cache.db, limit=limit + 1, after=after, actor=actor, model=model,
                                   status=status, since=since, until=until, dlp=dlp, kind=kind,
                                   request_id=request_id)
    data = rows[:limit]
    return AuditPage(data=data, has_more=len(rows) > limit, first_id=data[0]["id"] if data else None,
                     last_id=data[-1]["id"] if data else None)


@router.get("/audit/payloads/{request_id}", response_model=Payload, tags=["audit"])
async def audit_payload(request_id: PathRef, ctx: Ctx,
                        _who: Annotated[AdminPrincipal, Depends(require("audit.read"))]) -> Payload:
    """A captured request/response pair (after DLP redaction), for groups with capture on."""
    found = await audit_store.payload(ctx.cache.db, request_id)
    if found is None:
        raise NotFound(f"no captured payload for {request_id}")
    return Payload(**found)

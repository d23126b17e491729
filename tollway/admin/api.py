"""The admin REST API under /admin/v1: users, groups, grants, memberships and keys.

Only admin keys open it; data keys are refused. Every change is committed through the store's
repositories (which bump the state version) and then reloaded into this process's cache at
once, so the change is live here immediately and on other processes within one refresh.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from contextvars import ContextVar
from datetime import date, datetime, timedelta
from typing import Annotated, Any, TypeVar

from fastapi import APIRouter, Depends, FastAPI, Query, Request, Security
from fastapi import Path as PathParam
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from fastapi.security import APIKeyHeader, HTTPBearer
from starlette.exceptions import HTTPException as StarletteHTTPException

from tollway.admin.docs import add_docs, docs_page, mount_assets
from tollway.admin.insights import insights_router
from tollway.admin.schemas import (
    AuditPage,
    ErrorBody,
    GrantIn,
    GrantsIn,
    Group,
    GroupIn,
    GroupPatch,
    Key,
    KeyCreated,
    KeyIn,
    KeyRotated,
    LedgerRow,
    Limits,
    LimitsIn,
    MemberIn,
    Page,
    Payload,
    RotateIn,
    UsageReport,
    UsageRow,
    User,
    UserIn,
    UserPatch,
)
from tollway.config import Settings
from tollway.governance.audit import AuditLog
from tollway.governance.identity import CredentialError, KeyCache, Principal, create_key, extract_credential, rotate_key
from tollway.reports import Filters
from tollway.reports import usage_report as named_usage
from tollway.store import audit as audit_store
from tollway.store.errors import Conflict, NotFound
from tollway.store.keys import KeyRow
from tollway.store.limit_rows import LimitRow, LimitStore
from tollway.store.principals import GroupRow, UserRow
from tollway.store.usage import ledger
from tollway.wire.credentials import ambiguous_credentials

T = TypeVar("T")
log = logging.getLogger("tollway.admin")
PathRef = Annotated[str, PathParam(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Limit = Annotated[int, Query(ge=1, le=100, description="page size")]
Scope = Annotated[str, PathParam(pattern="^(key|user|group)$")]
After = Annotated[str | None, Query(max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$", description="cursor: last id seen")]
ERRORS: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorBody, "description": text}
    for code, text in ((400, "malformed body"), (401, "no admin key"), (404, "not found"), (409, "conflict"),
                       (422, "invalid input"))
}


# Admin keys travel as on the data plane: `x-api-key`, or `Authorization: Bearer`.
ADMIN_KEY_HEADER = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="AdminKey",
                                description="An admin key (`tollway keys create --admin`).")
ADMIN_BEARER = HTTPBearer(auto_error=False, scheme_name="AdminBearer",
                          description="An admin key as a bearer token.")


class AdminError(Exception):
    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


def _error(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": error_type, "message": message}}, status_code=status)


def user_out(u: UserRow) -> User:
    return User(id=u.id, name=u.name, email=u.email, disabled=u.disabled, created_at=u.created_at,
                groups=list(u.groups))


def group_out(g: GroupRow) -> Group:
    return Group(id=g.id, name=g.name, description=g.description, created_at=g.created_at,
                 grants=list(g.grants), members=list(g.members))


def key_out(k: KeyRow) -> Key:
    return Key(id=k.id, name=k.name, prefix=k.prefix, kind=k.kind, user_id=k.user_id, group_id=k.group_id,
               models=list(k.models) if k.models is not None else None, created_at=k.created_at,
               expires_at=k.expires_at, revoked_at=k.revoked_at, replaced_by=k.replaced_by, status=k.status())


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


_actor: ContextVar[dict[str, Any] | None] = ContextVar("tollway_admin_actor", default=None)


def create_admin_app(settings: Settings, cache: KeyCache, audit: AuditLog) -> FastAPI:
    directory, keys = cache.directory, cache.keys

    async def require_admin(request: Request, _key: Annotated[str | None, Security(ADMIN_KEY_HEADER)] = None,
                            _bearer: Annotated[Any, Security(ADMIN_BEARER)] = None) -> Principal:
        # The two Security parameters only declare the schemes in the OpenAPI document (the docs
        # page's Authorize button); the credential is read below, as on the data plane.
        duplicated = ambiguous_credentials(request.scope["headers"])
        if duplicated:  # read the same way on both planes (wire/credentials.py)
            raise AdminError(401, "authentication_error",
                             f"ambiguous credentials: the {duplicated} header was sent more than once")
        try:
            secret = extract_credential(request.headers)
        except CredentialError as exc:
            raise AdminError(401, "authentication_error", str(exc)) from None
        principal = await cache.authenticate(secret)
        if principal is None:
            raise AdminError(401, "authentication_error", "invalid API key")
        if principal.kind != "admin":
            raise AdminError(401, "authentication_error", "the control plane needs an admin key; this is a data key")
        _actor.set({"key_id": principal.key_id, "via": "admin_api",
                    "remote_addr": request.client.host if request.client else None})
        return principal

    async def changed(work: Awaitable[T], action: str, target: str | None = None, **details: Any) -> T:
        """Commit a change, make it live in this process, and audit it (never with secrets)."""
        result = await work
        await cache.refresh()
        first = result[0] if isinstance(result, tuple) else result  # (row, secret) for a new key
        audit.change(action, target or getattr(first, "id", None), _actor.get() or {}, **details)
        return result

    async def resolve_user(ref: str) -> str:
        return (await directory.get_user(ref)).id

    async def resolve_group(ref: str) -> str:
        return (await directory.get_group(ref)).id

    # The API docs (`/docs`, `/openapi.json`): open, behind an admin key, or off (server.docs_auth).
    docs_open = settings.server.docs_auth == "none"
    app = FastAPI(
        title="Tollway admin API", version="1", description="Users, groups, grants and keys of a Tollway gateway.",
        docs_url=None, openapi_url="/openapi.json" if docs_open else None, redoc_url=None,
    )
    if docs_open:
        add_docs(app, "/openapi.json")
    api = APIRouter(dependencies=[Depends(require_admin)], responses=ERRORS)
    if settings.server.docs_auth == "admin":
        _keyed_docs(app, api)

    @app.exception_handler(AdminError)
    async def _admin_error(_: Request, exc: AdminError) -> JSONResponse:
        return _error(exc.status, exc.error_type, exc.message)

    @app.exception_handler(NotFound)
    async def _not_found(_: Request, exc: NotFound) -> JSONResponse:
        return _error(404, "not_found", str(exc))

    @app.exception_handler(Conflict)
    async def _conflict(_: Request, exc: Conflict) -> JSONResponse:
        return _error(409, "conflict", str(exc))

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        parts = [f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()]
        return _error(422, "invalid_request_error", "; ".join(parts)[:2000])

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.error("admin API error on %s %s", request.method, request.url.path, exc_info=exc)
        return _error(500, "api_error", "internal error in the admin API")

    @app.exception_handler(StarletteHTTPException)
    async def _http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        kind = {404: "not_found", 405: "invalid_request_error"}.get(exc.status_code, "invalid_request_error")
        return _error(exc.status_code, kind, str(exc.detail))

    # -- users ----------------------------------------------------------------------------

    @api.post("/users", status_code=201, response_model=User, tags=["users"])
    async def create_user(body: UserIn) -> User:
        group_ids = [await resolve_group(g) for g in body.groups]
        user = await changed(directory.create_user(body.name, body.email), "user.create")
        for gid in group_ids:
            await changed(directory.add_member(gid, user.id), "group.member_add", gid, user_id=user.id)
        return user_out(await directory.get_user(user.id))

    @api.get("/users", response_model=Page[User], tags=["users"])
    async def list_users(limit: Limit = 20, after: After = None, disabled: bool | None = None,
                         group: After = None) -> dict[str, Any]:
        rows = await directory.list_users(limit=limit + 1, after=after, disabled=disabled, group=group)
        return page([user_out(u) for u in rows], limit, lambda u: u.id)

    @api.get("/users/{user_id}", response_model=User, tags=["users"])
    async def get_user(user_id: PathRef) -> User:
        return user_out(await directory.get_user(user_id))

    @api.patch("/users/{user_id}", response_model=User, tags=["users"])
    async def update_user(user_id: PathRef, body: UserPatch) -> User:
        changes = body.model_dump(exclude_unset=True)
        return user_out(await changed(directory.update_user(user_id, **changes), "user.update",
                                      fields=sorted(changes)))

    @api.post("/users/{user_id}/disable", response_model=User, tags=["users"])
    async def disable_user(user_id: PathRef) -> User:
        return user_out(await changed(directory.update_user(user_id, disabled=True), "user.disable"))

    @api.post("/users/{user_id}/enable", response_model=User, tags=["users"])
    async def enable_user(user_id: PathRef) -> User:
        return user_out(await changed(directory.update_user(user_id, disabled=False), "user.enable"))

    # -- groups, grants, members ----------------------------------------------------------

    @api.post("/groups", status_code=201, response_model=Group, tags=["groups"])
    async def create_group(body: GroupIn) -> Group:
        return group_out(await changed(directory.create_group(body.name, body.description, body.grants),
                                       "group.create", grants=list(body.grants)))

    @api.get("/groups", response_model=Page[Group], tags=["groups"])
    async def list_groups(limit: Limit = 20, after: After = None) -> dict[str, Any]:
        rows = await directory.list_groups(limit=limit + 1, after=after)
        return page([group_out(g) for g in rows], limit, lambda g: g.id)

    @api.get("/groups/{group_id}", response_model=Group, tags=["groups"])
    async def get_group(group_id: PathRef) -> Group:
        return group_out(await directory.get_group(group_id))

    @api.patch("/groups/{group_id}", response_model=Group, tags=["groups"])
    async def update_group(group_id: PathRef, body: GroupPatch) -> Group:
        return group_out(await changed(directory.update_group(group_id, body.name, body.description), "group.update"))

    @api.delete("/groups/{group_id}", status_code=204, tags=["groups"])
    async def delete_group(group_id: PathRef) -> Response:
        await changed(directory.delete_group(group_id), "group.delete", group_id)
        return Response(status_code=204)

    @api.put("/groups/{group_id}/grants", response_model=Group, tags=["groups"])
    async def set_grants(group_id: PathRef, body: GrantsIn) -> Group:
        return group_out(await changed(directory.set_grants(group_id, list(body.patterns)), "group.grants_set",
                                       grants=list(body.patterns)))

    @api.post("/groups/{group_id}/grants", response_model=Group, tags=["groups"])
    async def add_grant(group_id: PathRef, body: GrantIn) -> Group:
        return group_out(await changed(directory.add_grant(group_id, body.pattern), "group.grant_add",
                                       pattern=body.pattern))

    @api.delete("/groups/{group_id}/grants", response_model=Group, tags=["groups"])
    async def remove_grant(group_id: PathRef,
                           pattern: Annotated[str, Query(min_length=1, max_length=200)]) -> Group:
        return group_out(await changed(directory.remove_grant(group_id, pattern), "group.grant_remove",
                                       pattern=pattern))

    @api.post("/groups/{group_id}/members", response_model=Group, tags=["groups"])
    async def add_member(group_id: PathRef, body: MemberIn) -> Group:
        return group_out(await changed(directory.add_member(group_id, body.user_id), "group.member_add",
                                       user_id=body.user_id))

    @api.delete("/groups/{group_id}/members/{user_id}", response_model=Group, tags=["groups"])
    async def remove_member(group_id: PathRef, user_id: PathRef) -> Group:
        return group_out(await changed(directory.remove_member(group_id, user_id), "group.member_remove",
                                       user_id=user_id))

    # -- keys -----------------------------------------------------------------------------

    @api.post("/keys", status_code=201, response_model=KeyCreated, tags=["keys"])
    async def create_api_key(body: KeyIn) -> KeyCreated:
        user_id = await resolve_user(body.user_id) if body.user_id else None
        group_id = await resolve_group(body.group_id) if body.group_id else None
        row, secret = await changed(create_key(keys, body.name, kind=body.kind, user_id=user_id, group_id=group_id,
                                               models=body.models, expires_at=body.expires_at), "key.create",
                                    kind=body.kind, user_id=user_id, group_id=group_id, models=body.models)
        return KeyCreated(**key_out(row).model_dump(), key=secret)

    @api.get("/keys", response_model=Page[Key], tags=["keys"])
    async def list_keys(limit: Limit = 20, after: After = None, user_id: After = None, group_id: After = None,
                        kind: Annotated[str | None, Query(pattern="^(data|admin)$")] = None) -> dict[str, Any]:
        uid = await resolve_user(user_id) if user_id else None
        gid = await resolve_group(group_id) if group_id else None
        rows = await keys.all(limit=limit + 1, after=after, user_id=uid, group_id=gid, kind=kind)
        return page([key_out(k) for k in rows], limit, lambda k: k.id)

    @api.get("/keys/{key_id}", response_model=Key, tags=["keys"])
    async def get_api_key(key_id: PathRef) -> Key:
        return key_out(await keys.get(key_id))

    @api.post("/keys/{key_id}/revoke", response_model=Key, tags=["keys"])
    async def revoke_api_key(key_id: PathRef) -> Key:
        return key_out(await changed(keys.revoke(key_id), "key.revoke"))

    @api.post("/keys/{key_id}/rotate", response_model=KeyRotated, tags=["keys"])
    async def rotate_api_key(key_id: PathRef, body: RotateIn | None = None) -> KeyRotated:
        seconds = body.grace_seconds if body and body.grace_seconds is not None else settings.key_rotation_grace
        old, new, secret = await changed(rotate_key(keys, key_id, timedelta(seconds=seconds)), "key.rotate",
                                         key_id, grace_seconds=seconds)
        return KeyRotated(key=KeyCreated(**key_out(new).model_dump(), key=secret), replaced=key_out(old))

    # -- limits and usage ------------------------------------------------------------------

    limit_store = LimitStore(cache.db)

    @api.get("/limits", response_model=list[Limits], tags=["limits"])
    async def list_limits() -> list[Limits]:
        return [limits_out(r) for r in await limit_store.all()]

    @api.get("/limits/{scope}/{ref}", response_model=Limits, tags=["limits"])
    async def get_limits(scope: Scope, ref: PathRef) -> Limits:
        row = await limit_store.get(scope, ref)
        if row is None:
            raise NotFound(f"{scope} {ref} has no limits of its own (config defaults apply)")
        return limits_out(row)

    @api.put("/limits/{scope}/{ref}", response_model=Limits, tags=["limits"])
    async def set_limits(scope: Scope, ref: PathRef, body: LimitsIn) -> Limits:
        budget = round(body.budget_usd * 1_000_000) if body.budget_usd is not None else None
        row = await changed(limit_store.set(scope, ref, rpm=body.rpm, tpm=body.tpm, concurrent=body.concurrent,
                                            budget_micros=budget, budget_period=body.budget_period,
                                            budget_mode=body.budget_mode),
                            "limits.set", f"{scope}:{ref}", **body.model_dump())
        return limits_out(row)

    @api.delete("/limits/{scope}/{ref}", status_code=204, tags=["limits"])
    async def clear_limits(scope: Scope, ref: PathRef) -> Response:
        await changed(limit_store.clear(scope, ref), "limits.clear", f"{scope}:{ref}")
        return Response(status_code=204)

    @api.get("/usage", response_model=UsageReport, tags=["usage"])
    async def usage_report(
        by: Annotated[str, Query(pattern="^(key|user|group|model|day)$")] = "key",
        since: date | None = None, until: date | None = None,
        key_id: Annotated[str | None, Query(max_length=200, description="only this key")] = None,
        user: Annotated[str | None, Query(max_length=200, description="only this user (id or name)")] = None,
        group: Annotated[str | None, Query(max_length=200, description="only this group (id or name)")] = None,
        model: Annotated[str | None, Query(max_length=200, description="only this model id")] = None,
    ) -> UsageReport:
        """Totals grouped by key, user, group, model or day, with names beside ids and, for keys,
        users and groups, the budget in force, spent and remaining in its current period."""
        filters = Filters(key_id=(await keys.get(key_id)).id if key_id else None,
                          user_id=await resolve_user(user) if user else None,
                          group_id=await resolve_group(group) if group else None, model=model)
        rows = await named_usage(cache.db, settings.limits, by, since, until, filters)
        return UsageReport(by=by, since=since.isoformat() if since else None,
                           until=until.isoformat() if until else None, data=[usage_out(r, by) for r in rows])

    @api.get("/usage/requests", response_model=list[LedgerRow], tags=["usage"])
    async def usage_requests(key_id: After = None,
                             limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[LedgerRow]:
        """The newest ledger rows, one per request."""
        return [LedgerRow(**r) for r in await ledger(cache.db, key_id=key_id, limit=limit)]

    @api.get("/audit", response_model=AuditPage, tags=["audit"])
    async def audit_records(
        limit: Limit = 50,
        after: Annotated[int | None, Query(ge=1, le=2**31 - 1, description="cursor: the last id seen")] = None,
        actor: After = None, model: After = None, status: Annotated[int | None, Query(ge=100, le=599)] = None,
        since: datetime | None = None, until: datetime | None = None, dlp: bool | None = None,
        kind: Annotated[str | None, Query(pattern="^(request|change)$")] = None, request_id: After = None,
    ) -> AuditPage:
        """Audit records, newest first, filtered by actor (key, user or group id), model, status,
        time, DLP hit and kind."""
        rows = await audit_store.query(cache.db, limit=limit + 1, after=after, actor=actor, model=model,
                                       status=status, since=since, until=until, dlp=dlp, kind=kind,
                                       request_id=request_id)
        data = rows[:limit]
        return AuditPage(data=data, has_more=len(rows) > limit, first_id=data[0]["id"] if data else None,
                         last_id=data[-1]["id"] if data else None)

    @api.get("/audit/payloads/{request_id}", response_model=Payload, tags=["audit"])
    async def audit_payload(request_id: PathRef) -> Payload:
        """A captured request/response pair (after DLP redaction), for groups with capture on."""
        found = await audit_store.payload(cache.db, request_id)
        if found is None:
            raise NotFound(f"no captured payload for {request_id}")
        return Payload(**found)

    api.include_router(insights_router(settings, cache))  # the console's read-only views (admin/insights.py)
    app.include_router(api)
    return app


def _keyed_docs(app: FastAPI, api: APIRouter) -> None:
    """The docs as routes of the admin router, so they need an admin key like every other route
    (the static Swagger UI assets stay public: they are the package's code, not our data)."""
    mount_assets(app)

    @api.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(app.openapi())

    @api.get("/docs", include_in_schema=False)
    async def docs(request: Request) -> Response:
        return docs_page(request, "/openapi.json")

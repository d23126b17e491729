"""The admin REST API under /admin/v1: users, groups, grants, memberships, keys, limits, usage,
audit and alerts, for admin keys and signed-in people, each route guarded by a role permission.

Every change is committed through the store's repositories (which bump the state version) and
then reloaded into this process's cache at once, so the change is live here immediately and on
other processes within one refresh. Who may do what is `tollway/admin/roles.py`; the keys,
usage, self-service and alerts routes live in their own router modules.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from tollway.admin import alerts, keys, me, usage
from tollway.admin.context import AdminContext, AdminError
from tollway.admin.docs import add_docs, docs_page, mount_assets
from tollway.admin.insights import insights_router
from tollway.admin.params import ERRORS, After, Limit, PathRef
from tollway.admin.roles import AdminAuth, AdminPrincipal, authenticated, forbid, require
from tollway.admin.schemas import (
    GrantIn,
    GrantsIn,
    Group,
    GroupIn,
    GroupPatch,
    MemberIn,
    Page,
    RoleIn,
    User,
    UserIn,
    UserPatch,
)
from tollway.admin.views import group_out, page, user_out
from tollway.config import Settings
from tollway.governance.audit import AuditLog
from tollway.governance.identity import KeyCache
from tollway.store.errors import Conflict, NotFound

log = logging.getLogger("tollway.admin")


def _error(status: int, error_type: str, message: str) -> JSONResponse:
    return JSONResponse({"error": {"type": error_type, "message": message}}, status_code=status)


def create_admin_app(settings: Settings, cache: KeyCache, audit: AuditLog) -> FastAPI:
    ctx = AdminContext(settings, cache, audit)
    directory = ctx.directory

    # The API docs (`/docs`, `/openapi.json`): open, behind an admin key, or off (server.docs_auth).
    docs_open = settings.server.docs_auth == "none"
    app = FastAPI(
        title="Tollway admin API", version="1",
        description="Users, groups, grants, keys, limits, usage, audit and alerts of a Tollway gateway.",
        docs_url=None, openapi_url="/openapi.json" if docs_open else None, redoc_url=None,
    )
    app.state.admin = ctx
    app.state.admin_auth = AdminAuth(ctx)
    if docs_open:
        add_docs(app, "/openapi.json")
    api = APIRouter(dependencies=[Depends(authenticated)], responses=ERRORS)
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

    async def reachable_user(request: Request, who: AdminPrincipal, ref: str, changing: bool = False) -> Any:
        user = await directory.get_user(ref)
        if not who.reaches_user(user):
            raise forbid(request, who, f"user {user.name} is in none of the groups you administer")
        if changing and who.scoped and user.role not in (None, "developer"):
            # A group admin changing a person with a role of their own could take it over.
            raise forbid(request, who, f"user {user.name} has the {user.role} role: only an org admin changes them")
        return user

    def reachable_group(request: Request, who: AdminPrincipal, group_id: str) -> None:
        if not who.reaches_group(group_id):
            raise forbid(request, who, "you do not administer this group")

    # -- users ----------------------------------------------------------------------------

    @api.post("/users", status_code=201, response_model=User, tags=["users"])
    async def create_user(body: UserIn, request: Request,
                          who: Annotated[AdminPrincipal, Depends(require("users.write"))]) -> User:
        group_ids = [await ctx.group_id(g) for g in body.groups]
        if who.scoped and (not group_ids or not all(who.reaches_group(g) for g in group_ids)):
            raise forbid(request, who, "a group admin creates users only into groups they administer")
        user = await ctx.changed(directory.create_user(body.name, body.email), "user.create", who.actor)
        for gid in group_ids:
            await ctx.changed(directory.add_member(gid, user.id), "group.member_add", who.actor, gid, user_id=user.id)
        return user_out(await directory.get_user(user.id))

    @api.get("/users", response_model=Page[User], tags=["users"])
    async def list_users(request: Request, who: Annotated[AdminPrincipal, Depends(require("users.read"))],
                         limit: Limit = 20, after: After = None, disabled: bool | None = None,
                         group: After = None) -> dict[str, Any]:
        if who.scoped:
            if group is not None:
                reachable_group(request, who, await ctx.group_id(group))
            rows = [u for u in await directory.list_users(after=after, disabled=disabled, group=group)
                    if who.reaches_user(u)][:limit + 1]
        else:
            rows = await directory.list_users(limit=limit + 1, after=after, disabled=disabled, group=group)
        return page([user_out(u) for u in rows], limit, lambda u: u.id)

    @api.get("/users/{user_id}", response_model=User, tags=["users"])
    async def get_user(user_id: PathRef, request: Request,
                       who: Annotated[AdminPrincipal, Depends(require("users.read"))]) -> User:
        return user_out(await reachable_user(request, who, user_id))

    @api.patch("/users/{user_id}", response_model=User, tags=["users"])
    async def update_user(user_id: PathRef, body: UserPatch, request: Request,
                          who: Annotated[AdminPrincipal, Depends(require("users.write"))]) -> User:
        user = await reachable_user(request, who, user_id, changing=True)
        changes = body.model_dump(exclude_unset=True)
        if who.scoped and "email" in changes:
            # Sign-in adopts a user by email: whoever sets the email can become that person.
            raise forbid(request, who, "only an org admin changes a person's email")
        if "role" in changes or "role_groups" in changes:
            if not who.can("roles.write"):
                raise forbid(request, who, "only an org admin gives roles (needs roles.write)")
            role, groups = changes.pop("role", None), changes.pop("role_groups", None) or []
            await ctx.changed(directory.set_role(user.id, role, groups), "user.role_set", who.actor, user.id,
                              role=role, groups=groups)
        if not changes:
            return user_out(await directory.get_user(user.id))
        return user_out(await ctx.changed(directory.update_user(user.id, **changes), "user.update", who.actor,
                                          fields=sorted(changes)))

    @api.put("/users/{user_id}/role", response_model=User, tags=["users"])
    async def set_role(user_id: PathRef, body: RoleIn,
                       who: Annotated[AdminPrincipal, Depends(require("roles.write"))]) -> User:
        """Store a person's admin role (null: the config's `signin.roles` decide again)."""
        uid = await ctx.user_id(user_id)
        return user_out(await ctx.changed(directory.set_role(uid, body.role, list(body.groups)), "user.role_set",
                                          who.actor, uid, role=body.role, groups=list(body.groups)))

    @api.post("/users/{user_id}/disable", response_model=User, tags=["users"])
    async def disable_user(user_id: PathRef, request: Request,
                           who: Annotated[AdminPrincipal, Depends(require("users.write"))]) -> User:
        user = await reachable_user(request, who, user_id, changing=True)
        return user_out(await ctx.changed(directory.update_user(user.id, disabled=True), "user.disable", who.actor))

    @api.post("/users/{user_id}/enable", response_model=User, tags=["users"])
    async def enable_user(user_id: PathRef, request: Request,
                          who: Annotated[AdminPrincipal, Depends(require("users.write"))]) -> User:
        user = await reachable_user(request, who, user_id, changing=True)
        return user_out(await ctx.changed(directory.update_user(user.id, disabled=False), "user.enable", who.actor))

    # -- groups, grants, members ----------------------------------------------------------

    @api.post("/groups", status_code=201, response_model=Group, tags=["groups"])
    async def create_group(body: GroupIn, who: Annotated[AdminPrincipal, Depends(require("groups.write"))]) -> Group:
        return group_out(await ctx.changed(directory.create_group(body.name, body.description, body.grants),
                                           "group.create", who.actor, grants=list(body.grants)))

    @api.get("/groups", response_model=Page[Group], tags=["groups"])
    async def list_groups(who: Annotated[AdminPrincipal, Depends(require("groups.read"))], limit: Limit = 20,
                          after: After = None) -> dict[str, Any]:
        if who.scoped:
            rows = [g for g in await directory.list_groups(after=after) if who.reaches_group(g.id)][:limit + 1]
        else:
            rows = await directory.list_groups(limit=limit + 1, after=after)
        return page([group_out(g) for g in rows], limit, lambda g: g.id)

    @api.get("/groups/{group_id}", response_model=Group, tags=["groups"])
    async def get_group(group_id: PathRef, request: Request,
                        who: Annotated[AdminPrincipal, Depends(require("groups.read"))]) -> Group:
        group = await directory.get_group(group_id)
        reachable_group(request, who, group.id)
        return group_out(group)

    @api.patch("/groups/{group_id}", response_model=Group, tags=["groups"])
    async def update_group(group_id: PathRef, body: GroupPatch,
                           who: Annotated[AdminPrincipal, Depends(require("groups.write"))]) -> Group:
        return group_out(await ctx.changed(directory.update_group(group_id, body.name, body.description),
                                           "group.update", who.actor))

    @api.delete("/groups/{group_id}", status_code=204, tags=["groups"])
    async def delete_group(group_id: PathRef,
                           who: Annotated[AdminPrincipal, Depends(require("groups.write"))]) -> Response:
        await ctx.changed(directory.delete_group(group_id), "group.delete", who.actor, group_id)
        return Response(status_code=204)

    @api.put("/groups/{group_id}/grants", response_model=Group, tags=["groups"])
    async def set_grants(group_id: PathRef, body: GrantsIn,
                         who: Annotated[AdminPrincipal, Depends(require("groups.write"))]) -> Group:
        return group_out(await ctx.changed(directory.set_grants(group_id, list(body.patterns)), "group.grants_set",
                                           who.actor, grants=list(body.patterns)))

    @api.post("/groups/{group_id}/grants", response_model=Group, tags=["groups"])
    async def add_grant(group_id: PathRef, body: GrantIn,
                        who: Annotated[AdminPrincipal, Depends(require("groups.write"))]) -> Group:
        return group_out(await ctx.changed(directory.add_grant(group_id, body.pattern), "group.grant_add",
                                           who.actor, pattern=body.pattern))

    @api.delete("/groups/{group_id}/grants", response_model=Group, tags=["groups"])
    async def remove_grant(group_id: PathRef, who: Annotated[AdminPrincipal, Depends(require("groups.write"))],
                           pattern: Annotated[str, Query(min_length=1, max_length=200)]) -> Group:
        return group_out(await ctx.changed(directory.remove_grant(group_id, pattern), "group.grant_remove",
                                           who.actor, pattern=pattern))

    @api.post("/groups/{group_id}/members", response_model=Group, tags=["groups"])
    async def add_member(group_id: PathRef, body: MemberIn, request: Request,
                         who: Annotated[AdminPrincipal, Depends(require("members.write"))]) -> Group:
        gid = await ctx.group_id(group_id)
        reachable_group(request, who, gid)
        return group_out(await ctx.changed(directory.add_member(gid, body.user_id), "group.member_add", who.actor,
                                           user_id=body.user_id))

    @api.delete("/groups/{group_id}/members/{user_id}", response_model=Group, tags=["groups"])
    async def remove_member(group_id: PathRef, user_id: PathRef, request: Request,
                            who: Annotated[AdminPrincipal, Depends(require("members.write"))]) -> Group:
        gid = await ctx.group_id(group_id)
        reachable_group(request, who, gid)
        return group_out(await ctx.changed(directory.remove_member(gid, user_id), "group.member_remove",
                                           who.actor, user_id=user_id))

    for module in (keys, usage, me, alerts):
        api.include_router(module.router)
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

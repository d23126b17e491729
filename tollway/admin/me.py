"""`/me`: who is calling and what they may do, and a person's self-service — their own personal
keys (`/me/keys`: list, create, revoke, rotate) and their own usage (`/me/usage`). Every
signed-in person has these (`self.keys`, `self.usage`), whatever their role; an admin key is not
a person and has none."""

from __future__ import annotations

from datetime import date
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request

from tollway.admin.context import AdminContext, AdminError, Ctx
from tollway.admin.keys import rotate
from tollway.admin.params import After, Limit, PathRef, text_query
from tollway.admin.roles import AdminPrincipal, authenticated, forbid, require
from tollway.admin.schemas import Key, KeyCreated, KeyRotated, Me, MeGroup, MeUser, MyKeyIn, Page, RotateIn, UsageReport
from tollway.admin.usage import By, report
from tollway.admin.views import key_out, page
from tollway.governance.identity import create_key
from tollway.reports import Filters
from tollway.store.keys import KeyRow

router = APIRouter(tags=["me"])
Self = Annotated[AdminPrincipal, Depends(require("self.keys"))]


@router.get("/me", response_model=Me)
async def me(ctx: Ctx, who: Annotated[AdminPrincipal, Depends(authenticated)]) -> Me:
    """The caller's role, person (null for an admin key), groups and permissions."""
    names = ctx.cache.group_names
    user = MeUser(id=who.user.id, name=who.user.name, email=who.user.email) if who.user else None
    return Me(role=who.role, user=user, key_id=who.key_id, permissions=sorted(who.permissions), scope=who.scope,
              groups=[MeGroup(id=g, name=names.get(g, g)) for g in who.group_ids])


def _person(who: AdminPrincipal) -> str:
    if who.user is None:  # not reachable: admin keys lack the self.* permissions
        raise AdminError(403, "permission_error", "an admin key is not a person: it has no keys of its own")
    return who.user.id


async def _own_key(ctx: AdminContext, request: Request, who: AdminPrincipal, key_id: str) -> KeyRow:
    key = await ctx.keys.get(key_id)
    if key.user_id != _person(who) or key.kind != "data":
        raise forbid(request, who, f"key {key_id} is not one of your personal keys")
    return key


@router.get("/me/keys", response_model=Page[Key])
async def my_keys(ctx: Ctx, who: Self, limit: Limit = 20, after: After = None) -> dict[str, Any]:
    """Your personal keys, oldest first (sign-in tokens are not listed here)."""
    rows = await ctx.keys.all(limit=limit + 1, after=after, user_id=_person(who), kind="data")
    return page([key_out(k) for k in rows], limit, lambda k: k.id)


@router.post("/me/keys", status_code=201, response_model=KeyCreated)
async def create_my_key(body: MyKeyIn, ctx: Ctx, who: Self) -> KeyCreated:
    """A new personal key of yours; the secret is in the answer, once."""
    uid = _person(who)
    row, secret = await ctx.changed(create_key(ctx.keys, body.name, user_id=uid, models=body.models,
                                               expires_at=body.expires_at),
                                    "key.create", who.actor, kind="data", user_id=uid, models=body.models)
    return KeyCreated(**key_out(row).model_dump(), key=secret)


@router.post("/me/keys/{key_id}/revoke", response_model=Key)
async def revoke_my_key(key_id: PathRef, request: Request, ctx: Ctx, who: Self) -> Key:
    await _own_key(ctx, request, who, key_id)
    return key_out(await ctx.changed(ctx.keys.revoke(key_id), "key.revoke", who.actor))


@router.post("/me/keys/{key_id}/rotate", response_model=KeyRotated)
async def rotate_my_key(key_id: PathRef, request: Request, ctx: Ctx, who: Self,
                        body: RotateIn | None = None) -> KeyRotated:
    await _own_key(ctx, request, who, key_id)
    return await rotate(ctx, who, key_id, body)


@router.get("/me/usage", response_model=UsageReport)
async def my_usage(ctx: Ctx, who: Annotated[AdminPrincipal, Depends(require("self.usage"))], by: By = "day",
                   since: date | None = None, until: date | None = None,
                   model: Annotated[str | None, text_query("only this model id")] = None) -> UsageReport:
    """Your own usage (every key and sign-in token of yours), grouped by day, model or key."""
    return await report(ctx, by, since, until, Filters(user_id=_person(who), model=model))

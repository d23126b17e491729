"""`/keys`: create, list, read, revoke and rotate keys — all of them for an org admin, the keys of
their groups and of their groups' people for a group admin, none for others (a developer's own
keys are under `/me/keys`). Admin keys need `admin_keys.write` to be made, revoked or rotated."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from tollway.admin.context import AdminContext, Ctx
from tollway.admin.params import After, Limit, PathRef
from tollway.admin.roles import AdminPrincipal, forbid, require
from tollway.admin.schemas import Key, KeyCreated, KeyIn, KeyRotated, Page, RotateIn
from tollway.admin.views import key_out, page
from tollway.governance.identity import create_key, rotate_key
from tollway.store.errors import NotFound
from tollway.store.keys import KeyRow

router = APIRouter(tags=["keys"])
Reader = Annotated[AdminPrincipal, Depends(require("keys.read"))]
Writer = Annotated[AdminPrincipal, Depends(require("keys.write"))]


async def reaches_key(ctx: AdminContext, who: AdminPrincipal, key: KeyRow) -> bool:
    """Whether WHO's role reaches KEY: a group admin reaches data keys of their groups and people."""
    if not who.scoped:
        return True
    if key.kind == "admin":
        return False
    if key.group_id:
        return who.reaches_group(key.group_id)
    if key.user_id:
        try:
            return who.reaches_user(await ctx.directory.get_user(key.user_id))
        except NotFound:
            return False
    return False


async def reachable_key(ctx: AdminContext, request: Request, who: AdminPrincipal, key_id: str,
                        changing: bool = False) -> KeyRow:
    key = await ctx.keys.get(key_id)
    if not await reaches_key(ctx, who, key):
        raise forbid(request, who, f"key {key.id} belongs to none of the groups you administer")
    if changing and key.kind == "admin" and not who.can("admin_keys.write"):
        raise forbid(request, who, "changing an admin key needs admin_keys.write")
    return key


@router.post("/keys", status_code=201, response_model=KeyCreated)
async def create_api_key(body: KeyIn, request: Request, ctx: Ctx, who: Writer) -> KeyCreated:
    user_id = await ctx.user_id(body.user_id) if body.user_id else None
    group_id = await ctx.group_id(body.group_id) if body.group_id else None
    if body.kind == "admin" and not who.can("admin_keys.write"):
        raise forbid(request, who, "creating an admin key needs admin_keys.write")
    if who.scoped:
        owner = await ctx.directory.get_user(user_id) if user_id else None
        owner_ok = who.reaches_group(group_id) if group_id else owner is not None and who.reaches_user(owner)
        if not owner_ok:
            raise forbid(request, who, "a group admin creates keys only for their groups and their people")
        if owner is not None and owner.role not in (None, "developer"):
            raise forbid(request, who, f"user {owner.name} has the {owner.role} role: only an org admin makes "
                         "their keys")
    role_groups = [await ctx.group_id(g) for g in body.role_groups]
    row, secret = await ctx.changed(
        create_key(ctx.keys, body.name, kind=body.kind, user_id=user_id, group_id=group_id, models=body.models,
                   expires_at=body.expires_at, role=body.role, role_groups=role_groups),
        "key.create", who.actor, kind=body.kind, user_id=user_id, group_id=group_id, models=body.models,
        role=body.role, role_groups=role_groups)
    return KeyCreated(**key_out(row).model_dump(), key=secret)


@router.get("/keys", response_model=Page[Key])
async def list_keys(ctx: Ctx, who: Reader, limit: Limit = 20, after: After = None, user_id: After = None,
                    group_id: After = None,
                    kind: Annotated[str | None, Query(pattern="^(data|admin)$")] = None) -> dict[str, Any]:
    uid = await ctx.user_id(user_id) if user_id else None
    gid = await ctx.group_id(group_id) if group_id else None
    if who.scoped:
        rows = [k for k in await ctx.keys.all(after=after, user_id=uid, group_id=gid, kind=kind)
                if await reaches_key(ctx, who, k)][:limit + 1]
    else:
        rows = await ctx.keys.all(limit=limit + 1, after=after, user_id=uid, group_id=gid, kind=kind)
    return page([key_out(k) for k in rows], limit, lambda k: k.id)


@router.get("/keys/{key_id}", response_model=Key)
async def get_api_key(key_id: PathRef, request: Request, ctx: Ctx, who: Reader) -> Key:
    return key_out(await reachable_key(ctx, request, who, key_id))


@router.post("/keys/{key_id}/revoke", response_model=Key)
async def revoke_api_key(key_id: PathRef, request: Request, ctx: Ctx, who: Writer) -> Key:
    await reachable_key(ctx, request, who, key_id, changing=True)
    return key_out(await ctx.changed(ctx.keys.revoke(key_id), "key.revoke", who.actor))


@router.post("/keys/{key_id}/rotate", response_model=KeyRotated)
async def rotate_api_key(key_id: PathRef, request: Request, ctx: Ctx, who: Writer,
                         body: RotateIn | None = None) -> KeyRotated:
    await reachable_key(ctx, request, who, key_id, changing=True)
    return await rotate(ctx, who, key_id, body)


async def rotate(ctx: AdminContext, who: AdminPrincipal, key_id: str, body: RotateIn | None) -> KeyRotated:
    """Rotate a key the caller may change (shared with `/me/keys/{id}/rotate`)."""
    seconds = body.grace_seconds if body and body.grace_seconds is not None else ctx.settings.key_rotation_grace
    old, new, secret = await ctx.changed(rotate_key(ctx.keys, key_id, timedelta(seconds=seconds)), "key.rotate",
                                         who.actor, key_id, grace_seconds=seconds)
    return KeyRotated(key=KeyCreated(**key_out(new).model_dump(), key=secret), replaced=key_out(old))

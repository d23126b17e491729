"""People from the IdP become Tollway users, and their IdP groups become Tollway memberships.

Just in time: the first sign-in of an IdP account creates its user (or adopts the existing
user with the same email, so someone who had keys keeps them) and links (issuer, subject) to
it. Every sign-in, and every refresh that brings a new ID token, sets the user's memberships to
exactly what the group rules give, so model grants, limits and budgets follow the IdP.
"""

from __future__ import annotations

import fnmatch
import logging
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tollway.config import SigninConfig
from tollway.signin.oidc import Identity

if TYPE_CHECKING:
    from tollway.signin.context import SigninContext
from tollway.store.errors import Conflict, NotFound
from tollway.store.principals import Directory, UserRow
from tollway.store.signin import SigninStore

log = logging.getLogger("tollway.signin")


def mapped_groups(idp_groups: tuple[str, ...], cfg: SigninConfig) -> list[str]:
    """Tollway group names for a person's IdP groups: every rule that matches adds its group."""
    out = list(cfg.default_groups)
    for g in idp_groups:
        for rule in cfg.group_rules:
            if fnmatch.fnmatchcase(g, rule.match):
                out.append(rule.group.replace("{idp}", g))
    return list(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class Provisioned:
    """The user an identity signed in as, and what signing in changed (for the audit record)."""

    user: UserRow
    linked: str | None  # "created" (a new user) or "adopted" (an existing user by email) on first sign-in
    joined: tuple[str, ...]
    left: tuple[str, ...]


async def admit(ctx: SigninContext, ident: Identity, ip: str | None) -> UserRow | None:
    """Provision the person an identity signed in as and audit what that changed; None (the
    refusal audited) when their Tollway account is disabled. Shared by Claude Code's device sign-in
    and the console's SSO, so both record the same events."""
    done = await provision(ctx.directory, ctx.store, ident, ctx.cfg)
    user = done.user
    if done.linked is not None:
        ctx.event("user.provisioned", user.id, ip, how=done.linked, issuer=ident.issuer)
    if done.joined or done.left:
        ctx.event("user.groups_synced", user.id, ip, joined=list(done.joined), left=list(done.left))
    if user.disabled:
        ctx.event("signin.refused", user.id, ip, reason="user_disabled")
        return None
    return user


async def provision(directory: Directory, store: SigninStore, ident: Identity, cfg: SigninConfig) -> Provisioned:
    """The Tollway user for this identity, created on first sign-in, memberships synchronised."""
    linked: str | None = None
    user_id = await store.linked_user(ident.issuer, ident.subject)
    if user_id is None:
        user_id = await store.user_by_email(ident.email) if ident.email else None
        linked = "adopted"
        if user_id is None:
            user_id, linked = (await _create(directory, ident)).id, "created"
        await store.link(ident.issuer, ident.subject, user_id)
        log.info("sign-in provisioned user %s from %s", user_id, ident.issuer)
    joined, left = await sync_groups(directory, user_id, ident.groups, cfg)
    return Provisioned(await directory.get_user(user_id), linked, joined, left)


async def _create(directory: Directory, ident: Identity) -> UserRow:
    try:
        return await directory.create_user(ident.name, ident.email)
    except Conflict:  # another user has this name: keep the IdP's name recognisable
        return await directory.create_user(f"{ident.name}-{secrets.token_hex(2)}", ident.email)


async def sync_groups(directory: Directory, user_id: str, idp_groups: tuple[str, ...],
                      cfg: SigninConfig) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Set the user's memberships to what the rules give; (group ids joined, group ids left)."""
    wanted: set[str] = set()
    for name in mapped_groups(idp_groups, cfg):
        try:
            wanted.add((await directory.get_group(name)).id)
        except NotFound:
            log.warning("sign-in group rule names group %r, which does not exist; skipped", name)
    current = set((await directory.get_user(user_id)).groups)
    for gid in sorted(wanted - current):
        await directory.add_member(gid, user_id)
    for gid in sorted(current - wanted):
        await directory.remove_member(gid, user_id)
    return tuple(sorted(wanted - current)), tuple(sorted(current - wanted))

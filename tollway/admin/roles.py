"""Who may do what on the admin API: roles, their permissions, and `require(permission)`.

Four roles (docs/roles.md). An admin key carries one (org_admin by default, today's all-powerful
key); a signed-in person (a sign-in access token, `tok_…`) gets the role stored on their user,
else the first matching `signin.roles` rule, else developer. Data keys never open the control
plane. A group_admin's reach is a set of groups: their users, those users' and groups' keys,
limits and usage. Every route declares its permission with one line —
`who: Who = Depends(require("keys.write"))` — and checks the scope of what it touches with the
`AdminPrincipal` it gets. A refusal is 403 `permission_error`, logged and audited (kind
`refusal`) with the acting key or person.
"""

from __future__ import annotations

import fnmatch
import logging
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Request, Security
from fastapi.security import APIKeyHeader, HTTPBearer

from tollway.admin.context import AdminContext, AdminError
from tollway.config import RoleRule
from tollway.governance.identity import CredentialError, Principal, extract_credential
from tollway.store.errors import NotFound
from tollway.store.keys import KeyRow
from tollway.store.principals import UserRow
from tollway.wire.credentials import ambiguous_credentials

log = logging.getLogger("tollway.admin")

# What each permission opens; `GET /admin/v1/me` lists the caller's.
PERMISSIONS: dict[str, str] = {
    "users.read": "list and read users",
    "users.write": "create users, rename, disable and enable them",
    "roles.write": "give people admin roles",
    "groups.read": "list and read groups",
    "groups.write": "create, rename and delete groups, change their model grants",
    "members.write": "add and remove group members",
    "keys.read": "list and read keys",
    "keys.write": "create, revoke and rotate keys",
    "admin_keys.write": "create, revoke and rotate admin keys",
    "limits.read": "read rate limits and budgets",
    "limits.write": "set and clear rate limits and budgets",
    "usage.read": "usage and cost reports",
    "requests.read": "the request ledger (one row per request)",
    "audit.read": "the audit log and captured payloads",
    "alerts.read": "alert rules and the delivery log",
    "alerts.write": "create, change and delete alert rules",
    "self.keys": "list, create, revoke and rotate one's own personal keys",
    "self.usage": "one's own usage",
}
_SELF = frozenset({"self.keys", "self.usage"})
ROLE_PERMISSIONS: dict[str, frozenset[str]] = {
    "org_admin": frozenset(PERMISSIONS),
    "group_admin": frozenset({"users.read", "users.write", "groups.read", "members.write", "keys.read",
                              "keys.write", "limits.read", "limits.write", "usage.read", "requests.read"}) | _SELF,
    "auditor": frozenset({"users.read", "groups.read", "keys.read", "limits.read", "usage.read", "requests.read",
                          "audit.read", "alerts.read"}) | _SELF,
    "developer": _SELF,
}
ROLES = tuple(ROLE_PERMISSIONS)
TOKEN_ID_PREFIX = "tok_"  # sign-in access tokens (tollway/store/signin.py), as opposed to keys (key_…)

# Declared so the OpenAPI document (and the docs page's Authorize button) knows the schemes; the
# credential itself is read as on the data plane (`extract_credential`).
ADMIN_KEY_HEADER = APIKeyHeader(name="x-api-key", auto_error=False, scheme_name="AdminKey",
                                description="An admin key (`tollway keys create --admin`).")
ADMIN_BEARER = HTTPBearer(auto_error=False, scheme_name="AdminBearer",
                          description="An admin key, or a sign-in access token, as a bearer token.")


@dataclass(frozen=True, slots=True)
class AdminPrincipal:
    """The caller of an admin route: its role, and the groups that role reaches."""

    role: str
    key_id: str
    user: UserRow | None
    group_ids: tuple[str, ...]  # group_admin: administered; others: the person's own groups
    permissions: frozenset[str]
    remote_addr: str | None = None

    @property
    def user_id(self) -> str | None:
        return self.user.id if self.user else None

    @property
    def scoped(self) -> bool:
        """True when only some groups' data is reachable (group_admin)."""
        return self.role == "group_admin"

    @property
    def scope(self) -> str:
        return {"group_admin": "groups", "developer": "self"}.get(self.role, "all")

    @property
    def actor(self) -> dict[str, Any]:
        """Who acted, for audit records: the key (or token) id, the person, the role."""
        return {"key_id": self.key_id, "user_id": self.user_id, "role": self.role, "via": "admin_api",
                "remote_addr": self.remote_addr}

    def can(self, permission: str) -> bool:
        return permission in self.permissions

    def reaches_group(self, group_id: str | None) -> bool:
        return not self.scoped or (group_id is not None and group_id in self.group_ids)

    def reaches_user(self, user: UserRow) -> bool:
        return not self.scoped or bool(set(user.groups) & set(self.group_ids))


def role_of(user: UserRow, rules: Iterable[RoleRule], group_names: dict[str, str]) -> tuple[str, tuple[str, ...]]:
    """A person's role and the groups it reaches: stored role, else the first matching rule."""
    if user.role:
        groups = user.role_groups or user.groups
        return user.role, tuple(groups) if user.role == "group_admin" else tuple(user.groups)
    names = {group_names.get(g, g) for g in user.groups}
    by_name = {name: gid for gid, name in group_names.items()}
    for rule in rules:
        if rule.email is not None:
            hit = user.email is not None and fnmatch.fnmatchcase(user.email.lower(), rule.email.lower())
        else:
            hit = rule.group in names
        if hit:
            if rule.role != "group_admin":
                return rule.role, tuple(user.groups)
            named = tuple(by_name[n] for n in rule.groups if n in by_name)
            return rule.role, named or tuple(user.groups)
    return "developer", tuple(user.groups)


class AdminAuth:
    """Turns a request's credential into an `AdminPrincipal` (401 otherwise), once per request."""

    def __init__(self, ctx: AdminContext) -> None:
        self.ctx = ctx

    async def principal(self, request: Request) -> AdminPrincipal:
        cached: AdminPrincipal | None = getattr(request.state, "admin_principal", None)
        if cached is not None:
            return cached
        duplicated = ambiguous_credentials(request.scope["headers"])
        if duplicated:  # read the same way on both planes (wire/credentials.py)
            raise AdminError(401, "authentication_error",
                             f"ambiguous credentials: the {duplicated} header was sent more than once")
        try:
            secret = extract_credential(request.headers)
        except CredentialError as exc:
            raise AdminError(401, "authentication_error", str(exc)) from None
        found = await self.ctx.cache.authenticate(secret)
        if found is None:
            raise AdminError(401, "authentication_error", "invalid, expired or revoked API key or token")
        addr = request.client.host if request.client else None
        principal = await self._resolve(found, addr)
        request.state.admin_principal = principal
        return principal

    async def _resolve(self, found: Principal, addr: str | None) -> AdminPrincipal:
        if found.kind == "admin":
            try:
                row: KeyRow = await self.ctx.keys.get(found.key_id)
            except NotFound:  # revoked and gone since the cache was loaded
                raise AdminError(401, "authentication_error", "invalid API key") from None
            role = row.role or "org_admin"
            return AdminPrincipal(role, row.id, None, row.role_groups, ROLE_PERMISSIONS[role] - _SELF, addr)
        if found.key_id.startswith(TOKEN_ID_PREFIX) and found.user_id:
            try:
                user = await self.ctx.directory.get_user(found.user_id)
            except NotFound:
                raise AdminError(401, "authentication_error", "this token's user no longer exists") from None
            role, groups = role_of(user, self.ctx.settings.signin.roles, self.ctx.cache.group_names)
            return AdminPrincipal(role, found.key_id, user, groups, ROLE_PERMISSIONS[role], addr)
        raise AdminError(401, "authentication_error",
                         "the control plane needs an admin key or a sign-in token; this is a data key")

    def refuse(self, who: AdminPrincipal, what: str, request: Request, permission: str | None = None) -> AdminError:
        """A 403 for WHO, logged and audited as a refusal (never with a secret)."""
        log.info("admin API refused %s %s to %s (role %s): %s", request.method, request.url.path,
                 who.user_id or who.key_id, who.role, what)
        self.ctx.audit.record("refusal", action="permission.denied", target=request.url.path, actor=who.actor,
                              details={"method": request.method, "permission": permission, "reason": what})
        return AdminError(403, "permission_error", what)


def auth_of(request: Request) -> AdminAuth:
    auth: AdminAuth = request.app.state.admin_auth
    return auth


async def authenticated(request: Request, _key: Annotated[str | None, Security(ADMIN_KEY_HEADER)] = None,
                        _bearer: Annotated[Any, Security(ADMIN_BEARER)] = None) -> AdminPrincipal:
    """Any caller the admin API knows (`GET /me`): an admin key or a signed-in person."""
    return await auth_of(request).principal(request)


def require(permission: str) -> Callable[..., Awaitable[AdminPrincipal]]:
    """A FastAPI dependency: the caller, if their role has PERMISSION; else 403 (audited).

    `@router.get("/x")  async def x(who: AdminPrincipal = Depends(require("usage.read")))`, or
    `dependencies=[Depends(require("usage.read"))]` on a whole router."""
    if permission not in PERMISSIONS:
        raise ValueError(f"unknown permission {permission!r}")

    async def dependency(request: Request, _key: Annotated[str | None, Security(ADMIN_KEY_HEADER)] = None,
                         _bearer: Annotated[Any, Security(ADMIN_BEARER)] = None) -> AdminPrincipal:
        auth = auth_of(request)
        who = await auth.principal(request)
        if not who.can(permission):
            raise auth.refuse(who, f"the {who.role} role may not do this (needs {permission})", request, permission)
        return who

    dependency.__name__ = f"require_{permission.replace('.', '_')}"
    return dependency


def require_org(permission: str) -> Callable[..., Awaitable[AdminPrincipal]]:
    """Like `require`, for organisation-wide views (the console's insights): a role scoped to some
    groups or to oneself is refused (403, audited) rather than shown other groups' rows."""
    check = require(permission)

    async def dependency(request: Request, _key: Annotated[str | None, Security(ADMIN_KEY_HEADER)] = None,
                         _bearer: Annotated[Any, Security(ADMIN_BEARER)] = None) -> AdminPrincipal:
        who = await check(request)
        if who.scoped:
            raise forbid(request, who, f"this view covers the whole organisation; the {who.role} role reaches only "
                                       "its own groups (use /usage and /keys, which are filtered to them)")
        return who

    dependency.__name__ = f"require_org_{permission.replace('.', '_')}"
    return dependency


def forbid(request: Request, who: AdminPrincipal, what: str) -> AdminError:
    """A 403 for something outside WHO's scope (another group's user or key), audited."""
    return auth_of(request).refuse(who, what, request)

"""What every admin router shares: the gateway's settings, its key cache and audit log, the
stores, and `changed` (commit, make live here, audit with the acting person). One instance per
admin app, on `app.state.admin`; routers reach it through the `Ctx` dependency."""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypeVar

from fastapi import Depends, Request

from tollway.config import Settings
from tollway.governance.audit import AuditLog
from tollway.governance.identity import KeyCache
from tollway.store.keys import KeyStore
from tollway.store.limit_rows import LimitStore
from tollway.store.principals import Directory

T = TypeVar("T")


class AdminError(Exception):
    """An error answer of the admin API: `{"error": {"type", "message"}}` with `status`."""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(message)
        self.status, self.error_type, self.message = status, error_type, message


@dataclass
class AdminContext:
    settings: Settings
    cache: KeyCache
    audit: AuditLog
    directory: Directory = field(init=False)
    keys: KeyStore = field(init=False)
    limits: LimitStore = field(init=False)

    def __post_init__(self) -> None:
        self.directory, self.keys = self.cache.directory, self.cache.keys
        self.limits = LimitStore(self.cache.db)

    async def changed(self, work: Awaitable[T], action: str, actor: dict[str, Any], target: str | None = None,
                      **details: Any) -> T:
        """Commit a change, make it live in this process, and audit it with ACTOR, the acting key or
        person (`AdminPrincipal.actor`); never with secrets."""
        result = await work
        await self.cache.refresh()
        first = result[0] if isinstance(result, tuple) else result  # (row, secret) for a new key
        self.audit.change(action, target or getattr(first, "id", None), actor, **details)
        return result

    async def user_id(self, ref: str) -> str:
        return (await self.directory.get_user(ref)).id

    async def group_id(self, ref: str) -> str:
        return (await self.directory.get_group(ref)).id


def context(request: Request) -> AdminContext:
    ctx: AdminContext = request.app.state.admin
    return ctx


Ctx = Annotated[AdminContext, Depends(context)]

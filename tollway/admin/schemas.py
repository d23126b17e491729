"""Pydantic models of the admin API: what it accepts and returns, and so its OpenAPI document.

Strings are bounded and free of control characters: they end up in SQL text columns, and a NUL
byte is an error in PostgreSQL, not a value.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Generic, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field, field_validator

Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Pattern = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f\s]+$",
                               description="a model id or an fnmatch glob such as `claude-*`")]
Email = Annotated[str, Field(max_length=320, pattern=r"^[^@\s\x00-\x1f\x7f]+@[^@\s\x00-\x1f\x7f]+$")]
Ref = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$",
                           description="an id, or a unique name")]
Description = Annotated[str, Field(max_length=2000, pattern=r"^[^\x00\x7f]*$")]

T = TypeVar("T")


def _in_future(value: datetime | None) -> datetime | None:
    if value is None:
        return None
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    if value <= datetime.now(UTC):
        raise ValueError("expires_at must be in the future")
    return value


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ErrorDetail(BaseModel):
    type: str = Field(description="not_found | conflict | authentication_error | permission_error | "
                      "invalid_request_error")
    message: str


class ErrorBody(BaseModel):
    """Every error the admin API returns has this shape."""

    error: ErrorDetail


class Page(BaseModel, Generic[T]):
    object: Literal["list"] = "list"
    data: list[T]
    has_more: bool
    first_id: str | None
    last_id: str | None


class UserIn(_In):
    name: Name
    email: Email | None = None
    groups: list[Ref] = Field(default_factory=list, max_length=100)


class UserPatch(_In):
    name: Name | None = None
    email: Email | None = None
    disabled: bool | None = None
    role: Literal["org_admin", "group_admin", "auditor", "developer"] | None = Field(
        None, description="org admins only; null clears the stored role")
    role_groups: list[Ref] | None = Field(None, max_length=100, description="with role group_admin")


class User(BaseModel):
    id: str
    name: str
    email: str | None
    disabled: bool
    created_at: datetime
    groups: list[str]
    role: str | None = Field(None, description="the admin role stored on the user; null = from the config's "
                             "`signin.roles`, else developer")
    role_groups: list[str] = Field(default_factory=list, description="group ids a stored group_admin role runs")


class RoleIn(_In):
    """A person's admin role; null clears it (the config's rules apply again)."""

    role: Literal["org_admin", "group_admin", "auditor", "developer"] | None
    groups: list[Ref] = Field(default_factory=list, max_length=100,
                              description="group_admin only: the groups administered (default: their own)")


class GroupIn(_In):
    name: Name
    description: Description = ""
    grants: list[Pattern] = Field(default_factory=list, max_length=100)


class GroupPatch(_In):
    name: Name | None = None
    description: Description | None = None


class Group(BaseModel):
    id: str
    name: str
    description: str
    created_at: datetime
    grants: list[str]
    members: list[str]


class GrantsIn(_In):
    patterns: list[Pattern] = Field(max_length=100)


class GrantIn(_In):
    pattern: Pattern


class MemberIn(_In):
    user_id: Ref


class KeyIn(_In):
    name: Name
    kind: Literal["data", "admin"] = "data"
    role: Literal["org_admin", "group_admin", "auditor"] | None = Field(
        None, description="admin keys only (default org_admin)")
    role_groups: list[Ref] = Field(default_factory=list, max_length=100,
                                   description="a group_admin key: the groups it administers")
    user_id: Ref | None = None
    group_id: Ref | None = None
    models: list[Pattern] | None = Field(None, max_length=100)
    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        return _in_future(value)


class Key(BaseModel):
    """A key as listed: never its secret, only the display prefix."""

    id: str
    name: str
    prefix: str
    kind: str
    user_id: str | None
    group_id: str | None
    models: list[str] | None
    created_at: datetime
    expires_at: datetime | None
    revoked_at: datetime | None
    replaced_by: str | None
    status: Literal["active", "expired", "revoked"]
    role: str | None = Field(None, description="admin keys: org_admin, group_admin or auditor")
    role_groups: list[str] = Field(default_factory=list, description="a group_admin key's group ids")


class MyKeyIn(_In):
    """A developer's own personal key: always theirs, a data key."""

    name: Name
    models: list[Pattern] | None = Field(None, max_length=100)
    expires_at: datetime | None = None

    @field_validator("expires_at")
    @classmethod
    def _future(cls, value: datetime | None) -> datetime | None:
        return _in_future(value)


class KeyCreated(Key):
    key: str = Field(description="the secret, shown this once")


class RotateIn(_In):
    grace_seconds: float | None = Field(None, ge=0, le=90 * 86400,
                                        description="how long the old secret keeps working (default from config)")


class KeyRotated(BaseModel):
    key: KeyCreated
    replaced: Key


class LimitsIn(_In):
    """A scope's own limits; they replace the config defaults for it. Omitted = unlimited."""

    rpm: int | None = Field(None, ge=1, le=10_000_000)
    tpm: int | None = Field(None, ge=1, le=2_000_000_000)  # an INTEGER column on PostgreSQL
    concurrent: int | None = Field(None, ge=1, le=1_000_000)
    budget_usd: float | None = Field(None, ge=0, le=1e9)
    budget_period: Literal["day", "month"] = "month"
    budget_mode: Literal["expected", "strict"] = "expected"


class Limits(BaseModel):
    scope: Literal["key", "user", "group"]
    scope_id: str
    rpm: int | None
    tpm: int | None
    concurrent: int | None
    budget_usd: float | None
    budget_period: str
    budget_mode: str = "expected"


class UsageRow(BaseModel):
    key: str = Field(description="the group's value: a key, user or group id, a model id, or a day")
    requests: int
    errors: int
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_usd: float
    cost_micros: int
    name: str | None = Field(None, description="the key's, user's or group's name (by=key, user or group)")
    budget_usd: float | None = Field(None, description="the budget the gateway enforces on this key, user or "
                                     "group (its own limits, else the config default); null = none")
    budget_period: str | None = Field(None, description="day or month (UTC)")
    budget_spent_usd: float | None = Field(None, description="settled cost in the current budget period")
    budget_remaining_usd: float | None = Field(None, description="what is left of the budget in this period")
    budget_resets_at: datetime | None = Field(None, description="when the current budget period ends")


class UsageReport(BaseModel):
    object: Literal["usage_report"] = "usage_report"
    by: str
    since: str | None
    until: str | None
    data: list[UsageRow]


class LedgerRow(BaseModel):
    request_id: str
    ts: datetime
    route: str
    key_id: str
    user_id: str | None
    group_id: str | None
    requested_model: str
    upstream_model: str
    input_tokens: int
    output_tokens: int
    cache_write_tokens: int
    cache_read_tokens: int
    cost_micros: int
    latency_ms: int
    status: int
    error_type: str | None
    deployment: str | None = None
    attempts: int = 1
    upstream_request_id: str | None = None


class AuditPage(BaseModel):
    """Audit records as hashed (canonical JSON fields) plus `id`, `prev_hash` and `hash`."""

    object: Literal["list"] = "list"
    data: list[dict[str, Any]]
    has_more: bool
    first_id: int | None
    last_id: int | None


class Payload(BaseModel):
    request_id: str
    ts: datetime
    request_body: str
    response_body: str | None


class MeUser(BaseModel):
    id: str
    name: str
    email: str | None


class MeGroup(BaseModel):
    id: str
    name: str


class Me(BaseModel):
    """Who is calling and what they may do (the console decides which pages to show from this)."""

    role: Literal["org_admin", "group_admin", "auditor", "developer"]
    user: MeUser | None = Field(description="the signed-in person; null for an admin key")
    key_id: str = Field(description="the admin key's id, or the sign-in access token's id (tok_…)")
    groups: list[MeGroup] = Field(description="group_admin: the groups administered; others: the person's "
                                  "own groups (empty for an admin key)")
    permissions: list[str]
    scope: Literal["all", "groups", "self"] = Field(description="whose data the role reaches")

"""`/alerts`: spend and error-rate alert rules (CRUD) and the webhook delivery log.

Org admins write rules; org admins and auditors read them and the log. Webhook URLs are shown
masked (scheme and host): a Slack webhook's path is its secret."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi.responses import Response
from pydantic import BaseModel, ConfigDict, Field, model_validator

from tollway.admin.context import Ctx
from tollway.admin.params import After, PathRef
from tollway.admin.roles import AdminPrincipal, require
from tollway.governance.alerts import config_rules, masked
from tollway.store.alerts import CONFIG_PREFIX, AlertStore, DeliveryRow, RuleRow
from tollway.store.errors import Conflict

router = APIRouter(tags=["alerts"])
Reader = Annotated[AdminPrincipal, Depends(require("alerts.read"))]
Writer = Annotated[AdminPrincipal, Depends(require("alerts.write"))]
Url = Annotated[str, Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s\x00-\x1f\x7f]+$")]
Name = Annotated[str, Field(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
Percent = Annotated[float, Field(gt=0, le=1000)]


class AlertRuleIn(BaseModel):
    """A budget rule fires each of `thresholds` (percent of the budget) once per budget period; an
    error_rate rule fires once per `window_seconds` while the share of 5xx answers is at least
    `error_rate` (over at least `min_requests` requests)."""

    model_config = ConfigDict(extra="forbid")
    name: Name
    kind: Literal["budget", "error_rate"]
    scope: Literal["key", "user", "group"] | None = Field(None, description="null: every budget / all traffic")
    scope_id: Annotated[str, Field(min_length=1, max_length=200)] | None = Field(
        None, description="one key, user or group (id or name); null: all of `scope`")
    thresholds: list[Percent] = Field(default_factory=lambda: [50.0, 80.0, 100.0], max_length=20)
    error_rate: float = Field(0.2, gt=0, le=1)
    window_seconds: int = Field(300, ge=10, le=86400)
    min_requests: int = Field(20, ge=1, le=1_000_000)
    webhook_url: Url
    format: Literal["json", "slack"] = "json"
    enabled: bool = True

    @model_validator(mode="after")
    def _scope(self) -> AlertRuleIn:
        if self.scope_id and not self.scope:
            raise ValueError("scope_id needs a scope")
        return self


class AlertRulePatch(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: Name | None = None
    thresholds: list[Percent] | None = Field(None, max_length=20)
    error_rate: float | None = Field(None, gt=0, le=1)
    window_seconds: int | None = Field(None, ge=10, le=86400)
    min_requests: int | None = Field(None, ge=1, le=1_000_000)
    webhook_url: Url | None = None
    format: Literal["json", "slack"] | None = None
    enabled: bool | None = None


class AlertRule(BaseModel):
    id: str
    name: str
    kind: str
    scope: str | None
    scope_id: str | None
    thresholds: list[float]
    error_rate: float | None
    window_seconds: int | None
    min_requests: int | None
    webhook: str = Field(description="the webhook URL, masked (scheme and host)")
    format: str
    enabled: bool
    created_at: datetime
    source: Literal["api", "config"] = Field("api", description="config rules are read-only here")


class Delivery(BaseModel):
    id: str
    rule_id: str
    created_at: datetime
    event: dict[str, Any]
    webhook: str
    format: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    next_attempt_at: datetime | None
    last_status: int | None
    last_error: str | None
    delivered_at: datetime | None


def _not_config(rule_id: str) -> None:
    if rule_id.startswith(CONFIG_PREFIX):
        raise Conflict(f"alert rule {rule_id} is written in the config: change it there")


def rule_out(r: RuleRow) -> AlertRule:
    return AlertRule(id=r.id, name=r.name, kind=r.kind, scope=r.scope, scope_id=r.scope_id,
                     thresholds=list(r.thresholds), error_rate=r.error_rate, window_seconds=r.window_seconds,
                     min_requests=r.min_requests, webhook=masked(r.webhook_url), format=r.format, enabled=r.enabled,
                     created_at=r.created_at, source="config" if r.id.startswith(CONFIG_PREFIX) else "api")


def delivery_out(d: DeliveryRow) -> Delivery:
    return Delivery(id=d.id, rule_id=d.rule_id, created_at=d.created_at, event=d.event, webhook=masked(d.url),
                    format=d.format, status=d.status, attempts=d.attempts,
                    next_attempt_at=d.next_attempt_at if d.status == "pending" else None,
                    last_status=d.last_status, last_error=d.last_error, delivered_at=d.delivered_at)


@router.post("/alerts", status_code=201, response_model=AlertRule)
async def create_rule(body: AlertRuleIn, ctx: Ctx, who: Writer) -> AlertRule:
    fields = body.model_dump()
    if body.scope and body.scope_id:
        fields["scope_id"] = await _scope_id(ctx, body.scope, body.scope_id)
    fields["thresholds"] = sorted(set(body.thresholds))
    row = await AlertStore(ctx.cache.db).create_rule(**fields)
    ctx.audit.change("alert.create", row.id, who.actor, kind=row.kind, scope=row.scope, scope_id=row.scope_id)
    return rule_out(row)


async def _scope_id(ctx: Any, scope: str, ref: str) -> str:
    if scope == "group":
        return str(await ctx.group_id(ref))
    if scope == "user":
        return str(await ctx.user_id(ref))
    return str((await ctx.keys.get(ref)).id)


@router.get("/alerts", response_model=list[AlertRule])
async def list_rules(ctx: Ctx, _who: Reader) -> list[AlertRule]:
    """Every rule: the config's (`source: config`, ids `cfg_<name>`), then those made here."""
    return [rule_out(r) for r in [*config_rules(ctx.settings), *await AlertStore(ctx.cache.db).rules()]]


@router.get("/alerts/deliveries", response_model=list[Delivery])
async def list_deliveries(ctx: Ctx, _who: Reader, rule_id: After = None,
                          status: Annotated[str | None, Query(pattern="^(pending|delivered|failed)$")] = None,
                          limit: Annotated[int, Query(ge=1, le=500)] = 50) -> list[Delivery]:
    """The delivery log, newest first: each alert sent (or being retried) with its attempts."""
    rows = await AlertStore(ctx.cache.db).deliveries(limit=limit, rule_id=rule_id, status=status)
    return [delivery_out(d) for d in rows]


@router.get("/alerts/{rule_id}", response_model=AlertRule)
async def get_rule(rule_id: PathRef, ctx: Ctx, _who: Reader) -> AlertRule:
    for rule in config_rules(ctx.settings):
        if rule.id == rule_id:
            return rule_out(rule)
    return rule_out(await AlertStore(ctx.cache.db).get_rule(rule_id))


@router.patch("/alerts/{rule_id}", response_model=AlertRule)
async def update_rule(rule_id: PathRef, body: AlertRulePatch, ctx: Ctx, who: Writer) -> AlertRule:
    _not_config(rule_id)
    changes = {k: v for k, v in body.model_dump(exclude_unset=True).items() if v is not None}
    if "thresholds" in changes:
        changes["thresholds"] = sorted(set(changes["thresholds"]))
    row = await AlertStore(ctx.cache.db).update_rule(rule_id, **changes)
    ctx.audit.change("alert.update", row.id, who.actor, fields=sorted(changes))
    return rule_out(row)


@router.delete("/alerts/{rule_id}", status_code=204)
async def delete_rule(rule_id: PathRef, ctx: Ctx, who: Writer) -> Response:
    _not_config(rule_id)
    await AlertStore(ctx.cache.db).delete_rule(rule_id)
    ctx.audit.change("alert.delete", rule_id, who.actor)
    return Response(status_code=204)

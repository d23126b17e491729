"""Config sections of the control plane that the gateway's own config embeds: who gets which
admin role when they sign in (`signin.roles`), and how alerts are evaluated and delivered
(`alerts`). Kept out of `tollway.config` so that module stays one screenful per concern; it
re-exports these models."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from tollway.provider_config import _Strict

Role = Literal["org_admin", "group_admin", "auditor", "developer"]


class RoleRule(_Strict):
    """A signed-in person whose email matches `email` (an fnmatch glob), or who is in Tollway group
    `group` (for signed-in people that follows the IdP through `group_rules`), gets `role`. The
    first matching rule wins; a role stored on the user (`tollway users set-role`) wins over all.
    A group_admin administers `groups` (names), or the groups they are in when none are named."""

    email: str | None = Field(None, min_length=1)
    group: str | None = Field(None, min_length=1)
    role: Role
    groups: list[str] = Field(default_factory=list)

    @model_validator(mode="after")
    def _one_match(self) -> RoleRule:
        if (self.email is None) == (self.group is None):
            raise ValueError("a role rule matches on exactly one of `email` or `group`")
        if self.groups and self.role != "group_admin":
            raise ValueError("only a group_admin rule names `groups`")
        return self


class AlertRuleConfig(_Strict):
    """An alert rule written in the config (docs/alerts.md), beside those made through the admin API."""

    name: str = Field(min_length=1, max_length=200)
    kind: Literal["budget", "error_rate"]
    scope: Literal["key", "user", "group"] | None = None
    scope_id: str | None = Field(None, min_length=1, description="a key, user or group id (not a name)")
    thresholds: list[float] = Field(default_factory=lambda: [50.0, 80.0, 100.0])
    error_rate: float = Field(0.2, gt=0, le=1)
    window_seconds: int = Field(300, ge=10, le=86400)
    min_requests: int = Field(20, ge=1)
    webhook_url: str = Field(pattern=r"^https?://\S+$")
    format: Literal["json", "slack"] = "json"

    @model_validator(mode="after")
    def _scope(self) -> AlertRuleConfig:
        if self.scope_id and not self.scope:
            raise ValueError("scope_id needs a scope")
        if not self.thresholds or any(t <= 0 for t in self.thresholds):
            raise ValueError("thresholds are positive percentages")
        return self


class AlertsConfig(_Strict):
    """The background evaluation of alert rules (docs/alerts.md): rules from the store (the admin
    API) and from `rules` here."""

    enabled: bool = True
    interval: float = Field(30.0, gt=0, description="seconds between evaluations (and delivery sweeps)")
    max_attempts: int = Field(5, ge=1, le=50, description="deliveries tried at most this many times")
    retry_base: float = Field(5.0, gt=0, description="seconds before the first retry; doubled each time")
    retry_max: float = Field(600.0, gt=0, description="the longest wait between two attempts")
    timeout: float = Field(10.0, gt=0, description="seconds a webhook has to answer")
    rules: list[AlertRuleConfig] = Field(default_factory=list, description="rules kept in the config")

    @model_validator(mode="after")
    def _unique(self) -> AlertsConfig:
        names = [r.name for r in self.rules]
        if len(names) != len(set(names)):
            raise ValueError("alert rule names must be unique")
        return self

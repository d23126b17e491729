"""DLP configuration: which detectors run and what each finding does.

Pydantic v2 models, validated once at start-up. This module imports nothing of ours, so the main
config embeds it as ``dlp: DlpConfig = DlpConfig()``::

    dlp:
      enabled: true
      timeout_ms: 200          # a scan slower than this is an error (fail closed)...
      timeout_ms_per_mb: 5000  # ...plus this per MB of new text (413 when exceeded)
      cache_items: 50000       # verdict cache bound (units plus findings); 0 turns it off
      shared_cache:            # verdicts shared by several gateway processes (off without redis_url)
        redis_url: redis://127.0.0.1:6379/0
        ttl_seconds: 86400     # entries expire; key_prefix, timeout_ms, retry_seconds, max_findings too
      binary: log              # content that cannot be inspected (images, PDF/base64 documents)
      policies:
        default:               # the global policy
          actions: {secrets: redact, pii: log}          # per category...
          kinds: {aws_access_key: block, email: allow}  # ...or per detector kind (wins over category)
        groups:                # per-group overrides by group name, merged over the default
          contractors: {actions: {pii: block}}
      custom:                  # named regexes (Python re syntax), category "custom"
        - {name: employee_id, pattern: "EMP-[0-9]{6}", action: block}   # also: ignore_case: true
      phone_regions: [US, GB]  # national phone formats to recognise (+-prefixed numbers always are);
                               # default: DEFAULT_PHONE_REGIONS
      ip_addresses: false      # opt in to the pii kind ip_address
      matcher: auto            # auto | hyperscan | python (env TOLLWAY_DLP_MATCHER overrides)

``enabled: false`` turns scanning off (every request passes unchanged, with no findings).

How an action is chosen for a finding of kind K in category C, for a request whose policy is P
(``default``, or the first of the caller's groups that has an entry under ``groups``):

1. ``P.kinds`` is the default's ``kinds`` with the group's ``kinds`` merged over it, key by key;
   ``P.actions`` likewise for ``actions``.
2. ``P.kinds[K]`` if set, else ``P.actions[C]`` if set, else the built-in action of C:
   secrets → redact, pii → log, custom → redact, binary → the top-level ``binary`` setting
   (so ``binary`` may also be named in ``kinds`` or ``actions``, e.g. to block images for a group).
   A custom pattern's own ``action`` counts as an entry in ``policies.default.kinds``.

Because kinds win over categories after merging, a group's ``actions: {pii: block}`` does not
undo a default ``kinds: {email: allow}``; give the group ``kinds: {email: block}`` for that.
With no ``dlp`` section at all, ``DlpConfig()`` applies: secrets are redacted, PII is logged,
content that cannot be inspected is logged.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

Action = Literal["block", "redact", "log", "allow"]
Category = Literal["secrets", "pii", "custom", "binary"]

CATEGORIES: tuple[str, ...] = ("secrets", "pii", "custom", "binary")

#: Every built-in detector kind and its category. ``tollway.governance.dlp.candidates`` implements exactly these.
BUILTIN_KINDS: dict[str, str] = {
    "aws_access_key": "secrets",
    "aws_secret_key": "secrets",
    "gcp_api_key": "secrets",
    "private_key": "secrets",
    "github_token": "secrets",
    "gitlab_token": "secrets",
    "slack_token": "secrets",
    "slack_webhook": "secrets",
    "stripe_key": "secrets",
    "openai_key": "secrets",
    "anthropic_key": "secrets",
    "azure_storage_key": "secrets",
    "azure_client_secret": "secrets",
    "twilio_api_key": "secrets",
    "sendgrid_key": "secrets",
    "npm_token": "secrets",
    "pypi_token": "secrets",
    "huggingface_token": "secrets",
    "databricks_token": "secrets",
    "hashicorp_token": "secrets",
    "digitalocean_token": "secrets",
    "sentry_token": "secrets",
    "shopify_token": "secrets",
    "grafana_token": "secrets",
    "doppler_token": "secrets",
    "age_secret_key": "secrets",
    "azure_devops_pat": "secrets",
    "jwt": "secrets",
    "url_credentials": "secrets",
    "authorization_header": "secrets",
    "password_assignment": "secrets",
    "email": "pii",
    "phone_number": "pii",
    "payment_card": "pii",
    "us_ssn": "pii",
    "iban": "pii",
    "ip_address": "pii",
    "binary": "binary",
}

#: National phone formats recognised by default (numbers written with + are recognised for every region).
DEFAULT_PHONE_REGIONS = ("US", "CA", "GB", "IE", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "SE", "PL", "IN",
                         "AU", "BR", "MX", "JP")

#: The action of a category that no policy mentions (binary: see ``DlpConfig.binary``).
BUILTIN_CATEGORY_ACTIONS: dict[str, str] = {"secrets": "redact", "pii": "log", "custom": "redact"}

_NAME = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class DlpPolicy(_Strict):
    """Actions by category (``actions``) and by detector kind (``kinds``, which wins)."""

    actions: dict[Category, Action] = Field(default_factory=dict)
    kinds: dict[str, Action] = Field(default_factory=dict)


def _default_policy() -> DlpPolicy:
    return DlpPolicy(actions={"secrets": "redact", "pii": "log"})


class DlpPolicies(_Strict):
    """The global policy and per-group overrides (by group name), merged over it."""

    default: DlpPolicy = Field(default_factory=_default_policy)
    groups: dict[str, DlpPolicy] = Field(default_factory=dict)


class CustomPattern(_Strict):
    """A named regular expression (Python ``re`` syntax); its findings have category ``custom``."""

    name: str
    pattern: str
    action: Action | None = None
    ignore_case: bool = False

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME.match(value):
            raise ValueError("must be lower-case letters, digits and '_', starting with a letter (at most 64)")
        if value in BUILTIN_KINDS:
            raise ValueError(f"{value!r} is the name of a built-in detector")
        return value

    @field_validator("pattern")
    @classmethod
    def _check_pattern(cls, value: str) -> str:
        try:
            compiled = re.compile(value)
        except re.error as exc:
            raise ValueError(f"not a valid regular expression: {exc}") from None
        if compiled.fullmatch("") is not None:
            raise ValueError("the pattern matches the empty string")
        return value


class SharedCacheConfig(_Strict):
    """The verdict layer shared by several gateway processes in Redis (``shared``); off without ``redis_url``."""

    redis_url: str | None = Field(None, description="redis:// or rediss:// URL; unset: each process keeps its own")
    key_prefix: str = Field("tollway:dlp:", min_length=1, description="prefix of every key written")
    ttl_seconds: int = Field(86_400, gt=0, description="how long an entry lives in Redis")
    timeout_ms: float = Field(50.0, gt=0, description="a look-up or write slower than this is a miss")
    retry_seconds: float = Field(5.0, ge=0, description="after a failure, Redis is left alone this long")
    max_findings: int = Field(1000, ge=0, description="entries with more findings stay in the process")

    @field_validator("redis_url")
    @classmethod
    def _check_url(cls, value: str | None) -> str | None:
        if value is not None and not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("must be a redis://, rediss:// or unix:// URL")
        return value


class DlpConfig(_Strict):
    """The ``dlp`` section of the config. ``DlpConfig()`` is the policy when the section is absent."""

    enabled: bool = True
    timeout_ms: float = Field(200.0, gt=0, description="a scan slower than this refuses the request")
    timeout_ms_per_mb: float = Field(
        5000.0, ge=0, description="added to timeout_ms per MB of text not found in the verdict cache")
    cache_items: int = Field(50_000, ge=0, description="verdict cache bound (units plus findings); 0 turns it off")
    shared_cache: SharedCacheConfig = Field(
        default_factory=SharedCacheConfig, description="verdicts shared by several processes in Redis (needs "
                                                       "cache_items > 0)")
    binary: Action = Field("log", description="action for content that cannot be inspected")
    policies: DlpPolicies = Field(default_factory=DlpPolicies)
    custom: list[CustomPattern] = Field(default_factory=list)
    phone_regions: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PHONE_REGIONS),
        description="regions (ISO 3166 alpha-2) whose national phone formats are recognised; "
                    "numbers written with a leading + are recognised for every region",
    )

    matcher: Literal["auto", "hyperscan", "python"] = Field(
        "auto", description="candidate finder: Hyperscan prefilter or pure Python (auto: Hyperscan when installed); "
                            "the TOLLWAY_DLP_MATCHER environment variable overrides it")
    ip_addresses: bool = Field(False, description="report IPv4 addresses as the pii kind ip_address (opt-in)")

    @field_validator("phone_regions")
    @classmethod
    def _check_regions(cls, value: list[str]) -> list[str]:
        import phonenumbers  # only when the section sets it; the engine needs it anyway

        unknown = [r for r in value if r not in phonenumbers.SUPPORTED_REGIONS]
        if unknown:
            raise ValueError(f"unknown region(s) {', '.join(unknown)}")
        return value

    @model_validator(mode="after")
    def _check_names(self) -> DlpConfig:
        if self.shared_cache.redis_url and not self.cache_items:
            raise ValueError("shared_cache needs the process's verdict cache (cache_items > 0)")
        names = [c.name for c in self.custom]
        dupes = sorted({n for n in names if names.count(n) > 1})
        if dupes:
            raise ValueError(f"custom: duplicate name(s) {', '.join(dupes)}")
        known = set(BUILTIN_KINDS) | set(names)
        scopes = [("policies.default", self.policies.default)]
        scopes += [(f"policies.groups.{g}", p) for g, p in self.policies.groups.items()]
        for where, policy in scopes:
            unknown = sorted(set(policy.kinds) - known)
            if unknown:
                raise ValueError(f"{where}.kinds: unknown detector kind(s) {', '.join(unknown)}")
        for c in self.custom:
            if c.action is not None and c.name in self.policies.default.kinds:
                raise ValueError(f"custom {c.name}: action is set both here and in policies.default.kinds")
        return self

    def action_table(self, group: str | None = None) -> dict[str, str]:
        """The resolved action of every kind (built-in and custom) under a policy (None = default)."""
        default = self.policies.default
        override = self.policies.groups[group] if group is not None else DlpPolicy()
        actions = self.category_actions(group)
        kinds: dict[str, str] = {c.name: c.action for c in self.custom if c.action is not None}
        kinds.update(default.kinds)
        kinds.update(override.kinds)
        table = {kind: kinds.get(kind, actions[category]) for kind, category in BUILTIN_KINDS.items()}
        for c in self.custom:
            table[c.name] = kinds.get(c.name, actions["custom"])
        return table

    def category_actions(self, group: str | None = None) -> dict[str, str]:
        """The resolved action of each category under a policy (for detectors added in code)."""
        override = self.policies.groups[group] if group is not None else DlpPolicy()
        actions: dict[str, str] = {**BUILTIN_CATEGORY_ACTIONS, "binary": self.binary}
        actions.update({str(k): str(v) for k, v in self.policies.default.actions.items()})
        actions.update({str(k): str(v) for k, v in override.actions.items()})
        return actions

"""Configuration: one YAML file validated with Pydantic, secrets from the environment.

The config is read once at start-up. Anything that cannot be right (a missing environment
variable, an unknown provider, two models with one id) is refused there with a message that
names the field, so it is never discovered in production.
"""

from __future__ import annotations

import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import Field, ValidationError, field_validator, model_validator

from tollway.control_config import AlertsConfig, RoleRule
from tollway.governance.dlp.policy import DlpConfig
from tollway.provider_config import Pricing, UpstreamConfig, _Strict

DEFAULT_CONFIG_ENV = "TOLLWAY_CONFIG"
_ENV_REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


class ConfigError(Exception):
    """A configuration that cannot be used; the message names the field and the reason."""


class Deployment(_Strict):
    """One place a model is served; a model with several is balanced by weight."""

    name: str | None = None
    weight: float = Field(1.0, gt=0)
    upstream: UpstreamConfig


class ModelConfig(_Strict):
    """One catalogue entry: the id clients send, and how Tollway serves it.

    Give either `upstream` (one deployment) or `deployments` (several, balanced by weight, each
    behind its own circuit breaker). `fallbacks` are other catalogue ids tried, in order, when
    every deployment of this one failed or is open.
    """

    id: str = Field(min_length=1)
    display_name: str | None = None
    created_at: datetime = datetime(1970, 1, 1, tzinfo=UTC)
    upstream: UpstreamConfig | None = None
    deployments: list[Deployment] = Field(default_factory=list)
    fallbacks: list[str] = Field(default_factory=list)
    pricing: Pricing = Pricing()

    @model_validator(mode="after")
    def _one_way_to_serve(self) -> ModelConfig:
        if (self.upstream is None) == (not self.deployments):
            raise ValueError("give exactly one of upstream or deployments")
        return self

    @property
    def all_deployments(self) -> list[tuple[str, float, UpstreamConfig]]:
        """(name, weight, upstream) for every deployment; a single upstream is named after the model."""
        if self.upstream is not None:
            return [(self.id, 1.0, self.upstream)]
        return [(d.name or f"{self.id}#{i}", d.weight, d.upstream) for i, d in enumerate(self.deployments)]

    @property
    def primary(self) -> UpstreamConfig:
        return self.all_deployments[0][2]

    @property
    def upstream_model(self) -> str:
        """The provider's id for this model on its first deployment."""
        return self.primary.model or self.id


class RetryConfig(_Strict):
    """Retries of one request: only while nothing has been sent to the client."""

    max_attempts: int = Field(3, ge=1, le=10, description="attempts per model (deployments included)")
    base_delay: float = Field(0.2, ge=0, description="seconds; doubled per attempt, with full jitter")
    max_delay: float = Field(8.0, ge=0)
    deadline: float = Field(120.0, gt=0, description="seconds for all attempts and fallbacks together")
    breaker_failures: int = Field(5, ge=1, description="consecutive failures that open a deployment's breaker")
    breaker_cooldown: float = Field(30.0, gt=0, description="seconds open before one probe is let through")


class AuditConfig(_Strict):
    """The audit log, and payload capture: request and response bodies, after DLP redaction, for
    chosen groups only."""

    enabled: bool = Field(True, description="false records nothing at all (no requests, no changes): for "
                                            "benchmarks and throwaway gateways, never for a governed one")
    payload_groups: list[str] = Field(default_factory=list, description="group names whose payloads are kept")
    payload_max_bytes: int = Field(1024 * 1024, ge=1024, description="each body is cut to this size")
    checkpoint_sink: str | None = Field(None, description="where signed checkpoints of every chain head go: a file "
                                                          "path (appended, fsync'd) or an http(s) webhook; needs "
                                                          "TOLLWAY_AUDIT_KEY in the environment")
    checkpoint_interval: float = Field(60.0, gt=0, description="seconds between exported checkpoints")
    on_record_loss: Literal["refuse", "serve"] = Field(
        "refuse", description="when audit records can be kept neither in the database nor in the spill file "
                              "(disk full during an outage): refuse new requests (503) or keep serving")


class MeteringConfig(_Strict):
    """The usage ledger (one row per data-plane request) and its daily rollup."""

    enabled: bool = Field(True, description="false writes no ledger rows: no usage reports, and budgets "
                                            "are refused (they are settled against the ledger)")
    on_record_loss: Literal["refuse", "serve"] = Field(
        "serve", description="when usage records can be kept neither in the database nor in the spill file: "
                             "refuse new requests (503) or keep serving")


class StoreConfig(_Strict):
    """The database. A relative SQLite path (the default `./tollway.db` included) and a relative
    `spill_dir` are placed next to the config file, or in the per-user data directory
    (`data_dir()`) when there is no config file, never in the current directory: the server and
    every CLI command then find the same store wherever they are started."""

    url: str = "sqlite:///./tollway.db"
    # Where usage and audit records wait on disk while the database is unreachable.
    spill_dir: str = "./tollway-spill"
    flush_timeout: float = Field(5.0, gt=0, description="seconds a write-behind batch may take before the "
                                                        "database counts as unavailable and the batch is spilled")
    max_queue: int = Field(10_000, ge=1, description="records a writer holds in memory before spilling them")
    flush_interval: float = Field(0.2, gt=0, le=60, description="seconds between write-behind flushes when "
                                                           "fewer than 64 records are waiting (a crash loses "
                                                           "the records of at most this window)")
    connect_timeout: float = Field(5.0, gt=0, description="seconds to open a database connection (PostgreSQL)")


class LimitDefaults(_Strict):
    """Limits for every key, user or group that has no limits of its own (None = unlimited)."""

    rpm: int | None = Field(None, ge=1)
    tpm: int | None = Field(None, ge=1)
    concurrent: int | None = Field(None, ge=1)
    budget_usd: float | None = Field(None, ge=0)
    budget_period: Literal["day", "month"] = "month"
    # expected: reserve what the request is expected to cost (docs/budgets.md); strict: reserve
    # the worst case (every input byte a token, all of max_tokens), so a burst never overspends.
    budget_mode: Literal["expected", "strict"] = "expected"


class LimitScopes(_Strict):
    key: LimitDefaults = LimitDefaults()
    user: LimitDefaults = LimitDefaults()
    group: LimitDefaults = LimitDefaults()


class LimitsConfig(_Strict):
    backend: Literal["memory", "redis"] = "memory"
    redis_url: str | None = None
    # What to do when Redis cannot be reached: refuse (529) or allow and log.
    on_backend_error: Literal["fail_closed", "fail_open"] = "fail_closed"
    # An expected-mode budget's input estimate is the body size times the largest tokens-per-byte
    # ratio seen in this model's recent answers, times this margin (docs/budgets.md).
    estimate_margin: float = Field(1.25, ge=1.0)
    # Output tokens an expected-mode budget reserves for a model nobody has had an answer from
    # yet (capped by the request's max_tokens); later requests use the recent answers instead.
    expected_output_tokens: int = Field(4096, ge=1)
    # Cut a stream off (an `event: error`) once its running cost reaches what was left of the
    # tightest budget when it was admitted.
    stop_streams_at_budget: bool = False
    defaults: LimitScopes = LimitScopes()

    @model_validator(mode="after")
    def _redis_needs_url(self) -> LimitsConfig:
        if self.backend == "redis" and not self.redis_url:
            raise ValueError("redis_url is required when backend is 'redis'")
        return self


class ServerConfig(_Strict):
    host: str = "127.0.0.1"
    port: int = Field(8787, ge=0, le=65535)
    max_body_bytes: int = Field(32 * 1024 * 1024, ge=1024)
    ping_interval: float = Field(15.0, gt=0, description="seconds of upstream silence before an SSE ping")
    key_refresh_interval: float = Field(1.0, gt=0, description="how often other processes' key changes are seen")
    workers: int = Field(1, ge=1, le=64, description="gateway processes sharing the port")
    access_log: bool = Field(False, description="one JSON log line per data-plane request (costs ~15 µs each)")
    shutdown_grace: float = Field(30.0, ge=0, description="seconds in-flight requests and streams get on SIGTERM")
    header_timeout: float = Field(10.0, gt=0, description="seconds a connection has to send complete request "
                                  "headers (from opening, or from its next request's first byte); then 408")
    keep_alive_timeout: float = Field(5.0, gt=0, description="seconds an idle kept-alive connection stays open")
    max_connections: int = Field(4096, ge=1, description="open client connections per process (never more than "
                                 "half the file limit); one more gets a 503")
    first_key_file: str = Field("./tollway-first-key", description="where `tollway serve` writes the key it "
                                "creates on an empty store when not attached to a terminal (mode 0600)")
    metrics_auth: Literal["none", "key", "admin"] = Field(
        "none", description="`/metrics`: open, any active key (one made for the scraper), or an admin key")
    docs_auth: Literal["none", "admin", "off"] = Field(
        "none", description="the admin API's `/docs` and `/openapi.json`: open, behind an admin key, or not served")


class ResponsesGroupConfig(_Strict):
    """One group's overrides for `/v1/responses`; unset fields fall back to the global ones."""

    store_default: bool | None = Field(None, description="`store` when a request leaves it out")
    system_prompt: str | None = Field(None, description="the prompt `tollway.system_prompt: default` picks")


class ResponsesConfig(_Strict):
    """`/v1/responses`: stored state and curated system prompts (DECISIONS.md 15, 16).

    `store_default` is what `store` means when a request leaves it out (OpenAI's default, true);
    `system_prompts` are named prompts a request opts into with `{"tollway": {"system_prompt":
    <name> | "default" | "off"}}`; `default_system_prompt` is what "default" picks when the
    caller's group names none. `groups` is keyed by group name.
    """

    store_default: bool = True
    system_prompts: dict[str, str] = Field(default_factory=dict)
    default_system_prompt: str | None = None
    groups: dict[str, ResponsesGroupConfig] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _prompts_exist(self) -> ResponsesConfig:
        for name in self.system_prompts:
            if name in ("default", "off"):
                raise ValueError(f"system_prompts: {name!r} is reserved (it is a choice a request makes)")
        refs: list[tuple[str, str | None]] = [("default_system_prompt", self.default_system_prompt)] + [
            (f"groups.{g}.system_prompt", c.system_prompt) for g, c in self.groups.items()]
        for where, ref in refs:
            if ref is not None and ref not in self.system_prompts:
                raise ValueError(f"{where}: {ref!r} is not one of system_prompts")
        return self


class WebFetchConfig(_Strict):
    """The built-in `tollway_web_fetch`: GET a page whose host is on `allow_hosts` (exact names or
    fnmatch globs such as `*.example.com`; the port is not part of the match). With no hosts the
    tool is not offered."""

    allow_hosts: list[str] = Field(default_factory=list)
    max_bytes: int = Field(200_000, ge=1, le=10 * 1024 * 1024, description="the page text is cut to this size")


class McpServerConfig(_Strict):
    """One MCP server whose tools are offered as `tollway_<name>_<tool>`: `command` (argv, spawned
    over stdio, with `env` added to its environment) or `url` (streamable HTTP)."""

    name: str = Field(pattern=r"^[A-Za-z0-9-]{1,40}$")
    command: list[str] | None = Field(None, min_length=1)
    env: dict[str, str] = Field(default_factory=dict)
    cwd: str | None = None
    url: str | None = None

    @model_validator(mode="after")
    def _one_transport(self) -> McpServerConfig:
        if (self.command is None) == (self.url is None):
            raise ValueError("give exactly one of command (stdio) or url (streamable HTTP)")
        if self.url is not None and (self.env or self.cwd):
            raise ValueError("env and cwd apply only to a command (stdio) server")
        return self


class HostedToolsConfig(_Strict):
    """Tools Tollway runs itself for `/v1/responses` (README "Hosted tools")."""

    max_iterations: int = Field(8, ge=1, le=64, description="model calls per request, hosted turns included")
    timeout_s: float = Field(20.0, gt=0, description="seconds one hosted tool call may take")
    connect_timeout_s: float = Field(30.0, gt=0, description="seconds an MCP server gets to start and list its tools")
    web_fetch: WebFetchConfig = WebFetchConfig()
    mcp_servers: list[McpServerConfig] = Field(default_factory=list)

    @field_validator("mcp_servers")
    @classmethod
    def _unique_names(cls, servers: list[McpServerConfig]) -> list[McpServerConfig]:
        names = [s.name for s in servers]
        for name in names:
            if names.count(name) > 1:
                raise ValueError(f"MCP server name {name!r} appears twice")
        return servers


class TracingConfig(_Strict):
    """OpenTelemetry traces, exported over OTLP/HTTP (protobuf) in batches off the request path.

    Off by default: then the OpenTelemetry SDK is not even imported, and the client's own
    `traceparent`/`tracestate` pass through to the upstream unchanged. `headers` go with every
    export (an auth token: use `${VAR}`). The standard `OTEL_EXPORTER_OTLP_*` variables apply
    where this section leaves a field out; what it sets wins.
    """

    enabled: bool = False
    endpoint: str = Field("http://127.0.0.1:4318/v1/traces", description="the collector's OTLP/HTTP traces URL")
    service_name: str = Field("tollway", min_length=1, description="the `service.name` resource attribute")
    sample_ratio: float = Field(1.0, ge=0, le=1, description="share of new traces kept; a sampled parent's "
                                "decision is followed (parent-based)")
    headers: dict[str, str] = Field(default_factory=dict, description="sent with every export request")

    @field_validator("endpoint")
    @classmethod
    def _http_url(cls, endpoint: str) -> str:
        if not endpoint.startswith(("http://", "https://")):
            raise ValueError("must be an http:// or https:// URL (OTLP/HTTP, e.g. http://127.0.0.1:4318/v1/traces)")
        return endpoint


class OidcClaimsConfig(_Strict):
    """Which ID-token (or userinfo) claims hold the person's name, email and groups."""

    name: str = "preferred_username"
    email: str = "email"
    groups: str = "groups"


class OidcConfig(_Strict):
    """The organisation's OpenID Connect identity provider (authorization code + PKCE)."""

    issuer: str = Field(min_length=1, description="discovery at {issuer}/.well-known/openid-configuration")
    client_id: str = Field(min_length=1)
    client_secret: str | None = Field(None, description="omit for a public client (PKCE alone)")
    scopes: list[str] = Field(default_factory=lambda: ["openid", "profile", "email"])
    claims: OidcClaimsConfig = OidcClaimsConfig()
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])

    @field_validator("issuer")
    @classmethod
    def _http_url(cls, issuer: str) -> str:
        if not issuer.startswith(("http://", "https://")):
            raise ValueError("must be an http(s) URL")
        return issuer.rstrip("/")


class GroupRule(_Strict):
    """IdP groups matching `match` (an fnmatch glob) join Tollway group `group`; `{idp}` in it is
    replaced by the IdP group's name."""

    match: str = Field(min_length=1)
    group: str = Field(min_length=1)


class SigninConfig(_Strict):
    """Sign-in for developers (Claude Code `/login`): Tollway as an OAuth 2.0 device-flow server
    whose verification page signs people in through `oidc` (docs/sign-in.md)."""

    enabled: bool = False
    oidc: OidcConfig | None = None
    public_url: str | None = Field(None, description="this gateway's URL as browsers reach it (default: "
                                   "the request's own base URL)")
    access_token_ttl: float = Field(3600.0, gt=0, description="seconds")
    refresh_token_ttl: float = Field(30 * 86400.0, gt=0, description="seconds")
    device_code_ttl: float = Field(600.0, gt=0, description="seconds")
    poll_interval: int = Field(5, ge=1, description="seconds between token polls")
    group_rules: list[GroupRule] = Field(default_factory=list)
    default_groups: list[str] = Field(default_factory=list, description="groups every signed-in person joins")
    encryption_key: str | None = Field(None, description="a Fernet key (use ${VAR}); with it the IdP's refresh "
                                       "token is kept and checked at every refresh (deprovisioning)")
    page_rate_per_minute: int = Field(30, ge=1, description="verification-page requests per client IP")
    token_rate_per_minute: int = Field(120, ge=1, description="token/device requests per client IP")
    managed_settings: dict[str, dict[str, Any]] = Field(
        default_factory=dict, description="group name -> Claude Code managed settings served at /managed/settings")
    otlp_collector: str | None = Field(None, description="OTLP/HTTP base URL the /v1/{metrics,logs,traces} "
                                       "sinks forward to; unset drops them")
    roles: list[RoleRule] = Field(default_factory=list, description="admin roles by email or group "
                                  "(docs/roles.md); the first match wins")

    @model_validator(mode="after")
    def _needs_idp(self) -> SigninConfig:
        if self.enabled and self.oidc is None:
            raise ValueError("signin.enabled needs signin.oidc (the identity provider)")
        return self


def _default_models() -> list[ModelConfig]:
    return [ModelConfig(id="tollway-mock", display_name="Tollway mock", upstream=UpstreamConfig(provider="mock"))]


class Settings(_Strict):
    """The whole configuration. Every field has an embedded default, so an empty file is valid."""

    store: StoreConfig = StoreConfig()
    server: ServerConfig = ServerConfig()
    limits: LimitsConfig = LimitsConfig()
    retries: RetryConfig = RetryConfig()
    dlp: DlpConfig = DlpConfig()
    audit: AuditConfig = AuditConfig()
    metering: MeteringConfig = MeteringConfig()
    responses: ResponsesConfig = ResponsesConfig()
    hosted_tools: HostedToolsConfig = HostedToolsConfig()
    tracing: TracingConfig = TracingConfig()
    signin: SigninConfig = SigninConfig()
    alerts: AlertsConfig = AlertsConfig()
    models: list[ModelConfig] = Field(default_factory=_default_models)
    # Requested id or glob -> catalogue id, tried in order after an exact catalogue match.
    aliases: dict[str, str] = Field(default_factory=dict)
    # How long a rotated key's old secret keeps working.
    key_rotation_grace: float = Field(24 * 3600.0, ge=0, description="seconds")

    @field_validator("models")
    @classmethod
    def _unique_ids(cls, models: list[ModelConfig]) -> list[ModelConfig]:
        seen: set[str] = set()
        for m in models:
            if m.id in seen:
                raise ValueError(f"model id {m.id!r} appears twice")
            seen.add(m.id)
        if not models:
            raise ValueError("at least one model is required")
        return models


    @model_validator(mode="after")
    def _workers_need_shared_limits(self) -> Settings:
        problem = deployment_problem(self, self.server.workers)
        if problem:
            raise ValueError(problem)
        return self

    @model_validator(mode="after")
    def _budgets_need_the_ledger(self) -> Settings:
        if not self.metering.enabled:
            for scope in ("key", "user", "group"):
                if getattr(self.limits.defaults, scope).budget_usd is not None:
                    raise ValueError(f"limits.defaults.{scope}.budget_usd needs metering.enabled: true (a budget "
                                     "is settled against the usage ledger)")
        return self

    @model_validator(mode="after")
    def _fallbacks_point_into_catalogue(self) -> Settings:
        ids = {m.id for m in self.models}
        for m in self.models:
            for f in m.fallbacks:
                if f not in ids or f == m.id:
                    raise ValueError(f"models.{m.id}.fallbacks: {f!r} is not another model id in the catalogue")
        return self

    @model_validator(mode="after")
    def _aliases_point_into_catalogue(self) -> Settings:
        ids = {m.id for m in self.models}
        for pattern, target in self.aliases.items():
            if target not in ids:
                raise ValueError(f"aliases.{pattern}: target {target!r} is not a model id in the catalogue")
        return self


def deployment_problem(settings: Settings, workers: int) -> str | None:
    """A set-up that cannot be correct, refused at start rather than discovered in production."""
    if workers > 1 and settings.limits.backend == "memory":
        return (f"limits.backend 'memory' keeps rate windows and budgets inside one process; with {workers} "
                "workers each would enforce its own copy. Use limits.backend: redis (with limits.redis_url) "
                "or run one worker.")
    return None


# The sections only the commands that talk to upstreams use (provider keys, MCP servers' secrets,
# the trace exporter's token). The admin commands load the config without resolving them, so an
# operator can manage keys and users on a machine that does not hold the providers' secrets.
UPSTREAM_SECTIONS = frozenset({"models", "hosted_tools", "tracing"})


def _interpolate(node: Any, where: str, upstream_secrets: bool = True) -> Any:
    """Replace ${VAR} (or ${VAR:-default}) in every string; a missing variable names its field.

    With `upstream_secrets=False`, a missing variable inside UPSTREAM_SECTIONS is left as written.
    """
    if isinstance(node, dict):
        return {k: _interpolate(v, f"{where}.{k}" if where else str(k), upstream_secrets) for k, v in node.items()}
    if isinstance(node, list):
        return [_interpolate(v, f"{where}.{i}", upstream_secrets) for i, v in enumerate(node)]
    if isinstance(node, str):

        def sub(m: re.Match[str]) -> str:
            value = os.environ.get(m.group(1))
            if value is None:
                if m.group(2) is not None:
                    return m.group(2)
                if not upstream_secrets and where.split(".", 1)[0] in UPSTREAM_SECTIONS:
                    return m.group(0)
                raise ConfigError(f"{where}: environment variable {m.group(1)} is not set")
            return value

        return _ENV_REF.sub(sub, node)
    return node


def _describe(err: ValidationError) -> str:
    lines = []
    for e in err.errors():
        loc = ".".join(str(p) for p in e["loc"]) or "(top level)"
        lines.append(f"{loc}: {e['msg']}")
    return "invalid configuration:\n  " + "\n  ".join(lines)


def parse_settings(data: Any, *, upstream_secrets: bool = True) -> Settings:
    """Validate an already-loaded YAML tree (environment references still unresolved).

    Relative file paths are left as written; `load_settings` places them."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("the configuration must be a YAML mapping")
    try:
        return Settings.model_validate(_interpolate(data, "", upstream_secrets))
    except ValidationError as err:
        raise ConfigError(_describe(err)) from None


def data_dir() -> Path:
    """The per-user directory of the default store when there is no config file:
    $TOLLWAY_DATA_DIR, else $XDG_DATA_HOME/tollway, else ~/.local/share/tollway."""
    explicit = os.environ.get("TOLLWAY_DATA_DIR")
    if explicit:
        return Path(explicit).expanduser().absolute()
    xdg = os.environ.get("XDG_DATA_HOME")
    return (Path(xdg).expanduser() if xdg else Path.home() / ".local" / "share").absolute() / "tollway"


def sqlite_path(url: str) -> Path | None:
    """The file of a file-backed SQLite URL; None for other databases and in-memory SQLite."""
    for prefix in ("sqlite:///", "sqlite+aiosqlite:///"):
        if url.startswith(prefix):
            rest = url[len(prefix):].split("?", 1)[0]
            return None if rest in ("", ":memory:") else Path(rest)
    return None


def place_files(settings: Settings, base: Path) -> Settings:
    """Anchor a relative SQLite path and spill directory at BASE (see StoreConfig)."""
    store = settings.store
    url = store.url
    db = sqlite_path(url)
    if db is not None and not db.is_absolute():
        prefix, rest = url.split(":///", 1)
        _, sep, query = rest.partition("?")
        url = f"{prefix}:///{os.path.normpath(base / db)}{sep}{query}"
    spill = Path(store.spill_dir).expanduser()
    spill_dir = str(spill if spill.is_absolute() else Path(os.path.normpath(base / spill)))
    return settings.model_copy(update={"store": store.model_copy(update={"url": url, "spill_dir": spill_dir})})


def load_settings(path: str | Path | None = None, *, upstream_secrets: bool = True) -> Settings:
    """Load from PATH, else $TOLLWAY_CONFIG, else the embedded defaults.

    `upstream_secrets=False` is for commands that never call an upstream (users, keys, usage…):
    unset variables in the upstream sections are then not an error (see UPSTREAM_SECTIONS).
    """
    chosen = path or os.environ.get(DEFAULT_CONFIG_ENV)
    if not chosen:
        return place_files(parse_settings({}), data_dir())
    p = Path(chosen)
    try:
        text = p.read_text()
    except OSError as exc:
        raise ConfigError(f"cannot read config {p}: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ConfigError(f"{p} is not valid YAML: {exc}") from None
    return place_files(parse_settings(data, upstream_secrets=upstream_secrets), p.expanduser().absolute().parent)

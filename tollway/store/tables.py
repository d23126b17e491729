"""Table definitions. Alembic migrations under `migrations/versions` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("email", String(320), nullable=True, unique=True),
    Column("disabled", Boolean, nullable=False, default=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # A person's admin role set by an org admin (migration 0012, docs/roles.md); NULL = from the
    # config's `signin.roles`, else developer. `role_groups`: the group ids a group_admin runs.
    Column("role", String(16), nullable=True),
    Column("role_groups", JSON, nullable=True),
)

groups = Table(
    "groups",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("description", Text, nullable=False, default=""),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

memberships = Table(
    "memberships",
    metadata,
    Column("user_id", String(40), ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
    Column("group_id", String(40), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
)

# A group may use every catalogue model whose id matches one of its patterns (fnmatch globs).
grants = Table(
    "grants",
    metadata,
    Column("group_id", String(40), ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    Column("pattern", String(200), primary_key=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False),
    # The first characters of the secret, shown in listings so a person can tell keys apart.
    Column("prefix", String(16), nullable=False),
    # SHA-256 of the whole secret; the secret itself is never stored.
    Column("secret_hash", String(64), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    # "data" keys call the models; "admin" keys open only the control plane.
    Column("kind", String(8), nullable=False, server_default="data"),
    # Exactly one owner for a data key: a user (personal key) or a group (service key).
    Column("user_id", String(40), ForeignKey("users.id"), nullable=True),
    Column("group_id", String(40), ForeignKey("groups.id"), nullable=True),
    # Optional narrowing of the owner's grants: a list of patterns, or NULL for "all granted".
    Column("models", JSON, nullable=True),
    Column("expires_at", DateTime(timezone=True), nullable=True),
    # Set on the old key when it is rotated: the key that replaced it.
    Column("replaced_by", String(40), nullable=True),
    # Admin keys only (migration 0012): org_admin (NULL), group_admin (of `role_groups`) or auditor.
    Column("role", String(16), nullable=True),
    Column("role_groups", JSON, nullable=True),
)

# One row whose counter every control-plane change bumps: gateway processes poll this single
# integer to learn that their in-memory caches are stale, instead of querying per request.
state_version = Table(
    "state_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

# The usage ledger: one row per data-plane request that got past authentication.
usage = Table(
    "usage",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False, index=True),
    Column("route", String(32), nullable=False),
    Column("key_id", String(40), nullable=False, index=True),
    Column("user_id", String(40), nullable=True),
    Column("group_id", String(40), nullable=True),
    Column("requested_model", String(200), nullable=False),
    Column("upstream_model", String(200), nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("latency_ms", Integer, nullable=False),
    Column("status", Integer, nullable=False),
    Column("error_type", String(64), nullable=True),
    # The deployment that answered, and how many attempts (retries, fallbacks) it took.
    Column("deployment", String(200), nullable=True),
    Column("attempts", Integer, nullable=False, server_default="1"),
    # The upstream's own id for the request (its `request-id` / `x-request-id` header), so an
    # operator can quote it to the provider.
    Column("upstream_request_id", String(200), nullable=True),
)

# Daily rollup of the ledger, kept in the same transaction as the ledger rows it sums, so a
# month's report reads ~30 rows per key instead of every request.
usage_daily = Table(
    "usage_daily",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("key_id", String(40), primary_key=True),
    Column("user_id", String(40), primary_key=True),
    Column("group_id", String(40), primary_key=True),
    Column("model", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
)

# Hourly totals for the whole gateway (migration 0014), kept by the usage writer beside the daily
# rollup: the console's charts (requests, errors, spend, latency over time) read a few hundred of
# these instead of the ledger. Latency is a histogram: lat_<i> counts requests at or under
# tollway.store.usage.LATENCY_BOUNDS[i] ms (the last bucket: slower than every bound).
LATENCY_BUCKETS = 12
usage_hourly = Table(
    "usage_hourly",
    metadata,
    Column("hour", String(13), primary_key=True),  # "YYYY-MM-DDTHH", UTC
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
    Column("latency_ms_sum", BigInteger, nullable=False),
    *(Column(f"lat_{i}", BigInteger, nullable=False, server_default="0") for i in range(LATENCY_BUCKETS)),
)

# The daily rollup again, one dimension at a time (migration 0014): what a usage report grouped by
# key, user, group or model with no other filter reads — per day a row per key, user, group and
# model, instead of one per combination of all four. `dim` is key|user|group|model.
usage_daily_by = Table(
    "usage_daily_by",
    metadata,
    Column("dim", String(8), primary_key=True),
    Column("day", String(10), primary_key=True),
    Column("value", String(200), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("errors", BigInteger, nullable=False),
    Column("input_tokens", BigInteger, nullable=False),
    Column("output_tokens", BigInteger, nullable=False),
    Column("cache_write_tokens", BigInteger, nullable=False),
    Column("cache_read_tokens", BigInteger, nullable=False),
    Column("cost_micros", BigInteger, nullable=False),
)
# A usage report narrowed to one key, user or group, and budget spend, read that scope's days.
Index("ix_usage_daily_key_day", usage_daily.c.key_id, usage_daily.c.day)
Index("ix_usage_daily_user_day", usage_daily.c.user_id, usage_daily.c.day)
Index("ix_usage_daily_group_day", usage_daily.c.group_id, usage_daily.c.day)

# The request log's searches (by user, group, model, status or key, newest first; migration 0014).
Index("ix_usage_user_ts", usage.c.user_id, usage.c.ts)
Index("ix_usage_group_ts", usage.c.group_id, usage.c.ts)
Index("ix_usage_model_ts", usage.c.requested_model, usage.c.ts)
Index("ix_usage_status_ts", usage.c.status, usage.c.ts)
Index("ix_usage_key_ts", usage.c.key_id, usage.c.ts)

# Rate limits and budgets per key, user or group (NULL = no limit of that kind).
limits = Table(
    "limits",
    metadata,
    Column("scope", String(8), primary_key=True),
    Column("scope_id", String(40), primary_key=True),
    Column("rpm", Integer, nullable=True),
    Column("tpm", Integer, nullable=True),
    Column("concurrent", Integer, nullable=True),
    Column("budget_micros", BigInteger, nullable=True),
    Column("budget_period", String(8), nullable=True),
    # expected (NULL) or strict: what a budget reserves before forwarding (docs/budgets.md).
    Column("budget_mode", String(8), nullable=True),
)

# The audit log: one hash chain per writer (a gateway process or a CLI invocation). `body` is
# the record's canonical JSON exactly as hashed, so verification never depends on how a database
# round-trips types; the other columns are copies for filtering.
audit_log = Table(
    "audit_log",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("writer", String(80), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False, index=True),
    Column("kind", String(16), nullable=False),
    Column("request_id", String(40), nullable=True, index=True),
    Column("actor_key_id", String(40), nullable=True, index=True),
    Column("actor_user_id", String(40), nullable=True),
    Column("actor_group_id", String(40), nullable=True),
    Column("route", String(64), nullable=True),
    Column("model", String(200), nullable=True),
    Column("status", Integer, nullable=True),
    Column("dlp_hit", Boolean, nullable=False, default=False),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("writer", "seq", name="uq_audit_writer_seq"),
)

# The writer registry (migration 0011): one chain of every writer's opening (its first record's
# hash) and clean closing (its last record's seq and hash), numbered n = 1, 2, 3… — so that a
# writer whose records were all deleted is still known to have existed (store/audit_writers.py).
audit_writers = Table(
    "audit_writers",
    metadata,
    Column("n", BigInteger, primary_key=True, autoincrement=False),
    Column("writer", String(80), nullable=False),
    Column("event", String(8), nullable=False),
    Column("seq", BigInteger, nullable=False),
    Column("ts", DateTime(timezone=True), nullable=False),
    Column("body", Text, nullable=False),
    Column("prev_hash", String(64), nullable=False),
    Column("hash", String(64), nullable=False),
    UniqueConstraint("writer", "event", name="uq_audit_writers_writer_event"),
)

# The console's audit searches: changes only, one person's records, DLP findings over time (0014).
Index("ix_audit_kind_id", audit_log.c.kind, audit_log.c.id)
Index("ix_audit_user_id", audit_log.c.actor_user_id, audit_log.c.id)
Index("ix_audit_dlp_id", audit_log.c.dlp_hit, audit_log.c.id)

# DLP findings per day, kind and action, rolled up from the audit log by its readers (migration
# 0014; tollway/store/findings.py): `rollup_marks` holds the last audit record id counted.
dlp_daily = Table(
    "dlp_daily",
    metadata,
    Column("day", String(10), primary_key=True),
    Column("kind", String(64), primary_key=True),
    Column("action", String(16), primary_key=True),
    Column("requests", BigInteger, nullable=False),
    Column("matches", BigInteger, nullable=False),
)
rollup_marks = Table(
    "rollup_marks",
    metadata,
    Column("name", String(32), primary_key=True),
    Column("last_id", BigInteger, nullable=False),
)

# Where a pruned chain now starts: verification resumes from the last pruned record's hash.
audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("writer", String(80), primary_key=True),
    Column("seq", BigInteger, nullable=False),
    Column("hash", String(64), nullable=False),
    Column("pruned_at", DateTime(timezone=True), nullable=False),
)

# Request and response bodies, after DLP redaction, for groups that opted in; own retention.
audit_payloads = Table(
    "audit_payloads",
    metadata,
    Column("request_id", String(40), primary_key=True),
    Column("ts", DateTime(timezone=True), nullable=False, index=True),
    Column("request_body", Text, nullable=False),
    Column("response_body", Text, nullable=True),
)

# `/v1/responses` state (migration 0006). Every row belongs to the key's owner — a user (personal
# keys) or a group (service keys) — and records the key that made it. JSON is kept as the text
# orjson wrote, so what a client reads back is byte for byte what was stored.
responses = Table(
    "responses",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner_kind", String(8), nullable=False),
    Column("owner_id", String(40), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("model", String(200), nullable=False),
    Column("previous_response_id", String(64), nullable=True),
    Column("conversation_id", String(64), nullable=True),
    Column("body", Text, nullable=False),  # the Response object as last sent to the client
    Column("input_items", Text, nullable=False),  # this request's own input, normalised, with ids
    Column("output_items", Text, nullable=False),
)

conversations = Table(
    "conversations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("owner_kind", String(8), nullable=False),
    Column("owner_id", String(40), nullable=False),
    Column("key_id", String(40), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    # Last time items were added: retention counts from here, so a conversation in use is kept.
    Column("updated_at", DateTime(timezone=True), nullable=False, index=True),
    Column("metadata", Text, nullable=False),
    # Items so far; bumped first in every append, which also takes the row's write lock.
    Column("item_count", Integer, nullable=False, server_default="0"),
)

conversation_items = Table(
    "conversation_items",
    metadata,
    Column("conversation_id", String(64), ForeignKey("conversations.id", ondelete="CASCADE"), primary_key=True),
    Column("seq", Integer, primary_key=True),
    Column("item_id", String(64), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("item", Text, nullable=False),
    Index("ix_conversation_items_item", "conversation_id", "item_id"),
)

# Sign-in for developers (migration 0010, docs/sign-in.md). Every secret (device code, access and
# refresh token, approval token) is kept only as its SHA-256, like keys.

# Which IdP account (issuer, subject) is which Tollway user: the just-in-time provisioning link.
signin_identities = Table(
    "signin_identities",
    metadata,
    Column("issuer", String(300), primary_key=True),
    Column("subject", String(255), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# One RFC 8628 device authorization, from the client's request to its single use.
signin_devices = Table(
    "signin_devices",
    metadata,
    Column("device_hash", String(64), primary_key=True),
    Column("user_code", String(16), nullable=False, unique=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False, index=True),
    Column("interval", Integer, nullable=False),
    Column("last_poll_at", DateTime(timezone=True), nullable=True),
    # pending -> (signed in at the IdP, awaiting approval: "authenticated") -> approved | denied -> used
    Column("status", String(16), nullable=False),
    Column("user_id", String(40), nullable=True),
    Column("oidc_state", String(64), nullable=True, unique=True),
    Column("code_verifier", String(128), nullable=True),
    Column("nonce", String(64), nullable=True),
    Column("approval_hash", String(64), nullable=True),
    Column("idp_refresh", Text, nullable=True),  # Fernet-encrypted; moved to the session on approval
    Column("surface", String(40), nullable=True),
)

# A signed-in session: the chain of access and refresh tokens one device authorization started.
signin_sessions = Table(
    "signin_sessions",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id", ondelete="CASCADE"), nullable=False, index=True),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("revoked_at", DateTime(timezone=True), nullable=True),
    Column("idp_refresh", Text, nullable=True),  # the IdP's refresh token, Fernet-encrypted
    Column("surface", String(40), nullable=True),
)

# Access tokens (loaded into the key cache like keys) and rotating refresh tokens.
signin_tokens = Table(
    "signin_tokens",
    metadata,
    Column("secret_hash", String(64), primary_key=True),
    Column("id", String(40), nullable=False, unique=True),
    Column("kind", String(8), nullable=False),  # "access" | "refresh"
    Column("session_id", String(40), ForeignKey("signin_sessions.id", ondelete="CASCADE"), nullable=False,
           index=True),
    Column("user_id", String(40), nullable=False),
    Column("prefix", String(16), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
    Column("expires_at", DateTime(timezone=True), nullable=False),
    Column("used_at", DateTime(timezone=True), nullable=True),  # a refresh token is single use
    Column("revoked_at", DateTime(timezone=True), nullable=True),
)

# Alerts (migration 0012, docs/alerts.md): rules, the thresholds each has fired (one row per rule,
# subject, period and threshold: the primary key is what makes several workers fire it once), and
# the webhook deliveries with their attempts.
alert_rules = Table(
    "alert_rules",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(200), nullable=False, unique=True),
    Column("kind", String(16), nullable=False),  # "budget" | "error_rate"
    Column("scope", String(8), nullable=True),  # key | user | group; NULL = every budget
    Column("scope_id", String(40), nullable=True),
    Column("thresholds", JSON, nullable=True),  # budget: percentages of the budget, e.g. [50, 80, 100]
    Column("error_rate", Float, nullable=True),  # error_rate: the fraction of failed requests
    Column("window_seconds", Integer, nullable=True),
    Column("min_requests", Integer, nullable=True),
    Column("webhook_url", String(2000), nullable=False),
    Column("format", String(8), nullable=False),  # "json" | "slack"
    Column("enabled", Boolean, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

alert_firings = Table(
    "alert_firings",
    metadata,
    Column("rule_id", String(40), primary_key=True),
    Column("subject", String(100), primary_key=True),  # "group:grp_…", or "all" for an unscoped error rate
    Column("period", String(40), primary_key=True),  # the budget period ("2026-12") or the rate window
    Column("threshold", String(16), primary_key=True),
    Column("fired_at", DateTime(timezone=True), nullable=False),
)

alert_deliveries = Table(
    "alert_deliveries",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("rule_id", String(40), nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False, index=True),
    Column("event", Text, nullable=False),  # the event as JSON (never a key, token or prompt)
    Column("url", String(2000), nullable=False),
    Column("format", String(8), nullable=False),
    Column("status", String(12), nullable=False),  # pending | delivered | failed
    Column("attempts", Integer, nullable=False),
    Column("next_attempt_at", DateTime(timezone=True), nullable=True),
    Column("last_status", Integer, nullable=True),
    Column("last_error", String(500), nullable=True),
    Column("delivered_at", DateTime(timezone=True), nullable=True),
    Index("ix_alert_deliveries_status", "status", "next_attempt_at"),
)

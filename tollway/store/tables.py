"""Table definitions. Alembic migrations under `migrations/versions` create exactly these."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    DateTime,
    ForeignKey,
    Integer,
    MetaData,
    String,
    Table,
    Text,
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
)

# One row whose counter every control-plane change bumps: gateway processes poll this single
# integer to learn that their in-memory caches are stale, instead of querying per request.
state_version = Table(
    "state_version",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("version", BigInteger, nullable=False),
)

"""Sign-in for developers: IdP identities, device authorizations, sessions and their tokens.

Revision ID: 0010
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "signin_identities",
        sa.Column("issuer", sa.String(300), primary_key=True),
        sa.Column("subject", sa.String(255), primary_key=True),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "signin_devices",
        sa.Column("device_hash", sa.String(64), primary_key=True),
        sa.Column("user_code", sa.String(16), nullable=False, unique=True),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("interval", sa.Integer, nullable=False),
        sa.Column("last_poll_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(40), nullable=True),
        sa.Column("oidc_state", sa.String(64), nullable=True, unique=True),
        sa.Column("code_verifier", sa.String(128), nullable=True),
        sa.Column("nonce", sa.String(64), nullable=True),
        sa.Column("approval_hash", sa.String(64), nullable=True),
        sa.Column("idp_refresh", sa.Text, nullable=True),
        sa.Column("surface", sa.String(40), nullable=True),
    )
    op.create_index("ix_signin_devices_expires_at", "signin_devices", ["expires_at"])
    op.create_table(
        "signin_sessions",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("idp_refresh", sa.Text, nullable=True),
        sa.Column("surface", sa.String(40), nullable=True),
    )
    op.create_index("ix_signin_sessions_user_id", "signin_sessions", ["user_id"])
    op.create_table(
        "signin_tokens",
        sa.Column("secret_hash", sa.String(64), primary_key=True),
        sa.Column("id", sa.String(40), nullable=False, unique=True),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("session_id", sa.String(40), sa.ForeignKey("signin_sessions.id", ondelete="CASCADE"),
                  nullable=False),
        sa.Column("user_id", sa.String(40), nullable=False),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("used_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("revoked_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_signin_tokens_session_id", "signin_tokens", ["session_id"])


def downgrade() -> None:
    op.drop_table("signin_tokens")
    op.drop_table("signin_sessions")
    op.drop_table("signin_devices")
    op.drop_table("signin_identities")

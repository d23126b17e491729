"""Roles on admin keys and users; spend and error-rate alerts with their firings and deliveries.

Revision ID: 0012
Revises: 0011
"""

import sqlalchemy as sa
from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None


def upgrade() -> None:
    for table in ("api_keys", "users"):
        with op.batch_alter_table(table) as batch:
            batch.add_column(sa.Column("role", sa.String(16), nullable=True))
            batch.add_column(sa.Column("role_groups", sa.JSON, nullable=True))
    op.create_table(
        "alert_rules",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("scope", sa.String(8), nullable=True),
        sa.Column("scope_id", sa.String(40), nullable=True),
        sa.Column("thresholds", sa.JSON, nullable=True),
        sa.Column("error_rate", sa.Float, nullable=True),
        sa.Column("window_seconds", sa.Integer, nullable=True),
        sa.Column("min_requests", sa.Integer, nullable=True),
        sa.Column("webhook_url", sa.String(2000), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("enabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "alert_firings",
        sa.Column("rule_id", sa.String(40), primary_key=True),
        sa.Column("subject", sa.String(100), primary_key=True),
        sa.Column("period", sa.String(40), primary_key=True),
        sa.Column("threshold", sa.String(16), primary_key=True),
        sa.Column("fired_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "alert_deliveries",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("rule_id", sa.String(40), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("event", sa.Text, nullable=False),
        sa.Column("url", sa.String(2000), nullable=False),
        sa.Column("format", sa.String(8), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime(timezone=True), nullable=True),
        sa.Column("last_status", sa.Integer, nullable=True),
        sa.Column("last_error", sa.String(500), nullable=True),
        sa.Column("delivered_at", sa.DateTime(timezone=True), nullable=True),
    )
    op.create_index("ix_alert_deliveries_created_at", "alert_deliveries", ["created_at"])
    op.create_index("ix_alert_deliveries_status", "alert_deliveries", ["status", "next_attempt_at"])


def downgrade() -> None:
    op.drop_table("alert_deliveries")
    op.drop_table("alert_firings")
    op.drop_table("alert_rules")
    for table in ("users", "api_keys"):
        with op.batch_alter_table(table) as batch:
            batch.drop_column("role_groups")
            batch.drop_column("role")

"""Users, groups, memberships, grants; key owners, kinds, model narrowing, expiry, rotation.

Keys made before this revision had no owner: they move to the built-in `default` group, which
is created here with the grant `*` so that nothing that worked before stops working.

Revision ID: 0002
Revises: 0001
"""

from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

DEFAULT_GROUP = "grp_default"


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("email", sa.String(320), nullable=True, unique=True),
        sa.Column("disabled", sa.Boolean, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    groups = op.create_table(
        "groups",
        sa.Column("id", sa.String(40), primary_key=True),
        sa.Column("name", sa.String(200), nullable=False, unique=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "memberships",
        sa.Column("user_id", sa.String(40), sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("group_id", sa.String(40), sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
    )
    grants = op.create_table(
        "grants",
        sa.Column("group_id", sa.String(40), sa.ForeignKey("groups.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("pattern", sa.String(200), primary_key=True),
    )
    with op.batch_alter_table("api_keys") as batch:
        batch.add_column(sa.Column("kind", sa.String(8), nullable=False, server_default="data"))
        batch.add_column(sa.Column("user_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("group_id", sa.String(40), nullable=True))
        batch.add_column(sa.Column("models", sa.JSON, nullable=True))
        batch.add_column(sa.Column("expires_at", sa.DateTime(timezone=True), nullable=True))
        batch.add_column(sa.Column("replaced_by", sa.String(40), nullable=True))
        batch.create_foreign_key("fk_api_keys_user", "users", ["user_id"], ["id"])
        batch.create_foreign_key("fk_api_keys_group", "groups", ["group_id"], ["id"])
        batch.create_index("ix_api_keys_user", ["user_id"])
        batch.create_index("ix_api_keys_group", ["group_id"])
    op.bulk_insert(groups, [{"id": DEFAULT_GROUP, "name": "default",
                             "description": "Built-in group: keys created without an owner.",
                             "created_at": datetime.now(UTC)}])
    op.bulk_insert(grants, [{"group_id": DEFAULT_GROUP, "pattern": "*"}])
    op.execute(
        sa.text("UPDATE api_keys SET group_id = :g WHERE user_id IS NULL AND group_id IS NULL").bindparams(
            g=DEFAULT_GROUP
        )
    )


def downgrade() -> None:
    with op.batch_alter_table("api_keys") as batch:
        batch.drop_index("ix_api_keys_group")
        batch.drop_index("ix_api_keys_user")
        batch.drop_constraint("fk_api_keys_group", type_="foreignkey")
        batch.drop_constraint("fk_api_keys_user", type_="foreignkey")
        for name in ("replaced_by", "expires_at", "models", "group_id", "user_id", "kind"):
            batch.drop_column(name)
    op.drop_table("grants")
    op.drop_table("memberships")
    op.drop_table("groups")
    op.drop_table("users")

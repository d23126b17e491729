"""A budget's mode: `expected` (reserve the expected cost) or `strict` (reserve the worst case).

Revision ID: 0009
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("limits") as batch:
        batch.add_column(sa.Column("budget_mode", sa.String(8), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("limits") as batch:
        batch.drop_column("budget_mode")

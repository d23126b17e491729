"""What the console's pages read on a large store: an hourly rollup of the ledger (requests,
errors, spend, tokens, latency histogram), the daily rollup per single dimension (key, user,
group, model), DLP findings per day and kind (rolled up from the audit log by its readers, see
tollway/store/findings.py), and indexes for the request log, usage and audit searches.

The rollups are filled here from the rows already stored, then kept by the usage writer in the
same transaction as the ledger rows (tollway/store/usage.py).

Revision ID: 0014
Revises: 0012
"""

import sqlalchemy as sa
from alembic import op

revision = "0014"
down_revision = "0012"
branch_labels = None
depends_on = None

# Upper bounds (ms) of the latency histogram's buckets; the last bucket is everything slower.
# Kept in step with tollway.store.usage.LATENCY_BOUNDS (a migration must not import the app).
BOUNDS = (100, 250, 500, 1000, 2000, 5000, 10000, 30000, 60000, 120000, 300000)
BUCKETS = len(BOUNDS) + 1
INDEXES = (
    ("ix_usage_user_ts", "usage", ["user_id", "ts"]),
    ("ix_usage_group_ts", "usage", ["group_id", "ts"]),
    ("ix_usage_model_ts", "usage", ["requested_model", "ts"]),
    ("ix_usage_status_ts", "usage", ["status", "ts"]),
    ("ix_usage_key_ts", "usage", ["key_id", "ts"]),
    ("ix_audit_kind_id", "audit_log", ["kind", "id"]),
    ("ix_audit_user_id", "audit_log", ["actor_user_id", "id"]),
    ("ix_audit_dlp_id", "audit_log", ["dlp_hit", "id"]),
    ("ix_usage_daily_key_day", "usage_daily", ["key_id", "day"]),
    ("ix_usage_daily_user_day", "usage_daily", ["user_id", "day"]),
    ("ix_usage_daily_group_day", "usage_daily", ["group_id", "day"]),
)
SUMS = ("requests", "errors", "input_tokens", "output_tokens", "cache_write_tokens", "cache_read_tokens", "cost_micros")


def upgrade() -> None:
    op.create_table(
        "usage_hourly",
        sa.Column("hour", sa.String(13), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("errors", sa.BigInteger, nullable=False),
        sa.Column("input_tokens", sa.BigInteger, nullable=False),
        sa.Column("output_tokens", sa.BigInteger, nullable=False),
        sa.Column("cost_micros", sa.BigInteger, nullable=False),
        sa.Column("latency_ms_sum", sa.BigInteger, nullable=False),
        *(sa.Column(f"lat_{i}", sa.BigInteger, nullable=False, server_default="0") for i in range(BUCKETS)),
    )
    op.create_table(
        "usage_daily_by",
        sa.Column("dim", sa.String(8), primary_key=True),
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("value", sa.String(200), primary_key=True),
        *(sa.Column(c, sa.BigInteger, nullable=False) for c in SUMS),
    )
    op.create_table(
        "dlp_daily",
        sa.Column("day", sa.String(10), primary_key=True),
        sa.Column("kind", sa.String(64), primary_key=True),
        sa.Column("action", sa.String(16), primary_key=True),
        sa.Column("requests", sa.BigInteger, nullable=False),
        sa.Column("matches", sa.BigInteger, nullable=False),
    )
    op.create_table(
        "rollup_marks",
        sa.Column("name", sa.String(32), primary_key=True),
        sa.Column("last_id", sa.BigInteger, nullable=False),
    )
    for name, table, columns in INDEXES:
        op.create_index(name, table, columns)
    sums = ", ".join(f"SUM({c})" for c in SUMS)
    for dim, column in (("key", "key_id"), ("user", "user_id"), ("group", "group_id"), ("model", "model")):
        op.execute(f"INSERT INTO usage_daily_by (dim, day, value, {', '.join(SUMS)}) "
                   f"SELECT '{dim}', day, {column}, {sums} FROM usage_daily GROUP BY day, {column}")
    bind = op.get_bind()
    hour = ("to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24')" if bind.dialect.name == "postgresql"
            else "strftime('%Y-%m-%dT%H', ts)")
    lower = (0, *BOUNDS)
    cases = []
    for i in range(BUCKETS):
        cond = f"latency_ms > {lower[i]}" if i else "latency_ms <= 100"
        if 0 < i < len(BOUNDS):
            cond = f"latency_ms > {lower[i]} AND latency_ms <= {BOUNDS[i]}"
        elif i == len(BOUNDS):
            cond = f"latency_ms > {BOUNDS[-1]}"
        cases.append(f"SUM(CASE WHEN {cond} THEN 1 ELSE 0 END)")
    lat_cols = ", ".join(f"lat_{i}" for i in range(BUCKETS))
    op.execute(
        f"INSERT INTO usage_hourly (hour, requests, errors, input_tokens, output_tokens, cost_micros, "
        f"latency_ms_sum, {lat_cols}) SELECT {hour}, COUNT(*), SUM(CASE WHEN status >= 400 THEN 1 ELSE 0 END), "
        f"SUM(input_tokens), SUM(output_tokens), SUM(cost_micros), SUM(latency_ms), {', '.join(cases)} "
        f"FROM usage GROUP BY {hour}"
    )


def downgrade() -> None:
    for name, table, _ in INDEXES:
        op.drop_index(name, table_name=table)
    op.drop_table("usage_hourly")
    op.drop_table("usage_daily_by")
    op.drop_table("dlp_daily")
    op.drop_table("rollup_marks")

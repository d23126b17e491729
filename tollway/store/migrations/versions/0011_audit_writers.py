"""The audit writer registry: one hash chain anchoring every writer's chain.

Writers that already have records are registered in the order they first wrote (their lowest
record id), each committing to its oldest stored record, keyed with TOLLWAY_AUDIT_KEY when the
environment that runs the migration has it — so an existing log verifies after the upgrade.

Revision ID: 0011
Revises: 0010
"""

import hashlib
import hmac
import os
from datetime import UTC, datetime

import orjson
import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "audit_writers",
        sa.Column("n", sa.BigInteger, primary_key=True, autoincrement=False),
        sa.Column("writer", sa.String(80), nullable=False),
        sa.Column("event", sa.String(8), nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
        sa.Column("ts", sa.DateTime(timezone=True), nullable=False),
        sa.Column("body", sa.Text, nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("hash", sa.String(64), nullable=False),
        sa.UniqueConstraint("writer", "event", name="uq_audit_writers_writer_event"),
    )
    _register_existing_writers()


def _register_existing_writers() -> None:
    # Self-contained (a migration must not change when the application's modules do): the
    # same canonical body and hash as tollway/store/audit_writers.py.
    bind = op.get_bind()
    key = (os.environ.get("TOLLWAY_AUDIT_KEY") or "").encode() or None
    firsts = bind.execute(sa.text(
        "SELECT a.writer, a.seq, a.hash, a.body FROM audit_log a JOIN "
        "(SELECT writer, min(seq) AS seq, min(id) AS first_id FROM audit_log GROUP BY writer) f "
        "ON a.writer = f.writer AND a.seq = f.seq ORDER BY f.first_id")).fetchall()
    prev = "0" * 64
    table = sa.table("audit_writers", sa.column("n"), sa.column("writer"), sa.column("event"), sa.column("seq"),
                     sa.column("ts"), sa.column("body"), sa.column("prev_hash"), sa.column("hash"))
    for n, (writer, seq, record_hash, record_body) in enumerate(firsts, start=1):
        ts = float(orjson.loads(record_body).get("ts", 0))
        data = {"n": n, "writer": writer, "event": "open", "seq": int(seq), "record_hash": record_hash, "ts": ts}
        if key:
            data["keyed"] = True
        body = orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()
        raw = (prev + body).encode()
        digest = hmac.new(key, raw, hashlib.sha256).hexdigest() if key else hashlib.sha256(raw).hexdigest()
        op.execute(table.insert().values(n=n, writer=writer, event="open", seq=int(seq),
                                         ts=datetime.fromtimestamp(ts, UTC), body=body, prev_hash=prev, hash=digest))
        prev = digest


def downgrade() -> None:
    op.drop_table("audit_writers")

"""Audit records: idempotent batch writes, verification of every chain, export, queries, pruning.

Each record's `body` is the canonical JSON that was hashed; `hash = HMAC-SHA256(key, prev_hash +
body)` with the key from the environment (`TOLLWAY_AUDIT_KEY`), or `sha256(prev_hash + body)` when
none is set (then anyone with write access to the database can recompute a whole chain: see
docs/audit.md). A chain is one writer's records in `seq` order, starting at 1 (or after its
checkpoint, once pruned). Verification recomputes every hash, checks that every other stored
column is what the body says, and names the first broken or missing link; every writer is also
checked against the writer registry (`store.audit_writers`), so none can vanish whole.
"""

from __future__ import annotations

import hmac
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import delete, func, select

from tollway.store import audit_writers
from tollway.store.audit_hash import GENESIS, KEY_ENV, audit_key, chain_hash
from tollway.store.bounded import clean_row
from tollway.store.bulk import insert_many
from tollway.store.db import Database
from tollway.store.tables import audit_checkpoints, audit_log, audit_payloads

__all__ = ["GENESIS", "KEY_ENV", "REGISTRY", "ChainReport", "audit_key", "chain_hash", "export", "payload", "prune",
           "query", "verify", "write_batch"]


def _row(record: dict[str, Any]) -> dict[str, Any]:
    data = orjson.loads(record["body"])
    actor = data.get("actor") or {}
    return clean_row(audit_log, {
        "writer": record["writer"], "seq": record["seq"], "ts": datetime.fromtimestamp(data["ts"], UTC),
        "kind": data["kind"], "request_id": data.get("request_id"), "actor_key_id": actor.get("key_id"),
        "actor_user_id": actor.get("user_id"), "actor_group_id": actor.get("group_id"),
        "route": data.get("route"), "model": data.get("requested_model") or data.get("target"),
        "status": data.get("status"), "dlp_hit": bool(data.get("dlp")), "body": record["body"],
        "prev_hash": record["prev_hash"], "hash": record["hash"],
    })


AUDIT_COLUMNS = ("writer", "seq", "ts", "kind", "request_id", "actor_key_id", "actor_user_id", "actor_group_id",
                 "route", "model", "status", "dlp_hit", "body", "prev_hash", "hash")
PAYLOAD_COLUMNS = ("request_id", "ts", "request_body", "response_body")


async def write_batch(db: Database, records: Sequence[dict[str, Any]]) -> None:
    """Insert records (and captured payloads); a replayed record is skipped, not duplicated.

    Sent as plain executemany (see `store.bulk`) with `ON CONFLICT DO NOTHING` on the chain
    position and the payload's request id, which is what makes a replay harmless. A writer's
    first record and its closing record are also anchored in the writer registry
    (`store.audit_writers`), which skips what is already registered.
    """
    rows = [_row(r) for r in records]
    payloads = [clean_row(audit_payloads, {**p, "ts": datetime.fromtimestamp(p["ts"], UTC),
                                           "response_body": p.get("response_body")})
                for r in records if (p := r.get("payload"))]
    opening = audit_writers.anchors(rows)
    async with db.engine.begin() as conn:
        await insert_many(conn, "audit_log", AUDIT_COLUMNS, rows, conflict=("writer", "seq"))
        await insert_many(conn, "audit_payloads", PAYLOAD_COLUMNS, payloads, conflict=("request_id",))
        if opening:  # a writer's first or closing record: anchor it in the registry, same transaction
            await audit_writers.append(conn, opening, audit_key())


# The name `verify` reports the writer registry's own chain under.
REGISTRY = "writers"


@dataclass(slots=True)
class ChainReport:
    writer: str
    records: int
    ok: bool
    problem: str | None = None


_FILTER_COLUMNS = tuple(c for c in AUDIT_COLUMNS if c not in ("body", "prev_hash", "hash"))


def _aware(value: Any) -> Any:
    return value.replace(tzinfo=UTC) if isinstance(value, datetime) and value.tzinfo is None else value


def _check_record(writer: str, seq: int, row: Any, prev: str, key: bytes | None) -> str | None:
    """What is wrong with one stored record, or None."""
    if row.prev_hash != prev:
        return f"broken link at record {seq}: prev_hash does not match the record before it"
    data = orjson.loads(row.body)
    keyed = bool(data.get("keyed"))
    if keyed and key is None:
        return (f"record {seq} is keyed (HMAC): set {KEY_ENV} to the gateway's audit key to verify it")
    if key is not None and not keyed:
        return f"broken link at record {seq}: not keyed with {KEY_ENV} (written without the key, or forged)"
    if not hmac.compare_digest(chain_hash(row.prev_hash, row.body, key if keyed else None), row.hash):
        return f"broken link at record {seq}: its content does not match its hash"
    if data.get("seq") != seq or data.get("writer") != writer:
        return f"broken link at record {seq}: its position was altered"
    expected = _row({"writer": writer, "seq": seq, "body": row.body, "prev_hash": row.prev_hash,
                     "hash": row.hash})
    for column in _FILTER_COLUMNS:
        stored = _aware(getattr(row, column))
        if column == "dlp_hit":
            stored = bool(stored)
        if stored != expected[column]:
            return f"broken link at record {seq}: column {column} differs from the hashed record"
    return None


async def verify(db: Database, key: bytes | None = None) -> list[ChainReport]:
    """Check every writer's chain; a report per writer, naming the first broken or missing link.

    Every stored column is checked: the hash covers the body, and each filter column (status,
    model, actor, dlp_hit…) must equal what the body says, so editing only those is detected.
    `key` defaults to TOLLWAY_AUDIT_KEY from the environment."""
    key = key if key is not None else audit_key()
    async with db.engine.connect() as conn:
        checkpoints = {r.writer: (int(r.seq), r.hash) for r in await conn.execute(select(audit_checkpoints))}
        writers = [w for (w,) in await conn.execute(select(audit_log.c.writer).distinct().order_by(audit_log.c.writer))]
        reports = []
        columns = [audit_log.c[c] for c in AUDIT_COLUMNS]
        for writer in writers:
            last_seq, prev = checkpoints.get(writer, (0, GENESIS))
            count = 0
            problem = None
            result = await conn.stream(select(*columns).where(audit_log.c.writer == writer)
                                       .order_by(audit_log.c.seq))
            async for row in result:
                count += 1
                seq = int(row.seq)
                if seq != last_seq + 1:
                    problem = f"missing link: records {last_seq + 1}..{seq - 1} are absent before record {seq}"
                    break
                problem = _check_record(writer, seq, row, prev, key)
                if problem:
                    break
                last_seq, prev = seq, row.hash
            await result.close()
            reports.append(ChainReport(writer, count, problem is None, problem))
        reports += await _registry_reports(conn, reports, {w: seq for w, (seq, _) in checkpoints.items()}, key)
    return reports


async def _registry_reports(conn: Any, reports: list[ChainReport], pruned: dict[str, int],
                            key: bytes | None) -> list[ChainReport]:
    """Check the writer registry's own chain, then every writer against it: a registered writer
    whose records are all gone, a closed writer cut short, a writer nobody registered."""
    entries, count, problem = await audit_writers.read(conn, key)
    by_writer = {r.writer: r for r in reports}
    extra = [ChainReport(REGISTRY, count, problem is None, problem)]
    held = await audit_writers.spans(conn)
    for writer, what in sorted(audit_writers.writer_problems(entries, held, pruned).items()):
        report = by_writer.get(writer)
        if report is None:
            extra.append(ChainReport(writer, 0, False, what))
        elif report.ok:
            report.ok, report.problem = False, what
    return extra


def _filters(q: Any, *, since: datetime | None = None, until: datetime | None = None, actor: str | None = None,
             model: str | None = None, status: int | None = None, dlp: bool | None = None,
             kind: str | None = None, request_id: str | None = None) -> Any:
    if since:
        q = q.where(audit_log.c.ts >= since)
    if until:
        q = q.where(audit_log.c.ts <= until)
    if actor:
        q = q.where((audit_log.c.actor_key_id == actor) | (audit_log.c.actor_user_id == actor)
                    | (audit_log.c.actor_group_id == actor))
    if model:
        q = q.where(audit_log.c.model == model)
    if status is not None:
        q = q.where(audit_log.c.status == status)
    if dlp is not None:
        q = q.where(audit_log.c.dlp_hit == dlp)
    if kind:
        q = q.where(audit_log.c.kind == kind)
    if request_id:
        q = q.where(audit_log.c.request_id == request_id)
    return q


async def query(db: Database, *, limit: int = 50, after: int | None = None, **filters: Any) -> list[dict[str, Any]]:
    """Records newest first, with an id cursor; each is the hashed body plus its chain fields."""
    q = _filters(select(audit_log.c.id, audit_log.c.body, audit_log.c.hash, audit_log.c.prev_hash), **filters)
    if after is not None:
        q = q.where(audit_log.c.id < after)
    q = q.order_by(audit_log.c.id.desc()).limit(limit)
    async with db.engine.connect() as conn:
        return [{"id": r.id, **orjson.loads(r.body), "prev_hash": r.prev_hash, "hash": r.hash}
                for r in await conn.execute(q)]


async def export(db: Database, **filters: Any) -> AsyncIterator[bytes]:
    """Every matching record as one JSON line, oldest first, streamed."""
    q = _filters(select(audit_log.c.body, audit_log.c.prev_hash, audit_log.c.hash), **filters)
    async with db.engine.connect() as conn:
        result = await conn.stream(q.order_by(audit_log.c.ts, audit_log.c.writer, audit_log.c.seq))
        async for body, prev_hash, digest in result:
            yield body.encode()[:-1] + b',"prev_hash":"' + prev_hash.encode() + b'","hash":"' + digest.encode() \
                + b'"}\n'


async def prune(db: Database, *, records_before: datetime | None = None,
                payloads_before: datetime | None = None) -> tuple[int, int]:
    """Delete old records (recording per writer a checkpoint of the last pruned hash) and payloads."""
    pruned = payloads = 0
    async with db.engine.begin() as conn:
        if records_before is not None:
            last = (select(audit_log.c.writer, func.max(audit_log.c.seq).label("seq"))
                    .where(audit_log.c.ts < records_before).group_by(audit_log.c.writer))
            for writer, seq in (await conn.execute(last)).all():
                # Only a prefix of a chain may go: stop before the first record that stays.
                keep = await conn.scalar(select(func.min(audit_log.c.seq)).where(
                    audit_log.c.writer == writer, audit_log.c.ts >= records_before))
                upto = min(seq, keep - 1) if keep is not None else seq
                if upto < 1:
                    continue
                digest = await conn.scalar(select(audit_log.c.hash).where(audit_log.c.writer == writer,
                                                                          audit_log.c.seq == upto))
                await conn.execute(delete(audit_checkpoints).where(audit_checkpoints.c.writer == writer))
                await conn.execute(audit_checkpoints.insert().values(writer=writer, seq=upto, hash=digest,
                                                                     pruned_at=datetime.now(UTC)))
                result = await conn.execute(delete(audit_log).where(audit_log.c.writer == writer,
                                                                    audit_log.c.seq <= upto))
                pruned += result.rowcount
        if payloads_before is not None:
            result = await conn.execute(delete(audit_payloads).where(audit_payloads.c.ts < payloads_before))
            payloads = result.rowcount
    return pruned, payloads


async def payload(db: Database, request_id: str) -> dict[str, Any] | None:
    async with db.engine.connect() as conn:
        r = (await conn.execute(select(audit_payloads).where(audit_payloads.c.request_id == request_id))).first()
    return dict(r._mapping) if r else None

"""The writer registry: one hash chain of every audit writer's opening and closing.

Each gateway process and each CLI invocation writes its own chain (see `store.audit`). A chain
shows an edit or a gap inside it, but deleting *every* record of one writer leaves nothing to
miss. So every writer is anchored in one more chain, shared by all of them: when a writer's
first record (seq 1) is stored, an `open` entry committing to that record's hash is appended to
the registry in the same transaction; when a writer stops cleanly it writes a last record of
kind `close`, and a `close` entry commits to that record's seq and hash. Entries are numbered
`n` = 1, 2, 3… and hashed like records (HMAC-SHA256 with TOLLWAY_AUDIT_KEY, SHA-256 without).

`verify` then knows every writer that ever wrote: a registered writer with no records, a closed
writer whose newest records are gone, a writer nobody registered, and an entry removed from the
registry (a gap in `n` or a broken link) are each named. What the registry cannot show by itself
— the newest entries deleted together with their writers' records — is caught against the
signed checkpoints, which carry the registry's head (see `store.audit_checkpoints`).

Appending takes the registry's head under a lock: PostgreSQL's transaction-scoped advisory lock,
or SQLite's write lock, which the same transaction already holds from inserting the records.
"""

from __future__ import annotations

import hmac
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson
from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from tollway.store.audit_hash import GENESIS, KEY_ENV, chain_hash
from tollway.store.tables import audit_log, audit_writers

# An arbitrary constant naming the registry's lock among PostgreSQL advisory locks.
_PG_LOCK = 0x546F6C6C  # "Toll"


@dataclass(slots=True, frozen=True)
class Anchor:
    """An entry to append: the writer's first record (`open`) or its last one (`close`)."""

    writer: str
    event: str
    seq: int
    record_hash: str
    ts: float


def anchors(rows: Sequence[dict[str, Any]]) -> list[Anchor]:
    """The entries a batch of audit rows calls for: an `open` for every seq 1, a `close` for
    every record of kind `close` (in that order, so a one-batch writer opens before it closes)."""
    found = [Anchor(r["writer"], "open", 1, r["hash"], r["ts"].timestamp()) for r in rows if r["seq"] == 1]
    found += [Anchor(r["writer"], "close", int(r["seq"]), r["hash"], r["ts"].timestamp())
              for r in rows if r["kind"] == "close"]
    return found


def entry_body(n: int, a: Anchor, keyed: bool) -> str:
    data: dict[str, Any] = {"n": n, "writer": a.writer, "event": a.event, "seq": a.seq,
                            "record_hash": a.record_hash, "ts": a.ts}
    if keyed:
        data["keyed"] = True
    return orjson.dumps(data, option=orjson.OPT_SORT_KEYS).decode()


async def append(conn: AsyncConnection, entries: Iterable[Anchor], key: bytes | None) -> int:
    """Append the entries not yet registered (a replayed batch registers nothing twice); returns
    how many were added. Runs inside the caller's transaction, after its record inserts."""
    entries = list(entries)
    if not entries:
        return 0
    if conn.dialect.name == "postgresql":
        await conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _PG_LOCK})
    names = {a.writer for a in entries}
    present = {(w, e) for w, e in await conn.execute(
        select(audit_writers.c.writer, audit_writers.c.event).where(audit_writers.c.writer.in_(names)))}
    head = (await conn.execute(select(audit_writers.c.n, audit_writers.c.hash)
                               .order_by(audit_writers.c.n.desc()).limit(1))).first()
    n, prev = (int(head.n), head.hash) if head else (0, GENESIS)
    added = 0
    for a in entries:
        if (a.writer, a.event) in present:
            continue
        present.add((a.writer, a.event))
        n += 1
        body = entry_body(n, a, key is not None)
        digest = chain_hash(prev, body, key)
        await conn.execute(audit_writers.insert().values(
            n=n, writer=a.writer, event=a.event, seq=a.seq, ts=datetime.fromtimestamp(a.ts, UTC), body=body,
            prev_hash=prev, hash=digest))
        prev = digest
        added += 1
    return added


async def head(conn: AsyncConnection) -> list[Any] | None:
    """The registry's newest entry as [n, hash], or None when it is empty."""
    row = (await conn.execute(select(audit_writers.c.n, audit_writers.c.hash)
                              .order_by(audit_writers.c.n.desc()).limit(1))).first()
    return [int(row.n), row.hash] if row else None


@dataclass(slots=True)
class Entry:
    n: int
    writer: str
    event: str
    seq: int
    record_hash: str
    ts: float


def _check_entry(row: Any, n: int, prev: str, key: bytes | None) -> str | None:
    """What is wrong with one stored entry, or None (the rules of `audit._check_record`)."""
    if int(row.n) != n:
        return f"missing entries: writer registry entries {n}..{int(row.n) - 1} are absent before entry {row.n}"
    if row.prev_hash != prev:
        return f"broken link at entry {n}: prev_hash does not match the entry before it"
    data = orjson.loads(row.body)
    keyed = bool(data.get("keyed"))
    if keyed and key is None:
        return f"entry {n} is keyed (HMAC): set {KEY_ENV} to the gateway's audit key to verify it"
    if key is not None and not keyed:
        return f"broken link at entry {n}: not keyed with {KEY_ENV} (written without the key, or forged)"
    if not hmac.compare_digest(chain_hash(row.prev_hash, row.body, key if keyed else None), row.hash):
        return f"broken link at entry {n}: its content does not match its hash"
    if (data.get("n"), data.get("writer"), data.get("event"), data.get("seq")) != (n, row.writer, row.event,
                                                                                  int(row.seq)):
        return f"broken link at entry {n}: a column differs from the hashed entry"
    return None


async def read(conn: AsyncConnection, key: bytes | None) -> tuple[list[Entry], int, str | None]:
    """Every entry in order, how many are stored, and the first problem of the chain (or None).
    Entries after a problem are still returned: each one read is evidence a writer existed."""
    entries: list[Entry] = []
    problem = None
    n, prev, count = 0, GENESIS, 0
    result = await conn.stream(select(audit_writers).order_by(audit_writers.c.n))
    async for row in result:
        count += 1
        n += 1
        if problem is None:
            problem = _check_entry(row, n, prev, key)
        n, prev = int(row.n), row.hash
        data = orjson.loads(row.body)
        entries.append(Entry(int(row.n), row.writer, row.event, int(row.seq), str(data.get("record_hash")),
                             float(data.get("ts", 0))))
    await result.close()
    return entries, count, problem


@dataclass(slots=True)
class Span:
    """What the log holds of one writer: its first and last stored records."""

    first_seq: int
    first_hash: str
    last_seq: int
    last_hash: str


async def spans(conn: AsyncConnection) -> dict[str, Span]:
    """Every writer's first and last stored record, in two grouped queries."""
    bounds = (select(audit_log.c.writer, func.min(audit_log.c.seq).label("lo"), func.max(audit_log.c.seq).label("hi"))
              .group_by(audit_log.c.writer).subquery())
    q = (select(bounds.c.writer, bounds.c.lo, bounds.c.hi, audit_log.c.seq, audit_log.c.hash)
         .join(audit_log, (audit_log.c.writer == bounds.c.writer)
               & ((audit_log.c.seq == bounds.c.lo) | (audit_log.c.seq == bounds.c.hi))))
    out: dict[str, Span] = {}
    for writer, lo, hi, seq, digest in await conn.execute(q):
        span = out.setdefault(writer, Span(int(lo), "", int(hi), ""))
        if seq == lo:
            span.first_hash = digest
        if seq == hi:
            span.last_hash = digest
    return out


def _when(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def writer_problems(entries: list[Entry], held: dict[str, Span], pruned: dict[str, int]) -> dict[str, str]:
    """Per writer, the first thing the registry says is wrong with what the log holds of it."""
    opened = {e.writer: e for e in entries if e.event == "open"}
    closed = {e.writer: e for e in entries if e.event == "close"}
    out: dict[str, str] = {}
    for writer, e in opened.items():
        span = held.get(writer)
        cut = pruned.get(writer, 0)
        if span is None:
            if cut == 0:
                out[writer] = (f"missing writer: registered as writer entry {e.n} (first record at "
                               f"{_when(e.ts)}), none of its records are left")
            continue
        if cut < e.seq and span.first_seq == e.seq and span.first_hash != e.record_hash:
            out[writer] = f"record {e.seq} differs from the one registered in writer entry {e.n}"
    for writer, e in closed.items():
        span = held.get(writer)
        if span is None or writer in out:
            continue  # a missing writer is already named; a wholly pruned one is fine
        if span.last_seq < e.seq:
            out[writer] = (f"truncated: the writer closed at record {e.seq} (writer entry {e.n}), the log ends "
                           f"at {span.last_seq}; first missing record: {span.last_seq + 1}")
        elif span.last_seq > e.seq:
            out[writer] = (f"record {e.seq + 1} was added after the writer closed at record {e.seq} "
                           f"(writer entry {e.n})")
        elif span.last_hash != e.record_hash:
            out[writer] = f"record {e.seq} differs from the closing record registered in writer entry {e.n}"
    for writer in held:
        if writer not in opened and writer not in out:
            out[writer] = ("not in the writer registry: its records were added outside a gateway or the CLI, "
                           "or its registration was removed")
    return out

"""Signed audit checkpoints: every writer's chain head, exported where the database cannot reach.

A hash chain shows that a record was edited or removed from the middle; it cannot show that the
newest records, or every record of one writer, were deleted — what is left is still a valid
chain. So the gateway periodically reads every writer's head (writer → last seq, its hash), signs
the list with HMAC-SHA256 keyed by TOLLWAY_AUDIT_KEY (`hmac` from the standard library), and
appends it to an append-only sink outside the database: a file (one JSON line per checkpoint,
fsync'd) or a webhook (POSTed as JSON). `tollway audit verify` reads the file and checks that
every writer and every record a checkpoint names is still there with the hash it had.

What is detectable and what is not is stated in docs/audit.md.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import hmac
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import orjson
from sqlalchemy import func, select

from tollway.store import audit_writers
from tollway.store.audit import KEY_ENV, REGISTRY, ChainReport, audit_key, verify
from tollway.store.db import Database, bounded
from tollway.store.tables import audit_checkpoints, audit_log
from tollway.store.tables import audit_writers as registry_table

if TYPE_CHECKING:
    from tollway.config import AuditConfig

log = logging.getLogger("tollway.audit")


def _signed_part(cp: dict[str, Any]) -> bytes:
    part = {"ts": cp["ts"], "heads": cp["heads"]}
    if "writers" in cp:  # the registry's head [n, hash]; absent from checkpoints made before it existed
        part["writers"] = cp["writers"]
    return orjson.dumps(part, option=orjson.OPT_SORT_KEYS)


def sign(cp: dict[str, Any], key: bytes) -> str:
    return hmac.new(key, _signed_part(cp), hashlib.sha256).hexdigest()


async def heads(db: Database) -> dict[str, list[Any]]:
    """Every writer's newest stored record: writer → [seq, hash]."""
    last = select(audit_log.c.writer, func.max(audit_log.c.seq).label("seq")).group_by(audit_log.c.writer).subquery()
    q = select(audit_log.c.writer, audit_log.c.seq, audit_log.c.hash).join(
        last, (audit_log.c.writer == last.c.writer) & (audit_log.c.seq == last.c.seq))
    async with db.engine.connect() as conn:
        return {r.writer: [int(r.seq), r.hash] for r in await conn.execute(q)}


async def checkpoint(db: Database, key: bytes) -> dict[str, Any]:
    async with db.engine.connect() as conn:
        registry = await audit_writers.head(conn)
    cp: dict[str, Any] = {"ts": round(time.time(), 6), "heads": await heads(db), "writers": registry}
    cp["sig"] = sign(cp, key)
    return cp


def append_line(path: Path, line: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "ab") as fh:
        fh.write(line)
        fh.flush()
        os.fsync(fh.fileno())


async def export(cp: dict[str, Any], sink: str, timeout: float = 10.0) -> None:
    """Append a checkpoint to a file, or POST it to a webhook (http:// or https://)."""
    body = orjson.dumps(cp)
    if sink.startswith(("http://", "https://")):
        import aiohttp

        async with (aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session,
                    session.post(sink, data=body, headers={"content-type": "application/json"},
                                 allow_redirects=False) as resp):
            if resp.status >= 300:
                raise OSError(f"checkpoint webhook answered {resp.status}")
        return
    await asyncio.to_thread(append_line, Path(sink), body + b"\n")


class Checkpointer:
    """Exports a signed checkpoint every `interval` seconds (and once more at stop)."""

    def __init__(self, db: Database, sink: str, interval: float, key: bytes) -> None:
        self.db, self.sink, self.interval, self.key = db, sink, interval, key
        self._task: asyncio.Task[None] | None = None
        self.exported = 0
        self.failures = 0

    async def start(self) -> None:
        self._task = asyncio.create_task(self._run(), name="tollway-audit-checkpoints")

    async def once(self) -> None:
        try:
            cp = await bounded(checkpoint(self.db, self.key), 10.0)
            await bounded(export(cp, self.sink), 15.0)
            self.exported += 1
        except Exception as exc:
            self.failures += 1
            log.error("audit checkpoint not exported to %s (%s)", self.sink, type(exc).__name__)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self.once()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        await self.once()


def audit_checkpointer(db: Database, config: AuditConfig) -> Checkpointer | None:
    """The gateway's checkpointer when `audit.checkpoint_sink` is set; refuses to start unsigned."""
    if not config.enabled or not config.checkpoint_sink:
        return None
    key = audit_key()
    if key is None:
        raise ValueError(f"audit.checkpoint_sink is set but {KEY_ENV} is not: checkpoints must be signed")
    return Checkpointer(db, config.checkpoint_sink, config.checkpoint_interval, key)


@dataclass(slots=True)
class Expected:
    seq: int
    hash: str
    at: float


def read_checkpoints(path: Path, key: bytes | None) -> tuple[dict[str, Expected], list[ChainReport]]:
    """The furthest head each writer (and the writer registry, under REGISTRY) reached in any
    validly signed checkpoint, and a report for every line that is not one (forged, edited, or
    unreadable)."""
    problems: list[ChainReport] = []
    expected: dict[str, Expected] = {}
    if key is None:
        return expected, [ChainReport("checkpoints", 0, False, f"set {KEY_ENV} to check the signed checkpoints")]
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return expected, [ChainReport("checkpoints", 0, False, f"checkpoint file {path} is missing")]
    for n, line in enumerate(data.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            cp = orjson.loads(line)
            valid = hmac.compare_digest(sign(cp, key), str(cp.get("sig", "")))
        except (ValueError, KeyError, TypeError):
            valid = False
        if not valid:
            problems.append(ChainReport("checkpoints", 0, False,
                                        f"checkpoint line {n}: bad signature (forged, edited or torn)"))
            continue
        heads = dict(cp["heads"])
        if cp.get("writers"):
            heads[REGISTRY] = cp["writers"]
        for writer, (seq, digest) in heads.items():
            if writer not in expected or expected[writer].seq < seq:
                expected[writer] = Expected(int(seq), digest, float(cp["ts"]))
    return expected, problems


async def verify_all(db: Database, checkpoint_file: str | None = None,
                     key: bytes | None = None) -> list[ChainReport]:
    """Every chain (see `audit.verify`), then each writer against the exported checkpoints: a
    writer they name must still exist and reach at least the seq they record, with that hash."""
    key = key if key is not None else audit_key()
    reports = await verify(db, key)
    if not checkpoint_file or checkpoint_file.startswith(("http://", "https://")):
        return reports
    expected, problems = read_checkpoints(Path(checkpoint_file), key)
    by_writer = {r.writer: r for r in reports}
    async with db.engine.connect() as conn:
        pruned = {r.writer: int(r.seq) for r in await conn.execute(select(audit_checkpoints))}
        registry = expected.pop(REGISTRY, None)
        if registry is not None:
            problem = await _registry_against(conn, registry)
            report = by_writer.get(REGISTRY)
            if problem and report is not None and report.ok:
                report.ok, report.problem = False, problem
        for writer, exp in sorted(expected.items()):
            report = by_writer.get(writer)
            if report is None and writer not in pruned:
                reports.append(ChainReport(writer, 0, False, f"missing writer: the checkpoint of {exp.at:.0f} "
                                                             f"records {exp.seq} record(s), none are left"))
                continue
            if pruned.get(writer, 0) >= exp.seq:
                continue  # that part of the chain was pruned (and its end recorded) on purpose
            digest = await conn.scalar(select(audit_log.c.hash).where(audit_log.c.writer == writer,
                                                                      audit_log.c.seq == exp.seq))
            problem = None
            if digest is None:
                top = await conn.scalar(select(func.max(audit_log.c.seq)).where(audit_log.c.writer == writer))
                problem = (f"truncated: the checkpoint of {exp.at:.0f} records record {exp.seq}, "
                           f"the log ends at {top or 0}; first missing record: {(top or 0) + 1}")
            elif digest != exp.hash:
                problem = f"record {exp.seq} differs from the signed checkpoint of {exp.at:.0f}"
            if problem:
                if report is None:
                    reports.append(ChainReport(writer, 0, False, problem))
                elif report.ok:
                    report.ok, report.problem = False, problem
    return reports + problems


async def _registry_against(conn: Any, exp: Expected) -> str | None:
    """The writer registry against a checkpoint's record of its head: deleting the newest
    entries (with every record of their writers) is caught here."""
    digest = await conn.scalar(select(registry_table.c.hash).where(registry_table.c.n == exp.seq))
    if digest is None:
        top = await conn.scalar(select(func.max(registry_table.c.n)))
        return (f"truncated: the checkpoint of {exp.at:.0f} records writer entry {exp.seq}, the registry ends "
                f"at {top or 0}; first missing entry: {(top or 0) + 1}")
    if digest != exp.hash:
        return f"writer entry {exp.seq} differs from the signed checkpoint of {exp.at:.0f}"
    return None

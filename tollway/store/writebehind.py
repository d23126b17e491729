"""A write-behind buffer that never drops a record.

The request path only appends to an in-memory list. A background task flushes it in batches.
When the database is unreachable, the batch is appended to a local spill file (fsync'd per
batch) and replayed, in order and before anything newer, once the database answers again.
Stopping drains the buffer; whatever cannot reach the database by then stays in the spill file
and is replayed on the next start. The flush function must be idempotent per record (the
ledger and audit writers insert with "on conflict do nothing"), so a replay after an
uncertain commit cannot count twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import orjson

log = logging.getLogger("tollway.writebehind")

Flush = Callable[[list[dict[str, Any]]], Awaitable[Any]]


class WriteBehind:
    def __init__(self, name: str, flush: Flush, spill_dir: Path, batch_size: int = 64,
                 interval: float = 0.2) -> None:
        self.name = name
        self._flush = flush
        self.spill_path = spill_dir / f"{name}.spill.jsonl"
        self.batch_size = batch_size
        self.interval = interval
        self._buf: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._stopping = False
        self._lock = asyncio.Lock()
        self.flushed = 0
        self.spilled = 0

    @property
    def depth(self) -> int:
        """Records waiting in memory (not counting the spill file)."""
        return len(self._buf)

    def put(self, record: dict[str, Any]) -> None:
        self._buf.append(record)
        if len(self._buf) >= self.batch_size:
            self._wake.set()

    async def start(self) -> None:
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        self._task = asyncio.create_task(self._run(), name=f"tollway-writer-{self.name}")

    async def stop(self) -> None:
        """Drain: let a flush in progress finish, then flush what is left (or spill it).

        The loop is asked to stop rather than cancelled, so a batch is never lost half-written.
        """
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the writer die; the next round tries again
                log.exception("%s writer: flush round failed", self.name)

    async def flush(self) -> None:
        async with self._lock:
            replayed = await self._replay()
            batch, self._buf = self._buf, []
            if not batch:
                return
            if not replayed:
                self._spill(batch)
                return
            for start in range(0, len(batch), self.batch_size):
                part = batch[start : start + self.batch_size]
                if start:
                    # Between transactions, let the requests that arrived meanwhile run. A flush of
                    # 200 records in one go held the event loop for 5-8 ms every round, and that
                    # stall was the whole of the gateway's p99 at concurrency 1.
                    await asyncio.sleep(0)
                try:
                    await self._flush(part)
                    self.flushed += len(part)
                except BaseException as exc:  # cancelled included: the batch goes to disk, not away
                    log.warning("%s writer: store unavailable (%s); spilling %d records", self.name,
                                type(exc).__name__, len(batch) - start)
                    self._spill(batch[start:])
                    if not isinstance(exc, Exception):
                        raise
                    return

    def _spill(self, records: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        with open(self.spill_path, "ab") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.spilled += len(records)

    async def _replay(self) -> bool:
        """Write the spill file back; True when it is empty afterwards (the store is reachable)."""
        try:
            size = self.spill_path.stat().st_size
        except FileNotFoundError:
            return True
        if size == 0:
            return True
        lines = self.spill_path.read_bytes().splitlines()
        records = [orjson.loads(line) for line in lines if line.strip()]
        done = 0
        try:
            for start in range(0, len(records), self.batch_size):
                await self._flush(records[start : start + self.batch_size])
                done = start + self.batch_size
        except Exception:
            if done:
                self._rewrite(records[done:])
            return False
        self.spill_path.unlink(missing_ok=True)
        log.info("%s writer: replayed %d spilled records", self.name, len(records))
        self.flushed += len(records)
        return True

    def _rewrite(self, records: list[dict[str, Any]]) -> None:
        tmp = self.spill_path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(b"".join(orjson.dumps(r) + b"\n" for r in records))
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.spill_path)

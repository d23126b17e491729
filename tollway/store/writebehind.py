"""A write-behind buffer that loses no record it can keep and hides no record it cannot.

The request path only appends to an in-memory list. A background task flushes it in batches.
Every database write is bounded by `flush_timeout`: a store that does not answer (down, locked,
or hung like a stopped process) counts as unavailable, and the batch is appended to a local
spill file (fsync'd per batch) and replayed once the database answers again. While one write
hangs, no second one is started: everything goes to the spill file until it finishes.

What can go wrong with one record is kept to that record. A batch the database refuses for a
reason other than being unavailable (a value it cannot store) is split in halves until the bad
record is alone; that record goes to the quarantine file (`<name>.quarantine.jsonl`) with the
error, counted in a metric and logged, and everything else is written. A spill-file line that
cannot be parsed (a crash mid-append) is quarantined the same way while the good lines replay.

A batch leaves memory only once it is durably written somewhere: in the database, or fsync'd to
the spill file. If the spill write fails too (disk full), the records go back to the front of
the buffer, a metric and an error log line say so, and `at_risk` turns true so the request
path can refuse new work (`on_record_loss: refuse`). The buffer is bounded by `max_queue`:
beyond it, it is spilled at once; if it cannot be, `on_record_loss: serve` drops the oldest
records (counted), `refuse` keeps them.

The flush function must be idempotent per record (the ledger and audit writers insert with
"on conflict do nothing"), so a replay after an uncertain commit — or after a hung write that
finally went through — never counts twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
import weakref
from collections.abc import Awaitable, Callable, Iterable, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError

log = logging.getLogger("tollway.writebehind")

Flush = Callable[[list[dict[str, Any]]], Awaitable[Any]]
OnLoss = Literal["refuse", "serve"]


_RUNNING: weakref.WeakSet[WriteBehind] = weakref.WeakSet()


def failing_writers() -> list[str]:
    """Names of this process's running writers that cannot currently write (for `/ready`)."""
    return sorted(w.name for w in _RUNNING if not w.healthy)


# Running writers whose records are at risk (`at_risk`) with `on_record_loss: refuse`. Kept up
# to date where `at_risk` changes, so the request path's question is one emptiness test instead of
# iterating every running writer (a WeakSet: about fifteen Python calls per request).
_REFUSING: set[int] = set()  # their ids


def refusing_writer() -> str | None:
    """The name of a running writer whose records are at risk with `on_record_loss: refuse`, if any:
    the request path refuses new work (503) while one is."""
    if not _REFUSING:
        return None
    return next((w.name for w in _RUNNING if w.at_risk and w.on_loss == "refuse"), None)


class StoreUnavailable(Exception):
    """The database did not answer within the flush timeout, or a write is still hanging."""


def unavailable(exc: BaseException) -> bool:
    """True when `exc` says the store cannot be reached (retry later), not that a record is bad."""
    if isinstance(exc, StoreUnavailable | OSError | TimeoutError | ConnectionError | DisconnectionError):
        return True
    if isinstance(exc, OperationalError | InterfaceError):
        return True  # connection refused, SQLite "database is locked", server gone
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    return False


class WriteBehind:
    def __init__(self, name: str, flush: Flush, spill_dir: Path, batch_size: int = 64, interval: float = 0.2,
                 *, flush_timeout: float = 5.0, max_queue: int = 10_000, on_loss: OnLoss = "serve") -> None:
        self.name = name
        self._flush = flush
        self.spill_path = spill_dir / f"{name}.spill.jsonl"
        self.quarantine_path = spill_dir / f"{name}.quarantine.jsonl"
        self.batch_size = batch_size
        self.interval = interval
        self.flush_timeout = flush_timeout
        self.max_queue = max_queue
        self.on_loss: OnLoss = on_loss
        self._buf: list[dict[str, Any]] = []
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._hung: asyncio.Task[Any] | None = None  # a write that outlived its timeout
        self._stopping = False
        self._lock = asyncio.Lock()
        # Counters, exported by `WriterMetrics`.
        self.flushed = 0
        self.spilled = 0
        self.quarantined = 0
        self.spill_errors = 0
        self.store_errors = 0
        self.dropped = 0
        self.spill_records = 0  # records waiting in the spill file
        self._store_failing = False
        self.__spill_failing = False
        self.failing_since: float | None = None

    # -- state ----------------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        """Records waiting in memory (not counting the spill file)."""
        return len(self._buf)

    @property
    def healthy(self) -> bool:
        """False while the last write to the database failed or hung, or the last spill failed:
        records are then waiting on disk (or, worse, only in memory). The readiness probe asks."""
        return not (self._store_failing or self._spill_failing or self._hanging())

    @property
    def _spill_failing(self) -> bool:
        return self.__spill_failing

    @_spill_failing.setter
    def _spill_failing(self, failing: bool) -> None:
        self.__spill_failing = failing
        if failing and self.on_loss == "refuse":
            _REFUSING.add(id(self))
        else:
            _REFUSING.discard(id(self))

    @property
    def at_risk(self) -> bool:
        """True when records are held only in memory because neither the database nor the spill
        file takes them: a crash now loses them. `on_record_loss: refuse` stops admitting then."""
        return self._spill_failing

    def _hanging(self) -> bool:
        return self._hung is not None and not self._hung.done()

    def _set_store(self, failing: bool) -> None:
        self._store_failing = failing
        if failing and self.failing_since is None:
            self.failing_since = time.time()
        elif not failing and not self._spill_failing:
            self.failing_since = None

    # -- the request path -----------------------------------------------------------------------

    def put(self, record: dict[str, Any]) -> None:
        self._buf.append(record)
        if len(self._buf) >= self.batch_size:
            self._wake.set()
        if len(self._buf) > self.max_queue:
            self._overflow()

    def _overflow(self) -> None:
        """The buffer is full (the store is slow or gone): spill it now, or drop by configuration."""
        records, self._buf = self._buf, []
        if self._to_disk(records):
            return
        if self.on_loss == "serve" and len(self._buf) > self.max_queue:
            excess = len(self._buf) - self.max_queue
            del self._buf[:excess]
            self.dropped += excess
            log.error("%s writer: queue full and the spill file cannot be written; dropped %d records "
                      "(on_record_loss: serve)", self.name, excess)

    # -- lifecycle ------------------------------------------------------------------------------

    async def start(self) -> None:
        self.spill_path.parent.mkdir(parents=True, exist_ok=True)
        self.spill_records = sum(1 for _ in self._spill_lines())
        self._task = asyncio.create_task(self._run(), name=f"tollway-writer-{self.name}")
        _RUNNING.add(self)

    async def stop(self) -> None:
        """Drain: let a flush in progress finish, then flush what is left (or spill it).

        The loop is asked to stop rather than cancelled, so a batch is never lost half-written.
        Every database write is bounded, so this takes at most a few flush timeouts even when
        the database hangs; a write still hanging then is abandoned (its batch is on disk).
        """
        if self._task is not None:
            self._stopping = True
            self._wake.set()
            await self._task
            self._task = None
        await self.flush()
        if self._buf:  # the spill file refused them too: one last try, then say what is lost
            self._to_disk(self._buf)
            if self._buf:
                log.error("%s writer: %d records could not be written anywhere and are lost at exit",
                          self.name, len(self._buf))
        if self._hanging():
            assert self._hung is not None
            self._hung.cancel()
        _RUNNING.discard(self)
        _REFUSING.discard(id(self))

    async def _run(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)
            self._wake.clear()
            try:
                await self.flush()
            except Exception:  # never let the writer die; the next round tries again
                log.exception("%s writer: flush round failed", self.name)

    # -- flushing -------------------------------------------------------------------------------

    async def flush(self) -> None:
        async with self._lock:
            replayed = await self._replay()
            batch, self._buf = self._buf, []
            if not batch:
                return
            if not replayed:
                self._to_disk(batch)
                return
            for start in range(0, len(batch), self.batch_size):
                part = batch[start : start + self.batch_size]
                if start:
                    # Between transactions, let the requests that arrived meanwhile run. A flush of
                    # 200 records in one go held the event loop for 5-8 ms every round, and that
                    # stall was the whole of the gateway's p99 at concurrency 1.
                    await asyncio.sleep(0)
                try:
                    stored = await self._write(part)
                except BaseException:  # cancelled: the batch goes to disk, not away
                    self._to_disk(batch[start:])
                    raise
                if not stored:
                    self._to_disk(batch[start:])
                    return
            self._spill_failing = False  # all of it is in the database: nothing is at risk any more

    async def _bounded(self, records: list[dict[str, Any]]) -> None:
        """One database write, given at most `flush_timeout`. A write that takes longer is left to
        finish on its own (it is idempotent) and, until it does, no other write is started."""
        if self._hanging():
            raise StoreUnavailable("a previous write is still waiting for the database")
        task = asyncio.ensure_future(self._flush(records))
        done, _ = await asyncio.wait({task}, timeout=self.flush_timeout)
        if not done:
            self._hung = task
            task.add_done_callback(lambda t: t.cancelled() or t.exception())
            raise StoreUnavailable(f"no answer within {self.flush_timeout:g} s")
        task.result()

    async def _write(self, records: list[dict[str, Any]], retried: bool = False) -> bool:
        """Write `records`; True when each is in the database or quarantined, False when the
        store is unavailable (nothing of what is left was written, so the caller keeps it).

        A lone record is tried twice before it is quarantined, so a passing server error (a
        deadlock, a serialisation failure) does not set a good record aside."""
        try:
            await self._bounded(records)
        except Exception as exc:
            if not unavailable(exc) and len(records) == 1 and not retried:
                return await self._write(records, retried=True)
            if unavailable(exc):
                if not self._store_failing:
                    log.warning("%s writer: store unavailable (%s); spilling", self.name, type(exc).__name__)
                self.store_errors += 1
                self._set_store(True)
                return False
            if len(records) == 1:
                self._quarantine(records[0], exc)
                return True
            # Something in this batch cannot be stored: split it until the bad record is alone.
            half = len(records) // 2
            return await self._write(records[:half]) and await self._write(records[half:])
        self.flushed += len(records)
        self._set_store(False)
        return True

    # -- the spill file -------------------------------------------------------------------------

    def _to_disk(self, records: list[dict[str, Any]]) -> bool:
        """Spill `records`; when that fails, put them back at the front of the buffer (they leave
        memory only once durable) and say so. True when they are on disk."""
        if not records:
            return True
        try:
            self._spill(records)
        except OSError as exc:
            self.spill_errors += 1
            if not self._spill_failing:
                self.failing_since = self.failing_since or time.time()
            self._spill_failing = True
            self._buf[:0] = records
            log.error("%s writer: cannot write the spill file %s (%s); %d records held in memory only",
                      self.name, self.spill_path, exc.strerror or type(exc).__name__, len(self._buf))
            return False
        self._spill_failing = False
        return True

    def _spill(self, records: list[dict[str, Any]]) -> None:
        data = b"".join(orjson.dumps(r) + b"\n" for r in records)
        with open(self.spill_path, "ab") as fh:
            # A crash mid-append leaves a torn last line; the next append must start on a line of
            # its own, or it would glue a good record to the torn one.
            size = os.fstat(fh.fileno()).st_size
            if size > 0 and self._read(size - 1) != b"\n":
                data = b"\n" + data
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        self.spilled += len(records)
        self.spill_records += len(records)

    def _read(self, start: int = 0) -> bytes:
        """The spill file's bytes from `start` to its size now (b"" when there is none)."""
        try:
            with open(self.spill_path, "rb") as fh:
                size = os.fstat(fh.fileno()).st_size
                fh.seek(start)
                return fh.read(max(0, size - start))
        except FileNotFoundError:
            return b""

    def _spill_lines(self, data: bytes | None = None) -> Iterator[bytes]:
        if data is None:
            data = self._read()
        yield from (line for line in data.split(b"\n") if line.strip())

    def _parse(self, lines: Iterable[bytes]) -> list[dict[str, Any]]:
        records = []
        for line in lines:
            try:
                rec = orjson.loads(line)
                if not isinstance(rec, dict):
                    raise ValueError("not a JSON object")
            except ValueError as exc:
                self._quarantine_raw(line, exc)
                continue
            records.append(rec)
        return records

    async def _replay(self) -> bool:
        """Write the spill file back; True when it is empty afterwards (the store is reachable).

        Records spilled while this runs (a full buffer spills from the request path) are appended
        after the part read here, and are kept whatever happens to that part."""
        data = self._read()
        if not data.strip():
            self.spill_records = 0
            return True
        records = self._parse(self._spill_lines(data))
        for start in range(0, len(records), self.batch_size):
            if not await self._write(records[start : start + self.batch_size]):
                self._rewrite(records[start:], len(data))
                return False
        self._rewrite([], len(data))
        log.info("%s writer: replayed %d spilled records", self.name, len(records))
        return not self.spill_path.exists()

    def _rewrite(self, records: list[dict[str, Any]], consumed: int) -> None:
        """Replace the first `consumed` bytes of the spill file by `records` (atomically, fsync'd)."""
        tail = self._read(consumed)
        body = b"".join(orjson.dumps(r) + b"\n" for r in records) + tail
        if not body.strip():
            self.spill_path.unlink(missing_ok=True)
            self.spill_records = 0
            return
        tmp = self.spill_path.with_suffix(".tmp")
        with open(tmp, "wb") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(self.spill_path)
        self.spill_records = sum(1 for _ in self._spill_lines(body))

    # -- quarantine -----------------------------------------------------------------------------

    def _quarantine(self, record: dict[str, Any], exc: BaseException) -> None:
        self._quarantine_raw(orjson.dumps(record), exc)

    def _quarantine_raw(self, line: bytes, exc: BaseException) -> None:
        """Keep a record that can never be written where an operator can read it; never a silent loss."""
        error = f"{type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}"[:500]
        entry = b'{"writer":"' + self.name.encode() + b'","at":' + orjson.dumps(time.time()) + b',"error":' \
            + orjson.dumps(error) + b',"record":' + orjson.dumps(line.decode("utf-8", "replace")) + b"}\n"
        self.quarantined += 1
        try:
            self.quarantine_path.parent.mkdir(parents=True, exist_ok=True)
            with open(self.quarantine_path, "ab") as fh:
                fh.write(entry)
                fh.flush()
                os.fsync(fh.fileno())
        except OSError as write_exc:
            self.spill_errors += 1
            log.error("%s writer: cannot write the quarantine file %s (%s)", self.name, self.quarantine_path,
                      write_exc.strerror or type(write_exc).__name__)
        log.error("%s writer: a record the database refuses was quarantined to %s (%s)", self.name,
                  self.quarantine_path, error)


class WriterMetrics:
    """A Prometheus collector for write-behind writers: what waits, what failed, what was set aside."""

    def __init__(self, writers: Iterable[WriteBehind]) -> None:
        self.writers = list(writers)

    def collect(self) -> Iterator[Metric]:
        failing = GaugeMetricFamily("tollway_writer_failing", "1 while a writer cannot write to the database "
                                    "or its spill file", labels=["writer"])
        spill = GaugeMetricFamily("tollway_writer_spilled_records", "Records waiting in a writer's spill file",
                                  labels=["writer"])
        risk = GaugeMetricFamily("tollway_writer_at_risk", "1 while records are held only in memory",
                                 labels=["writer"])
        counters = {
            "quarantined": CounterMetricFamily("tollway_writer_quarantined", "Records the database refused, "
                                               "set aside in the quarantine file", labels=["writer"]),
            "spill_errors": CounterMetricFamily("tollway_writer_spill_errors", "Failed writes to the spill or "
                                                "quarantine file", labels=["writer"]),
            "store_errors": CounterMetricFamily("tollway_writer_store_errors", "Database writes that failed or "
                                                "timed out", labels=["writer"]),
            "dropped": CounterMetricFamily("tollway_writer_dropped", "Records dropped because neither the "
                                           "database nor the spill file took them", labels=["writer"]),
        }
        for w in self.writers:
            failing.add_metric([w.name], 0 if w.healthy else 1)
            spill.add_metric([w.name], w.spill_records)
            risk.add_metric([w.name], 1 if w.at_risk else 0)
            for attr, family in counters.items():
                family.add_metric([w.name], getattr(w, attr))
        yield failing
        yield spill
        yield risk
        yield from counters.values()

"""The DLP engine: built once at start-up from a ``DlpConfig``, then ``inspect`` per request."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from tollway.governance.dlp.cache import VerdictCache, fingerprint, unit_key
from tollway.governance.dlp.candidates import MIN_LEN, Builtin
from tollway.governance.dlp.phones import warm_up
from tollway.governance.dlp.policy import BUILTIN_KINDS, DlpConfig
from tollway.governance.dlp.prefilter import available as prefilter_available
from tollway.governance.dlp.result import DetectorFailed, DlpError, DlpResult, RegexDetector, TimedOut
from tollway.governance.dlp.scan import Scan
from tollway.governance.dlp.shared import SharedVerdicts


class DlpEngine:
    """Scans canonical requests against a ``DlpConfig``.

    Build it once at start-up; ``inspect`` keeps its state per call, so one engine serves concurrent
    requests. ``extra_detectors`` adds detectors from code (their action comes from their category;
    kinds must not repeat a built-in or custom name). ``clock`` (seconds, monotonic) times the scan.
    """

    def __init__(self, config: DlpConfig, *, extra_detectors: Sequence[RegexDetector] = (),
                 clock: Callable[[], float] = time.perf_counter, cache: VerdictCache | None = None) -> None:
        self.config = config
        self.clock = clock
        #: The verdict cache (``cache_items: 0`` turns it off); pass one to share it between engines.
        self.cache = cache if cache is not None else (VerdictCache(config.cache_items) if config.cache_items else None)
        self.fingerprint = fingerprint([
            config.model_dump_json(exclude={"shared_cache"}),  # where verdicts are shared does not change them
            *(f"{d.kind}\x00{d.category}\x00{d.regex.pattern}\x00{d.regex.flags}\x00"
              f"{getattr(d.check, '__qualname__', d.check)}" for d in extra_detectors),
        ])
        self.unit_key = unit_key(self.fingerprint)
        self.matcher = choose_matcher(config.matcher)
        self.builtin = Builtin(config.phone_regions, config.ip_addresses)
        # Loading the phone regions' metadata and compiling the Hyperscan database take a second or more on a
        # busy machine: done in a thread, so start-up (and /ready) does not wait for them. A scan waits for the
        # warm-up before its clock starts, so it never counts against a request's time budget.
        self._warm = threading.Event()
        threading.Thread(target=self._warm_up, name="dlp-warm-up", daemon=True).start()
        taken = set(BUILTIN_KINDS) | {c.name for c in config.custom}
        for d in extra_detectors:
            if d.kind in taken:
                raise ValueError(f"detector kind {d.kind!r} is already defined")
            taken.add(d.kind)
        custom = [
            RegexDetector(c.name, "custom", c.pattern, flags=re.IGNORECASE if c.ignore_case else 0)
            for c in config.custom
        ]
        self.detectors: tuple[RegexDetector, ...] = (*custom, *extra_detectors)
        #: Strings shorter than this cannot hold a finding (custom and code detectors may match anything).
        self.min_len = 1 if self.detectors else MIN_LEN
        self.categories: dict[str, str] = {**BUILTIN_KINDS, **{d.kind: d.category for d in self.detectors}}
        #: The verdicts shared with other processes in Redis (``dlp.shared_cache``), used by ``ainspect``.
        self.shared = (SharedVerdicts(config.shared_cache, self.fingerprint, self.categories)
                       if config.shared_cache.redis_url and self.cache is not None else None)
        #: Units and characters the detectors ran over (not found in any cache): what ``/metrics`` shows.
        self.scanned_units = 0
        self.scanned_chars = 0
        self._tables: dict[str | None, dict[str, str]] = {}
        for group in (None, *config.policies.groups):
            table = config.action_table(group)
            cats = config.category_actions(group)
            for d in extra_detectors:
                table.setdefault(d.kind, cats[d.category])
            self._tables[group] = table

    def _warm_up(self) -> None:
        try:
            warm_up(self.config.phone_regions, self.builtin.numbers.by_length)
            if self.matcher == "hyperscan":
                self.builtin.compile_prefilter()
        except Exception:  # pragma: no cover - left to fail closed (or run without the prefilter) at scan time
            log.exception("DLP warm-up failed")
        finally:
            self._warm.set()

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Block until the warm-up is done (tests and benchmarks call it to time scans alone)."""
        return self._warm.wait(timeout)

    def policy_for(self, groups: Sequence[str]) -> str | None:
        """The group whose override applies (the first of ``groups`` that has one), or None for the default."""
        overrides = self.config.policies.groups
        return next((g for g in groups if g in overrides), None)

    def inspect(self, body: dict[str, Any], groups: Sequence[str] = ()) -> DlpResult:
        """Scan everything the upstream will see in ``body``; see the package docstring. Runs on the caller's thread."""
        self._warm.wait()
        scan, policy = self._begin(groups)
        if scan is None:
            return DlpResult([], False, [], policy, body, False)
        try:
            scan.run(body)
            return scan.result(body, policy)
        except Exception as exc:
            error = _refusal(exc, self.config)
        raise error  # raised outside the handler: no chained exception carries data

    async def ainspect(self, body: dict[str, Any], groups: Sequence[str] = ()) -> DlpResult:
        """``inspect`` for the event loop: what the cache does not know, when large, is scanned in a worker thread.

        The walk and the cache look-ups run inline (they are cheap); when more than ``INLINE_CHARS``
        characters are new, the detectors run in the default executor in batches of ``THREAD_BATCH``
        characters, so the thread gives the interpreter back to the loop between batches and no request
        stalls the others for more than a few milliseconds.
        """
        if not self._warm.is_set():
            await asyncio.get_running_loop().run_in_executor(None, self._warm.wait)
        scan, policy = self._begin(groups)
        if scan is None:
            return DlpResult([], False, [], policy, body, False)
        try:
            scan.prepare(body)
            if self.shared is not None and scan.missed:
                asked = self.clock()
                digests = scan.shared_digests()
                values = await self.shared.get_many(digests)
                scan.timeout_s += self.clock() - asked  # waiting for Redis is not scanning: not in the budget
                scan.take_shared(self.shared, values, digests)
            if scan.missed_chars > INLINE_CHARS:
                await asyncio.get_running_loop().run_in_executor(None, scan.scan_misses, THREAD_BATCH)
            else:
                scan.scan_misses()
            scan.finish()
            if self.shared is not None:
                self.shared.put_many(scan.stored)
            return scan.result(body, policy)
        except Exception as exc:
            error = _refusal(exc, self.config)
        raise error

    async def aclose(self) -> None:
        """Finish the shared layer's writes under way and close its connections (at shutdown)."""
        if self.shared is not None:
            await self.shared.aclose()

    def _begin(self, groups: Sequence[str]) -> tuple[Scan | None, str]:
        if isinstance(groups, str):  # one name passed bare: not a sequence of one-letter names
            groups = (groups,)
        group = self.policy_for(groups)
        policy = group if group is not None else "default"
        if not self.config.enabled:
            return None, policy
        return Scan(self, self._tables[group]), policy


log = logging.getLogger(__name__)


def choose_matcher(configured: str) -> str:
    """``hyperscan`` or ``python``: the ``TOLLWAY_DLP_MATCHER`` environment variable, else the config; ``auto``
    takes Hyperscan when its wheel is installed (measured faster on every input class: docs/dlp.md)."""
    choice = os.environ.get("TOLLWAY_DLP_MATCHER", "").strip().lower() or configured
    if choice not in ("auto", "hyperscan", "python"):
        raise ValueError(f"TOLLWAY_DLP_MATCHER must be auto, hyperscan or python, not {choice!r}")
    if choice == "hyperscan" and not prefilter_available():
        raise ValueError("dlp.matcher is hyperscan but the hyperscan package is not installed")
    if choice == "auto":
        return "hyperscan" if prefilter_available() else "python"
    return choice


#: New text up to this many characters is scanned on the event loop (about 1 ms); more goes to a thread.
INLINE_CHARS = 64 * 1024
#: Characters per batch in a worker thread: one batch holds the interpreter for a few milliseconds at most.
THREAD_BATCH = 64 * 1024


def _refusal(exc: Exception, config: DlpConfig) -> DlpError:
    """The ``DlpError`` for a failure in a scan: fail closed, never with the exception's text (it may quote data)."""
    if isinstance(exc, DetectorFailed):
        return DlpError(f"DLP detector {exc.detector} failed ({exc.error}); the request is refused")
    if isinstance(exc, TimedOut):
        return DlpError(f"the request is too large to inspect for data loss prevention within its time budget "
                        f"(timeout_ms={config.timeout_ms:g} plus timeout_ms_per_mb={config.timeout_ms_per_mb:g}); "
                        "send less text per request", 413, "request_too_large")
    return DlpError(f"DLP scan failed ({type(exc).__name__}); the request is refused")

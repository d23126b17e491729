"""The DLP engine: built once at start-up from a ``DlpConfig``, then ``inspect`` per request."""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Sequence
from typing import Any

from tollway.governance.dlp.candidates import Builtin
from tollway.governance.dlp.policy import BUILTIN_KINDS, DlpConfig
from tollway.governance.dlp.result import DetectorFailed, DlpError, DlpResult, RegexDetector, TimedOut
from tollway.governance.dlp.scan import Scan


class DlpEngine:
    """Scans canonical requests against a ``DlpConfig``.

    Build it once at start-up; ``inspect`` keeps its state per call, so one engine serves concurrent
    requests. ``extra_detectors`` adds detectors from code (their action comes from their category;
    kinds must not repeat a built-in or custom name). ``clock`` (seconds, monotonic) times the scan.
    """

    def __init__(self, config: DlpConfig, *, extra_detectors: Sequence[RegexDetector] = (),
                 clock: Callable[[], float] = time.perf_counter) -> None:
        self.config = config
        self.clock = clock
        self.builtin = Builtin(config.phone_regions, config.ip_addresses)
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
        self.categories: dict[str, str] = {**BUILTIN_KINDS, **{d.kind: d.category for d in self.detectors}}
        self._tables: dict[str | None, dict[str, str]] = {}
        for group in (None, *config.policies.groups):
            table = config.action_table(group)
            cats = config.category_actions(group)
            for d in extra_detectors:
                table.setdefault(d.kind, cats[d.category])
            self._tables[group] = table

    def policy_for(self, groups: Sequence[str]) -> str | None:
        """The group whose override applies (the first of ``groups`` that has one), or None for the default."""
        overrides = self.config.policies.groups
        return next((g for g in groups if g in overrides), None)

    def inspect(self, body: dict[str, Any], groups: Sequence[str] = ()) -> DlpResult:
        """Scan everything the upstream will see in ``body``; see the module docstring."""
        if isinstance(groups, str):  # one name passed bare: not a sequence of one-letter names
            groups = (groups,)
        group = self.policy_for(groups)
        policy = group if group is not None else "default"
        if not self.config.enabled:
            return DlpResult([], False, [], policy, body, False)
        scan = Scan(self, self._tables[group])
        try:
            scan.run(body)
            return scan.result(body, policy)
        except DetectorFailed as exc:
            message = f"DLP detector {exc.detector} failed ({exc.error}); the request is refused"
        except TimedOut:
            message = (f"DLP scan exceeded its time budget (timeout_ms={self.config.timeout_ms:g}); "
                       "the request is refused")
        except Exception as exc:  # fail closed, without the exception's text (it may quote data)
            message = f"DLP scan failed ({type(exc).__name__}); the request is refused"
        raise DlpError(message)  # raised outside the handlers: no chained exception carries data


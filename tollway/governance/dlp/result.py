"""Results and errors of a DLP scan, and the detectors added in code. Nothing here ever holds a matched value."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

Span = tuple[int, int, str]  # start, end, kind


class DlpError(Exception):
    """The scan could not be completed; the request must be refused. The message holds no matched data.

    ``status`` and ``error_type`` say how to refuse: 413 ``request_too_large`` when the input is too large to
    scan in its time budget (a property of the input: retrying the same request cannot help), 500
    ``api_error`` when a detector failed.
    """

    def __init__(self, message: str, status: int = 500, error_type: str = "api_error") -> None:
        super().__init__(message)
        self.status = status
        self.error_type = error_type


@dataclass(frozen=True, slots=True)
class Finding:
    """What was found where (never the value): ``count`` matches of ``kind`` at ``where``."""

    kind: str
    category: str
    action: str
    where: str
    count: int = 1


@dataclass(slots=True)
class DlpResult:
    """The outcome of one scan. ``body`` is what to forward (``changed`` says whether it is a copy)."""

    findings: list[Finding]
    blocked: bool
    blocked_kinds: list[str]
    policy: str
    body: dict[str, Any] = field(repr=False)
    changed: bool


def placeholder(kind: str, n: int) -> str:
    """The text that replaces the ``n``-th distinct redacted value of ``kind`` in a request."""
    return f"[REDACTED:{kind}:{n}]"


# ---------------------------------------------------------------------------------------------
# Detectors added in code (and custom config patterns)


class RegexDetector:
    """A detector from one regular expression, with an optional ``check`` that confirms a match.

    Custom patterns from the config become these (category ``custom``); code may pass more to
    ``DlpEngine(extra_detectors=...)``. ``check`` gets the matched text and returns whether it
    counts; if it raises, the scan fails closed. Empty matches are ignored.
    """

    __slots__ = ("category", "check", "kind", "regex")

    def __init__(self, kind: str, category: str, pattern: str | re.Pattern[str], *, flags: int = 0,
                 check: Callable[[str], bool] | None = None) -> None:
        if category not in ("secrets", "pii", "custom"):
            raise ValueError(f"detector {kind}: category must be secrets, pii or custom")
        self.kind = kind
        self.category = category
        self.regex = pattern if isinstance(pattern, re.Pattern) else re.compile(pattern, flags)
        self.check = check

    def find(self, text: str) -> Iterator[tuple[int, int]]:
        for m in self.regex.finditer(text):
            start, end = m.span()
            if end > start and (self.check is None or self.check(m.group())):
                yield start, end



class DetectorFailed(Exception):
    def __init__(self, detector: str, error: str) -> None:
        super().__init__(detector, error)
        self.detector = detector
        self.error = error



class TimedOut(Exception):
    pass


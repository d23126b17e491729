"""The multi-pattern prefilter: Hyperscan finds where a candidate can start, Python's ``re`` looks only there.

The combined candidate regex (``candidates``) is tried by ``re`` at every occurrence of any of its
anchor characters, and several are common letters, so plain prose costs tens of µs per KB. Intel
Hyperscan (the ``hyperscan`` wheel) runs a set of simpler patterns, each a necessary condition for
one family of candidates, over the whole text in one SIMD pass (well under 1 µs per KB); each hit
opens a window (a margin before it for look-behinds, and after it the longest match that family
can have), overlapping windows merge, and the combined regex runs inside the windows only
(``finditer(text, lo, hi)``: its look-behinds still see the text before ``lo``). Findings are the
same as without the prefilter; tests/test_dlp_matcher.py checks that on a corpus, and the whole
DLP suite runs under ``TOLLWAY_DLP_MATCHER=python`` too.

Hyperscan matches bytes: the text is encoded as ASCII with every other character replaced by one
``?`` (so byte offsets are character offsets); every prefilter pattern is ASCII, as are the
candidates it stands for.
"""

from __future__ import annotations

import contextlib
import functools
import re
import threading
from typing import Any

from tollway.governance.dlp.secrets import TOKENS

_KEYWORD = (r"(?:secret(?:[_\-]?key)?|password|passwd|pwd|token|"
            r"(?:api|access|private|auth|signing|encryption|master|client)[_\-]?key)")
_REST = 1 << 40  # "to the end of the text"
ScanTerminated: type[Exception] = Exception  # hyperscan.ScanTerminated once the module is loaded
DENSE_BYTES_PER_HIT = 256  # fewer bytes per hit than this: scan the whole text instead of windows


def _patterns(min_digits: int, ip_addresses: bool) -> list[tuple[str, int, int, bool]]:
    """(pattern, margin before, margin after, caseless) for every family of candidates."""
    out = []
    for _k, before, anchor, after, _o in TOKENS:
        # Hyperscan refuses long bounded repeats with start-of-match tracking: keep each repeat's minimum
        # (still a necessary condition) and widen the window by the longest a token can be.
        unbounded = re.search(r"\{\d+,\}", after) is not None
        short = re.sub(r"\{(\d+),\d*\}", r"{\1}", after)
        out.append((f"{before}{re.escape(anchor)}{short}", 8, _REST if unbounded else 1024, False))
    out += [
        (_KEYWORD + r"""\\?["'`]?\]?[ \t]*(?::=|=>|=|:|,)""", 8, 300, True),  # assignments (the gate, loosely)
        (r"sk-[A-Za-z0-9_\-]{20}", 4, 300, False),
        (r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY", 4, _REST, False),
        (r"eyJ[A-Za-z0-9_\-]{8}", 4, 1 << 16, False),
        (r"authorization[\"']?[ \t]*[:=]", 4, 4200, True),
        (r"@", 8, 300, False),
        (r"[0-9](?:[\-. ()/]{0,2}[0-9]){" + str(min_digits - 1) + "}", 8, 48, False),
        (r"[A-Z]{2}[0-9]{2}(?: ?[A-Z0-9]){11,30}", 4, 8, False),
    ]
    if ip_addresses:
        out.append((r"[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}", 8, 8, False))
    return out


def available() -> bool:
    """Whether the ``hyperscan`` module imports (its wheel exists for this platform and is installed)."""
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return False
    return True


class Prefilter:
    """A compiled Hyperscan database of the prefilter patterns; ``windows(text)`` gives where to look."""

    def __init__(self, min_digits: int, ip_addresses: bool) -> None:
        global ScanTerminated
        import hyperscan

        ScanTerminated = hyperscan.ScanTerminated
        patterns = _patterns(min_digits, ip_addresses)
        self._before = [p[1] for p in patterns]
        self._after = [p[2] for p in patterns]
        flags = [hyperscan.HS_FLAG_SOM_LEFTMOST | (hyperscan.HS_FLAG_CASELESS if p[3] else 0) for p in patterns]
        self._db = hyperscan.Database(mode=hyperscan.HS_MODE_BLOCK)
        self._db.compile(expressions=[p[0].encode() for p in patterns], ids=list(range(len(patterns))),
                         flags=flags)
        self._scratch = hyperscan.Scratch(self._db)
        self._local = threading.local()  # a scratch space per thread (scans may run in worker threads)

    def _scratch_here(self) -> Any:
        scratch = getattr(self._local, "scratch", None)
        if scratch is None:
            scratch = self._local.scratch = self._scratch.clone()
        return scratch

    def windows(self, text: str) -> list[tuple[int, int]]:
        """Merged, sorted (lo, hi) character ranges of ``text`` where a candidate may be."""
        data = text.encode("ascii", "replace")
        hits: list[tuple[int, int]] = []
        before, after = self._before, self._after
        append = hits.append
        # Dense text (a page of numbers or addresses): past this many hits the windows would cover most of it
        # and each hit costs a Python call, so the scan stops and the whole text is one window.
        limit = max(64, len(data) // DENSE_BYTES_PER_HIT)

        def on_match(pid: int, start: int, end: int, _flags: int, _ctx: Any) -> bool:
            append((start - before[pid], end + after[pid]))
            return len(hits) > limit  # True stops the scan

        with contextlib.suppress(ScanTerminated):  # stopped by on_match: dense text
            self._db.scan(data, match_event_handler=on_match, scratch=self._scratch_here())
        if not hits:
            return []
        if len(hits) > limit:
            return [(0, len(text))]
        hits.sort()
        n = len(text)
        merged: list[tuple[int, int]] = []
        lo, hi = hits[0]
        for a, b in hits[1:]:
            if a <= hi:
                if b > hi:
                    hi = b
            else:
                merged.append((max(lo, 0), min(hi, n)))
                lo, hi = a, b
        merged.append((max(lo, 0), min(hi, n)))
        return merged


@functools.lru_cache(maxsize=8)
def compiled_prefilter(min_digits: int, ip_addresses: bool) -> Prefilter:
    """One compiled database per setting, shared by every engine of the process (compiling takes a while)."""
    return Prefilter(min_digits, ip_addresses)

"""The multi-pattern prefilter: Hyperscan finds where a candidate can start, Python's ``re`` tries only there.

The combined candidate regex (``candidates``) is tried by ``re`` at every occurrence of any of its
anchor characters, and several are common letters and digits, so plain prose costs tens of µs per
KB and dense text (a page of phone numbers, addresses or IBANs) hundreds. Intel Hyperscan (the
``hyperscan`` wheel) runs a set of simpler patterns, each a necessary condition for one family of
candidates, over the whole text in one SIMD pass (about 1 µs per KB), with start-of-match tracking
(``HS_FLAG_SOM_LEFTMOST``); each hit gives the position of the anchor character where the combined
regex can match (a fixed offset from the hit's start), and the combined regex is tried there alone
(``regex.match(text, anchor)``, whose look-behinds still see the text before it). Anchors are tried
in order and those inside the previous match are skipped, which is exactly what ``finditer`` over
the whole text does, so the findings are the same as without the prefilter as long as every
position where the regex can match is among the anchors (extra anchors only cost a failed
``match``). tests/test_dlp_matcher.py checks that on a corpus, and the whole DLP suite runs under
``TOLLWAY_DLP_MATCHER=python`` too.

Each pattern reports its anchor at a fixed offset from the start of the hit (or, for the few in
``_END_PATTERNS`` whose text before the keyword varies in length, from its end), and reports it once:
digit runs are found as a boundary character then exactly ``min_digits`` digits (so every run
start that can be a candidate has its own hit, and a long run is not reported at every digit),
keywords from the anchor letter of the combined regex's alternative (``cret``, ``word``, ``ken``...).
Text so dense that there would be more hits than one per ``DENSE_BYTES_PER_HIT`` bytes is scanned
whole by ``re`` instead (past that, a Python call per hit costs more than ``re``'s own scan).

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

from tollway.governance.dlp.assignments import FLAG_WORDS, KEY_WORDS, PASS_OWNERS, PAT_OWNERS
from tollway.governance.dlp.commands import COMMANDS
from tollway.governance.dlp.configs import FORMS
from tollway.governance.dlp.secrets import TOKENS, token_width

# A loose form of ASSIGN_GATE's operators (> for XML, value= for an XML attribute pair, { get; for a C# property).
_GATE = r"""\\?["'`]?\]?[ \t]*(?::=|=>|=|:|,|>|value[ \t]*=|\{[ \t]*get;)"""
# ASSIGN_GATE's percent-encoded operators (``password%3D…``, ``%22password%22%3A%22…``), as patterns of their own:
# in the same alternation as the others they made Hyperscan's scan of prose and code half again as long.
_ENC_GATE = "(?:%3d|%22%3a)"
ScanTerminated: type[Exception] = Exception  # hyperscan.ScanTerminated once the module is loaded
# More hits than one per this many bytes: the whole text is scanned by ``re`` instead. Measured on the dense
# classes of bench/dlp_classes.py: at one hit per 7 or 8 bytes (cards, phone numbers) ``re`` alone costs 15 to
# 30 % less than the hits' Python callbacks plus a ``match`` per candidate; at one per 30 (e-mail addresses,
# IBANs) the prefilter costs as much or less.
DENSE_BYTES_PER_HIT = 16
PROBE_BYTES = 8192  # a text over twice this long is first probed here: dense at its start, dense throughout
_BOUNDARY = "[^A-Za-z0-9_.]"  # what may precede the first digit of a run (the regex's look-behind)


def _patterns(min_digits: int, ip_addresses: bool) -> list[tuple[str, int, bool]]:
    """(pattern, offset of the anchor character from the start of a hit, caseless) for every family."""
    out = []
    for _k, before, anchor, after, _o in TOKENS:
        # Hyperscan refuses long bounded repeats with start-of-match tracking: the token up to its first
        # variable repeat, at that repeat's minimum (a prefix of the token: still a necessary condition),
        # and without a long leading repeat of ``before`` (Azure DevOps' 76 characters before AZDO): the rest
        # of the token is a necessary condition too, and the regex checks the look-behind at the anchor.
        m = re.search(r"\{(\d+),\d*\}", after)
        short = after if m is None else after[:m.start()] + "{" + m.group(1) + "}"
        lead = re.match(r"\[[^\]]*\]\{(\d+)\}", before)
        if lead is not None and int(lead.group(1)) > 32:
            before = before[lead.end():]
        out.append((f"{before}{re.escape(anchor)}{short}", token_width(before), False))
    out += [
        # Assignments, from the anchor letter of each keyword's alternative in ``candidates._ASSIGN``.
        (r"cret(?:[_\-]?key)?(?:[_\-]base)?" + _GATE, 0, True),
        (r"w(?:or)?d" + _GATE, 0, True),
        (r"ken" + _GATE, 0, True),
        *((re.escape(owner) + r"[_\-]pass" + _GATE, len(owner) + 1, True) for owner in PASS_OWNERS),
        (r"passphrase" + _GATE, 4, True),
        *((re.escape(owner) + r"[_\-]pat" + _GATE, len(owner) + 1, True) for owner in PAT_OWNERS),
        # "...key" only after one of the words of ``assignments.BEHIND_KEY`` (a bare ``key`` in code, as in
        # ``for key, value``, is never one): a pattern per word, so the anchor is a fixed offset from the start.
        *((re.escape(word[:-3]) + "key" + _GATE, len(word) - 3, True) for word in KEY_WORDS),
        # A command-line flag whose value follows a space (``--db-password VALUE``): only right after a '-', '_' or
        # '.' (``assignments.FLAG_WORDS``, which the validator asks for too), so the words themselves ("a password
        # is", "spoken words") cost nothing in prose.
        *((r"[_\-.]" + word + r"[ \t]", 1 + at, True) for word, at in FLAG_WORDS),
        # Prose (``my password is …``); ``.netrc``'s ``password VALUE`` is in ``_END_PATTERNS``.
        (r"passw(?:or)?d[ \t]+(?:is|was)[ \t]", 4, True),
        (r"passphrase[ \t]+(?:is|was)[ \t]", 4, True),
        # Commands whose short flag gives a password (``curl -u``, ``mysql -p``): their name and a space.
        *((pattern, offset, False) for _n, _a, _p, pattern, offset, _f, _k in COMMANDS),
        # Configuration forms (``configs.FORMS``): docker's auth, an auth object's pass, Terraform defaults, prose keys.
        *(p for form in FORMS for p in form[3]),
        (r"sk-[A-Za-z0-9_\-]{20}", 1, False),
        (r"-----BEGIN[ A-Z0-9]{0,40}PRIVATE KEY", 5, False),
        (r"PuTTY-User-Key-File-[23]:", 0, False),
        (r"eyJ[A-Za-z0-9_\-]{8}", 2, False),
        (r"authorization[\"'`]?\]?[ \t]*[:=,]", 7, True),
        (r"AuthenticationHeaderValue\(", 0, False),
        # An e-mail's local part ends with one of [A-Za-z0-9_%+-]; a URL password with none of these: so never
        # after a space or at the start (``@decorator``, ``@mention``).
        (r"""[^\s/@"'`]@""", 1, False),
        # The first digit of a run of at least min_digits digits, at most two separators apart.
        (_BOUNDARY + r"[0-9](?:[\-. ()/]{0,2}[0-9]){" + str(min_digits - 1) + "}", 1, False),
        # An IBAN: the anchor is its first check digit.
        (r"[A-Z]{2}[0-9]{2}(?:[ \-]?[A-Z0-9]){11}", 2, False),
    ]
    out += [(pattern.replace(_GATE, _ENC_GATE), offset, caseless) for pattern, offset, caseless in out
            if pattern.endswith(_GATE)]
    if ip_addresses:
        out.append((r"[^A-Za-z0-9_.:][0-9]{1,3}\.[0-9]{1,3}\.[0-9]{1,3}\.[0-9]", 1, False))
    return out


# Patterns whose anchor is a fixed offset (< 0) from the END of a hit (compiled without start-of-match tracking):
# what comes before the keyword varies in length. ``.netrc``'s ``password VALUE``, first on its line (after any
# indentation) or after ``login <user>``: the word alone, common in prose, is no hit.
_END_PATTERNS: list[tuple[str, int, bool]] = [
    (r"(?:^|[\n\x00])[ \t]*password[ \t]", -5, True),
    (r"(?:^|\s)login[ \t]+\S+[ \t]+password[ \t]", -5, True),
]


def available() -> bool:
    """Whether the ``hyperscan`` module imports (its wheel exists for this platform and is installed)."""
    try:
        import hyperscan  # noqa: F401
    except ImportError:
        return False
    return True


class Prefilter:
    """A compiled Hyperscan database of the prefilter patterns; ``anchors(text)`` gives where to try the regex."""

    def __init__(self, min_digits: int, ip_addresses: bool) -> None:
        global ScanTerminated
        import hyperscan

        ScanTerminated = hyperscan.ScanTerminated
        patterns = _patterns(min_digits, ip_addresses)
        self._offsets = [p[1] for p in patterns] + [p[1] for p in _END_PATTERNS]
        self._from_end = [False] * len(patterns) + [True] * len(_END_PATTERNS)
        flags = [hyperscan.HS_FLAG_SOM_LEFTMOST | (hyperscan.HS_FLAG_CASELESS if p[2] else 0) for p in patterns] + \
            [hyperscan.HS_FLAG_CASELESS if p[2] else 0 for p in _END_PATTERNS]
        patterns = patterns + _END_PATTERNS
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

    def anchors(self, text: str) -> list[int] | None:
        """Sorted positions of ``text`` where the combined regex may match, or None when the text is so dense
        with candidates that ``re`` should scan all of it."""
        data = text.encode("ascii", "replace")
        scratch = self._scratch_here()
        hits: list[int] = []
        offsets = self._offsets
        from_end = self._from_end
        append = hits.append
        limit = max(64, len(data) // DENSE_BYTES_PER_HIT)
        # A text over twice PROBE_BYTES that is dense in its first PROBE_BYTES is taken as dense throughout:
        # decided in the same scan, as soon as its hits there pass the probe's share (a separate probe scan
        # cost a twelfth of every long text's scan, dense or not).
        probe = PROBE_BYTES // DENSE_BYTES_PER_HIT if len(data) > 2 * PROBE_BYTES else limit
        dense = [False]

        def on_match(pid: int, start: int, end: int, _flags: int, _ctx: Any) -> bool:
            append((end if from_end[pid] else start) + offsets[pid])
            if len(hits) > probe and start < PROBE_BYTES:
                dense[0] = True
                return True
            return len(hits) > limit  # True stops the scan

        with contextlib.suppress(ScanTerminated):  # stopped by on_match: dense text
            self._db.scan(data, match_event_handler=on_match, scratch=scratch)
        if dense[0] or len(hits) > limit:
            return None  # (the callbacks of a dense text up to the limit would cost about what re saves)
        if data[:1].isdigit():  # a run at the very start has no boundary character before it
            hits.append(0)
        return sorted(set(hits))


@functools.lru_cache(maxsize=8)
def compiled_prefilter(min_digits: int, ip_addresses: bool) -> Prefilter:
    """One compiled database per setting, shared by every engine of the process (compiling takes a while)."""
    return Prefilter(min_digits, ip_addresses)

"""DLP: find secrets and personal data in a canonical (Messages) request before it leaves.

``DlpEngine(config).inspect(body, groups)`` walks the parsed request once and scans every piece of
text the upstream will see: ``tools[i]`` descriptions and input schemas, ``system`` (a string or
text blocks), and every message: string content, text blocks, ``tool_use`` inputs (all JSON
strings, keys included), ``tool_result`` content (a string or blocks, recursively), text
``document`` sources (and their title/context), the URLs of URL sources, and blocks of types it
does not know (all their strings). ``thinking``/``redacted_thinking`` blocks are not scanned: they
are the upstream's own output from an earlier turn, bound to it by a signature that any change
would break. Images and documents whose bytes cannot be read here (base64/PDF, URL and file
sources) are ``binary`` findings with the ``binary`` action. Pure CPU, no I/O.

Output: a ``DlpResult`` with one ``Finding`` per (location, kind) and how many matches there were,
whether the request is blocked, and the body to forward. Nothing in a result, a finding, or an
error ever holds a matched value; ``DlpResult.body`` is left out of its repr for that reason.

Redaction replaces each matched value with ``[REDACTED:<kind>:<n>]``, where ``n`` numbers the
distinct values of that kind in the request, from 1, in scan order (tools, then system, then
messages). The same value gets the same placeholder everywhere in the request; and because the
history is scanned oldest first, a conversation that only appends keeps its placeholders from
turn to turn (so prompt caching keeps working). For an assignment (``password = "…"``) only the value is replaced.
A redacted image or binary document becomes a text block ``[REDACTED:binary:<n>]``. When nothing is
redacted, ``result.body is body``; otherwise ``result.body`` is a deep copy and the input is never
modified.

Policy: ``groups`` are the caller's group names, in the caller's order; the first one that has an
entry under ``policies.groups`` selects that override (merged over the default, see
``dlp_policy``); with none, ``policies.default`` applies. ``result.policy`` names what applied.

Fails closed: an exception inside a detector, or a scan running longer than ``timeout_ms``, raises
``DlpError`` (with the detector kind and the exception type, never the data). The clock is checked
after every 256K characters of built-in scanning and after every string a custom pattern scans,
so one huge string can overrun before it is noticed.

How it stays fast (``bench/dlp.py``, 200 KB Claude Code request on this 2-core machine: 2.5 ms with
nothing found and 3.2 ms with redactions at best, 4.3 and 5.5 ms p50 while other test suites shared
the machine, load average 2.5-3): all built-in detectors share ONE compiled regular
expression, run once over all the strings of the request joined by NUL (one call instead of one per
string). Every alternative of it starts with a literal character, as rare as the pattern allows
(``AKIA`` at ``A``, ``-----BEGIN`` at ``B`` and ``eyJ`` at ``J`` with a look-behind, ``sk-`` and
``token`` at ``k``, ``password`` at ``w``, ``secret`` at ``c``, e-mail at ``@``, numbers at a digit),
so Python's ``re`` skips from one possible start to the next in C; an alternative that starts with
a character class or a group loses that and makes the whole pass several times slower, and so
does every extra anchor character (``(`` and ``+`` of phone numbers are picked up in Python for that
reason). Digit runs must start a run and hold at least 9 digits before they leave the regex, which
keeps dates, times and most numbers out of Python. The regex only finds candidates; checksums
(Luhn, IBAN mod 97), ranges (SSN), ``phonenumbers`` and the other checks run in Python on those
candidates alone. Custom patterns are compiled separately and cost one pass per string each.

Why not ``detect-secrets``: measured here (1.5.0), its ``scan_line`` over a 200 KB request takes
about 3.8 s, three orders of magnitude over the 5 ms budget, because it runs every plugin's
regexes, plus entropy and keyword heuristics, line by line in Python; it reports the secret value
and line number but no character span, which redaction needs; and its high-entropy plugins flag
hashes and UUIDs, which fill coding-agent traffic. The secret patterns here follow its plugins
(AWS, GitHub, GitLab, Slack, Stripe, JWT, private key, keyword assignments) in spirit.
"""

from __future__ import annotations

import base64
import binascii
import functools
import json
import re
import time
from bisect import bisect_right
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from typing import Any

import phonenumbers

from tollway.governance.dlp_policy import BUILTIN_KINDS, DlpConfig

__all__ = ["DlpEngine", "DlpError", "DlpResult", "Finding", "RegexDetector", "placeholder"]


class DlpError(Exception):
    """The scan could not be completed; the request must be refused. The message holds no matched data."""


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


# ---------------------------------------------------------------------------------------------
# The built-in detectors: one combined candidate regex, validators in Python.

_WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
_DIGITS = "0123456789"

# After a keyword: end of the identifier, an assignment operator and at least 6 characters of value.
# A look-ahead, so that the scan goes on inside the value; _ASSIGN_VALUE then reads the value.
_ASSIGN_GATE = (r"""(?=(?![A-Za-z0-9_])\\?["']?[ \t]*(?::=|=>|=(?!=)|:(?![:/]))[ \t]*"""
                r"""(?:\\?["'`][^"'`\n\x00]{6}|[^\s"'`,;)}\]\[(<{$&\x00]{6}))""")
_ASSIGN_VALUE = re.compile(
    r"""(?![A-Za-z0-9_])\\?["']?[ \t]*(?::=|=>|=(?!=)|:(?![:/]))[ \t]*"""
    r"""(?:\\?(?P<q>["'`])(?P<qv>[^"'`\n\x00]{1,256}?)\\?(?P=q)|(?P<uv>[^\s"'`,;)}\]&\x00]{1,256}))"""
)
# Sensitive identifier endings. Each alternative below matches the literal letters after its anchor,
# then checks the whole word with a case-insensitive look-behind.
_KEY_WORDS = [f"{p}{sep}key" for p in ("api", "access", "private", "auth", "signing", "encryption", "master",
                                       "client") for sep in ("", "_", "-")]
_BEHIND_KEY = "|".join(f"(?<={w})" for w in _KEY_WORDS)
_LABEL = r"[A-Za-z0-9](?:[A-Za-z0-9\-]{0,61}[A-Za-z0-9])?"

# Numbers, after the anchor digit: digit runs (cards, SSNs, phone numbers, IBANs with digits only
# after the check digits), or an IBAN with letters in it, anchored on its first check digit after
# its two letters. For a run, in order: the look-behind keeps to the start of a run (not after a
# letter, digit, '_' or '.'); the look-aheads ask for {more} more digits at most two separators apart
# (fewer cannot be a finding, and dates have 8), then keep IPv4 addresses and decimal numbers out;
# the atomic group takes the whole run, which must not run on into a word. Whatever fails here never
# costs a Python call. A leading '+' or '(' is picked up in Python: as anchors of their own they
# would cost a match attempt at every '(' of every line of code.
_NUMBER = (r"(?:(?<![A-Za-z0-9_.].)(?=(?:[\-. ()/]{{0,2}}[0-9]){{{more}}})"
           r"(?![0-9]{{0,2}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}(?![0-9]))"
           r"(?![0-9]*\.[0-9]+(?![\-. ()/]*[0-9]))(?>[0-9\-. ()/]{{4,40}}[0-9])"
           r"(?![A-Za-z0-9_])|(?<=[A-Z][A-Z][0-9])[0-9](?:[ ]?[A-Z0-9]){{11,30}})")

# ONE regex finds every built-in candidate. Every alternative starts with a literal character (see
# the module docstring), the most frequent anchors first (alternatives are tried in order), and
# wraps the rest in a named group, so m.lastgroup says which alternative matched and m.start() is
# the anchor.
_ALTERNATIVES = [
    rf"c(?P<c>ret(?i:(?<=secret))(?:[_\-]?(?i:key))?{_ASSIGN_GATE})",
    r"g(?P<g>h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255}|lpat-[A-Za-z0-9_\-]{20,255})",
    rf"w(?P<w>(?:ord|d)(?i:(?<=password)|(?<=passwd)|(?<=pwd)){_ASSIGN_GATE})",
    r"k(?P<k>_live_(?<=[sr]k_live_)[A-Za-z0-9]{16,255}|-(?<=sk-)[A-Za-z0-9_\-]{20,300}"
    rf"|en(?i:(?<=token)){_ASSIGN_GATE}|ey(?i:{_BEHIND_KEY}){_ASSIGN_GATE})",
    *(f"{d}(?P<n{d}>{{number}})" for d in "1203456789"),
    r"x(?P<x>ox[abprs]-[A-Za-z0-9\-]{10,255})",
    r"A(?P<A>(?:KIA|SIA)[A-Z0-9]{16}|Iza[0-9A-Za-z_\-]{35})",
    rf"C(?P<C>RET(?i:(?<=secret))(?:[_\-]?(?i:key))?{_ASSIGN_GATE})",
    rf"W(?P<W>(?:ORD|D)(?i:(?<=password)|(?<=passwd)|(?<=pwd)){_ASSIGN_GATE})",
    r"B(?P<pem>EGIN(?<=-----BEGIN)[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[^\-\x00]+|-(?!----))*+"
    r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?)",
    r"J(?P<jwt>(?<=eyJ)[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*)",
    rf"K(?P<K>(?:EN|en)(?i:(?<=token)){_ASSIGN_GATE}|(?:EY|ey)(?i:{_BEHIND_KEY}){_ASSIGN_GATE})",
    rf"@(?P<email>{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,24}}(?![A-Za-z0-9]|-[A-Za-z0-9]))",
]


@functools.lru_cache(maxsize=8)
def _candidates(min_digits: int) -> re.Pattern[str]:
    """The combined regex; digit runs need ``min_digits`` digits (9, or fewer when a phone region needs it)."""
    number = _NUMBER.format(more=min_digits - 1)
    return re.compile("|".join(a.replace("{number}", number) for a in _ALTERNATIVES))
_MIN_LEN = 6  # shorter text cannot hold a built-in finding
_SEP = "\x00"  # joins the strings of a request for one scan; no candidate pattern matches across it
_BATCH = 256 * 1024  # characters scanned between two checks of the clock

Span = tuple[int, int, str]  # start, end, kind


def _boundary_before(text: str, start: int, chars: frozenset[str] = _ALNUM) -> bool:
    return start == 0 or text[start - 1] not in chars


def _boundary_after(text: str, end: int, chars: frozenset[str] = _ALNUM) -> bool:
    return end >= len(text) or text[end] not in chars


def _has_digit_and_letter(s: str) -> bool:
    return any(c.isdigit() for c in s) and any(c.isalpha() for c in s)


# --- secrets -----------------------------------------------------------------------------------

def _h_aws_or_gcp(text: str, start: int, end: int) -> Iterable[Span]:
    if not _boundary_before(text, start):
        return ()
    if text[start + 1] == "I":  # AIza…
        return ((start, end, "gcp_api_key"),) if _boundary_after(text, end, _WORD | {"-"}) else ()
    return ((start, end, "aws_access_key"),) if _boundary_after(text, end) else ()


def _h_pem(text: str, start: int, end: int) -> Iterable[Span]:
    return ((start - 5, end, "private_key"),)


def _h_g(text: str, start: int, end: int) -> Iterable[Span]:
    if not _boundary_before(text, start):
        return ()
    kind = "gitlab_token" if text.startswith("glpat-", start) else "github_token"
    return ((start, end, kind),)


def _h_slack(text: str, start: int, end: int) -> Iterable[Span]:
    return ((start, end, "slack_token"),) if _boundary_before(text, start) else ()


def _h_k(text: str, start: int, end: int) -> Iterable[Span]:
    nxt = text[start + 1]
    if nxt == "_":  # sk_live_ / rk_live_
        s = start - 1
        return ((s, end, "stripe_key"),) if _boundary_before(text, s) else ()
    if nxt == "-":  # sk-…
        s = start - 1
        body = text[start + 2:end]
        if not _boundary_before(text, s, _WORD | {"-"}) or not _has_digit_and_letter(body):
            return ()
        return ((s, end, "anthropic_key" if body.startswith("ant-") else "openai_key"),)
    return _h_assignment(text, start, end)


def _h_jwt(text: str, start: int, end: int) -> Iterable[Span]:
    s = start - 2
    if not _boundary_before(text, s, _WORD | {"-"}):
        return ()
    header = text[s:text.index(".", start)]
    try:  # a JWT's first segment is a JSON object (its header); anything else that starts eyJ is not one
        decoded = json.loads(base64.urlsafe_b64decode(header + "=" * (-len(header) % 4)))
    except (binascii.Error, ValueError):
        return ()
    return ((s, end, "jwt"),) if isinstance(decoded, dict) else ()


_PLACEHOLDER_WORDS = ("your", "example", "placeholder", "changeme", "change_me", "dummy", "xxxx", "****",
                      "redacted", "<", ">", "{{", "}}", "${", "%(", "...", "\u2026")
_TRIVIAL = frozenset(("none", "null", "nil", "true", "false", "undefined", "required", "optional", "string",
                      "str", "bytes", "int", "empty", "default", "unknown", "hidden", "masked", "secret",
                      "password", "passwd", "token", "api_key", "apikey"))
_BEARER = re.compile(r"(?i)(?:bearer|basic|token)\s+\S{8,}")
_DOTTED_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*(?:\.[A-Za-z_][A-Za-z0-9_]*)*")
_AWS_SECRET = re.compile(r"[A-Za-z0-9/+]{40}")


_WORDY = re.compile(r"_?[a-z][a-z0-9]*(?:[_\-.][a-z0-9]+)+|[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)+|#[0-9A-Fa-f]{3,8}")


def _nontrivial(value: str, quoted: bool) -> bool:
    """Whether an assigned value looks like a real credential rather than a name, a reference or a placeholder."""
    if len(value) < 6 or value.startswith(("[REDACTED:", "$", "%", "/", "./", "../", "~/", "http:", "https:")):
        return False
    low = value.lower()
    if low in _TRIVIAL or any(w in low for w in _PLACEHOLDER_WORDS) or len(set(value)) <= 2:
        return False
    if "{" in value or any(c.isspace() for c in value):  # a template, or words: only "Bearer <token>" counts
        return _BEARER.fullmatch(value) is not None
    if _WORDY.fullmatch(value):  # snake_case / kebab-case / dotted names, ENV_VAR_NAMES, #colours
        return False
    classes = (any(c.islower() for c in value) + any(c.isupper() for c in value)
               + any(c.isdigit() for c in value) + any(not c.isalnum() for c in value))
    if quoted:
        return classes >= 2 or len(value) >= 16
    # Unquoted: reject what reads as code (calls, indexing, dotted names, identifiers without digits).
    if any(c in value for c in "()[]{}<>"):
        return False
    if _DOTTED_IDENT.fullmatch(value) and (not any(c.isdigit() for c in value) or "." in value):
        return False
    return classes >= 2 and len(value) >= 8


def _h_assignment(text: str, start: int, end: int) -> Iterable[Span]:
    vm = _ASSIGN_VALUE.search(text, start + 1)
    if vm is None or vm.start() > end:
        return ()
    quoted = vm.group("q") is not None
    value = vm.group("qv") if quoted else vm.group("uv")
    vs, ve = vm.span("qv") if quoted else vm.span("uv")
    if not _nontrivial(value, quoted):
        return ()
    k = vm.start()
    while k > 0 and (text[k - 1] in _WORD or text[k - 1] in ".-"):
        k -= 1
    key = text[k:vm.start()].lower()
    if "secret" in key and ("aws" in key or "access" in key) and _AWS_SECRET.fullmatch(value):
        return ((vs, ve, "aws_secret_key"),)
    return ((vs, ve, "password_assignment"),)


# --- PII -----------------------------------------------------------------------------------------

_LOCAL_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789._%+-")
_FILE_TLDS = frozenset(("png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "js", "mjs", "cjs", "ts", "tsx",
                        "jsx", "css", "scss", "map", "json", "lock", "yaml", "yml", "toml", "txt", "md", "py",
                        "rb", "go", "rs", "java", "kt", "swift", "html", "xml", "zip", "gz", "tgz", "whl"))


def _h_email(text: str, at: int, end: int) -> Iterable[Span]:
    s = at
    while s > 0 and at - s < 64 and text[s - 1] in _LOCAL_CHARS and not (text[s - 1] == "." == text[s]):
        s -= 1
    while s < at and text[s] in ".-+":
        s += 1
    local = text[s:at]
    if not local or local.endswith("."):
        return ()
    if text[at + 1:end].rsplit(".", 1)[-1].lower() in _FILE_TLDS:
        return ()
    if end < len(text) and text[end] == ":" and end + 1 < len(text) and not text[end + 1].isspace():
        return ()  # git@github.com:org/repo: an SSH address, not a mailbox
    return ((s, end, "email"),)


_CARD_BRANDS: tuple[tuple[int, int, int, tuple[int, ...]], ...] = (
    # (first prefix, last prefix, prefix digits, lengths)
    (4, 4, 1, (13, 16, 19)),                     # Visa
    (51, 55, 2, (16,)), (2221, 2720, 4, (16,)),  # Mastercard
    (34, 34, 2, (15,)), (37, 37, 2, (15,)),      # American Express
    (6011, 6011, 4, (16, 17, 18, 19)), (644, 649, 3, (16, 17, 18, 19)), (65, 65, 2, (16, 17, 18, 19)),  # Discover
    (3528, 3589, 4, (16, 17, 18, 19)),           # JCB
    (300, 305, 3, (14, 15, 16, 17, 18, 19)), (36, 36, 2, (14, 15, 16, 17, 18, 19)),
    (38, 39, 2, (16, 17, 18, 19)),               # Diners Club
    (62, 62, 2, (16, 17, 18, 19)),               # UnionPay
    (5018, 5018, 4, (13, 15, 16, 19)), (5020, 5020, 4, (13, 15, 16, 19)), (5038, 5038, 4, (13, 15, 16, 19)),
    (5893, 5893, 4, (13, 16, 19)), (6304, 6304, 4, (13, 16, 19)), (6759, 6759, 4, (13, 16, 19)),
    (6761, 6763, 4, (13, 16, 19)),               # Maestro
)


def _luhn(digits: str) -> bool:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = ord(ch) - 48
        if i % 2:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return total % 10 == 0


def _card_brand_ok(digits: str) -> bool:
    if digits[0] not in "23456":
        return False
    n = len(digits)
    p4 = int(digits[:4])
    return any(lo <= p4 // _SCALE[plen] <= hi and n in lengths for lo, hi, plen, lengths in _CARD_BRANDS)


_SCALE = {1: 1000, 2: 100, 3: 10, 4: 1}


_SSN_BAD = frozenset(("078051120", "219099999"))  # numbers published in advertising, never valid


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    a = int(area)
    return (a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"
            and area + group + serial not in _SSN_BAD)


_DATE_LIKE = re.compile(r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})")
_GROUPS = re.compile(r"[0-9]+")
_PHONE_SEPS = frozenset((" ", "-", ".", ") ", ")", "(", " (", ")-", ")."))


_NATIONAL_LENGTHS: dict[int, frozenset[int]] = {}


def _plus_length_ok(digits: str) -> bool:
    """Whether +digits starts with a country code and has a national number length that country uses."""
    for n in (1, 2, 3):
        cc = int(digits[:n])
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc)
        if regions is None:
            continue
        lengths = _NATIONAL_LENGTHS.get(cc)
        if lengths is None:
            found: set[int] = set()
            for region in regions:
                meta = (phonenumbers.PhoneMetadata.metadata_for_nongeo_region(cc) if region == "001"
                        else phonenumbers.PhoneMetadata.metadata_for_region(region))
                if meta is not None and meta.general_desc is not None:
                    found.update(meta.general_desc.possible_length or ())
            lengths = _NATIONAL_LENGTHS[cc] = frozenset(found)
        return len(digits) - n in lengths
    return False


class _Numbers:
    """Validators for digit runs: payment cards, US SSNs, phone numbers; and IBANs."""

    def __init__(self, regions: Sequence[str]) -> None:
        self.regions = tuple(regions)
        # How many digits a national number of each region may have (with its trunk prefix or country code).
        self.lengths: dict[str, frozenset[int]] = {}
        for region in self.regions:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            possible = tuple(meta.general_desc.possible_length or ()) if meta and meta.general_desc else ()
            extra = {0, len(meta.national_prefix or ""), len(str(meta.country_code))} if meta else {0}
            self.lengths[region] = frozenset(n + x for n in possible for x in extra)
        self.all_lengths = frozenset().union(*self.lengths.values())

    def handle(self, text: str, start: int, end: int) -> list[Span]:
        """Findings in the digit run text[start:end], which may start with '+' or '('.

        The run is split into digit groups; from each group on, the longest window of consecutive
        groups that is a card, an SSN or a phone number is taken, and the search goes on after it.
        Cheap shape checks come first: most runs (dates, times, addresses, ids) stop there.
        """
        pos = [m.span() for m in _GROUPS.finditer(text, start, end)]
        lens = [e - s for s, e in pos]
        if sum(lens) < 7:
            return []
        lead = text[start] if text[start] in "+(" else ""
        if len(pos) == 1:  # one group: a card written without separators, or a +number
            n = lens[0]
            if 13 <= n <= 19 and not lead:
                digits = text[pos[0][0]:pos[0][1]]
                if _card_brand_ok(digits) and _luhn(digits):
                    return [(start, end, "payment_card")]
            elif (lead == "+" and 7 <= n <= 15 and _plus_length_ok(text[pos[0][0]:end])
                  and self._phone(text[start:end], n, [text[pos[0][0]:end]], [], True)):
                return [(start, end, "phone_number")]
            return []
        seps = [text[pos[k][1]:pos[k + 1][0]] for k in range(len(pos) - 1)]
        spans: list[Span] = []
        used_until = -1
        for i in range(len(pos)):
            if pos[i][0] < used_until:
                continue
            found = self._at(text, pos, lens, seps, i, lead if i == 0 else "")
            if found is not None:
                spans.append(found)
                used_until = found[1]
        return spans

    def _at(self, text: str, pos: list[tuple[int, int]], lens: list[int], seps: list[str], i: int,
            lead: str) -> Span | None:
        """The longest card, SSN or phone number starting at group i (after ``lead``, '+' or '('), if any.

        Windows are tried longest first, so the first hit is the answer (and a long run whose whole is a
        phone number costs one ``phonenumbers`` call, not one per prefix).
        """
        phone_lengths = self.all_lengths
        last, total = i, lens[i]
        while last + 1 < len(pos) and total + lens[last + 1] <= 19:
            last += 1
            total += lens[last]
        for j in range(last, i, -1):
            if total < 7:
                break
            window_seps = seps[i:j]
            same_sep = all(x == window_seps[0] for x in window_seps)
            s, e = pos[i][0] - len(lead), pos[j][1]
            if total >= 13 and not lead and same_sep and window_seps[0] in (" ", "-"):
                sizes = lens[i:j + 1]
                if (all(x == 4 for x in sizes[:-1]) and sizes[-1] <= 4) or sizes in ([4, 6, 5], [4, 6, 4]):
                    digits = "".join(text[a:b] for a, b in pos[i:j + 1])
                    if _card_brand_ok(digits) and _luhn(digits):
                        return (s, e, "payment_card")
            if (total == 9 and j == i + 2 and not lead and same_sep and window_seps[0] in ("-", " ")
                    and lens[i] == 3 and lens[i + 1] == 2):
                a0, a1, a2 = (text[a:b] for a, b in pos[i:j + 1])
                if _ssn_ok(a0, a1, a2):
                    return (s, e, "us_ssn")
            if total <= 15:
                if lead == "+":
                    plausible = _plus_length_ok("".join(text[a:b] for a, b in pos[i:j + 1]))
                else:
                    plausible = (total in phone_lengths and lens[j] >= 3 and all(x >= 2 for x in lens[i + 1:j + 1])
                                 and (lens[i] >= 2 or total - 1 in phone_lengths))  # "1 415 555 2671"
                if plausible and self._phone(text[s:e], total, [text[a:b] for a, b in pos[i:j + 1]],
                                             window_seps, lead == "+"):
                    return (s, e, "phone_number")
            total -= lens[j]
        if lens[i] >= 13 and not lead and (i == 0 or seps[i - 1] in (" ", "/")):  # a card without separators
            digits = text[pos[i][0]:pos[i][1]]
            if lens[i] <= 19 and _card_brand_ok(digits) and _luhn(digits):
                return (pos[i][0], pos[i][1], "payment_card")
        return None

    def _phone(self, candidate: str, ndigits: int, parts: list[str], seps: list[str], plus: bool) -> bool:
        if any(sep not in _PHONE_SEPS for sep in seps):
            return False
        regions: Sequence[str | None] = (None,)
        if not plus:
            # National numbers: separated groups of 2+ digits, not a date or an address, of a length the
            # region uses, and (checked below) grouped exactly as the region writes them.
            if len(parts) < 2 or any(len(p) < 2 for p in parts[1:]) or len(parts[-1]) < 3:
                return False
            if _DATE_LIKE.match(candidate) or (all(sep == "." for sep in seps) and all(len(p) <= 3 for p in parts)):
                return False
            regions = [r for r in self.regions if ndigits in self.lengths[r]]
        for region in regions:
            try:
                number = phonenumbers.parse(candidate, region)
            except phonenumbers.NumberParseException:
                continue
            if not phonenumbers.is_valid_number(number):
                continue
            if plus:
                return True
            national = phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL)
            if _GROUPS.findall(national) == parts or (
                    len(parts) > 1 and parts[0] == str(number.country_code) and
                    _GROUPS.findall(national) == parts[1:]):
                return True
        return False


_IBAN_LENGTHS = {
    "AD": 24, "AE": 23, "AL": 28, "AT": 20, "AZ": 28, "BA": 20, "BE": 16, "BG": 22, "BH": 22, "BI": 27, "BR": 29,
    "BY": 28, "CH": 21, "CR": 22, "CY": 28, "CZ": 24, "DE": 22, "DJ": 27, "DK": 18, "DO": 28, "EE": 20, "EG": 29,
    "ES": 24, "FI": 18, "FK": 18, "FO": 18, "FR": 27, "GB": 22, "GE": 22, "GI": 23, "GL": 18, "GR": 27, "GT": 28,
    "HR": 21, "HU": 28, "IE": 22, "IL": 23, "IQ": 23, "IS": 26, "IT": 27, "JO": 30, "KW": 30, "KZ": 20, "LB": 28,
    "LC": 32, "LI": 21, "LT": 20, "LU": 20, "LV": 21, "LY": 25, "MC": 27, "MD": 24, "ME": 22, "MK": 19, "MN": 20,
    "MR": 27, "MT": 31, "MU": 30, "NI": 28, "NL": 18, "NO": 15, "OM": 23, "PK": 24, "PL": 28, "PS": 29, "PT": 25,
    "QA": 29, "RO": 24, "RS": 22, "RU": 33, "SA": 24, "SC": 31, "SD": 18, "SE": 24, "SI": 19, "SK": 24, "SM": 27,
    "SO": 23, "ST": 25, "SV": 28, "TL": 23, "TN": 24, "TR": 26, "UA": 29, "VA": 22, "VG": 24, "XK": 20, "YE": 30,
}


def _iban_mod97_ok(iban: str) -> bool:
    rearranged = iban[4:] + iban[:4]
    return int("".join(str(int(c, 36)) for c in rearranged)) % 97 == 1


_IBAN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789")


def _h_iban(text: str, start: int) -> Iterable[Span]:
    """An IBAN whose check digits start at ``start``, written compact or in groups split by single spaces."""
    s = start - 2
    length = _IBAN_LENGTHS.get(text[s:start])
    if length is None or not _boundary_before(text, s):
        return ()
    chars: list[str] = []
    pos, n = s, len(text)
    while pos < n and len(chars) < length:
        c = text[pos]
        if c == " " and pos + 1 < n and text[pos + 1] in _IBAN_CHARS and chars:
            pos += 1
            continue
        if c not in _IBAN_CHARS:
            break
        chars.append(c)
        pos += 1
    if len(chars) < length or not _boundary_after(text, pos):
        return ()
    return ((s, pos, "iban"),) if _iban_mod97_ok("".join(chars)) else ()


# ---------------------------------------------------------------------------------------------
# The engine


class _DetectorFailed(Exception):
    def __init__(self, detector: str, error: str) -> None:
        super().__init__(detector, error)
        self.detector = detector
        self.error = error


# Which detectors each alternative of the combined regex feeds (named in the error when a validator fails).
_NUMBER_GROUPS = tuple(f"n{d}" for d in _DIGITS)
_ALTERNATIVE_KINDS = {
    "A": "aws_access_key/gcp_api_key", "pem": "private_key", "g": "github_token/gitlab_token", "x": "slack_token",
    "k": "stripe_key/openai_key/anthropic_key/password_assignment", "jwt": "jwt", "email": "email",
    **{name: "password_assignment/aws_secret_key" for name in ("K", "w", "W", "c", "C")},
    **{name: "payment_card/us_ssn/phone_number/iban" for name in _NUMBER_GROUPS},
}


class _Builtin:
    """Runs the combined candidate regex over a string and hands each candidate to its validator.

    Every handler gets the position of the anchor character (the match start) and the match end.
    """

    def __init__(self, phone_regions: Sequence[str]) -> None:
        self.numbers = _Numbers(phone_regions)
        # An SSN has 9 digits, a card 13 or more; a phone number as few as its regions allow. A number
        # written with + and fewer than 9 digits (a few small countries) is not looked for.
        self.candidates = _candidates(min(9, *self.numbers.all_lengths))
        self.handlers: dict[str, Callable[[str, int, int], Iterable[Span]]] = {
            "A": _h_aws_or_gcp, "pem": _h_pem, "g": _h_g, "x": _h_slack, "k": _h_k, "K": _h_assignment,
            "w": _h_assignment, "W": _h_assignment, "c": _h_assignment, "C": _h_assignment, "jwt": _h_jwt,
            "email": _h_email, **{name: self._number for name in _NUMBER_GROUPS},
        }

    def _number(self, text: str, start: int, end: int) -> Iterable[Span]:
        if start >= 2 and "A" <= text[start - 1] <= "Z" and "A" <= text[start - 2] <= "Z":
            return _h_iban(text, start)
        if start >= 1 and text[start - 1] in "+(" and _boundary_before(text, start - 1, _WORD):
            start -= 1  # "+1 415…", "(415) 555…"
        return self.numbers.handle(text, start, end)

    def scan(self, text: str) -> list[Span]:
        spans: list[Span] = []
        handlers = self.handlers
        for m in self.candidates.finditer(text):
            name = m.lastgroup
            assert name is not None
            try:
                spans.extend(handlers[name](text, m.start(), m.end()))
            except Exception as exc:
                raise _DetectorFailed(_ALTERNATIVE_KINDS[name], type(exc).__name__) from None
        return spans


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
        self.builtin = _Builtin(config.phone_regions)
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
        scan = _Scan(self, self._tables[group])
        try:
            scan.run(body)
            return scan.result(body, policy)
        except _DetectorFailed as exc:
            message = f"DLP detector {exc.detector} failed ({exc.error}); the request is refused"
        except _TimedOut:
            message = (f"DLP scan exceeded its time budget (timeout_ms={self.config.timeout_ms:g}); "
                       "the request is refused")
        except Exception as exc:  # fail closed, without the exception's text (it may quote data)
            message = f"DLP scan failed ({type(exc).__name__}); the request is refused"
        raise DlpError(message)  # raised outside the handlers: no chained exception carries data


class _TimedOut(Exception):
    pass


class _Scan:
    """The state of one ``inspect`` call.

    First the walk collects every string to scan (with where it sits) and every binary block; then the
    built-in detectors run once over all strings joined by NUL (no candidate pattern crosses a NUL, and
    one call instead of one per string saves the per-call overhead); then custom detectors run per
    string; then findings are counted and redactions recorded, in walk order.
    """

    def __init__(self, engine: DlpEngine, table: dict[str, str]) -> None:
        self.engine = engine
        self.table = table
        self.clock = engine.clock
        self.timeout_s = engine.config.timeout_ms / 1000.0
        self.started = self.clock()
        self.texts: list[str] = []
        self.slots: list[tuple[Any, Any, str, bool]] = []  # parent, key, where, is a dict key
        self.binaries: list[tuple[int, list[Any], int, Any, str]] = []  # text index, parent, index, source, where
        self.counts: dict[tuple[str, str], int] = {}
        self.placeholders: dict[str, str] = {}
        self.numbering: dict[str, int] = {}
        self.edits: dict[tuple[int, Any], Any] = {}
        self.renames: dict[tuple[int, str], str] = {}

    # --- walking the request ---

    def walk(self, body: dict[str, Any]) -> None:
        tools = body.get("tools")
        if isinstance(tools, list):
            for i, tool in enumerate(tools):
                if isinstance(tool, dict):
                    if isinstance(tool.get("description"), str):
                        self.text(tool, "description", f"tools[{i}].description")
                    if tool.get("input_schema") is not None:
                        self.json(tool, "input_schema", f"tools[{i}].input_schema")
        system = body.get("system")
        if isinstance(system, str):
            self.text(body, "system", "system")
        elif isinstance(system, list):
            self.blocks(system, "system")
        messages = body.get("messages")
        if isinstance(messages, list):
            for i, message in enumerate(messages):
                if not isinstance(message, dict):
                    continue
                content = message.get("content")
                if isinstance(content, str):
                    self.text(message, "content", f"messages[{i}].content")
                elif isinstance(content, list):
                    self.blocks(content, f"messages[{i}].content")

    def blocks(self, blocks: list[Any], where: str) -> None:
        for j, block in enumerate(blocks):
            if isinstance(block, str):
                self.text(blocks, j, f"{where}[{j}]")
                continue
            if not isinstance(block, dict):
                continue
            btype = block.get("type")
            if btype == "text":
                if isinstance(block.get("text"), str):
                    self.text(block, "text", f"{where}[{j}]")
            elif btype == "tool_result":
                content = block.get("content")
                if isinstance(content, str):
                    self.text(block, "content", f"{where}[{j}].content")
                elif isinstance(content, list):
                    self.blocks(content, f"{where}[{j}].content")
            elif btype in ("tool_use", "server_tool_use"):
                if "input" in block:
                    self.json(block, "input", f"{where}[{j}].input")
            elif btype == "image":
                self.binaries.append((len(self.texts), blocks, j, block.get("source"), f"{where}[{j}]"))
                self.source_url(block.get("source"), f"{where}[{j}]")
            elif btype == "document":
                self.document(blocks, j, block, f"{where}[{j}]")
            elif btype in ("thinking", "redacted_thinking"):
                continue
            else:  # a block type this code does not know: every string in it is text the upstream sees
                self.json(blocks, j, f"{where}[{j}]")

    def document(self, blocks: list[Any], j: int, block: dict[str, Any], w: str) -> None:
        source = block.get("source")
        stype = source.get("type") if isinstance(source, dict) else None
        if isinstance(source, dict) and stype == "text" and isinstance(source.get("data"), str):
            self.text(source, "data", f"{w}.source.data")
        elif isinstance(source, dict) and stype == "content":
            content = source.get("content")
            if isinstance(content, str):
                self.text(source, "content", f"{w}.source.content")
            elif isinstance(content, list):
                self.blocks(content, f"{w}.source.content")
        else:  # base64 (PDF), URL or file: bytes this process cannot read
            self.binaries.append((len(self.texts), blocks, j, source, w))
            self.source_url(source, w)
        for key in ("title", "context"):
            if isinstance(block.get(key), str):
                self.text(block, key, f"{w}.{key}")

    def source_url(self, source: Any, where: str) -> None:
        """The URL of a URL source is text the upstream sees (a signed URL can carry a key)."""
        if isinstance(source, dict) and source.get("type") == "url" and isinstance(source.get("url"), str):
            self.text(source, "url", f"{where}.source.url")

    def json(self, parent: Any, key: Any, where: str) -> None:
        """Every string in a JSON value (dict keys included), reported at one location."""
        value = parent[key]
        if isinstance(value, str):
            self.text(parent, key, where)
        elif isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str):
                    self.texts.append(k)
                    self.slots.append((value, k, where, True))
                if isinstance(v, (str, dict, list)):
                    self.json(value, k, where)
        elif isinstance(value, list):
            for idx, v in enumerate(value):
                if isinstance(v, (str, dict, list)):
                    self.json(value, idx, where)

    def text(self, parent: Any, key: Any, where: str) -> None:
        self.texts.append(parent[key])
        self.slots.append((parent, key, where, False))

    # --- scanning ---

    def run(self, body: dict[str, Any]) -> None:
        self.walk(body)
        texts = self.texts
        found: dict[int, list[Span]] = {}
        builtin = self.engine.builtin
        first = 0
        while first < len(texts):  # batches of about _BATCH characters, with a time check after each
            last, size = first, 0
            while last < len(texts) and (size < _BATCH or last == first):
                size += len(texts[last]) + 1
                last += 1
            batch = texts[first:last]
            offsets = list(accumulate([len(t) + 1 for t in batch], initial=0))
            for s, e, kind in builtin.scan(_SEP.join(batch)):
                i = bisect_right(offsets, s) - 1
                found.setdefault(first + i, []).append((s - offsets[i], e - offsets[i], kind))
            self.check_time()
            first = last
        for detector in self.engine.detectors:
            kind = detector.kind
            for i, text in enumerate(texts):
                try:
                    hits = [(s, e, kind) for s, e in detector.find(text)]
                except Exception as exc:
                    raise _DetectorFailed(kind, type(exc).__name__) from None
                if hits:
                    found.setdefault(i, []).extend(hits)
                self.check_time()
        binaries = self.binaries
        b = 0
        for i, (parent, key, where, is_key) in enumerate(self.slots):
            while b < len(binaries) and binaries[b][0] <= i:
                self.binary(*binaries[b][1:])
                b += 1
            spans = found.get(i)
            if spans:
                new = self.record(texts[i], spans, where)
                if new is not None:
                    if is_key:
                        self.renames[(id(parent), key)] = new
                    else:
                        self.edits[(id(parent), key)] = new
        for entry in binaries[b:]:
            self.binary(*entry[1:])
        self.check_time()

    def record(self, text: str, spans: list[Span], where: str) -> str | None:
        """Count the findings in one string; return its redacted form, or None when it is unchanged."""
        redact: list[Span] = []
        table = self.table
        counts = self.counts
        for span in spans:
            kind = span[2]
            key = (where, kind)
            counts[key] = counts.get(key, 0) + 1
            if table[kind] == "redact":
                redact.append(span)
        return self.redact(text, redact) if redact else None

    def redact(self, text: str, spans: list[Span]) -> str:
        # Merge overlapping spans; the merged span keeps the kind of the first (then longest) one.
        spans.sort(key=lambda sp: (sp[0], -sp[1]))
        merged: list[list[Any]] = []
        for s, e, kind in spans:
            if merged and s < merged[-1][1]:
                merged[-1][1] = max(merged[-1][1], e)
            else:
                merged.append([s, e, kind])
        out: list[str] = []
        pos = 0
        for s, e, kind in merged:
            out.append(text[pos:s])
            out.append(self.placeholder_for(kind, text[s:e]))
            pos = e
        out.append(text[pos:])
        return "".join(out)

    def placeholder_for(self, kind: str, value: str) -> str:
        ph = self.placeholders.get(value)
        if ph is None:
            n = self.numbering.get(kind, 0) + 1
            self.numbering[kind] = n
            ph = self.placeholders[value] = placeholder(kind, n)
        return ph

    def binary(self, parent: list[Any], index: int, source: Any, where: str) -> None:
        key = (where, "binary")
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.table["binary"] == "redact":
            data = None
            if isinstance(source, dict):
                data = source.get("data") or source.get("url") or source.get("file_id")
            identity = f"\x00binary\x00{data}" if isinstance(data, str) else f"\x00binary\x00{where}"
            block = parent[index]
            replacement: dict[str, Any] = {"type": "text", "text": self.placeholder_for("binary", identity)}
            if isinstance(block, dict) and "cache_control" in block:
                replacement["cache_control"] = block["cache_control"]
            self.edits[(id(parent), index)] = replacement

    def check_time(self) -> None:
        if self.clock() - self.started > self.timeout_s:
            raise _TimedOut

    # --- the result ---

    def result(self, body: dict[str, Any], policy: str) -> DlpResult:
        table = self.table
        categories = self.engine.categories
        findings = [Finding(kind, categories[kind], table[kind], where, n) for (where, kind), n in self.counts.items()]
        blocked_kinds = list(dict.fromkeys(f.kind for f in findings if f.action == "block"))
        changed = bool(self.edits or self.renames)
        out = _copy(body, self.edits, self.renames) if changed else body
        return DlpResult(findings, bool(blocked_kinds), blocked_kinds, policy, out, changed)


_MISSING = object()


def _copy(value: Any, edits: dict[tuple[int, Any], Any], renames: dict[tuple[int, str], str]) -> Any:
    """A deep copy of a JSON value with the recorded edits (keyed by id of the original container) applied.

    Strings and numbers are immutable and shared, as ``copy.deepcopy`` does; only the containers that
    hold an edit take the slow path.
    """
    touched = {cid for cid, _ in edits} | {cid for cid, _ in renames}

    def copy(v: Any) -> Any:
        if isinstance(v, dict):
            vid = id(v)
            if vid in touched:
                out: dict[Any, Any] = {}
                for k, x in v.items():
                    new = edits.get((vid, k), _MISSING)
                    out[renames.get((vid, k), k)] = copy(x) if new is _MISSING else new
                return out
            return {k: copy(x) if isinstance(x, _CONTAINERS) else x for k, x in v.items()}
        if isinstance(v, list):
            vid = id(v)
            if vid in touched:
                items = []
                for i, x in enumerate(v):
                    new = edits.get((vid, i), _MISSING)
                    items.append(copy(x) if new is _MISSING else new)
                return items
            return [copy(x) if isinstance(x, _CONTAINERS) else x for x in v]
        return v

    return copy(value)


_CONTAINERS = (dict, list)

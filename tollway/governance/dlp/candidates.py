"""The candidate matcher: ONE regular expression finds every built-in candidate, validators decide.

See the package docstring for why every alternative starts with a literal character.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence

from tollway.governance.dlp.assignments import ASSIGN_GATE, BEHIND_KEY, on_assignment
from tollway.governance.dlp.numbers import Numbers
from tollway.governance.dlp.pii import on_email, on_iban
from tollway.governance.dlp.result import DetectorFailed, Span
from tollway.governance.dlp.secrets import on_aws_or_gcp, on_g, on_jwt, on_k, on_pem, on_slack
from tollway.governance.dlp.text import DIGITS, WORD, boundary_before

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
    rf"c(?P<c>ret(?i:(?<=secret))(?:[_\-]?(?i:key))?{ASSIGN_GATE})",
    r"g(?P<g>h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255}|lpat-[A-Za-z0-9_\-]{20,255})",
    rf"w(?P<w>(?:ord|d)(?i:(?<=password)|(?<=passwd)|(?<=pwd)){ASSIGN_GATE})",
    r"k(?P<k>_live_(?<=[sr]k_live_)[A-Za-z0-9]{16,255}|-(?<=sk-)[A-Za-z0-9_\-]{20,300}"
    rf"|en(?i:(?<=token)){ASSIGN_GATE}|ey(?i:{BEHIND_KEY}){ASSIGN_GATE})",
    *(f"{d}(?P<n{d}>{{number}})" for d in "1203456789"),
    r"x(?P<x>ox[abprs]-[A-Za-z0-9\-]{10,255})",
    r"A(?P<A>(?:KIA|SIA)[A-Z0-9]{16}|Iza[0-9A-Za-z_\-]{35})",
    rf"C(?P<C>RET(?i:(?<=secret))(?:[_\-]?(?i:key))?{ASSIGN_GATE})",
    rf"W(?P<W>(?:ORD|D)(?i:(?<=password)|(?<=passwd)|(?<=pwd)){ASSIGN_GATE})",
    r"B(?P<pem>EGIN(?<=-----BEGIN)[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[^\-\x00]+|-(?!----))*+"
    r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?)",
    r"J(?P<jwt>(?<=eyJ)[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*)",
    rf"K(?P<K>(?:EN|en)(?i:(?<=token)){ASSIGN_GATE}|(?:EY|ey)(?i:{BEHIND_KEY}){ASSIGN_GATE})",
    rf"@(?P<email>{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,24}}(?![A-Za-z0-9]|-[A-Za-z0-9]))",
]


@functools.lru_cache(maxsize=8)
def candidates(min_digits: int) -> re.Pattern[str]:
    """The combined regex; digit runs need ``min_digits`` digits (9, or fewer when a phone region needs it)."""
    number = _NUMBER.format(more=min_digits - 1)
    return re.compile("|".join(a.replace("{number}", number) for a in _ALTERNATIVES))
MIN_LEN = 6  # shorter text cannot hold a built-in finding
SEP = "\x00"  # joins the strings of a request for one scan; no candidate pattern matches across it
BATCH = 256 * 1024  # characters scanned between two checks of the clock


# Which detectors each alternative of the combined regex feeds (named in the error when a validator fails).
_NUMBER_GROUPS = tuple(f"n{d}" for d in DIGITS)
_ALTERNATIVE_KINDS = {
    "A": "aws_access_key/gcp_api_key", "pem": "private_key", "g": "github_token/gitlab_token", "x": "slack_token",
    "k": "stripe_key/openai_key/anthropic_key/password_assignment", "jwt": "jwt", "email": "email",
    **{name: "password_assignment/aws_secret_key" for name in ("K", "w", "W", "c", "C")},
    **{name: "payment_card/us_ssn/phone_number/iban" for name in _NUMBER_GROUPS},
}


class Builtin:
    """Runs the combined candidate regex over a string and hands each candidate to its validator.

    Every handler gets the position of the anchor character (the match start) and the match end.
    """

    def __init__(self, phone_regions: Sequence[str]) -> None:
        self.numbers = Numbers(phone_regions)
        # An SSN has 9 digits, a card 13 or more; a phone number as few as its regions allow. A number
        # written with + and fewer than 9 digits (a few small countries) is not looked for.
        self.candidates = candidates(min(9, *self.numbers.all_lengths))
        self.handlers: dict[str, Callable[[str, int, int], Iterable[Span]]] = {
            "A": on_aws_or_gcp, "pem": on_pem, "g": on_g, "x": on_slack, "k": on_k, "K": on_assignment,
            "w": on_assignment, "W": on_assignment, "c": on_assignment, "C": on_assignment, "jwt": on_jwt,
            "email": on_email, **{name: self._number for name in _NUMBER_GROUPS},
        }

    def _number(self, text: str, start: int, end: int) -> Iterable[Span]:
        if start >= 2 and "A" <= text[start - 1] <= "Z" and "A" <= text[start - 2] <= "Z":
            return on_iban(text, start)
        if start >= 1 and text[start - 1] in "+(" and boundary_before(text, start - 1, WORD):
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
                raise DetectorFailed(_ALTERNATIVE_KINDS[name], type(exc).__name__) from None
        return spans


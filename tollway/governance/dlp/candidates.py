"""The candidate matcher: ONE regular expression finds every built-in candidate, validators decide.

See the package docstring for why every alternative starts with a literal character.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable, Sequence
from itertools import repeat

from tollway.governance.dlp.assignments import ASSIGN_GATE, BEHIND_KEY, BEHIND_PASS, BEHIND_PAT, on_assignment
from tollway.governance.dlp.commands import COMMANDS
from tollway.governance.dlp.commands import HANDLERS as COMMAND_HANDLERS
from tollway.governance.dlp.configs import FORMS
from tollway.governance.dlp.configs import HANDLERS as FORM_HANDLERS
from tollway.governance.dlp.dense import DENSE_BYTES_PER_ANCHOR, DENSE_MIN_ANCHORS, Answer, table
from tollway.governance.dlp.numbers import Numbers
from tollway.governance.dlp.pii import on_email, on_iban, on_ipv4
from tollway.governance.dlp.prefilter import compiled_prefilter
from tollway.governance.dlp.result import DetectorFailed, Span
from tollway.governance.dlp.secrets import (
    AUTHZ,
    AUTHZ_DOTNET,
    PPK,
    TOKENS,
    make_on_token,
    on_authorization,
    on_jwt,
    on_pem,
    on_ppk,
    on_sk,
    token_width,
    url_credentials,
)
from tollway.governance.dlp.text import DIGITS, WORD, boundary_before

# A domain label: letters and digits (any script: bücher.de, 例え.jp) with inner '-'; the top-level domain is ASCII
# letters (an internationalised one is written xn--...), which ends an address glued to CJK text (…@example.com谢谢).
_LABEL = r"[^\W_](?:(?:[^\W_]|-){0,61}[^\W_])?"

# Numbers, after the anchor digit: digit runs (cards, SSNs, phone numbers, IBANs with digits only
# after the check digits), or an IBAN with letters in it, anchored on its first check digit after
# its two letters, which must not be glued to a letter or digit before them (``on_iban`` refuses
# those anyway; refused here, such a candidate does not swallow a longer token it sits in, such as
# an Azure DevOps PAT whose characters before ``AZDO`` happen to read like an IBAN). For a run, in
# order: the look-behind keeps to the start of a run (not after a letter, digit, '_' or '.'); the
# look-aheads ask for {more} more digits at most two separators apart (fewer cannot be a finding,
# and dates have 8), then keep IPv4 addresses (exactly four dotted groups, not after a '+') and
# decimal numbers out; the atomic group takes the whole run, which must not run on into a word.
# Whatever fails here never costs a Python call. A leading '+' or '(' is picked up in Python: as
# anchors of their own they would cost a match attempt at every '(' of every line of code.
_NUMBER = (r"(?:(?<![A-Za-z0-9_.].)(?=(?:[\-. ()/]{{0,2}}[0-9]){{{more}}})"
           r"(?!(?<!\+.)[0-9]{{0,2}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}\.[0-9]{{1,3}}(?![0-9]|\.[0-9]))"
           r"(?![0-9]*\.[0-9]+(?![\-. ()/]*[0-9]))(?>[0-9\-. ()/]{{4,40}}[0-9])"
           r"(?![A-Za-z0-9_])|(?<=[A-Z][A-Z][0-9])(?<![A-Za-z0-9][A-Z][A-Z][0-9])[0-9](?:[ \-]?[A-Z0-9]){{11,30}})")

# ONE regex finds every built-in candidate. Every alternative starts with a literal character (see
# the package docstring), the most frequent anchors first (alternatives are tried in order); each
# branch after an anchor is a named group, so m.lastgroup says which branch matched and m.start()
# is the anchor.
_ASSIGN = {
    "c": rf"ret(?i:(?<=secret))(?:[_\-]?(?i:key))?(?:[_\-](?i:base))?{ASSIGN_GATE}",
    "C": rf"RET(?i:(?<=secret))(?:[_\-]?(?i:key))?(?:[_\-](?i:base))?{ASSIGN_GATE}",
    "w": rf"(?:ord|d)(?i:(?<=password)|(?<=passwd)|(?<=pwd)){ASSIGN_GATE}",
    "W": rf"(?:ORD|D)(?i:(?<=password)|(?<=passwd)|(?<=pwd)){ASSIGN_GATE}",
    "k": rf"en(?i:(?<=token)){ASSIGN_GATE}|ey(?i:{BEHIND_KEY}){ASSIGN_GATE}",
    "K": rf"(?:EN|en)(?i:(?<=token)){ASSIGN_GATE}|(?:EY|ey)(?i:{BEHIND_KEY}){ASSIGN_GATE}",
    # ``DB_PASS``, ``smtp-pass`` (a ``pass`` after what owns a credential: ``assignments.PASS_OWNERS``) and
    # ``passphrase``: anchored on the last 'p'.
    # and ``ADO_PAT``, ``AZURE_DEVOPS_PAT`` (``assignments.PAT_OWNERS``).
    "p": rf"(?:ass(?i:{BEHIND_PASS})|hrase(?i:(?<=passphrase))|at(?i:{BEHIND_PAT})){ASSIGN_GATE}",
    "P": rf"(?:(?:ASS|ass)(?i:{BEHIND_PASS})|(?:HRASE|hrase)(?i:(?<=passphrase))|(?:AT|at)(?i:{BEHIND_PAT}))"
         rf"{ASSIGN_GATE}",
}
_ANCHOR_ORDER = "cgwk1203456789xACWBJKz@GQpfdvyZPu"


def _branches(min_digits: int, ip_addresses: bool) -> dict[str, list[tuple[str, str]]]:
    """Per anchor character, its (group name, pattern after the anchor) branches, in the order tried."""
    out: dict[str, list[tuple[str, str]]] = {a: [] for a in _ANCHOR_ORDER}
    for i, (_kind, before, anchor, after, _offset) in enumerate(TOKENS):
        behind = f"(?<={before}{re.escape(anchor)})" if before else ""
        out[anchor].append((f"t{i}", behind + after))
    for anchor, pattern in _ASSIGN.items():
        out[anchor].append((anchor, pattern))
    out["k"].append(("sk", r"-(?<=sk-)[A-Za-z0-9_\-]{20,300}"))
    number = _NUMBER.format(more=min_digits - 1)
    for d in DIGITS:
        if ip_addresses:
            out[d].append((f"ip{d}", _IPV4))
        out[d].append((f"n{d}", number))
    out["B"].append(("pem", r"EGIN(?<=-----BEGIN)[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----(?:[^\-\x00]+|-(?!----))*+"
                            r"(?:-----END[ A-Z0-9]{0,40}PRIVATE KEY(?: BLOCK)?-----)?"))
    out["P"].append(("ppk", PPK))
    out["J"].append(("jwt", r"(?<=eyJ)[A-Za-z0-9_\-]{8,}\.[A-Za-z0-9_\-]{2,}\.[A-Za-z0-9_\-]*"))
    out["z"].append(("authz", AUTHZ))
    out["Z"].append(("authZ", AUTHZ))
    out["A"].append(("authcs", AUTHZ_DOTNET))
    out["@"].append(("email", rf"{_LABEL}(?:\.{_LABEL})*\.[A-Za-z]{{2,24}}(?![A-Za-z0-9]|-[A-Za-z0-9])"))
    out["@"].append(("at", ""))  # any other '@': maybe scheme://user:password@host
    for name, anchor, pattern, _h, _o, _flag, _kind in COMMANDS:  # curl -u, mysql -p…: after the rest
        out[anchor].append((name, pattern))
    for name, anchor, pattern, _pre, _handler, _kind in FORMS:  # docker auth, pass, Terraform defaults, prose keys
        out[anchor].append((name, pattern))
    return out


# An IPv4 address (opt-in kind): four dotted octets, not inside a longer dotted or word run.
_IPV4 = r"(?<![A-Za-z0-9_.:].)[0-9]{0,2}\.(?:[0-9]{1,3}\.){2}[0-9]{1,3}(?![0-9]|\.[0-9])"


@functools.lru_cache(maxsize=8)
def candidates(min_digits: int, ip_addresses: bool = False) -> re.Pattern[str]:
    """The combined regex; digit runs need ``min_digits`` digits (9, or fewer when a phone region needs it)."""
    parts = []
    for anchor, branches in _branches(min_digits, ip_addresses).items():
        if branches:
            alternatives = [f"(?P<{g}>{p})" for g, p in branches if g not in _HOISTED]
            # A branch of ``configs.FORMS`` has its leading letters before its group (``ass(?:(?P<passkey>…)|…)``):
            # ``re`` leaves the branch at the first letter that differs, and opens the group only where they all
            # match (opening a group late in the regex clears the marks of all the groups before it: hundreds of
            # steps, at every anchor character if the group came first). Same matches, same ``lastgroup``; they
            # come last among the anchor's branches, as before.
            hoisted: dict[str, list[str]] = {}
            for g, p in branches:
                if g in _HOISTED:
                    lead = _LEAD.match(p).group()  # type: ignore[union-attr]
                    hoisted.setdefault(lead, []).append(f"(?P<{g}>{p[len(lead):]})")
            alternatives += [lead + "(?:" + "|".join(groups) + ")" for lead, groups in hoisted.items()]
            parts.append(re.escape(anchor) + "(?:" + "|".join(alternatives) + ")")
    return re.compile("|".join(parts))


_HOISTED = frozenset(form[0] for form in FORMS)
_LEAD = re.compile(r"[A-Za-z0-9_]*?(?=[A-Za-z0-9_]?[?*+{]|[^A-Za-z0-9_]|\Z)")  # literal letters not under a quantifier


MIN_PHONE_DIGITS = 7
MIN_LEN = 6  # shorter text cannot hold a built-in finding
SEP = "\x00"  # joins the strings of a request for one scan; no candidate pattern matches across it
BATCH = 256 * 1024  # characters scanned between two checks of the clock


def _kinds_of(group: str) -> str:
    """Which detectors a branch feeds (named in the error when a validator fails)."""
    if group.startswith("t"):
        return TOKENS[int(group[1:])][0]
    if group[0] == "n" or group[:2] == "ip":
        return "payment_card/us_ssn/phone_number/iban/ip_address"
    named = {"pem": "private_key", "ppk": "private_key", "jwt": "jwt", "email": "email", "at": "url_credentials",
             "authz": "authorization_header", "authZ": "authorization_header",
             "authcs": "authorization_header", "sk": "openai_key/anthropic_key",
             **{c[0]: c[6] for c in COMMANDS}, **{f[0]: f[5] for f in FORMS}}
    return named.get(group, "password_assignment/aws_secret_key")


class Builtin:
    """Runs the combined candidate regex over a string and hands each candidate to its validator.

    Every handler gets the position of the anchor character (the match start) and the match end.
    """

    def __init__(self, phone_regions: Sequence[str], ip_addresses: bool = False, prefilter: bool = False) -> None:
        self.numbers = Numbers(phone_regions)
        # An SSN has 9 digits, a card 13 or more; a phone number as few as its regions allow, but never fewer
        # than 7 (shorter local numbers, as Germany and Austria have, cannot be told from the numbers in code,
        # and would make every 4-digit run a candidate). A number written with + and fewer than 9 digits (a few
        # small countries) is not looked for.
        min_digits = min(9, max(MIN_PHONE_DIGITS, min(self.numbers.all_lengths)))
        self.candidates = candidates(min_digits, ip_addresses)
        self.min_digits = min_digits
        self.ip_addresses = ip_addresses
        #: Hyperscan's anchors (see ``prefilter``), or None to run the regex over all of the text (the same
        #: findings; ``DlpEngine`` sets it from its warm-up thread once the database is compiled).
        self.prefilter = compiled_prefilter(min_digits, ip_addresses) if prefilter else None
        handlers: dict[str, Callable[[str, int, int], Iterable[Span]]] = {
            "pem": on_pem, "sk": on_sk, "jwt": on_jwt, "email": _on_email, "at": _on_at, "authz": on_authorization,
            "authZ": on_authorization, "authcs": on_authorization, "ppk": on_ppk,
            **{a: on_assignment for a in _ASSIGN}, **COMMAND_HANDLERS, **FORM_HANDLERS,
            **{f"n{d}": self._number for d in DIGITS}, **{f"ip{d}": on_ipv4 for d in DIGITS},
        }
        for i, (kind, before, _anchor, _after, offset) in enumerate(TOKENS):
            handlers[f"t{i}"] = make_on_token(kind, token_width(before), offset)
        self.handlers = handlers

    def forget(self) -> None:
        """Drop what the validators remember of the values of a scan (digit runs); done after every scan."""
        self.numbers.forget()

    def compile_prefilter(self) -> None:
        """Compile the Hyperscan database (a second or more on a busy machine) and start using it."""
        self.prefilter = compiled_prefilter(self.min_digits, self.ip_addresses)

    def _number(self, text: str, start: int, end: int) -> Iterable[Span]:
        if start >= 2 and "A" <= text[start - 1] <= "Z" and "A" <= text[start - 2] <= "Z":
            return on_iban(text, start)
        if start >= 1 and text[start - 1] in "+(" and boundary_before(text, start - 1, WORD):
            start -= 1  # "+1 415…", "(415) 555…"
        return self.numbers.handle(text, start, end)

    def _numbers(self, text: str, runs: list[tuple[int, int]]) -> list[Iterable[Span]]:
        """``_number`` of each of ``runs`` (anchor, end), the same answers, the digit runs checked together
        (``Numbers.handle_many``)."""
        out: list[Iterable[Span]] = [()] * len(runs)
        digit_runs: list[tuple[int, int]] = []
        slots: list[int] = []
        for k, (start, end) in enumerate(runs):
            if start >= 2 and "A" <= text[start - 1] <= "Z" and "A" <= text[start - 2] <= "Z":
                out[k] = on_iban(text, start)
                continue
            if start >= 1 and text[start - 1] in "+(" and boundary_before(text, start - 1, WORD):
                start -= 1
            slots.append(k)
            digit_runs.append((start, end))
        if digit_runs:
            for k, found in zip(slots, self.numbers.handle_many(text, digit_runs), strict=True):
                out[k] = found
        return out

    def scan(self, text: str) -> list[Span]:
        try:
            return self._scan(text)
        finally:
            self.forget()

    def _scan(self, text: str) -> list[Span]:
        """Every candidate's findings, in the order of the candidates. Digit-run candidates (the number branches)
        are set aside and checked together at the end (``_numbers``), each one's findings put back in its place."""
        found: list[Iterable[Span]] = []
        runs: list[tuple[int, int]] = []
        slots: list[int] = []
        handlers = self.handlers
        anchors = None if self.prefilter is None else self.prefilter.anchors(text)
        name = ""
        try:  # the handlers are called inline (a wrapper call per candidate is a good part of its cost)
            if anchors is None:  # no prefilter, or text dense with candidates: every match of the regex
                for m in self.candidates.finditer(text):
                    name = m.lastgroup  # type: ignore[assignment]
                    if name[0] == "n":
                        slots.append(len(found))
                        found.append(())
                        runs.append(m.span())
                    else:
                        found.append(handlers[name](text, m.start(), m.end()))
            else:
                # What ``finditer`` over all of ``text`` yields, given every position where the regex can match
                # (``anchors``, sorted): each anchor past the previous match is tried alone (inline: this loop
                # runs once per candidate, and a generator or a call per anchor is a good part of its cost).
                match = self.candidates.match
                pos = 0
                if len(anchors) < DENSE_MIN_ANCHORS or len(anchors) * DENSE_BYTES_PER_ANCHOR < len(text):
                    answers: Iterable[Answer] = repeat(None, len(anchors))
                else:  # dense with addresses or IBANs: most answered without the regex
                    name = "email"  # (named in the error should the table fail)
                    answers = table(text, anchors)
                for a, answer in zip(anchors, answers, strict=True):
                    if a >= pos:
                        if answer is not None:
                            pos = answer[0]
                            found.append(answer[1])
                            continue
                        hit = match(text, a)
                        if hit is not None:
                            pos = hit.end()
                            name = hit.lastgroup  # type: ignore[assignment]
                            if name[0] == "n":
                                slots.append(len(found))
                                found.append(())
                                runs.append((a, pos))
                            else:
                                found.append(handlers[name](text, a, pos))
        except Exception as exc:
            raise DetectorFailed(_kinds_of(name), type(exc).__name__) from None
        if runs:
            try:
                numbers = self._numbers(text, runs)
            except Exception as exc:
                raise DetectorFailed(_kinds_of("n0"), type(exc).__name__) from None
            for k, spans in zip(slots, numbers, strict=True):
                found[k] = spans
        return [span for spans in found for span in spans]


def _handle(handlers: dict[str, Callable[[str, int, int], Iterable[Span]]], m: re.Match[str], text: str,
            start: int, end: int) -> Iterable[Span]:
    name = m.lastgroup
    assert name is not None
    try:
        return handlers[name](text, start, end)
    except Exception as exc:
        raise DetectorFailed(_kinds_of(name), type(exc).__name__) from None


def _on_at(text: str, start: int, end: int) -> Iterable[Span]:
    found = url_credentials(text, start)
    return (found,) if found is not None else ()


def _on_email(text: str, start: int, end: int) -> Iterable[Span]:
    # https://user:password@host.example.com/ is not a mailbox; ``url_credentials`` needs a "://" within 420
    # characters before the '@', and most addresses have none (asked here: a call less per address).
    lo = start - 420 if start > 420 else 0
    if text.rfind("://", lo, start) >= 0 or text.rfind(":thin:", lo, start) >= 0:  # (Oracle's jdbc:oracle:thin:)
        found = url_credentials(text, start)
        if found is not None:
            return (found,)
    return on_email(text, start, end)

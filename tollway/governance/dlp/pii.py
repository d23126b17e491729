"""PII that is not a plain digit run: e-mail addresses and IBANs (checked with their mod-97 checksum)."""

from __future__ import annotations

import re
from collections.abc import Iterable

from tollway.governance.dlp.result import Span
from tollway.governance.dlp.text import ALNUM

_FILE_TLDS = frozenset(("png", "jpg", "jpeg", "gif", "svg", "webp", "ico", "bmp", "js", "mjs", "cjs", "ts", "tsx",
                        "jsx", "css", "scss", "map", "json", "lock", "yaml", "yml", "toml", "txt", "md", "py",
                        "rb", "go", "rs", "java", "kt", "swift", "html", "xml", "zip", "gz", "tgz", "whl"))


#: The letters of a local part: ASCII, and the Latin letters of Latin-1 and Latin Extended-A/B (müller@, josé@,
#: łukasz@: RFC 6531 addresses); not other scripts, where text glued to an address is prose (请发邮件到foo@…).
LOCAL_LETTERS = "A-Za-z0-9_\u00c0-\u00d6\u00d8-\u00f6\u00f8-\u024f"
# The local part read backwards from the '@' (on the reversed text before it): at most 64 characters, and
# not past a '..' (the '.' nearer the '@' is the last one taken).
_LOCAL_BACKWARDS = re.compile(rf"(?:[{LOCAL_LETTERS}%+\-]|(?<!\.)\.){{0,64}}").match
# The same without dots (a plain class repeat, much cheaper than the alternation with its look-behind): where it
# stops at anything but a '.', the rule above stops there too.
_PLAIN_BACKWARDS = re.compile(rf"[{LOCAL_LETTERS}%+\-]{{0,64}}").match


def on_email(text: str, at: int, end: int) -> Iterable[Span]:
    if at == 0:
        return ()
    back = text[at - 1:(at - 65 if at > 64 else None):-1]  # up to 64 characters, reversed
    n = _PLAIN_BACKWARDS(back).end()  # type: ignore[union-attr]  # never None: it matches the empty string
    if n < len(back) and back[n] == ".":  # a dot in the local part: the whole rule
        n = _LOCAL_BACKWARDS(back).end()  # type: ignore[union-attr]
    s = at - n
    while s < at and text[s] in ".-+":
        s += 1
    local = text[s:at]
    if not local or local.endswith(".") or text.startswith("://", s - 3):
        return ()  # (after "://": a URL's user name, https://<key>@o1.ingest.sentry.io/1, not a mailbox)
    if text[text.rfind(".", at, end) + 1:end].lower() in _FILE_TLDS:  # the candidate ends with .[A-Za-z]{2,24}
        return ()
    if end < len(text) and text[end] == ":" and end + 1 < len(text) and not text[end + 1].isspace():
        return ()  # git@github.com:org/repo: an SSH address, not a mailbox
    return ((s, end, "email"),)



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


_IBAN_DIGITS = {ord(c): str(int(c, 36)) for c in "ABCDEFGHIJKLMNOPQRSTUVWXYZ"}
#: Each country code as its digits (``DE`` -> ``1314``): the translation of the four moved characters is then one
#: look-up and a concatenation when the check digits are digits (``str.translate`` with a dict costs more).
_COUNTRY_VALUES = {cc: cc.translate(_IBAN_DIGITS) for cc in _IBAN_LENGTHS}


def _iban_mod97_ok(iban: str) -> bool:
    """ISO 13616's check: the first four characters moved to the end, letters as 10..35, mod 97 is 1.

    ``str.translate`` with a dict is a dict look-up per character; most BBANs are all digits, so only the
    four moved characters are translated then (the country code by a table), and the rest is one ``int``
    (C big-int arithmetic)."""
    rest = iban[4:]
    if not rest.isdigit():  # letters in the BBAN (a British bank code) or a non-ASCII digit: every character
        rest = rest.translate(_IBAN_DIGITS)
    head, check = _COUNTRY_VALUES.get(iban[:2]), iban[2:4]
    moved = head + check if head is not None and check.isdigit() else iban[:4].translate(_IBAN_DIGITS)
    return int(rest + moved) % 97 == 1


#: Per country: the ``match`` of its IBAN's characters, in groups split by single spaces or by single dashes
#: (``DE89-3704-…``, one kind in one IBAN; a separator only between
#: two of them), at the country's length.
_IBAN_BODY = {cc: re.compile(f"[A-Z0-9](?: ?[A-Z0-9]){{{n - 1}}}|[A-Z0-9](?:-?[A-Z0-9]){{{n - 1}}}").match
              for cc, n in _IBAN_LENGTHS.items()}
#: Per country: the ``match`` of its IBAN written compact (a plain class repeat: several times cheaper than the
#: body above with its optional spaces). Where it matches, the body matches the same characters (its optional
#: space never does before a letter or digit); elsewhere the body decides.
_IBAN_COMPACT = {cc: re.compile(f"[A-Z0-9]{{{n}}}").match for cc, n in _IBAN_LENGTHS.items()}


def on_iban(text: str, start: int) -> Iterable[Span]:
    """An IBAN whose check digits start at ``start``, written compact or in groups split by single spaces or
    dashes."""
    s = start - 2
    body = _IBAN_BODY.get(text[s:start])
    if body is None or (s > 0 and text[s - 1] in ALNUM):
        return ()
    m = _IBAN_COMPACT[text[s:start]](text, s)
    if m is not None:
        iban = m.group()
    else:
        m = body(text, s)
        if m is None:
            return ()
        iban = m.group().replace(" ", "").replace("-", "")
    e = m.end()
    if e < len(text) and text[e] in ALNUM:
        return ()
    return ((s, e, "iban"),) if _iban_mod97_ok(iban) else ()



# RFC 5737 documentation ranges and addresses that identify no one.
_IP_NOT_PII = ("192.0.2.", "198.51.100.", "203.0.113.", "0.0.0.0", "127.", "255.255.255.255")


# A word right before that makes four dotted numbers a version or a section: "version 1.2.3.4", "Firefox 115.0.2.8",
# "upgraded to 5.15.0.91", "section 4.2.1.3".
_VERSION_BEFORE = re.compile(
    r"(?i)(?:\bv|\b(?:ver|version|release|rev|revision|build|patch|firmware|kernel|section|sec|chapter|clause|"
    r"firefox|chrome|chromium|safari|edge|python|node|java|jdk|gradle|maven|ruby|perl|php|dotnet|windows|macos|ios|"
    r"android|ubuntu|debian)|(?:upgrad|updat|bump|downgrad)(?:e|ed|es|ing)? (?:to|from)|§)[ :=]*\Z")


def on_ipv4(text: str, start: int, end: int) -> Iterable[Span]:
    """An IPv4 address (opt-in: ``ip_addresses: true``): every octet at most 255, not a documentation address, not a
    version number: after a word that says so (``_VERSION_BEFORE``), or a first part below 10, the other three
    below 32 and one of them 0 (4.19.0.1, 3.11.4.0, 1.0.0.0: assembly and package versions look so, addresses
    rarely; 8.8.8.8 and 1.1.1.1 stay addresses)."""
    if _VERSION_BEFORE.search(text, max(0, start - 24), start) is not None:
        return ()
    value = text[start:end]
    octets = value.split(".")
    if any(int(o) > 255 or (len(o) > 1 and o[0] == "0") for o in octets) or value.startswith(_IP_NOT_PII):
        return ()
    if len(octets[0]) == 1 and all(int(o) < 32 for o in octets[1:]) and "0" in octets[1:]:
        return ()
    return ((start, end, "ip_address"),)

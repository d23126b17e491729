"""Character classes and boundary checks shared by the detectors."""

from __future__ import annotations

import re

WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
DIGITS = "0123456789"



def boundary_before(text: str, start: int, chars: frozenset[str] = ALNUM) -> bool:
    return start == 0 or text[start - 1] not in chars


def boundary_after(text: str, end: int, chars: frozenset[str] = ALNUM) -> bool:
    return end >= len(text) or text[end] not in chars


def has_digit_and_letter(s: str) -> bool:
    return any(c.isdigit() for c in s) and any(c.isalpha() for c in s)


def caseless(words: list[str]) -> str:
    """An alternation of ``words`` (lower case; regex metacharacters are escaped) in any case, as a trie of
    character classes: a branch is left at its first character (``(?i:...)`` over 40 words tried each branch in
    turn, several times slower; a search over 40 characters for one of 60 phone words, about twenty)."""
    heads: dict[str, list[str]] = {}
    for w in words:
        heads.setdefault(w[0], []).append(w[1:])
    out = []
    for c, tails in sorted(heads.items()):
        rest = [t for t in tails if t]
        inner = "" if not rest else f"(?:{caseless(rest)})" + ("?" if "" in tails else "")
        out.append((f"[{c}{c.upper()}]" if c != c.upper() else re.escape(c)) + inner)
    return "|".join(out)

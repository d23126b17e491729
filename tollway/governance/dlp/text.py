"""Character classes and boundary checks shared by the detectors."""

from __future__ import annotations

WORD = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
ALNUM = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789")
DIGITS = "0123456789"



def boundary_before(text: str, start: int, chars: frozenset[str] = ALNUM) -> bool:
    return start == 0 or text[start - 1] not in chars


def boundary_after(text: str, end: int, chars: frozenset[str] = ALNUM) -> bool:
    return end >= len(text) or text[end] not in chars


def has_digit_and_letter(s: str) -> bool:
    return any(c.isdigit() for c in s) and any(c.isalpha() for c in s)


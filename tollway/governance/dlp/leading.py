"""Which digits a match of a regular expression can start with (to split the phones' quick reject by first digit).

The quick reject of a digit-group shape (``phones._quick_reject``) is one alternative per region, and
Python's ``re`` tries them in turn: on a page of card numbers most of its time goes to regions whose
numbers cannot start with the run's first digit. ``first_digits`` reads the parsed pattern
(``re._parser``, the standard library's own parser) and returns the digits a match can start with,
so that the regex for a run starting with ``d`` keeps only the alternatives that can. The answer
only ever errs on the side of more digits (a construct it does not know, or any failure, gives
all ten), so dropping the others never changes a verdict; tests/test_dlp_validators.py compares
the split reject with the plain loop on random numbers.
"""

from __future__ import annotations

import importlib
from typing import Any

ALL = frozenset("0123456789")
DIGIT_CODES = frozenset(range(48, 58))

try:  # the standard library's regex parser: private, so looked up at run time, and optional (``prefixes`` too)
    parser: Any = importlib.import_module("re._parser")
    constants: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - another Python: no split, the same answers
    parser = constants = None


def class_digits(av: Any) -> frozenset[int] | None:
    """The digit codes a parsed character class (``IN``) accepts, or None for a construct not followed here
    (inside a negated class any guess could lose digits, so the caller decides what None means)."""
    codes: set[int] = set()
    negate = False
    for o, a in av:
        if o is constants.NEGATE:
            negate = True
        elif o is constants.LITERAL:
            codes.add(a)
        elif o is constants.RANGE:
            codes.update(range(a[0], a[1] + 1))
        elif o is constants.CATEGORY and a is constants.CATEGORY_DIGIT:
            codes.update(DIGIT_CODES)
        elif o is constants.CATEGORY and a in (constants.CATEGORY_NOT_DIGIT, constants.CATEGORY_SPACE):
            pass  # no digit in either
        else:
            return None
    return (DIGIT_CODES - codes) if negate else frozenset(codes & DIGIT_CODES)


def first_digits(pattern: str) -> frozenset[str]:
    """The digits a match of ``pattern`` on a string of ASCII digits can start with (a superset)."""
    if parser is None:
        return ALL
    try:
        codes, nullable = _sequence(parser.parse(pattern).data)
    except Exception:  # anything unexpected: keep every digit
        return ALL
    return ALL if nullable else frozenset(chr(c) for c in codes)


def _sequence(items: Any) -> tuple[set[int], bool]:
    """(first digit codes, whether the sequence can match the empty string). A positive look-ahead whose
    content cannot be empty restricts what may come next; other zero-width items are skipped."""
    out: set[int] = set()
    allowed: set[int] = set(DIGIT_CODES)
    for op, av in items:
        if op is constants.ASSERT:
            direction, sub = av
            if direction == 1:
                codes, nullable = _sequence(sub)
                if not nullable:
                    allowed &= codes
            continue
        if op is constants.AT or op is constants.ASSERT_NOT:
            continue
        codes, nullable = _item(op, av)
        out |= codes & allowed
        if not nullable:
            return out, False
    return out, True


def _item(op: Any, av: Any) -> tuple[set[int], bool]:
    if op is constants.LITERAL:
        return {av} & DIGIT_CODES, False
    if op is constants.IN:
        digits = class_digits(av)
        return set(DIGIT_CODES if digits is None else digits), False  # unknown: every digit (a superset)
    if op is constants.SUBPATTERN:
        return _sequence(av[3])
    if op is constants.ATOMIC_GROUP:
        return _sequence(av)
    if op is constants.BRANCH:
        out: set[int] = set()
        nullable = False
        for alternative in av[1]:
            codes, n = _sequence(alternative)
            out |= codes
            nullable = nullable or n
        return out, nullable
    if op is constants.MAX_REPEAT or op is constants.MIN_REPEAT or op is constants.POSSESSIVE_REPEAT:
        low, _high, sub = av
        codes, nullable = _sequence(sub)
        return codes, nullable or low == 0
    return set(DIGIT_CODES), True  # anything else (a back-reference, a conditional): any digit, maybe empty

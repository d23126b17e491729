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
_DIGIT_CODES = frozenset(range(48, 58))

try:  # the standard library's regex parser: private, so looked up at run time, and optional
    _parser: Any = importlib.import_module("re._parser")
    _c: Any = importlib.import_module("re._constants")
except ImportError:  # pragma: no cover - another Python: no split, the same answers
    _parser = _c = None


def first_digits(pattern: str) -> frozenset[str]:
    """The digits a match of ``pattern`` on a string of ASCII digits can start with (a superset)."""
    if _parser is None:
        return ALL
    try:
        codes, nullable = _sequence(_parser.parse(pattern).data)
    except Exception:  # anything unexpected: keep every digit
        return ALL
    return ALL if nullable else frozenset(chr(c) for c in codes)


def _sequence(items: Any) -> tuple[set[int], bool]:
    """(first digit codes, whether the sequence can match the empty string). A positive look-ahead whose
    content cannot be empty restricts what may come next; other zero-width items are skipped."""
    out: set[int] = set()
    allowed: set[int] = set(_DIGIT_CODES)
    for op, av in items:
        if op is _c.ASSERT:
            direction, sub = av
            if direction == 1:
                codes, nullable = _sequence(sub)
                if not nullable:
                    allowed &= codes
            continue
        if op is _c.AT or op is _c.ASSERT_NOT:
            continue
        codes, nullable = _item(op, av)
        out |= codes & allowed
        if not nullable:
            return out, False
    return out, True


def _item(op: Any, av: Any) -> tuple[set[int], bool]:
    if op is _c.LITERAL:
        return {av} & _DIGIT_CODES, False
    if op is _c.IN:
        codes: set[int] = set()
        negate = False
        for o, a in av:
            if o is _c.NEGATE:
                negate = True
            elif o is _c.LITERAL:
                codes.add(a)
            elif o is _c.RANGE:
                codes.update(range(a[0], a[1] + 1))
            elif o is _c.CATEGORY and a is _c.CATEGORY_DIGIT:
                codes.update(_DIGIT_CODES)
            else:
                return set(_DIGIT_CODES), False
        return set(_DIGIT_CODES - codes) if negate else (codes & _DIGIT_CODES), False
    if op is _c.SUBPATTERN:
        return _sequence(av[3])
    if op is _c.ATOMIC_GROUP:
        return _sequence(av)
    if op is _c.BRANCH:
        out: set[int] = set()
        nullable = False
        for alternative in av[1]:
            codes, n = _sequence(alternative)
            out |= codes
            nullable = nullable or n
        return out, nullable
    if op is _c.MAX_REPEAT or op is _c.MIN_REPEAT or op is _c.POSSESSIVE_REPEAT:
        low, _high, sub = av
        codes, nullable = _sequence(sub)
        return codes, nullable or low == 0
    return set(_DIGIT_CODES), True  # anything else (a back-reference, a conditional): any digit, maybe empty

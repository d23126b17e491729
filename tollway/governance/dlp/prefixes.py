"""Which first digits a fixed-length digit string matched by a regular expression can start with.

A page of card numbers in groups of four hands the phone check hundreds of ``dddd dddd`` windows
per KB, and each costs a regular expression of several KB (the quick reject, then the metadata
checks) although about 3 % of random 8-digit windows are a valid number of the default regions;
which ones is decided, for almost all of them, by their first four digits (a country's number
types are literal leading digits followed by ``\\d{n}``). ``prefixes(pattern, k, n)`` reads the
parsed pattern (``re._parser``, as ``leading`` does) and returns the set of ``k``-digit prefixes of
the strings of exactly ``n`` ASCII digits that ``fullmatch`` could accept: a set lookup then rejects
the other windows before any regex runs.

The answer may hold too many prefixes, never too few: every construct is followed as it consumes
characters, look-aheads by the characters they fix within the prefix and whether they can match at
all (which keeps the length checks of ``phones._valid_regex`` exact), look-behinds, negative look-aheads and the start
anchors keep every state, and anything else (a back-reference, a conditional group, a parse error)
gives ``None``: no filter. tests/test_dlp_validators.py checks the filter against the plain check on
random windows.
"""

from __future__ import annotations

import re
from typing import Any

from tollway.governance.dlp.leading import DIGIT_CODES as _DIGIT_CODES
from tollway.governance.dlp.leading import class_digits
from tollway.governance.dlp.leading import constants as _c
from tollway.governance.dlp.leading import parser as _parser

_DIGITS = "0123456789"
#: States: for each number of characters consumed, the distinct prefixes known there (the first ``min(pos, k)``
#: characters, or more up to ``k`` when a look-ahead has fixed the characters ahead).
States = dict[int, frozenset[str]]


class _Unknown(Exception):
    """A construct this reading does not follow: the caller gets no filter."""


def prefixes(pattern: str, k: int, n: int) -> frozenset[str] | None:
    """The ``k``-digit prefixes (``n`` >= ``k``) of the ``n``-digit strings ``pattern`` may ``fullmatch``
    (a superset), or None when the pattern holds a construct that is not followed here."""
    if _parser is None or n < k:
        return None
    try:
        walk = _Walk(k, n)
        end = walk.sequence(_parser.parse(pattern).data, {0: frozenset(("",))})
    except (_Unknown, RecursionError, ValueError, TypeError, AttributeError, re.error):
        return None
    return end.get(n, frozenset())


class _Walk:
    """Applies parsed regex items to sets of states; see the module docstring."""

    def __init__(self, k: int, n: int) -> None:
        self.k = k
        self.n = n
        #: ``consume`` below the prefix length, by (position, prefixes, characters): alternatives of a pattern
        #: often consume the same characters from the same states (the same frozenset objects).
        self._consumed: dict[tuple[int, frozenset[str], str], frozenset[str]] = {}

    def sequence(self, items: Any, states: States) -> States:
        for op, av in items:
            if not states:
                return states
            states = self.item(op, av, states)
        return states

    def item(self, op: Any, av: Any, states: States) -> States:
        if op is _c.LITERAL:
            return self.consume(states, chr(av) if av in _DIGIT_CODES else "")
        if op is _c.NOT_LITERAL:
            return self.consume(states, "".join(d for d in _DIGITS if ord(d) != av))
        if op is _c.ANY:
            return self.consume(states, _DIGITS)
        if op is _c.IN:
            return self.consume(states, _class(av))
        if op is _c.SUBPATTERN:
            return self.sequence(av[3], states)
        if op is _c.ATOMIC_GROUP:  # matched as an ordinary group: more matches, never fewer
            return self.sequence(av, states)
        if op is _c.BRANCH:
            out: dict[int, frozenset[str]] = {}
            for alternative in av[1]:
                _merge(out, self.sequence(alternative, states))
            return out
        if op is _c.MAX_REPEAT or op is _c.MIN_REPEAT or op is _c.POSSESSIVE_REPEAT:
            return self.repeat(av[0], av[1], av[2], states)
        if op is _c.ASSERT:
            direction, sub = av
            if direction != 1:  # a look-behind: keep every state
                return states
            # What the look-ahead consumes fixes the characters ahead, as far as the prefix goes: each state takes
            # the prefixes it can end with (longer than the position: characters committed before they are
            # consumed); what it asks of the characters past the prefix is dropped (more prefixes, never fewer).
            fixed: dict[int, frozenset[str]] = {}
            for pos, pres in states.items():
                ahead = self.sequence(sub, {pos: pres})
                if ahead:
                    fixed[pos] = frozenset().union(*ahead.values())
            return fixed
        if op is _c.ASSERT_NOT:
            return states
        if op is _c.AT:
            if av is _c.AT_END_STRING or av is _c.AT_END:  # the strings are digits: no newline before the end
                return {pos: pres for pos, pres in states.items() if pos == self.n}
            return states  # start anchors and word boundaries: kept (a pattern may be joined after a prefix)
        raise _Unknown(str(op))

    def consume(self, states: States, chars: str) -> States:
        """One character out of ``chars`` (digits) consumed from every state: a prefix that already holds the
        character at this position (committed by a look-ahead) must agree with ``chars``."""
        if not chars:
            return {}
        out: dict[int, frozenset[str]] = {}
        k = self.k
        for pos, pres in states.items():
            if pos >= self.n:
                continue
            if pos >= k:  # the prefix is complete: the state only moves on
                new = pres
            else:
                key = (pos, pres, chars)
                new = self._consumed.get(key)  # type: ignore[assignment]
                if new is None:
                    new = self._consumed[key] = frozenset(
                        [p + c for p in pres if len(p) == pos for c in chars]
                        + [p for p in pres if len(p) > pos and p[pos] in chars])
                if not new:
                    continue
            old = out.get(pos + 1)
            out[pos + 1] = new if old is None or old is new else old | new
        return out

    def repeat(self, low: int, high: int, sub: Any, states: States) -> States:
        """``sub`` repeated ``low`` to ``high`` times: the union of its powers, stopped once a power adds nothing."""
        out: dict[int, frozenset[str]] = {}
        current = states
        count = 0
        while True:
            if count >= low:
                if count > low and all(pres <= out.get(pos, frozenset()) for pos, pres in current.items()):
                    break
                _merge(out, current)
            if count == high or not current:
                break
            current = self.sequence(sub, current)
            count += 1
        return out


def _merge(into: dict[int, frozenset[str]], states: States) -> None:
    for pos, pres in states.items():
        old = into.get(pos)
        into[pos] = pres if old is None or old is pres else old | pres


def _class(av: Any) -> str:
    """The digits a character class (``IN``) accepts."""
    digits = class_digits(av)
    if digits is None:  # a construct not followed here: no filter rather than a guess
        raise _Unknown("class")
    return "".join(sorted(chr(c) for c in digits))


_PLAIN_OPS = ("LITERAL", "NOT_LITERAL", "IN", "ANY", "BRANCH", "SUBPATTERN", "MAX_REPEAT", "MIN_REPEAT",
              "POSSESSIVE_REPEAT", "ATOMIC_GROUP")


def bounded_width(pattern: str) -> int | None:
    """The most characters a match of ``pattern`` can span, when that is bounded and the pattern only consumes
    characters (no look-around, anchor or back-reference, which could read past its match): then whether
    ``pattern.match(s)`` succeeds depends on ``s[:width]`` alone. None otherwise."""
    if _parser is None:
        return None
    try:
        parsed = _parser.parse(pattern)
        plain = {getattr(_c, name) for name in _PLAIN_OPS}
        stack = [parsed.data]
        while stack:
            for op, av in stack.pop():
                if op not in plain:
                    return None
                if op is _c.SUBPATTERN:
                    stack.append(av[3])
                elif op is _c.ATOMIC_GROUP:
                    stack.append(av)
                elif op is _c.BRANCH:
                    stack.extend(av[1])
                elif op in (_c.MAX_REPEAT, _c.MIN_REPEAT, _c.POSSESSIVE_REPEAT):
                    stack.append(av[2])
        width = parsed.getwidth()[1]
    except (RecursionError, ValueError, TypeError, AttributeError, re.error):
        return None
    return width if width < _c.MAXREPEAT else None

"""The name of the table column a digit run sits in: a CSV, TSV or Markdown row under its header line, a
``COPY … FROM stdin`` row under its column list (pg_dump), or a value of an SQL ``INSERT … (columns) VALUES``.

Why: an export of customers carries its phone numbers and SSNs as bare runs of digits, with no word before
each one (``name,email,phone`` then ``Ann,ann@example.org,0612345678``). The column's name is that word, so
``numbers`` asks this module when no word comes before a run. A miss here is a miss, never a finding: a table
is only recognised when its rows and its header agree on the number of cells.

Cost: a run asks only when it is a valid number of a configured region (phones) or a valid SSN, and has no word
before it. Each ask reads the run's line; the walk up to a table's header is remembered per text, so a long
export costs each line one read. What is remembered holds text, so it is dropped after every scan (``forget``).
"""

from __future__ import annotations

import csv
import re
from bisect import bisect_right

#: Cell delimiters of text tables, most specific first (a tab-separated row may hold commas in its cells).
_DELIMITERS = ("\t", "|", ";", ",")
#: Lines walked up from a row to its header, at most (a longer table with no header in reach is not read).
MAX_WALK = 5000
#: Characters before a value to look for its ``INSERT … VALUES``, at most (one multi-row INSERT is one line).
MAX_INSERT_REACH = 1 << 20

#: What comes right before a table's cell: a delimiter, an SQL tuple's ``(``, a line's or a unit's start.
_CELL_BEFORE = frozenset("\t|;,(\n\0")
#: A longer line is no table row this module reads (a page of numbers joined by commas is one line).
MAX_LINE = 4096

_INSERT = re.compile(r"(?is)insert\s+into\s+[^\s(]+\s*\(([^()]{1,4000})\)\s*values\s*\Z")
_COPY = re.compile(r"(?i)copy\s+[^\s(]+\s*\(([^()]{1,4000})\)\s+from\s+stdin")
_UNIT = re.compile("\0")
_VALUES = re.compile(r"(?i)(?<![A-Za-z0-9_])values(?![A-Za-z0-9_])")
_CAMEL = re.compile(r"(?<=[a-z])(?=[A-Z])")
_NAME_JOINERS = str.maketrans("_-.`\"[]'", "        ")


def in_cell(text: str, start: int) -> bool:
    """Whether a value at ``start`` starts a cell: after a delimiter, a ``(``, or at a line's start, with at most
    one quote and spaces between. The cheap test that spares code and prose the look for a table."""
    at = start - 1
    while at >= 0 and text[at] == " " and start - at < 4:
        at -= 1
    if at >= 0 and text[at] in "\"'":
        at -= 1
        while at >= 0 and text[at] == " " and start - at < 6:
            at -= 1
    return at < 0 or text[at] in _CELL_BEFORE


def column_words(name: str) -> str:
    """A column name as words, lower case: ``phone_number``, ``PhoneNumber`` and ``"Phone-Nr"`` read ``phone
    number``/``phone nr``, so the detectors' word patterns (word boundaries included) apply to it."""
    return _CAMEL.sub(" ", name).translate(_NAME_JOINERS).strip().lower()


def _cells(line: str, delimiter: str, quote: str = '"') -> list[str]:
    return next(csv.reader((line,), delimiter=delimiter, quotechar=quote, skipinitialspace=True), [])


class Tables:
    """Column names of digit runs in the texts of one scan at a time (see the module's docstring)."""

    def __init__(self) -> None:
        #: (text, where its units start, {line start: (cells in the line, the table's header cells or None)}) for
        #: the text last asked about: a scan asks about its texts in order, and the tuple is swapped whole, so two
        #: threads never mix two texts' lines.
        self._seen: _Seen | None = None

    def forget(self) -> None:
        self._seen = None

    def column(self, text: str, start: int) -> str | None:
        """The name of the column of the value starting at ``start`` of ``text``, as ``column_words``; None when
        it is not in a table this module reads."""
        reach = max(0, start - MAX_LINE)
        line = max(text.rfind("\n", reach, start), text.rfind("\0", reach, start)) + 1
        if line == 0 and reach > 0:
            return None  # a longer line than a table's row (a page of numbers joined by commas)
        before = text[line:start]
        row = _line_at(text, line)
        delimiter = next((d for d in _DELIMITERS if d in row), None) if len(row) <= MAX_LINE else None
        if delimiter is None and "(" not in before:
            return None
        seen = self._seen
        if seen is None or seen.text is not text:
            seen = self._seen = _Seen(text)
        unit = seen.units[bisect_right(seen.units, line) - 1]
        if "(" in before:
            name = seen.insert_column(unit, line, start)
            if name is not None:
                return name
        if delimiter is None:
            return None
        header = self._header(text, unit, line, delimiter, seen.known)
        if header is None:
            return None
        cells = _cells(before, delimiter)
        index = len(cells) - 1 if cells else 0
        return column_words(header[index]) if 0 <= index < len(header) else None

    def _header(self, text: str, unit: int, line: int, delimiter: str,
                known: dict[int, tuple[int, list[str] | None]]) -> list[str] | None:
        """The header cells of the table whose row starts at ``line``: the top line of the run of lines above
        with as many cells as this one (a Markdown table's separator line has as many), or the column list of a
        ``COPY`` line right above a tab-separated run. None when there is none in reach."""
        width = len(_cells(_line_at(text, line), delimiter))
        if width < 2:
            return None
        walked, top, found = [line], line, None
        while True:
            if top <= unit or len(walked) > MAX_WALK:
                found = None if top > unit else _top_header(text, line, top, delimiter)
                break
            above = max(text.rfind("\n", unit, top - 1) + 1, unit)
            memo = known.get(above)
            if memo is not None and memo[0] == width:
                found = memo[1]
                break
            if len(_cells(text[above:top - 1], delimiter)) != width:
                copy = _COPY.match(text, above, top - 1) if delimiter == "\t" else None
                if copy is not None:
                    names = [n.strip() for n in copy.group(1).split(",")]
                    found = names if len(names) == width else None
                else:
                    found = _top_header(text, line, top, delimiter)
                break
            walked.append(above)
            top = above
        for at in walked:
            known[at] = (width, found)
        return found


def _line_at(text: str, at: int) -> str:
    end = text.find("\n", at)
    return text[at:end if end >= 0 else len(text)].split("\0", 1)[0]


def _top_header(text: str, line: int, top: int, delimiter: str) -> list[str] | None:
    """The cells of the top line of a table, when there are rows under it (a lone line is no table)."""
    return _cells(_line_at(text, top), delimiter) if top != line else None


class _Seen:
    """What ``Tables`` remembers of one text: where its units start, each line's table header (``known``), and,
    once a value inside parentheses asks, where its ``VALUES`` keywords are and what each one's INSERT is. Each is
    computed once per text, so a dump of thousands of tuples costs each one a look-up, not a search back through
    the dump (an uppercase ``VALUES`` searched for in lower case scanned the whole dump for every row)."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.units = [0, *(m.end() for m in _UNIT.finditer(text))]
        self.known: dict[int, tuple[int, list[str] | None]] = {}
        self._values: list[int] | None = None
        self._inserts: dict[int, tuple[int, list[str]] | None] = {}

    def insert_column(self, unit: int, line: int, start: int) -> str | None:
        """The column of a value inside an ``INSERT INTO t (a, b, c) VALUES (…), (…)`` tuple: the tuple is the last
        ``(`` before the value, its cells are counted with SQL's quotes, and the column list is the INSERT's."""
        text = self.text
        if self._values is None:
            self._values = [m.start() for m in _VALUES.finditer(text)]
        k = bisect_right(self._values, start - 6) - 1
        if k < 0 or self._values[k] < max(unit, start - MAX_INSERT_REACH):
            return None
        values = self._values[k]
        insert = self._inserts.get(values, _UNSET)
        if insert is _UNSET:
            insert = self._inserts[values] = _insert_at(text, unit, values)
        if insert is None or insert[0] < line:  # no INSERT before it, or its statement ended before this line
            return None
        opened = text.rfind("(", max(line, values), start)
        if opened < 0:
            return None
        cells = _cells(text[opened + 1:start], ",", "'")
        names = insert[1]
        index = len(cells) - 1 if cells else 0
        return column_words(names[index]) if 0 <= index < len(names) else None


_UNSET: tuple[int, list[str]] = (-1, [])


def _insert_at(text: str, unit: int, values: int) -> tuple[int, list[str]] | None:
    """For the ``VALUES`` at ``values``: where its statement ends (its ``;``, or the unit's end) and the column
    names of its ``INSERT INTO t (…)``; None when no such INSERT comes right before it."""
    head = _INSERT.search(text, max(unit, values - 4200), values + 6 + _spaces(text, values + 6))
    if head is None:
        return None
    end = text.find(";", values)
    nul = text.find("\0", values)
    stop = min((e for e in (end, nul) if e >= 0), default=len(text))
    return stop, [n.strip() for n in head.group(1).split(",")]


def _spaces(text: str, at: int) -> int:
    n = 0
    while at + n < len(text) and text[at + n] in " \t\r\n":
        n += 1
    return n

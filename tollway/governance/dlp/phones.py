"""Phone number checks from libphonenumber's metadata, without ``phonenumbers.parse`` per candidate.

``phonenumbers.parse`` + ``is_valid_number`` + ``format_number`` cost about 0.3-0.5 ms a number here
(most of it re-reading metadata and compiling patterns through its caches), which made a page of
phone numbers take seconds. The same decisions are made here from the region metadata, compiled
once: a number is valid when its national significant number has a length the region uses and
matches the region's general pattern and the pattern of one of its number types, at a length that
type uses (what ``is_valid_number`` checks); a national number counts
only when its digit groups are exactly those of the region's national format (the format rule
whose leading-digits pattern and pattern match, with the trunk prefix rule applied), as before.
tests/test_dlp_phones.py checks these answers against ``phonenumbers`` on every default region.
"""

from __future__ import annotations

import functools
import itertools
import re
import threading
from collections.abc import Callable, Sequence
from typing import Any

import phonenumbers

from tollway.governance.dlp.bulk import pair_table
from tollway.governance.dlp.leading import first_digits
from tollway.governance.dlp.prefixes import bounded_width, prefixes

_GROUPS = re.compile(r"[0-9]+")
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
          "fixed_line", "mobile")


class _Region:
    """One region's compiled rules."""

    __slots__ = ("_simple", "_valid", "by_shape", "cc", "formats", "general", "key_length", "lengths", "prefix",
                 "prefix_parsing", "shapes", "types", "valid_pattern")

    def __init__(self, meta: Any) -> None:
        self.cc = str(meta.country_code)
        desc = meta.general_desc
        self.general = re.compile(desc.national_number_pattern) if desc and desc.national_number_pattern else None
        self.lengths = frozenset(desc.possible_length or ()) if desc else frozenset()
        # The number types (fixed line, mobile, toll free...): a valid number matches one of them, at a length
        # that type uses (libphonenumber's is_valid_number).
        self.types: list[tuple[frozenset[int], re.Pattern[str]]] = []
        for name in _TYPES:
            d = getattr(meta, name, None)
            if d is not None and d.national_number_pattern:
                lengths = frozenset(d.possible_length or ()) or self.lengths
                self.types.append((lengths, re.compile(d.national_number_pattern)))
        #: ``valid`` as one regex (a C call instead of a dozen and a Python loop: a page of phone numbers
        #: checks each against every region of its country).
        self.valid_pattern = _valid_regex(self.lengths, self.general, self.types)
        self._valid = re.compile(self.valid_pattern).fullmatch
        self.prefix = meta.national_prefix or ""
        self.prefix_parsing = re.compile(meta.national_prefix_for_parsing) if meta.national_prefix_for_parsing else None
        self.formats: list[tuple[re.Pattern[str] | None, re.Pattern[str], list[str | int]]] = []
        for f in meta.number_format or ():
            leading = re.compile(f.leading_digits_pattern[-1]) if f.leading_digits_pattern else None
            fmt = f.format
            if f.national_prefix_formatting_rule:
                fmt = fmt.replace("\\1", f.national_prefix_formatting_rule, 1)
            # "(\1) \2-\3" -> ["(", 1, ") ", 2, "-", 3]: expanded by hand (Match.expand parses it every call)
            pieces: list[str | int] = [int(x) if k % 2 else x for k, x in enumerate(re.split(r"\\(\d)", fmt))]
            self.formats.append((leading, re.compile(f.pattern), pieces))
        #: Per format, the group numbers in rendering order when its rendering's digit groups are exactly those
        #: groups (no digit in its literal text, and some literal between each two groups), else None: then
        #: ``national_groups`` needs no string building (a page of phone numbers checks one per number).
        self._simple: list[list[int] | None] = []
        for _leading, _pattern, pieces in self.formats:
            ints = [p for p in pieces if isinstance(p, int)]
            literals = [p for p in pieces if isinstance(p, str)]
            between = [pieces[k] for k in range(1, len(pieces) - 1)
                       if isinstance(pieces[k], str) and isinstance(pieces[k - 1], int)
                       and isinstance(pieces[k + 1], int)]
            adjacent = any(isinstance(a, int) and isinstance(b, int) for a, b in itertools.pairwise(pieces))
            simple = (not adjacent and all(between) and not any(c.isdigit() for lit in literals for c in lit))
            self._simple.append(ints if simple else None)
        #: How many first digits decide ``national_groups``'s group lengths, with the length of the number, when
        #: every format's pattern is plain ``\d`` groups rendered in order and every leading-digits pattern
        #: reads a bounded prefix (``_key_length``); None otherwise. ``grouped_as`` remembers its answers by that.
        self.key_length = _key_length(self.formats, self._simple)
        per_format = [_shapes([f]) for f in self.formats]
        known = [x for x in per_format if x is not None]
        self.shapes = frozenset().union(*known) if len(known) == len(per_format) else None
        #: For each digit-group shape, the formats that can produce it (a format's rendering has one shape of
        #: its own set): a number grouped in that shape is formatted by one of them, or by none.
        self.by_shape: dict[tuple[int, ...], list[Format]] = {}
        if self.shapes is not None:
            for f, shapes in zip(self.formats, per_format, strict=True):
                for shape in shapes or ():
                    self.by_shape.setdefault(shape, []).append(f)

    def valid(self, nn: str) -> bool:
        """A length the region uses, its general pattern, and one of its types at a length that type uses."""
        return self._valid(nn) is not None

    def national_groups(self, nn: str) -> list[str]:
        """The digit groups of ``nn`` in its national format (the first format whose leading digits and pattern
        match), or ``[nn]`` when none does."""
        for k, (leading, pattern, pieces) in enumerate(self.formats):
            if leading is not None and leading.match(nn) is None:
                continue
            m = pattern.fullmatch(nn)
            if m is not None:
                ints = self._simple[k]
                if ints is not None:
                    groups = [m.group(p) for p in ints]
                    if all(groups):  # an empty group would merge its neighbours' separators: render it
                        return groups
                return _GROUPS.findall("".join(m.group(p) if isinstance(p, int) else p for p in pieces))
        return [nn]

    def grouped_as(self, nn: str, parts: list[str]) -> bool:
        """Whether the national format of ``nn`` has exactly the digit groups ``parts``
        (``national_groups(nn) == parts``, with a quick reject: no format of that shape matches ``nn``).

        With ``key_length``, the group lengths of ``national_groups(nn)`` are remembered by ``nn[:key_length]``
        and ``len(nn)``, which decide them (``_key_length``): the groups are then consecutive slices of ``nn``,
        equal to ``parts`` exactly when their lengths are and ``parts`` joined is ``nn``. The memo holds those
        first digits only, and is emptied after every scan (``forget``)."""
        width = self.key_length
        if width is not None:
            key = (self, nn[:width], len(nn))
            lengths = _GROUPINGS.get(key)
            if lengths is None:
                if len(_GROUPINGS) >= 4096:
                    _GROUPINGS.clear()
                lengths = _GROUPINGS[key] = tuple(map(len, self.national_groups(nn)))
            return lengths == tuple(map(len, parts)) and nn == "".join(parts)
        if self.shapes is not None:
            for leading, pattern, _pieces in self.by_shape.get(tuple(map(len, parts)), ()):
                if (leading is None or leading.match(nn) is not None) and pattern.fullmatch(nn) is not None:
                    break
            else:
                return False
        return self.national_groups(nn) == parts

    def strip_prefix(self, digits: str) -> list[str]:
        """The national significant numbers ``digits`` may stand for (with or without its trunk prefix)."""
        out = [digits]
        if self.prefix_parsing is not None:
            m = self.prefix_parsing.match(digits)
            if m is not None and m.end() > 0:
                out.append(digits[m.end():])
        elif self.prefix and digits.startswith(self.prefix):
            out.append(digits[len(self.prefix):])
        return out


_GROUPINGS: dict[tuple[_Region, str, int], tuple[int, ...]] = {}  # see ``_Region.grouped_as``
_PLAIN_GROUPS = re.compile(r"(?:\(\\d(?:\{[1-9][0-9]*(?:,[0-9]+)?\})?\))+")  # (\d{3})(\d{3,4})...


def forget() -> None:
    """Empty ``grouped_as``'s memo (the first digits of numbers): done after every scan, with the digit-run memo."""
    _GROUPINGS.clear()


def _key_length(formats: list[Format], simple: list[list[int] | None]) -> int | None:
    r"""How many first digits, with the number's length, decide which format ``national_groups`` takes and its
    group lengths: the widest leading-digits pattern (``prefixes.bounded_width``: whether ``match`` succeeds
    depends on that many characters), when every format pattern is plain ``\d`` groups (whether ``fullmatch``
    succeeds, and where its groups split, depends on the length alone) all rendered in order with no digit in
    between (``_simple``: the groups are then consecutive slices of the number). None when a format is not so."""
    width = 0
    for (leading, pattern, _pieces), ints in zip(formats, simple, strict=True):
        if (ints is None or ints != list(range(1, pattern.groups + 1))
                or _PLAIN_GROUPS.fullmatch(pattern.pattern) is None):
            return None
        if leading is not None:
            w = bounded_width(leading.pattern)
            if w is None:
                return None
            width = max(width, w)
    return width


def _lengths_regex(lengths: frozenset[int]) -> str:
    """A look-ahead: the rest of the string is exactly one of ``lengths`` characters long."""
    ok = sorted(n for n in lengths if n > 0)
    return "(?=(?:" + "|".join(f".{{{n}}}" for n in ok) + r")\Z)" if ok else "(?!)"


def _valid_regex(lengths: frozenset[int], general: re.Pattern[str] | None,
                 types: list[tuple[frozenset[int], re.Pattern[str]]]) -> str:
    """``_Region.valid`` as one pattern (for ``fullmatch``): each condition a look-ahead anchored at the end,
    so that each pattern is matched whole, exactly as its own ``fullmatch`` would."""
    if general is None or not types:
        return "(?!)"
    alternatives = [f"{_lengths_regex(n)}(?:{p.pattern})\\Z" for n, p in types]
    return (f"{_lengths_regex(lengths)}(?=(?:{general.pattern})\\Z)(?:" + "|".join(alternatives) + ")")


_GROUP = re.compile(r"\((?:\\d|\[\d-]+\])(?:\{(\d+)(?:,(\d+))?\})?\)")


Format = tuple[re.Pattern[str] | None, re.Pattern[str], list[str | int]]  # leading digits, pattern, pieces


def _shapes(formats: list[Format]) -> frozenset[tuple[int, ...]] | None:
    """The digit-group lengths this region's national format can produce (``(3, 3, 4)`` for the US), or None
    when a format pattern is not a plain sequence of digit groups (then every shape is checked in full).

    A quick reject: a run of digit groups whose lengths no format produces is not one of its numbers, and
    is not worth the metadata checks (a page of card numbers in groups of four used to cost ms per KB)."""
    shapes: set[tuple[int, ...]] = set()
    for _leading, pattern, pieces in formats:
        groups = _GROUP.findall(pattern.pattern)
        if not groups or _GROUP.sub("", pattern.pattern) != "":
            return None
        ranges = [range(int(lo or 1), int(hi or lo or 1) + 1) for lo, hi in groups]
        for combo in itertools.product(*ranges):
            rendered = "".join("5" * combo[p - 1] if isinstance(p, int) else p for p in pieces)
            shapes.add(tuple(len(g) for g in _GROUPS.findall(rendered)))
    return frozenset(shapes)


@functools.lru_cache(maxsize=512)
def region(code: str) -> _Region | None:
    meta = phonenumbers.PhoneMetadata.metadata_for_region(code)
    return _Region(meta) if meta is not None else None


@functools.lru_cache(maxsize=256)
def _country(cc: int) -> tuple[_Region, ...]:
    rules = []
    for code in phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc, ()):
        meta = (phonenumbers.PhoneMetadata.metadata_for_nongeo_region(cc) if code == "001"
                else phonenumbers.PhoneMetadata.metadata_for_region(code))
        if meta is not None:
            rules.append(_Region(meta))
    return tuple(rules)


def valid_international(digits: str) -> bool:
    """Whether ``digits`` (what follows a '+') is a valid number: a country code, then a valid national number."""
    for n in (1, 2, 3):
        cc = int(digits[:n])
        if cc in phonenumbers.COUNTRY_CODE_TO_REGION_CODE:
            rest = digits[n:]
            if _country_valid(str(cc))(rest) is not None:  # valid as written in some region: one C call
                return True
            # Or, in some region, once its trunk prefix is taken off (``strip_prefix``'s first answer is ``rest``).
            return any(r.valid(nn) for r in _country(cc) for nn in r.strip_prefix(rest)[1:])
    return False


@functools.lru_cache(maxsize=256)
def _country_general(cc: str) -> re.Pattern[str]:
    """The general patterns of every region of a country code, in one regex (a quick reject)."""
    patterns = [r.general.pattern for r in _country(int(cc)) if r.general is not None]
    return re.compile("|".join(f"(?:{p})" for p in patterns) or "(?!)")


@functools.lru_cache(maxsize=256)
def _country_valid(cc: str) -> Any:
    """``fullmatch`` of a regex true when a national number is valid in any region of a country code."""
    patterns = [r.valid_pattern for r in _country(int(cc))]
    return re.compile("|".join(f"(?:{p})" for p in patterns) or "(?!)").fullmatch


def _valid_in_country(cc: str, nn: str) -> bool:
    """Valid in any region that shares the country code (phonenumbers finds the region from the number)."""
    return _country_valid(cc)(nn) is not None


@functools.lru_cache(maxsize=64)
def _rules(regions: tuple[str, ...]) -> tuple[tuple[_Region, _Region], ...]:
    """Each region's rules with its country's main region (whose formats apply: US for all of +1)."""
    out = []
    for code in regions:
        r = region(code)
        if r is not None:
            out.append((r, _country(int(r.cc))[0]))
    return tuple(out)


def valid_bare(digits: str, regions: Sequence[str]) -> bool:
    """Whether ``digits``, written as one run (no grouping to check), is a valid number of one of ``regions``
    (``0612345678``, ``4155552671``). Only asked after a word that says phone. Where a region dials a trunk prefix,
    the run must begin with it: without it, a run such as a Unix time (``1700000000``) reads as a German mobile."""
    for r, _main in _rules(tuple(regions)):
        forms = r.strip_prefix(digits)
        written = forms[1:] if r.prefix or r.prefix_parsing is not None else forms[:1]
        if r.cc == "1":  # North America writes its numbers without the 1
            written = forms
        if any(_valid_in_country(r.cc, nn) for nn in written):
            return True
    return False


def valid_written(digits: str, regions: Sequence[str]) -> bool:
    """Whether ``digits``, a number written in groups after a word that says phone, is a valid number of one of
    ``regions`` with or without its trunk prefix (``030/12345678``, ``98765 43210``): the grouping is not checked
    (people group digits in many ways), the word and the groups stand for the trunk prefix's evidence."""
    return any(_valid_in_country(r.cc, nn) for r, _main in _rules(tuple(regions)) for nn in r.strip_prefix(digits))


def valid_national(parts: list[str], regions: Sequence[str]) -> bool:
    """Whether the digit groups ``parts`` are a valid number of one of ``regions``, grouped as it writes them."""
    return _valid_national(list(parts), tuple(regions))


def _valid_national(parts: list[str], regions: tuple[str, ...], shape: tuple[int, ...] | None = None) -> bool:
    """``valid_national`` (``shape``: the lengths of ``parts``, when the caller has them). Validity (one C call
    per country) is checked before the grouping (a Python loop over formats): most candidates fail it."""
    digits = "".join(parts)
    if shape is None:
        shape = tuple(map(len, parts))
    table = quick_by_digit(regions, shape)
    first = 0
    if table is not None:
        if "0" <= digits[:1] <= "9":
            check = table[digits[0]]
            m = None if check is None else check(digits)
        else:  # not a digit first (a caller's own parts): the whole quick reject
            whole = _quick_reject(regions, shape)
            m = None if whole is None else whole.fullmatch(digits)
        if m is None:
            return False
        first = int(m.lastgroup[1:]) if m.lastgroup else 0  # the regions before fail the quick reject
    return valid_national_from(parts, digits, regions, shape, first)


def valid_national_from(parts: list[str], digits: str, regions: tuple[str, ...], shape: tuple[int, ...],
                        first: int) -> bool:
    """The rest of ``_valid_national`` once the quick reject has passed (``first``: the first region of
    ``_shaped`` it let through); callers that hold the quick reject's ``fullmatch`` call it themselves."""
    for r, main, whole, after_cc in _shaped(regions, shape)[first:]:
        if whole:
            for nn in r.strip_prefix(digits):
                if _valid_in_country(r.cc, nn) and main.grouped_as(nn, parts):
                    return True
        if after_cc and parts[0] == r.cc:
            nn = digits[len(r.cc):]
            if _valid_in_country(r.cc, nn) and main.grouped_as(nn, parts[1:]):
                return True
    return False


@functools.lru_cache(maxsize=1024)
def _shaped(regions: tuple[str, ...], shape: tuple[int, ...]) -> tuple[tuple[_Region, _Region, bool, bool], ...]:
    """The regions whose national format can group digits in ``shape``: (rules, main region's rules, as a whole,
    after a leading country code). Most digit runs (a card number in groups of four) fit none, or one or two."""
    out = []
    for r, main in _rules(regions):
        whole = main.shapes is None or shape in main.shapes
        after_cc = len(shape) > 1 and shape[0] == len(r.cc) and (main.shapes is None or shape[1:] in main.shapes)
        if whole or after_cc:
            out.append((r, main, whole, after_cc))
    return tuple(out)


@functools.lru_cache(maxsize=1024)
def _quick_reject(regions: tuple[str, ...], shape: tuple[int, ...]) -> re.Pattern[str] | None:
    """``_quick_alternatives`` as one regex (what ``quick_by_digit`` splits), or None."""
    alternatives = _quick_alternatives(regions, shape)
    return None if alternatives is None else re.compile("|".join(alternatives) or "(?!)")


QuickCheck = Callable[[str], "re.Match[str] | None"]


class QuickByDigit(dict[str, "QuickCheck | None"]):
    """``_quick_reject`` split by the first digit of the number: ``table[d]`` is the ``fullmatch`` of the regions'
    alternatives that can start with digit ``d`` (``leading.first_digits``), in the same order (so the same
    ``q<k>`` group matches first), or None when none can.

    A page of card numbers checks each run's windows against regions that mostly cannot start with its first
    digit: the split regex skips them (half the time of the quick reject for 4-4 windows, a tenth for 4-4-4).
    Each digit's regex is built on demand, once the shape has been checked ``SPLIT_AFTER`` times (until then
    the whole reject answers): not in ``warm_up``, where the split for every shape and digit would add half a
    second to the engine's start-up (which the first request waits for), and not for a shape seen a few times
    in a request (code's dates and versions), whose compile (about a millisecond each) would cost more than
    the split saves."""

    def __init__(self, alternatives: tuple[str, ...], whole: re.Pattern[str],
                 regions: tuple[str, ...] = (), shape: tuple[int, ...] = ()) -> None:
        super().__init__()
        self._alternatives = alternatives
        self._whole = whole
        self._firsts: list[frozenset[str]] | None = None
        self._lock = threading.Lock()
        self._checks = 0
        self._regions = regions
        self._shape = shape
        #: The first ``PREFIX_DIGITS`` digits of every number of this shape that can pass the whole check
        #: (``window_prefixes``), once the shape has been checked ``FILTER_AFTER`` times; None until then, or
        #: when it cannot be computed. Callers reject a number whose prefix is not in it before any regex.
        self.prefixes: frozenset[str] | None = None
        self.prefix_bytes: frozenset[bytes] = frozenset()  # ``prefixes`` as bytes, and by their first two digits
        self.prefix_pairs = bytes(256)  # (``bulk.pair_table``), for ``numbers.Numbers._sieve``
        self._filter_checks = 0
        self._filter_passed = 0
        self._filtered = False

    def tick(self, passed: bool) -> None:
        """Count a check of this shape and whether it passed the quick reject (callers do while ``prefixes`` is
        None). The ``FILTER_AFTER``-th computes ``prefixes`` (0.05 to 0.7 s of CPU once per process, on the
        request that gets there: not worth it for a shape seen a few times, as code's dates and versions are),
        unless more than ``FILTER_MAX_PASS`` of the checks passed the quick reject: then most numbers of the
        shape are valid (a page of US numbers) and the filter could reject few of them for its cost."""
        self._filter_checks += 1
        self._filter_passed += passed
        if self._filter_checks >= FILTER_AFTER and not self._filtered and self._regions:
            with self._lock:
                if not self._filtered:
                    self._filtered = True
                    if self._filter_passed > FILTER_MAX_PASS * self._filter_checks:
                        return
                    found = window_prefixes(self._regions, self._shape)
                    if found is not None:
                        self.prefix_bytes = frozenset(p.encode("ascii") for p in found)
                        self.prefix_pairs = pair_table(found)
                    self.prefixes = found

    def __missing__(self, digit: str) -> QuickCheck | None:
        if len(digit) != 1 or not "0" <= digit <= "9":
            raise KeyError(digit)
        self._checks += 1  # not exact across threads: only decides when the split is built
        if self._checks <= SPLIT_AFTER:
            return self._whole.fullmatch  # not stored: the next check of this digit comes back here
        with self._lock:  # scans may run in worker threads
            if self._firsts is None:
                self._firsts = [first_digits(a) for a in self._alternatives]
            keep = tuple(a for a, f in zip(self._alternatives, self._firsts, strict=True) if digit in f)
            check = (None if not keep else self._whole.fullmatch if len(keep) == len(self._alternatives)
                     else re.compile("|".join(keep)).fullmatch)
            self[digit] = check
            return check


SPLIT_AFTER = 64  # checks of a shape answered by the whole quick reject before it is split by first digit
FILTER_AFTER = 2048  # checks of a shape before its prefix filter (``window_prefixes``) is computed
FILTER_MAX_PASS = 0.5  # ...unless more than this share of them passed the quick reject
PREFIX_DIGITS = 4  # how many first digits the prefix filter reads (3: twice the windows pass it, at the same cost)


@functools.lru_cache(maxsize=1024)
def quick_by_digit(regions: tuple[str, ...], shape: tuple[int, ...]) -> QuickByDigit | None:
    """The quick reject of ``shape`` in ``regions`` split by first digit (``QuickByDigit``), or None when there
    is no quick reject (a region's formats are not plain digit groups)."""
    alternatives = _quick_alternatives(regions, shape)
    whole = _quick_reject(regions, shape)
    return None if alternatives is None or whole is None else QuickByDigit(alternatives, whole, regions, shape)


def window_prefixes(regions: tuple[str, ...], shape: tuple[int, ...]) -> frozenset[str] | None:
    """The first ``PREFIX_DIGITS`` digits of every window of ``shape`` that ``valid_national_from`` can accept in
    ``regions`` (a superset), or None (no filter). A window passes for a region only when some split of it,
    an optional national prefix (``strip_prefix``) or the country code (``after_cc``) then ``nn``, has ``nn``
    both valid in the country (``_country_valid``) and matched by a format of the shape (``grouped_as``'s
    quick reject): the quick reject's alternatives with the country's validity pattern for its general one,
    read by ``prefixes.prefixes``. About 3 % of random ``dddd dddd`` windows pass it (26 % the quick reject)."""
    alternatives = []
    for r, main, whole, after_cc in _shaped(regions, shape):
        if main.shapes is None:
            return None
        alternatives += _region_forms(r, main, whole, after_cc, shape, f"(?:{_country_valid(r.cc).__self__.pattern})")
    return prefixes("|".join(f"(?:{a})" for a in alternatives) or "(?!)", PREFIX_DIGITS, sum(shape))


@functools.lru_cache(maxsize=1024)
def _quick_alternatives(regions: tuple[str, ...], shape: tuple[int, ...]) -> tuple[str, ...] | None:
    """One regex over the digits that every number of ``shape`` valid in ``regions`` matches (a necessary
    condition: a national prefix, the general pattern of its country, then a format of that shape whose
    leading digits and pattern fit), so that most digit runs cost one call in C; None when a region's formats
    are not plain digit groups. About 2 KB of pattern per shape, 180 shapes for the default regions.

    Each region's alternatives sit in a group named ``q<k>`` (k: its index in ``_shaped``), so a match says
    which is the first region whose condition holds: the regions before it need no further check."""
    alternatives = []
    for k, (r, main, whole, after_cc) in enumerate(_shaped(regions, shape)):
        if main.shapes is None:
            return None
        # The formats (short, literal leading digits: most runs fail them at once) are tried before the country's
        # general pattern (long): both must match the whole rest, so their order does not change the answer,
        # only the time (about half).
        mine = _region_forms(r, main, whole, after_cc, shape, f"(?:{_country_general(r.cc).pattern})\\Z")
        alternatives.append(f"(?P<q{k}>" + "|".join(f"(?:{a})" for a in mine) + ")")
    return tuple(alternatives)


def _region_forms(r: _Region, main: _Region, whole: bool, after_cc: bool, shape: tuple[int, ...],
                  country: str) -> list[str]:
    """A region's ways to write a number of ``shape`` (see ``_shaped``) as regexes: an optional national prefix
    (``whole``) or the country code (``after_cc``), a format of the shape as a look-ahead, then ``country`` (the
    country's general or validity pattern) over the national number."""
    out = []
    if whole:
        prefix = r.prefix_parsing.pattern if r.prefix_parsing is not None else re.escape(r.prefix) if r.prefix else ""
        formats = f"(?={_formats_regex(main.by_shape.get(shape, ()), shape)}\\Z){country}"
        out.append(f"(?:{prefix})?{formats}" if prefix else formats)
    if after_cc:
        out.append(f"{r.cc}(?={_formats_regex(main.by_shape.get(shape[1:], ()), shape[1:])}\\Z){country}")
    return out


def _formats_regex(formats: Sequence[Format], shape: tuple[int, ...]) -> str:
    """Number formats as one regex, each one's leading digits (a prefix) and pattern with its digit groups at the
    lengths that render as ``shape``."""
    parts = []
    for leading, pattern, pieces in formats:
        ahead = f"(?={leading.pattern})" if leading is not None else ""
        parts += [ahead + exact for exact in _exact(pattern.pattern, tuple(pieces), shape)]
    return "(?:" + "|".join(parts or ["(?!)"]) + ")"


def _exact(pattern: str, pieces: tuple[str | int, ...], shape: tuple[int, ...]) -> list[str]:
    """``pattern`` (a plain sequence of digit groups) once per choice of group lengths that renders as ``shape``."""
    groups = _GROUP.findall(pattern)
    classes = _GROUP_CLASS.findall(pattern)
    ranges = [range(int(lo or 1), int(hi or lo or 1) + 1) for lo, hi in groups]
    out = []
    for combo in itertools.product(*ranges):
        rendered = "".join("5" * combo[p - 1] if isinstance(p, int) else p for p in pieces)
        if tuple(len(g) for g in _GROUPS.findall(rendered)) == shape:
            out.append("".join(f"({c}{{{n}}})" for c, n in zip(classes, combo, strict=True)))
    return out


_GROUP_CLASS = re.compile(r"\((\\d|\[[\d-]+\])")


def warm_up(regions: Sequence[str], by_length: dict[int, tuple[str, ...]] | None = None) -> None:
    """Build the rules of ``regions`` and of the countries they belong to (done once, at engine start-up), and
    with ``by_length`` (the regions to try for each digit count) the quick reject of every shape they write
    (about a millisecond each; 180 for the default regions), so that no scan pays for compiling them."""
    shapes: set[tuple[int, ...]] = set()
    for code in regions:
        r = region(code)
        if r is not None:
            main = _country(int(r.cc))[0]
            _country_general(r.cc)
            _country_valid(r.cc)
            for shape in main.shapes or ():
                shapes.update((shape, (len(r.cc), *shape)))
    for shape in shapes:
        if by_length is not None and len(shape) > 1 and sum(shape) in by_length:
            _quick_reject(by_length[sum(shape)], shape)

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
from collections.abc import Sequence
from typing import Any

import phonenumbers

_GROUPS = re.compile(r"[0-9]+")
_TYPES = ("premium_rate", "toll_free", "shared_cost", "voip", "personal_number", "pager", "uan", "voicemail",
          "fixed_line", "mobile")


class _Region:
    """One region's compiled rules."""

    __slots__ = ("cc", "formats", "general", "lengths", "prefix", "prefix_parsing", "shapes", "types")

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
        self.shapes = _shapes(self.formats)

    def valid(self, nn: str) -> bool:
        n = len(nn)
        if n not in self.lengths or self.general is None or self.general.fullmatch(nn) is None:
            return False
        return any(n in lengths and p.fullmatch(nn) is not None for lengths, p in self.types)

    def national_groups(self, nn: str) -> list[str]:
        for leading, pattern, pieces in self.formats:
            if leading is not None and leading.match(nn) is None:
                continue
            m = pattern.fullmatch(nn)
            if m is not None:
                return _GROUPS.findall("".join(m.group(p) if isinstance(p, int) else p for p in pieces))
        return [nn]

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
            rules = _country(cc)
            return any(r.valid(nn) for r in rules for nn in r.strip_prefix(digits[n:]))
    return False


@functools.lru_cache(maxsize=256)
def _country_general(cc: str) -> re.Pattern[str]:
    """The general patterns of every region of a country code, in one regex (a quick reject)."""
    patterns = [r.general.pattern for r in _country(int(cc)) if r.general is not None]
    return re.compile("|".join(f"(?:{p})" for p in patterns) or "(?!)")


def _valid_in_country(cc: str, nn: str, first: _Region) -> bool:
    """Valid in any region that shares the country code (phonenumbers finds the region from the number)."""
    if _country_general(cc).fullmatch(nn) is None:
        return False
    return first.valid(nn) or any(r.valid(nn) for r in _country(int(cc)) if r is not first)


@functools.lru_cache(maxsize=64)
def _rules(regions: tuple[str, ...]) -> tuple[tuple[_Region, _Region], ...]:
    """Each region's rules with its country's main region (whose formats apply: US for all of +1)."""
    out = []
    for code in regions:
        r = region(code)
        if r is not None:
            out.append((r, _country(int(r.cc))[0]))
    return tuple(out)


def valid_national(parts: list[str], regions: Sequence[str]) -> bool:
    """Whether the digit groups ``parts`` are a valid number of one of ``regions``, grouped as it writes them."""
    digits = "".join(parts)
    shape = tuple(map(len, parts))
    for r, main in _rules(tuple(regions)):
        if main.shapes is not None and shape not in main.shapes and not (parts[0] == r.cc and shape[1:] in main.shapes):
            continue
        for nn in r.strip_prefix(digits):
            if main.national_groups(nn) == parts and _valid_in_country(r.cc, nn, r):
                return True
        if len(parts) > 1 and parts[0] == r.cc:
            nn = digits[len(r.cc):]
            if main.national_groups(nn) == parts[1:] and _valid_in_country(r.cc, nn, r):
                return True
    return False


def warm_up(regions: Sequence[str]) -> None:
    """Build the rules of ``regions`` and of the countries they belong to (done once, at engine start-up)."""
    for code in regions:
        r = region(code)
        if r is not None:
            _country(int(r.cc))
            _country_general(r.cc)

"""Digit runs: payment cards (brand ranges and Luhn), US SSNs and phone numbers (``phonenumbers``)."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any

import phonenumbers

from tollway.governance.dlp.bulk import (
    NOT_DIGITS,
    VALUE,
    both,
    indices,
    luhn_flags,
    pair_codes,
    pair_table,
    windows,
)
from tollway.governance.dlp.phones import (
    PREFIX_DIGITS,
    _shaped,
    quick_by_digit,
    valid_bare,
    valid_international,
    valid_national_from,
    valid_written,
)
from tollway.governance.dlp.phones import forget as forget_groupings
from tollway.governance.dlp.result import Span
from tollway.governance.dlp.tables import Tables, in_cell

_MAESTRO = tuple(range(12, 20))
_CARD_BRANDS: tuple[tuple[int, int, int, tuple[int, ...]], ...] = (
    # (first prefix, last prefix, prefix digits, lengths)
    (4, 4, 1, (13, 16, 19)),                     # Visa
    (51, 55, 2, (16,)), (2221, 2720, 4, (16,)),  # Mastercard
    (34, 34, 2, (15,)), (37, 37, 2, (15,)),      # American Express
    (6011, 6011, 4, (16, 17, 18, 19)), (644, 649, 3, (16, 17, 18, 19)), (65, 65, 2, (16, 17, 18, 19)),  # Discover
    (3528, 3589, 4, (16, 17, 18, 19)),           # JCB
    (300, 305, 3, (14, 15, 16, 17, 18, 19)), (36, 36, 2, (14, 15, 16, 17, 18, 19)), (3095, 3095, 4, (14, 16)),
    (38, 39, 2, (14, 16, 17, 18, 19)),           # Diners Club (14 digits: Diners Club International)
    (62, 62, 2, (16, 17, 18, 19)),               # UnionPay
    # Maestro: 12 to 19 digits; 12 only in its own IIN ranges (not 56-58, shared with other issuers), where a random
    # 12-digit number (an order or AWS account id) is one with Luhn about once in 10,000 (Visa's 16: once in 100).
    # Its own ranges issue every length from 12 to 19 (a held-out probe's 14-, 17- and 18-digit 6759 cards).
    (5018, 5018, 4, _MAESTRO), (5020, 5020, 4, _MAESTRO), (5038, 5038, 4, _MAESTRO), (5893, 5893, 4, _MAESTRO),
    (6304, 6304, 4, _MAESTRO), (6759, 6759, 4, _MAESTRO), (6761, 6763, 4, _MAESTRO), (56, 58, 2, (13, 16, 19)),
    (2200, 2204, 4, (16, 17, 18, 19)),           # Mir
    (2205, 2205, 4, (16,)),                      # BORICA
    (60, 60, 2, (16,)), (81, 82, 2, (16,)), (508, 508, 3, (16,)), (353, 353, 3, (16,)), (356, 356, 3, (16,)),  # RuPay
    (5019, 5019, 4, (16,)),                      # Dankort
    (5060, 5061, 4, (16, 18, 19)), (6500, 6500, 4, (16, 18, 19)),  # Verve
    (509, 509, 3, (16,)),                        # Elo (the ranges outside Visa's and Discover's)
    (636, 636, 3, (16, 17, 18, 19)), (637, 639, 3, (16,)),  # InterPayment, InstaPayment
    (31, 31, 2, (19,)),                          # China T-Union
    (1946, 1946, 4, (16, 18, 19)),               # GPN (Indonesia)
    (9792, 9792, 4, (16,)),                      # Troy
    (9704, 9704, 4, (16, 19)),                   # Napas
    (9860, 9860, 4, (16,)),                      # Humo
)


# Luhn with bytes: one table turns ASCII digits into their values, another into the digit sum of their double;
# ``sum`` over bytes adds them in C (no Python loop over digits).
_VALUE = bytes.maketrans(b"0123456789", bytes(range(10)))
_DOUBLED = bytes.maketrans(b"0123456789", bytes((2 * d if d < 5 else 2 * d - 9) for d in range(10)))


def _luhn(digits: str) -> bool:
    """The Luhn check of an ASCII digit string: from the right, every second digit doubled (9 taken off above 9)."""
    b = digits.encode("ascii")
    return (sum(b[-1::-2].translate(_VALUE)) + sum(b[-2::-2].translate(_DOUBLED))) % 10 == 0


_SCALE = {1: 1000, 2: 100, 3: 10, 4: 1}
_CARD_MIN = 12  # the shortest card (Maestro)
#: For each card length, the first four digits that some brand issues at that length (strings: no ``int`` per run).
_BRAND_PREFIXES: dict[int, frozenset[str]] = {
    n: frozenset(str(p4) for lo, hi, plen, lengths in _CARD_BRANDS if n in lengths
                 for p4 in range(lo * _SCALE[plen], (hi + 1) * _SCALE[plen]))
    for n in range(_CARD_MIN, 20)
}
_NO_BRAND: frozenset[str] = frozenset()
#: Per card length, a ``translate`` table of the first two digits some brand issues at that length (``bulk``).
_BRAND_PAIRS = {n: pair_table(prefixes) for n, prefixes in _BRAND_PREFIXES.items()}


def _ean13(digits: str) -> bool:
    """Whether 13 digits carry a valid EAN-13 check digit (weights 1 and 3 from the left). A 13-digit card number
    (Visa's old length, rare today) that is also one is read as the product code it far more often is
    (``4052683830951`` in a catalogue); a random 13-digit number passes both checks once in a hundred."""
    b = digits.encode("ascii").translate(_VALUE)
    return (sum(b[0:12:2]) + 3 * sum(b[1:12:2]) + b[12]) % 10 == 0


def _card_brand_ok(digits: str) -> bool:
    return digits[0] != "0" and digits[:4] in _BRAND_PREFIXES.get(len(digits), _NO_BRAND)


_SSN_CONTEXT = re.compile(r"(?i)(?:\bssn|social[ _\-]?security|\bss[ _]?#|\bssa\b|\btin\b|\bitin\b)")


def _ssn_context(text: str, start: int) -> bool:
    """A bare 9-digit number is an SSN only after a word that says so, within 40 characters."""
    return _SSN_CONTEXT.search(text, max(0, start - 40), start) is not None


#: Words that say a phone number follows, in the languages of the default regions, lower case.
PHONE_WORDS = (
    "phone", "tel", "telephone", "téléphone", "tél", "cellphone", "mobile", "gsm", "fon", "fax", "whatsapp", "sms",
    "portable", "telefon", "handy", "mobil", "teléfono", "telefono", "móvil", "movil", "cellulare", "telefoon",
    "mobiel", "telefone", "celular", "komórka", "komorka", "rufnummer", "anrufen", "ruf mich an", "llámame",
    "llamame", "llámanos", "llamanos", "appelez", "appelle-moi", "appellez-moi", "chiamami", "chiamaci", "bel me",
    "bel ons", "ligue", "contact", "kontakt", "contacto", "contatto", "contato", "my number", "meine nummer",
    "mon numéro", "mon numero", "mi número", "mi numero", "rappeler", "rappelez", "rappelle-moi", "reach me",
    "reach us", "text me", "ring me", "mijn nummer", "mio numero", "meu número", "meu numero", "mój numer",
    "moj numer")
def _words_regex(words: list[str]) -> str:
    """An alternation over lower-case text of ``words`` between word boundaries, one branch per first letter that
    starts with that letter as a literal: ``re`` then looks only at positions holding one of those letters (its
    first-character set), instead of trying every word at every position (a (?i) alternation of the 60 words cost
    about 5 µs a search here)."""
    heads: dict[str, list[str]] = {}
    for w in words:
        heads.setdefault(w[0], []).append(w[1:])
    return "|".join(re.escape(c) + r"(?<!\w.)(?:" + "|".join(re.escape(t) for t in sorted(tails, key=len, reverse=True))
                    + r")(?!\w)" for c, tails in sorted(heads.items()))


# Over the lower-cased 40 characters before a number: a phone word; a short label only with its colon (``cell:``,
# ``ph.``, ``mob:``: "the cell count" is no phone); a signature's ``T:``/``M:``/``F:``/``P:`` at a line's start;
# Japanese's 電話, 携帯, 問い合わせ, 連絡先. Every branch starts with a literal (see ``_words_regex``). "call" only
# right before the number (``_CALL_BEFORE``): in code, a call is a function's.
_PHONE_CONTEXT = re.compile(
    _words_regex(sorted(PHONE_WORDS)) + r"|c(?<!\w.)ell(?= *[:.#])|p(?<!\w.)h(?= *[:.#])|m(?<!\w.)ob(?= *[:.#])"
    + "".join(f"|{c}" + r"(?<![^\n].)[ \t]*[:.]" for c in "tmfp") + "|電話|携帯|問い合わせ|連絡先")
_CALL_BEFORE = re.compile(r"(?i)\bcall(?: (?:me|us|him|her|them))?(?: (?:at|on))?[ :]*\Z")


def _phone_context(text: str, start: int) -> bool:
    """A national number written as one run of digits (``0612345678``) is one only after a word that says so,
    within 40 characters: a bare run of that length is as often an id, a count or a timestamp. (The window is
    lower-cased with the character before it, which the boundary checks read.)"""
    window = text[start - 41:start].lower() if start > 41 else "\n" + text[:start].lower()
    return (_PHONE_CONTEXT.search(window, 1) is not None
            or _CALL_BEFORE.search(text, max(0, start - 20), start) is not None)


_SSN_BAD = frozenset(("078051120", "219099999"))  # numbers published in advertising, never valid


def _ssn_ok(area: str, group: str, serial: str) -> bool:
    a = int(area)
    return (a != 0 and a != 666 and a < 900 and group != "00" and serial != "0000"
            and area + group + serial not in _SSN_BAD)


# A window that is a date is no phone number; nor one that starts with a date with a four-digit year (a timestamp:
# 2024-09-19 14:30). One that starts with what could be a two-digit-year date may be: France writes 01.42.68.53.00.
# (Shapes only, no digit values: see ``Numbers._plan``.)
_DATE_LIKE = re.compile(r"(?:\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{2,4})")
_DATE_FIRST = re.compile(r"\d{4}[-/.]\d{1,2}[-/.]\d{1,2}|\d{1,2}[-/.]\d{1,2}[-/.]\d{4}")
_GROUPS = re.compile(r"[0-9]+")
_AFTER_00 = 2  # ``Numbers._context_shape``: a shape that can be a phone number only after 00
_NEVER: list[Span] = []  # ``Numbers._memo``'s entry for a run with no finding that no word before it can change
_YEAR_FIRST = re.compile(r"(?:19|20)[0-9]{2}[-/.][0-9]{1,2}[-/.][0-9]{1,2}"
                         r"|[0-9]{1,2}[-/.][0-9]{1,2}[-/.](?:19|20)[0-9]{2}")
_PHONE_SEPS = frozenset((" ", "-", ".", ") ", ")", "(", " (", ")-", ")."))


_NATIONAL_LENGTHS: dict[int, frozenset[int]] = {}


def _plus_length_ok(digits: str) -> bool:
    """Whether +digits starts with a country code and has a national number length that country uses."""
    for n in (1, 2, 3):
        cc = int(digits[:n])
        regions = phonenumbers.COUNTRY_CODE_TO_REGION_CODE.get(cc)
        if regions is None:
            continue
        lengths = _NATIONAL_LENGTHS.get(cc)
        if lengths is None:
            found: set[int] = set()
            for region in regions:
                meta = (phonenumbers.PhoneMetadata.metadata_for_nongeo_region(cc) if region == "001"
                        else phonenumbers.PhoneMetadata.metadata_for_region(region))
                if meta is not None and meta.general_desc is not None:
                    found.update(meta.general_desc.possible_length or ())
            lengths = _NATIONAL_LENGTHS[cc] = frozenset(found)
        return len(digits) - n in lengths
    return False


MEMO_ITEMS = 4096
BULK_MIN = 16  # runs of one shape in a scan from which their windows are sieved together (``Numbers.handle_many``)


class Numbers:
    """Validators for digit runs: payment cards, US SSNs, phone numbers; and IBANs."""

    def __init__(self, regions: Sequence[str]) -> None:
        self.regions = tuple(regions)
        # How many digits a national number of each region may have (with its trunk prefix or country code).
        self.lengths: dict[str, frozenset[int]] = {}
        for region in self.regions:
            meta = phonenumbers.PhoneMetadata.metadata_for_region(region)
            possible = tuple(meta.general_desc.possible_length or ()) if meta and meta.general_desc else ()
            extra = {0, len(meta.national_prefix or ""), len(str(meta.country_code))} if meta else {0}
            self.lengths[region] = frozenset(n + x for n in possible for x in extra)
        self.all_lengths = frozenset().union(*self.lengths.values())
        self.by_length = {n: tuple(r for r in self.regions if n in self.lengths[r]) for n in range(20)}
        #: Findings by the text of a digit run (relative to its start), for runs repeated within a scan: a run's
        #: findings depend on its text alone, except for a bare number of up to 12 digits (an SSN or a phone number
        #: only after a word that says so). Emptied after every scan (``Builtin.scan``), so no number outlives its
        #: request here.
        self._memo: dict[str, list[Span]] = {}
        #: ``_plan`` by the shape of a run (the run with every digit written 5: group lengths, separators, lead):
        #: no digits, so kept across scans.
        self._plans: dict[bytes, Plan] = {}
        #: ``_context_shape`` by shape (no digits either).
        self._context_shapes: dict[bytes, int] = {}
        self._tables = Tables()

    def forget(self) -> None:
        """Drop the memos: digit runs are personal data, and are not kept past the scan that saw them (nor are
        the first digits by which ``phones`` remembers how a number is grouped, nor the tables read)."""
        self._memo.clear()
        self._tables.forget()
        forget_groupings()

    def _phone_column(self, text: str, start: int) -> bool:
        """The run is in a table column whose name says phone (``tables``: ``name,phone`` over
        ``Ann,0612345678``): asked only of a valid number that starts a cell and has no phone word before it."""
        column = self._tables.column(text, start)
        return column is not None and _PHONE_CONTEXT.search(" " + column, 1) is not None

    def _ssn_column(self, text: str, start: int) -> bool:
        column = self._tables.column(text, start)
        return column is not None and _SSN_CONTEXT.search(column) is not None

    def handle(self, text: str, start: int, end: int) -> list[Span]:
        """Findings in the digit run text[start:end], which may start with '+' or '(' (see ``_handle``); for a
        run of groups with none, whether it is a phone number after a word that says so (``_in_context``)."""
        run = text[start:end]
        known = self._memo.get(run)
        if known is None:
            spans = self._handle(text, start, run)
            if not (len(run) <= 12 and run.isdigit()):  # a bare SSN or phone number depends on the words before it
                if len(self._memo) >= MEMO_ITEMS:
                    self._memo.clear()
                known = self._memo[run] = ([(s - start, e - start, kind) for s, e, kind in spans] if spans
                                           else [] if self._may_follow_word(run) else _NEVER)
            if spans:
                return spans
        elif known:
            return [(start + s, start + e, kind) for s, e, kind in known]
        return [] if known is _NEVER else self._in_context(text, start, run)

    def _may_follow_word(self, run: str, key: bytes | None = None) -> bool:
        """Whether ``_in_context`` can find ``run`` a phone number after some word: what its shape and digits
        alone decide (``_context_shape``, the ``00`` prefix, a year first)."""
        if key is None:
            key = run.encode("ascii").translate(_SHAPE)
        ok = self._context_shapes.get(key)
        if ok is None:
            ok = self._context_shape(key)
        return bool(ok) and (ok != _AFTER_00 or run[:2] == "00") and _YEAR_FIRST.match(run) is None

    def _in_context(self, text: str, start: int, run: str, key: bytes | None = None) -> list[Span]:
        """A run of digit groups that is no finding as written (``_handle``: a national number counts only grouped
        as its region writes it) is a phone number when a word that says so comes right before it (``Tel:``,
        ``mobile``…) and its digits are a valid number of one of the regions, with or without the trunk prefix
        (``030/12345678``, ``912 345 678``, ``98765 43210``), or an international number after ``00``
        (``0044 20 7123 4567``). People group numbers in many ways; the word is what makes the digits a phone
        number, as it is for a bare run. ``key``: the run's shape, when the caller has it."""
        if not self._may_follow_word(run, key):
            return []
        if not _phone_context(text, start) and not (in_cell(text, start) and self._phone_column(text, start)):
            return []
        groups = _GROUPS.findall(run)
        digits = "".join(groups)
        if digits[:2] == "00":
            nn = digits[2:]
            valid = 7 <= len(nn) <= 15 and _plus_length_ok(nn) and valid_international(nn)
        else:
            valid = (len(groups) <= 6 and len(digits) <= 15 and len(digits) in self.all_lengths
                     and valid_written(digits, self.regions))
        return [(start, start + len(run), "phone_number")] if valid else []

    def _context_shape(self, key: bytes) -> int:
        """Whether runs of this shape may be a phone number after a phone word (``_in_context``): two to seven digit
        groups, 8 to 17 digits (a local number of 7, 555-1234, is not enough; ``_in_context`` allows more than six
        groups and 15 digits only after ``00``), no '+' (the plan checks those), not written as a date, a version
        or an address (dots between short groups); a run that starts with a year (2024/09/19 14:30) is refused by
        its digits. 0: no; ``_AFTER_00``: only a run that starts with 00 (a card in groups of four is 16 digits: no
        phone word is looked for before it); 1: yes."""
        shape = key.decode("ascii")
        lens = [len(g) for g in _GROUPS.findall(shape)]
        digits = sum(lens)
        seps = _GROUPS.split(shape)[1:-1]
        possible = (shape[0] != "+" and 2 <= len(lens) <= 7 and 8 <= digits <= 17
                    and _DATE_LIKE.fullmatch(shape) is None
                    and not (all(sep == "." for sep in seps) and max(lens) <= 3))
        ok = 0 if not possible else _AFTER_00 if digits > 15 or len(lens) > 6 else 1
        if len(self._context_shapes) >= MEMO_ITEMS:
            self._context_shapes.clear()
        self._context_shapes[key] = ok
        return ok

    def handle_many(self, text: str, runs: list[tuple[int, int]]) -> list[list[Span]]:
        """``handle`` of each digit run ``text[start:end]`` in ``runs``, the same answers: runs of a shape seen
        ``BULK_MIN`` times or more are first sieved together (``_sieve``), and only those that pass it are
        checked one by one; the others have no finding."""
        out: list[list[Span]] = [[] for _ in runs]
        texts = [text[s:e] for s, e in runs]
        by_shape: dict[bytes, list[int]] = {}
        for k, run in enumerate(texts):
            by_shape.setdefault(run.encode("ascii").translate(_SHAPE), []).append(k)
        for key, ks in by_shape.items():
            if len(ks) >= BULK_MIN:
                plan = self._plan_of(key)
                if not plan:
                    continue
                kept = self._sieve(key, plan, [texts[k] for k in ks], ks)
                if len(kept) < len(ks) and self._context_shapes.get(key, True) and self._context_shape(key):
                    passed = set(kept)  # the runs the sieve drops have no finding as written: in context?
                    for k in ks:
                        if k not in passed:
                            out[k] = self._in_context(text, runs[k][0], texts[k], key)
                ks = kept
                if plan[0] is not None:
                    ks = _whole_run(plan, len(key), runs, texts, ks, out)
            for k in ks:
                start, end = runs[k]
                out[k] = self.handle(text, start, end)
        return out

    def _sieve(self, shape: bytes, plan: Plan, texts: list[str], ks: list[int]) -> list[int]:
        """The runs of ``ks`` (their texts: ``texts``, all of ``shape``) that may have a finding: those with a
        window that passes a necessary condition of its check, computed for all of them at once (``bulk``).
        Card windows: brand by the first two digits and Luhn; phone windows: the prefix filter
        (``QuickByDigit.prefixes``). A run with a window of another kind, or a phone window whose filter is
        not computed yet, is kept, as is every run then."""
        lens = [len(g) for g in _GROUPS.findall(shape.decode("ascii"))]
        stride, count = sum(lens), len(ks)
        steps: list[tuple[Any, ...]] = ([("card", 0, 0, 0, 0, None)] if plan[0] is None else
                                        [step for _at, group in plan for step in group])
        if plan[0] is None and (shape[:1] in b"+(" or not 13 <= stride <= 19):
            return ks  # one group: a +number or an SSN
        if any(kind != "card" and (kind != "phone" or quick is None or quick.prefixes is None)
               for kind, _i, _j, _s, _e, quick, *_rest in steps):
            return ks  # (the per-run checks count the phone windows towards their filters)
        digits = "".join(texts).encode("ascii").translate(None, NOT_DIGITS)
        values = digits.translate(VALUE)
        firsts = [sum(lens[:i]) for i in range(len(lens))]
        keep: set[int] = set()
        for kind, i, j, _s, _e, quick, *_rest in steps:
            a = firsts[i]
            if kind == "card":
                width = firsts[j] + lens[j] - a
                flags = both(luhn_flags(windows(values, stride, a, width, count), width, count),
                             pair_codes(values, stride, a, count).translate(_BRAND_PAIRS[width]), count)
                keep.update(indices(flags))
            elif kind == "phone" and quick is not None and quick.prefixes is not None:
                allowed = quick.prefix_bytes
                flags = pair_codes(values, stride, a, count).translate(quick.prefix_pairs)
                keep.update(n for n in indices(flags)
                            if digits[n * stride + a:n * stride + a + PREFIX_DIGITS] in allowed)
        return [ks[n] for n in sorted(keep)]

    def _plan_of(self, key: bytes) -> Plan:
        plan = self._plans.get(key)
        if plan is None:
            if len(self._plans) >= MEMO_ITEMS:
                self._plans.clear()
            plan = self._plans[key] = self._plan(key.decode("ascii"))
        return plan

    def _handle(self, text: str, start: int, run: str) -> list[Span]:
        """Findings in the digit run ``run`` at ``start`` of ``text``, which may start with '+' or '('.

        The run is split into digit groups; from each group on, the longest window of consecutive
        groups that is a card, an SSN or a phone number is taken, and the search goes on after it.
        Everything that depends on the shape of the run alone (``_plan``) is decided once per shape, from
        the run with its digits written 5 (one ``bytes.translate``): most runs (dates, times, addresses,
        ids) stop there, and the others only check their digits.
        """
        plan = self._plan_of(run.encode("ascii").translate(_SHAPE))  # the run is ASCII: the candidate regex's class
        if not plan:
            return []
        if plan[0] is None:  # one group: a card written without separators, or a +number, or a 9-digit SSN
            return self._one_group(text, start, run)
        groups = _GROUPS.findall(run)
        spans: list[Span] = []
        used_until = -1
        for at, steps in plan:
            if at < used_until:
                continue
            found = _try(groups, steps)
            if found is not None:
                spans.append((start + found[0], start + found[1], found[2]))
                used_until = found[1]
        return spans

    def _one_group(self, text: str, start: int, run: str) -> list[Span]:
        end = start + len(run)
        lead = run[0] if run[0] in "+(" else ""
        digits = run[len(lead):]
        n = len(digits)
        if _CARD_MIN <= n <= 19 and not lead and _card_brand_ok(digits) and _luhn(digits) \
                and not (n == 13 and _ean13(digits)):
            return [(start, end, "payment_card")]
        if 13 <= n <= 19 and not lead:
            return []
        if lead == "+":
            if 7 <= n <= 15 and _plus_length_ok(digits) and valid_international(digits):
                return [(start, end, "phone_number")]
        elif lead == "":
            if n == 9 and (_ssn_context(text, start) or (in_cell(text, start) and self._ssn_column(text, start))) \
                    and _ssn_ok(digits[:3], digits[3:5], digits[5:]):
                return [(start, end, "us_ssn")]
            if n <= 12 and n in self.all_lengths:
                if _phone_context(text, start):
                    if valid_bare(digits, self.regions):
                        return [(start, end, "phone_number")]
                elif in_cell(text, start) and self._phone_column(text, start) and valid_bare(digits, self.regions):
                    return [(start, end, "phone_number")]
        return []

    def _plan(self, shape: str) -> Plan:
        """What to check in a run of this ``shape`` (the run with its digits written 5): () when nothing can be
        found (fewer than 7 digits), ``(None,)`` for one group, else per group i that has any, (where it starts
        in the run, its steps): the checks worth making on windows of groups starting there, in the order made.

        The longest card, SSN or phone number starting at group i (after the lead, '+' or '(', for group 0)
        is the answer there; windows are tried longest first, so the first hit is it (and a long run whose
        whole is a phone number costs one check, not one per prefix). Everything that depends on the group
        lengths and separators is decided here (dates included: ``_DATE_LIKE`` reads no digit values), as are
        the regions and the quick reject each phone window is checked with; what depends on the digits (brand
        and Luhn, SSN ranges, the phone metadata) is left to ``_try``. Each step is (kind, i, j, start, end,
        quick reject, regions, group lengths) for the window of groups i..j, positions relative to the run.
        """
        pos = [m.span() for m in _GROUPS.finditer(shape)]
        lens = [e - s for s, e in pos]
        if sum(lens) < 7:
            return ()
        if len(pos) == 1:
            return (None,)
        lead = shape[0] if shape[0] in "+(" else ""
        seps = [shape[pos[k][1]:pos[k + 1][0]] for k in range(len(pos) - 1)]
        phone_lengths = self.all_lengths
        plan: list[tuple[int, tuple[Step, ...]]] = []
        for i in range(len(lens)):
            steps: list[Step] = []
            ld = lead if i == 0 else ""
            last, total = i, lens[i]
            while last + 1 < len(lens) and total + lens[last + 1] <= 19:
                last += 1
                total += lens[last]
            for j in range(last, i, -1):
                if total < 7:
                    break
                s, e = pos[i][0] - len(ld), pos[j][1]
                window_seps = seps[i:j]
                sep0 = window_seps[0]
                same_sep = window_seps.count(sep0) == len(window_seps)
                if total >= _CARD_MIN and not ld and same_sep and sep0 in (" ", "-"):
                    sizes = lens[i:j + 1]
                    if (sizes[-1] <= 4 and sizes[:-1].count(4) == len(sizes) - 1) or sizes in ([4, 6, 5], [4, 6, 4]):
                        steps.append(("card", i, j, s, e, None, (), ()))
                if (total == 9 and j == i + 2 and not ld and same_sep and sep0 in ("-", " ")
                        and lens[i] == 3 and lens[i + 1] == 2):
                    steps.append(("ssn", i, j, s, e, None, (), ()))
                if total <= 15 and _PHONE_SEPS.issuperset(window_seps):
                    window = tuple(lens[i:j + 1])
                    regions = self.by_length.get(total, ())
                    if ld == "+":
                        if j >= 2 and lens[1] == 1 and seps[0] in ("(", " (") and seps[1][:1] == ")":
                            steps.append(("plus0", i, j, s, e, None, (), ()))  # +44 (0)20 7123 4567
                        steps.append(("plus", i, j, s, e, None, (), ()))
                    # A window ending in a 1- or 2-digit group is a phone number only as the whole run: France,
                    # Spain, Belgium, Switzerland, Sweden and Poland end numbers in pairs, and inside a longer run
                    # (a hexdump, a list of scores) such a window is not one.
                    elif (total in phone_lengths and (lens[j] >= 3 or (i == 0 and j == len(lens) - 1))
                          and min(lens[i + 1:j + 1]) >= 2
                          and (lens[i] >= 2 or total - 1 in phone_lengths)  # "1 415 555 2671"
                          # dots between short groups read as a version or an address (1.2.3, 10.0.0.1), except
                          # five or more pairs and triples: France writes 01.23.45.67.89
                          and not (window_seps.count(".") == len(window_seps) and max(lens[i:j + 1]) <= 3
                                   and (j - i < 4 or min(lens[i:j + 1]) < 2))
                          and _shaped(regions, window)
                          and _DATE_LIKE.fullmatch(shape, s, e) is None
                          and _DATE_FIRST.match(shape, s, e) is None
                          # nor a window in a longer list of numbers: "030 123 456 789 012", "120 240 480 960 1920"
                          and not (same_sep and ((i > 0 and seps[i - 1] == sep0 and lens[i - 1] >= 3)
                                                 or (j + 1 < len(lens) and seps[j] == sep0 and lens[j + 1] >= 3)))):
                        steps.append(("phone", i, j, s, e, quick_by_digit(regions, window), regions, window))
                total -= lens[j]
            if lens[i] >= _CARD_MIN and not ld and (i == 0 or seps[i - 1] in (" ", "/")) and lens[i] <= 19:
                steps.append(("card", i, i, pos[i][0], pos[i][1], None, (), ()))  # a card without separators
            if steps:
                plan.append((pos[i][0], tuple(steps)))
        return tuple(plan)


def _whole_run(plan: Plan, size: int, runs: list[tuple[int, int]], texts: list[str], ks: list[int],
               out: list[list[Span]]) -> list[int]:
    """Answer the runs of ``ks`` (all of one shape, ``size`` characters, ``plan`` its plan) that are one finding
    whole, and return the others. When the plan's first step is the window of the whole run (a page of phone
    numbers, each its own run), a run that passes that step has exactly that finding: ``_handle`` tries it first
    and then skips every later group, as the finding covers them. The check is the same ``_try``; what is saved
    is ``handle``'s chain around it (its memo, the shape, the plan), most of a number's cost in a dense page."""
    first = plan[0][1][0]
    if first[3] != 0 or first[4] != size:
        return ks
    one = (first,)
    findall = _GROUPS.findall
    rest: list[int] = []
    for k in ks:
        found = _try(findall(texts[k]), one)
        if found is None:
            rest.append(k)
        else:
            start = runs[k][0]
            out[k] = [(start, start + size, found[2])]
    return rest


#: (kind, first group, last group, start, end, quick reject by first digit, regions, group lengths): see ``_plan``.
Step = tuple[str, int, int, int, int, Any, tuple[str, ...], tuple[int, ...]]
Plan = tuple[Any, ...]
_SHAPE = bytes.maketrans(b"0123456789", b"5555555555")


def _try(groups: list[str], steps: tuple[Step, ...]) -> tuple[int, int, str] | None:
    """The first of ``steps`` (see ``Numbers._plan``) whose digits check out, as (start, end, kind) in the run."""
    for kind, i, j, s, e, quick, regions, window in steps:
        if kind == "phone":
            parts = groups[i:j + 1]
            digits = "".join(parts)
            first = 0
            if quick is not None:  # the prefix filter, then the quick reject for numbers that start with this digit
                allowed = quick.prefixes
                if allowed is not None and digits[:PREFIX_DIGITS] not in allowed:
                    continue
                check = quick[digits[0]]
                m = None if check is None else check(digits)
                if allowed is None:
                    quick.tick(m is not None)
                if m is None:
                    continue
                first = int(m.lastgroup[1:]) if m.lastgroup else 0
            if valid_national_from(parts, digits, regions, window, first):
                return (s, e, "phone_number")
        elif kind == "card":
            digits = "".join(groups[i:j + 1])
            if _card_brand_ok(digits) and _luhn(digits):
                return (s, e, "payment_card")
        elif kind == "ssn":
            if _ssn_ok(groups[i], groups[i + 1], groups[i + 2]):
                return (s, e, "us_ssn")
        else:  # "plus", or "plus0": the national trunk prefix written in parentheses after the country code
            if kind == "plus0":
                if groups[1] != "0":
                    continue
                digits = groups[0] + "".join(groups[2:j + 1])
            else:
                digits = "".join(groups[i:j + 1])
            if _plus_length_ok(digits) and valid_international(digits):
                return (s, e, "phone_number")
    return None

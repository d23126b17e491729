"""The fast validators agree with textbook implementations on many random inputs. Pure CPU.

The validators behind the dense input classes were rewritten for speed (Luhn with byte tables, card
brands by prefix string, IBAN mod-97 on one big integer, the phones' quick reject with its formats
first and split by first digit, digit runs planned once per shape); each is compared here with a plain
reference written from the specification, in the test, on random inputs (and on inputs built to pass).
"""

from __future__ import annotations

import random
import re

from tollway.governance.dlp.candidates import Builtin
from tollway.governance.dlp.leading import first_digits
from tollway.governance.dlp.numbers import _CARD_BRANDS, _card_brand_ok, _luhn
from tollway.governance.dlp.phones import (
    _quick_reject,
    _shaped,
    _valid_national,
    quick_by_digit,
    region,
    valid_national_from,
)
from tollway.governance.dlp.pii import _IBAN_LENGTHS, _iban_mod97_ok, on_iban
from tollway.governance.dlp.policy import DEFAULT_PHONE_REGIONS

RUNS = 30_000


def luhn_reference(digits: str) -> bool:
    """ISO/IEC 7812-1 Annex B: from the rightmost digit, double every second one, add the digits of the results."""
    total = 0
    for k, ch in enumerate(reversed(digits)):
        v = int(ch)
        if k % 2 == 1:
            v *= 2
            if v > 9:
                v -= 9
        total += v
    return total % 10 == 0


def with_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_reference(body + d):
            return body + d
    raise AssertionError(body)


def brand_reference(digits: str) -> bool:
    return any(len(digits) in lengths and lo <= int(digits[:plen]) <= hi for lo, hi, plen, lengths in _CARD_BRANDS)


def mod97_reference(iban: str) -> bool:
    """ISO 13616 / ISO 7064 MOD 97-10, piece by piece: move the first four characters to the end, letters are
    10..35, the remainder is 1."""
    rearranged = iban[4:] + iban[:4]
    remainder = 0
    for ch in rearranged:
        value = int(ch) if ch.isdigit() else ord(ch) - ord("A") + 10
        for digit in str(value):
            remainder = (remainder * 10 + int(digit)) % 97
    return remainder == 1


def test_luhn_agrees_with_the_reference_on_random_digit_runs() -> None:
    rng = random.Random(1)
    passed = 0
    for _ in range(RUNS):
        digits = "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 25)))
        if rng.random() < 0.3:
            digits = with_check_digit(digits)
        assert _luhn(digits) == luhn_reference(digits), digits
        passed += luhn_reference(digits)
    assert passed > RUNS // 4  # both answers were exercised


def test_card_brand_agrees_with_the_brand_table_on_random_numbers() -> None:
    rng = random.Random(2)
    prefixes = [str(lo) for lo, _hi, _plen, _lengths in _CARD_BRANDS] + [str(hi) for _lo, hi, _p, _l in _CARD_BRANDS]
    hits = 0
    for _ in range(RUNS):
        n = rng.randint(13, 19)
        head = rng.choice(prefixes) if rng.random() < 0.5 else ""
        digits = (head + "".join(rng.choice("0123456789") for _ in range(n)))[:n]
        expected = digits[0] != "0" and brand_reference(digits)
        assert _card_brand_ok(digits) == expected, digits
        hits += expected
    assert hits > RUNS // 10


def test_iban_checksum_agrees_with_the_reference_on_random_iban_likes() -> None:
    rng = random.Random(3)
    countries = sorted(_IBAN_LENGTHS)
    valid = 0
    for _ in range(RUNS):
        cc = rng.choice(countries)
        alphabet = "0123456789" if rng.random() < 0.6 else "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
        bban = "".join(rng.choice(alphabet) for _ in range(_IBAN_LENGTHS[cc] - 4))
        check = f"{rng.randrange(100):02d}"
        if rng.random() < 0.4:  # the right check digits
            check = f"{98 - int(''.join(str(int(c, 36)) for c in bban + cc + '00')) % 97:02d}"
        iban = cc + check + bban
        assert _iban_mod97_ok(iban) == mod97_reference(iban), iban
        valid += mod97_reference(iban)
        # In text, compact or in groups of four: found exactly when the checksum holds.
        text = iban if rng.random() < 0.5 else " ".join(iban[i:i + 4] for i in range(0, len(iban), 4))
        found = list(on_iban(f"IBAN {text}, ok", 7))
        assert found == ([(5, 5 + len(text), "iban")] if mod97_reference(iban) else []), text
    assert valid > RUNS // 5


def written_shapes() -> list[tuple[int, ...]]:
    """Every digit-group shape the default regions write a number in, with and without the country code."""
    return sorted({(len(r.cc), *shape) if with_cc else shape
                   for code in DEFAULT_PHONE_REGIONS if (r := region(code)) is not None
                   for shape in (r.shapes or ()) for with_cc in (False, True)})


def test_phone_quick_reject_never_changes_the_answer() -> None:
    """``_valid_national`` with its quick reject (one regex per shape, formats tried first) against the plain
    loop over every region that writes that shape, on random digit groups of every shape the regions write."""
    rng = random.Random(4)
    numbers = Builtin(DEFAULT_PHONE_REGIONS).numbers
    shapes = written_shapes()
    valid = 0
    for k in range(RUNS):
        shape = shapes[k % len(shapes)]
        regions = numbers.by_length.get(sum(shape), ())
        if not _shaped(regions, shape):
            continue
        parts = ["".join(rng.choice("0123456789") for _ in range(n)) for n in shape]
        if rng.random() < 0.3:  # start like a number of some region: its trunk prefix or country code
            lead = rng.choice(["0", "1", "44", "49", "33", "91", "61", "81", "55", "52"])
            parts[0] = (lead + parts[0])[:len(parts[0])]
        expected = valid_national_from(parts, "".join(parts), regions, shape, 0)
        assert _valid_national(parts, regions, shape) == expected, (shape, parts)
        valid += expected
    assert valid > 100


def test_quick_reject_split_by_first_digit_matches_the_whole_reject() -> None:
    """Each first digit's regex keeps the alternatives that can start with it: the same match, and the same
    first region (``q<k>`` group), as the whole quick reject, on random numbers of every shape."""
    rng = random.Random(5)
    numbers = Builtin(DEFAULT_PHONE_REGIONS).numbers
    shapes = written_shapes()
    checked = 0
    for shape in shapes:
        regions = numbers.by_length.get(sum(shape), ())
        whole, table = _quick_reject(regions, shape), quick_by_digit(regions, shape)
        if whole is None or table is None:
            continue
        for _ in range(RUNS // len(shapes) + 1):
            digits = "".join(rng.choice("0123456789") for _ in range(sum(shape)))
            check = table[digits[0]]
            a, b = whole.fullmatch(digits), None if check is None else check(digits)
            assert (a is None) == (b is None), (shape, digits)
            assert a is None or b is None or a.lastgroup == b.lastgroup, (shape, digits)
            checked += 1
    assert checked > RUNS // 2


def test_first_digits_holds_every_digit_a_match_starts_with() -> None:
    """``first_digits`` may say too much, never too little: every digit string of up to 4 digits that a pattern
    matches starts with one of its digits."""
    patterns = [r"[2-9]\d{2}", r"(?:0|180020)?(?=8001)\d{4}", r"(?=[89]0)\d{3}", r"1?(?:[3-5]\d|7)\d?", r"(?!1)\d{2}",
                r"(?:(?:0)?(?=[4-6])\d\d)|9\d", r"\d{0,2}", r"[^1-8]\d", r"(?=(?:0\d|5)\Z)\d+", r"(1)\1\d"]
    strings = [f"{n:0{w}d}" for w in range(1, 5) for n in range(10 ** w)]
    for pattern in patterns:
        allowed = first_digits(pattern)
        compiled = re.compile(pattern)
        starts = {s[0] for s in strings if compiled.fullmatch(s)}
        assert starts <= allowed, (pattern, starts - allowed)
    assert first_digits(r"[2-9]\d{2}") == frozenset("23456789")
    assert first_digits(r"(?=[89]0)\d{3}") == frozenset("89")

"""The phone checks in ``dlp.phones`` answer as ``phonenumbers`` does, on every default region. Pure CPU."""

from __future__ import annotations

import random

import phonenumbers
import pytest

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.candidates import Builtin
from tollway.governance.dlp.numbers import Numbers
from tollway.governance.dlp.phones import valid_international, valid_national
from tollway.governance.dlp.policy import DEFAULT_PHONE_REGIONS, DlpConfig

_GROUPS = __import__("re").compile(r"[0-9]+")


def reference_national(parts: list[str], region: str) -> bool:
    """What the engine decided before, with phonenumbers: valid, and grouped as the region writes it."""
    try:
        number = phonenumbers.parse(" ".join(parts), region)
    except phonenumbers.NumberParseException:
        return False
    if not phonenumbers.is_valid_number(number):
        return False
    national = _GROUPS.findall(phonenumbers.format_number(number, phonenumbers.PhoneNumberFormat.NATIONAL))
    return national == parts or (len(parts) > 1 and parts[0] == str(number.country_code) and national == parts[1:])


def samples(region: str) -> list[list[str]]:
    """Example numbers of every type, in national format, plus random digit strings grouped the same way."""
    rng = random.Random(region)
    out = []
    for t in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE,
              phonenumbers.PhoneNumberType.TOLL_FREE):
        example = phonenumbers.example_number_for_type(region, t)
        if example is None:
            continue
        parts = _GROUPS.findall(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL))
        out.append(parts)
        for _ in range(30):
            out.append(["".join(rng.choice("0123456789") for _ in p) for p in parts])
    return out


@pytest.mark.parametrize("region", DEFAULT_PHONE_REGIONS)
def test_national_checks_agree_with_phonenumbers(region: str) -> None:
    cases = samples(region)
    assert cases
    for parts in cases:
        assert valid_national(parts, [region]) == reference_national(parts, region), (region, parts)


@pytest.mark.parametrize("region", DEFAULT_PHONE_REGIONS)
def test_international_checks_agree_with_phonenumbers(region: str) -> None:
    rng = random.Random(region + "+")
    example = phonenumbers.example_number_for_type(region, phonenumbers.PhoneNumberType.MOBILE)
    assert example is not None
    digits = f"{example.country_code}{example.national_number}"
    assert valid_international(digits)
    for _ in range(50):
        candidate = digits[:2] + "".join(rng.choice("0123456789") for _ in digits[2:])
        expected = phonenumbers.is_valid_number(phonenumbers.parse("+" + candidate, None))
        assert valid_international(candidate) == expected, candidate


_TYPES = [getattr(phonenumbers.PhoneNumberType, t) for t in (
    "FIXED_LINE", "MOBILE", "TOLL_FREE", "PREMIUM_RATE", "SHARED_COST", "VOIP", "PERSONAL_NUMBER", "PAGER", "UAN",
    "VOICEMAIL")]


@pytest.mark.parametrize("region", DEFAULT_PHONE_REGIONS)
def test_the_quick_reject_never_rejects_a_valid_number(region: str) -> None:
    """Valid numbers of every type (examples with new last digits), checked against all the default regions at
    once, as the engine does: the one-regex reject per digit-group shape lets every one of them through."""
    rng = random.Random(region + "quick")
    numbers = Numbers(DEFAULT_PHONE_REGIONS)
    valid = 0
    for t in _TYPES:
        example = phonenumbers.example_number_for_type(region, t)
        if example is None:
            continue
        parts = _GROUPS.findall(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL))
        if len(parts) < 2:  # a national number in one group is never a candidate (Numbers._phone)
            continue
        for _ in range(15):
            digits = "".join(parts)
            digits = digits[:-3] + "".join(rng.choice("0123456789") for _ in range(3))
            variant, k = [], 0
            for p in parts:
                variant.append(digits[k:k + len(p)])
                k += len(p)
            if not reference_national(variant, region):
                continue
            valid += 1
            regions = numbers.by_length[len(digits)]
            assert region in regions
            assert valid_national(variant, regions), (region, variant)
    assert valid >= 10, region


def test_no_number_outlives_the_scan_that_saw_it() -> None:
    """Digit runs are memoised within one scan (a repeated number is checked once), never across scans."""
    builtin = Builtin(DEFAULT_PHONE_REGIONS)
    text = "call (212) 555-0134 or (212) 555-0134; card 4111 1111 1111 1111"
    kinds = [kind for _s, _e, kind in builtin.scan(text)]
    assert kinds == ["phone_number", "phone_number", "payment_card"]
    assert builtin.numbers._memo == {}


def test_all_default_regions_at_once_agree_with_phonenumbers() -> None:
    """The engine checks a digit-group window against every region that writes its length at once; the quick
    reject names the first region that can match and the regions before it are skipped. The answer is the
    same as asking phonenumbers region by region: random windows of the shapes a page of card or phone
    numbers produces, and every region's example numbers."""
    rng = random.Random("all regions")
    numbers = Numbers(DEFAULT_PHONE_REGIONS)
    cases: list[list[str]] = []
    for shape in ((4, 4), (4, 4, 4), (3, 3, 4), (2, 4, 4), (3, 4), (4, 3, 3), (2, 2, 2, 2, 2), (3, 3, 3)):
        for _ in range(12):
            cases.append(["".join(rng.choice("0123456789") for _ in range(n)) for n in shape])
    for region in DEFAULT_PHONE_REGIONS:
        for t in _TYPES[:3]:
            example = phonenumbers.example_number_for_type(region, t)
            if example is not None:
                parts = _GROUPS.findall(phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.NATIONAL))
                if len(parts) > 1:
                    cases.append(parts)
    valid = 0
    for parts in cases:
        regions = numbers.by_length[sum(map(len, parts))]
        expected = any(reference_national(parts, r) for r in regions)
        valid += expected
        assert valid_national(parts, regions) == expected, parts
    assert valid >= 30


@pytest.fixture(scope="module")
def engine() -> DlpEngine:
    return DlpEngine(DlpConfig())


@pytest.mark.parametrize("region", DEFAULT_PHONE_REGIONS)
def test_every_default_region_s_numbers_are_found_as_the_region_writes_them(region: str, engine: DlpEngine) -> None:
    """End to end, in running text: the example numbers of each default region, written in its national format
    (many end in a two-digit group: France, Spain, Belgium, Switzerland, Sweden, Poland) and internationally."""
    found = 0
    for t in (phonenumbers.PhoneNumberType.FIXED_LINE, phonenumbers.PhoneNumberType.MOBILE):
        example = phonenumbers.example_number_for_type(region, t)
        assert example is not None
        for form in (phonenumbers.PhoneNumberFormat.NATIONAL, phonenumbers.PhoneNumberFormat.INTERNATIONAL):
            written = phonenumbers.format_number(example, form)
            result = engine.inspect({"model": "m", "max_tokens": 1,
                                     "messages": [{"role": "user", "content": f"call me at {written} please"}]})
            assert [f.kind for f in result.findings] == ["phone_number"], (region, written)
            found += 1
    assert found == 4


def test_pairs_of_digits_inside_a_longer_run_are_not_a_national_number(engine: DlpEngine) -> None:
    """A number that ends in a two-digit group counts only as a run of its own: a hexdump's pairs after its offset,
    or a longer list of pairs, are not French numbers."""
    for text in ("00000010  01 23 45 67 89 12 34 56  78 90 12 34 56 78 90 12  |.#Eg..4Vx..4Vx..|",
                 "rows 01 23 45 67 89 12 and more", "scores 10 20 30 40 50"):
        result = engine.inspect({"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]})
        assert result.findings == [], text
    alone = engine.inspect({"model": "m", "max_tokens": 1,
                            "messages": [{"role": "user", "content": "tél 01 23 45 67 89"}]})
    assert [f.kind for f in alone.findings] == ["phone_number"]

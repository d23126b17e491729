"""The checks made over many digit runs at once give the answers of the per-run checks. Pure CPU.

Dense input (a page of card numbers) is sieved in bulk (``dlp.bulk``: Luhn and brands over byte strings,
the phone windows' prefix filter from ``dlp.prefixes``) before the per-run checks; each piece is compared
here with the plain check on random inputs, and ``Builtin.scan`` with the plain per-candidate loop on
random texts dense with digit runs of a few shapes (so that the bulk path runs).
"""

from __future__ import annotations

import itertools
import random
import re

import pytest

from tollway.governance.dlp import phones
from tollway.governance.dlp.bulk import VALUE, luhn_flags, pair_codes, windows
from tollway.governance.dlp.candidates import Builtin, _handle
from tollway.governance.dlp.numbers import _luhn
from tollway.governance.dlp.phones import _shaped, quick_by_digit, valid_national_from, window_prefixes
from tollway.governance.dlp.policy import DEFAULT_PHONE_REGIONS
from tollway.governance.dlp.prefixes import prefixes

RUNS = 20_000


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def test_luhn_flags_agree_with_luhn_per_window() -> None:
    rng = random.Random(11)
    for width in range(13, 20):
        for count in (1, 2, 7, 300):
            cards = [_digits(rng, width) for _ in range(count)]
            for k in range(0, count, 3):  # about a third made valid
                body = cards[k][:-1]
                cards[k] = next(body + d for d in "0123456789" if _luhn(body + d))
            flags = luhn_flags("".join(cards).encode().translate(VALUE), width, count)
            assert list(flags) == [int(_luhn(c)) for c in cards], width


def test_windows_and_pair_codes_pick_the_right_digits() -> None:
    rng = random.Random(12)
    for stride in (7, 10, 16, 19):
        count = rng.randint(1, 50)
        runs = [_digits(rng, stride) for _ in range(count)]
        values = "".join(runs).encode().translate(VALUE)
        for offset in range(stride - 1):
            width = rng.randint(1, stride - offset)
            assert windows(values, stride, offset, width, count) == "".join(
                r[offset:offset + width] for r in runs).encode().translate(VALUE)
            assert list(pair_codes(values, stride, offset, count)) == [int(r[offset:offset + 2]) for r in runs]


@pytest.mark.parametrize("pattern", [
    r"1[2-4]\d{2,3}|5\d*", r"(?=(?:.{4}|.{6})\Z)(?:[2-5]\d|9)\d+", r"(?:0|90)?(?:[1-3]\d{3}|4(?=5)\d\d{2})",
    r"\d{2}(?=1)\d+", r"(?:12|3)?(?=4[0-5]{2})(?=\d{3}\Z)4\d{2}", r"(?=1[2-4])\d{4,5}|(?=5)(?=\d{2}7)\d+",
    r"(?:0|90)?(?=[1-3]|4)(?:[1-3]\d{3}|4(?=5)\d\d{2})", r"\d(?=1)(?=12|3)\d+", r"[^1-8]\d{3,5}|(?!1)\d{4}",
    r"(?:(?:0)?(?=[4-6])\d\d)+|9\d*", r"(?>1|12)\d{3}", r"\d*?7\d", r"(?<=x)?1\d{3}\b",
])
def test_prefixes_hold_every_prefix_of_a_match(pattern: str) -> None:
    """``prefixes`` may say too much, never too little: brute force over every digit string of 3 to 6 digits."""
    compiled = re.compile(pattern)
    for n in range(3, 7):
        got = prefixes(pattern, 3, n)
        assert got is not None
        want = {s[:3] for s in ("".join(t) for t in itertools.product("0123456789", repeat=n)) if compiled.fullmatch(s)}
        assert want <= got, (pattern, n, sorted(want - got)[:5])


def test_prefixes_give_up_on_what_they_do_not_follow() -> None:
    assert prefixes(r"(1)\1\d\d", 2, 4) is None
    assert prefixes(r"(?:(1)|2)(?(1)3|4)\d", 2, 3) is None


@pytest.mark.parametrize("shape", [(4, 4), (4, 4, 4), (3, 4), (4, 3, 3), (2, 4, 4), (3, 3, 3), (2, 2, 2, 2)])
def test_window_prefixes_keep_every_window_the_phone_check_accepts(shape: tuple[int, ...]) -> None:
    """Random windows, a third of them starting like a number (a trunk prefix or a country code): whatever
    ``valid_national_from`` accepts has its first digits in the filter."""
    rng = random.Random(hash(shape) & 0xFFFF)
    numbers = Builtin(DEFAULT_PHONE_REGIONS).numbers
    regions = numbers.by_length.get(sum(shape), ())
    allowed = window_prefixes(regions, shape)
    assert allowed is not None
    accepted = 0
    for _ in range(RUNS // 4):
        digits = _digits(rng, sum(shape))
        if rng.random() < 0.3:
            lead = rng.choice(["0", "1", "44", "49", "39", "31", "43", "46", "61", "55", "81"])
            digits = (lead + digits)[:len(digits)]
        parts = [digits[sum(shape[:i]):sum(shape[:i + 1])] for i in range(len(shape))]
        if valid_national_from(parts, digits, regions, shape, 0):
            accepted += 1
            assert digits[:phones.PREFIX_DIGITS] in allowed, (shape, digits)
    assert accepted or not _shaped(regions, shape)


def _reference(builtin: Builtin, text: str) -> list[tuple[int, int, str]]:
    """The per-candidate loop: every match of the candidate regex handed to its handler, in order."""
    try:
        return [s for m in builtin.candidates.finditer(text)
                for s in _handle(builtin.handlers, m, text, m.start(), m.end())]
    finally:
        builtin.forget()


def _dense_text(rng: random.Random) -> str:
    """Runs of a few shapes, many of each (the bulk path needs 16 of a shape), cards and phone numbers among them."""
    pieces = []
    for _ in range(rng.randint(100, 200)):
        r = rng.random()
        if r < 0.35:
            digits = _digits(rng, 15)
            digits = digits + next(d for d in "0123456789" if _luhn(digits + d)) if rng.random() < 0.3 else digits + "7"
            if rng.random() < 0.5:
                digits = rng.choice(["4", "51", "37", "6011", "35", "62"]) + digits[len(digits) - 16 + 2:]
                digits = digits[:15] + next(d for d in "0123456789" if _luhn(digits[:15] + d))
            sep = rng.choice([" ", " ", "-", ""])
            pieces.append(sep.join(digits[i:i + 4] for i in range(0, 16, 4)))
        elif r < 0.55:
            pieces.append(f"({rng.choice(['212', '415', '020', '555'])}) {_digits(rng, 3)}-{_digits(rng, 4)}")
        elif r < 0.7:
            pieces.append(f"{_digits(rng, 4)} {_digits(rng, 4)}")
        elif r < 0.8:
            cc = rng.choice(["1", "44", "49", "33"])
            pieces.append(f"+{cc} {_digits(rng, 3)} {_digits(rng, 3)} {_digits(rng, 4)}")
        elif r < 0.9:
            pieces.append(rng.choice(["4", "5"]) + _digits(rng, rng.choice([12, 15, 18])))
        else:
            pieces.append(f"{_digits(rng, 3)}-{_digits(rng, 2)}-{_digits(rng, 4)}")
    # "; Tel: ": every run after a phone word, where runs the sieve drops may still be numbers (``Numbers._in_context``)
    return rng.choice([", ", " ", "\n", "; card ", "; Tel: "]).join(pieces)


def test_scan_with_the_bulk_sieve_finds_what_the_per_candidate_loop_finds(monkeypatch: pytest.MonkeyPatch) -> None:
    """Before and after the prefix filters exist (``FILTER_AFTER`` lowered so they are computed on these texts)."""
    rng = random.Random(13)
    builtin = Builtin(DEFAULT_PHONE_REGIONS)
    found = 0
    for k in range(60):
        if k == 20:
            monkeypatch.setattr(phones, "FILTER_AFTER", 16)
            for shape in [(4, 4), (4, 4, 4), (3, 3, 4)]:  # shapes whose filter may already have passed its count
                table = quick_by_digit(builtin.numbers.by_length[sum(shape)], shape)
                for _ in range(phones.FILTER_AFTER if table is not None and table.prefixes is None else 0):
                    table.tick(False)  # type: ignore[union-attr]
        text = _dense_text(rng)
        expected = _reference(builtin, text)
        assert builtin.scan(text) == expected, k
        found += len(expected)
    assert found > 500


def test_grouping_memo_answers_as_the_formats_do() -> None:
    """``grouped_as`` with its memo (by the first ``key_length`` digits and the length) against
    ``national_groups(nn) == parts`` computed afresh, on random numbers sharing few prefixes (so the memo
    answers most of them), grouped as the region writes them or not."""
    rng = random.Random(14)
    checked = 0
    for code in ("US", "CA", "ES", "IT", "PL", "MX"):
        main = phones._country(int(phones.region(code).cc))[0]  # type: ignore[union-attr]
        assert main.key_length is not None, code
        heads = [_digits(rng, rng.randint(1, 4)) for _ in range(8)]
        for _ in range(RUNS // 6):
            nn = (rng.choice(heads) + _digits(rng, 12))[:rng.randint(6, 12)]
            truth = main.national_groups(nn)
            if rng.random() < 0.5:
                parts = list(truth)
            else:
                cuts = sorted(rng.sample(range(1, len(nn)), rng.randint(1, 3)))
                parts = [nn[a:b] for a, b in zip([0, *cuts], [*cuts, len(nn)], strict=True)]
                if rng.random() < 0.2:
                    parts[-1] = parts[-1][:-1] + str((int(parts[-1][-1]) + 1) % 10)
            assert main.grouped_as(nn, parts) == (truth == parts), (code, nn, parts, truth)
            checked += truth == parts
        phones.forget()
    assert checked > RUNS // 10


def test_bounded_width_only_for_patterns_that_read_their_match_alone() -> None:
    from tollway.governance.dlp.prefixes import bounded_width

    assert bounded_width(r"1(?:2[3-5]|[68])") == 3
    assert bounded_width(r"[2-9]") == 1
    assert bounded_width(r"1\d*") is None
    assert bounded_width(r"1(?=2)") is None
    assert bounded_width(r"1$") is None
    assert bounded_width(r"(1)\1") is None


def _local_start_reference(text: str, at: int) -> int:
    """Where ``on_email``'s local part starts, read with the one backward regex alone (as before its fast path)."""
    back = re.compile(r"(?:[A-Za-z0-9_%+\-]|(?<!\.)\.){0,64}").match(text[at - 1:(at - 65 if at > 64 else None):-1])
    return at - (back.end() if back is not None else 0)


def test_email_local_part_fast_path_agrees_with_the_backward_rule() -> None:
    from tollway.governance.dlp.pii import on_email

    rng = random.Random(15)
    alphabet = "ab09_%+-..  x@:/"
    for _ in range(RUNS):
        local = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 80)))
        text = f"{local}@mail.example.com"
        at = len(local)
        if at == 0:
            continue
        s = _local_start_reference(text, at)
        while s < at and text[s] in ".-+":
            s += 1
        found = list(on_email(text, at, len(text)))
        refused = not text[s:at] or text[s:at].endswith(".") or text.startswith("://", s - 3)  # a URL's user
        expected = [] if refused else [(s, len(text), "email")]
        assert found == expected, text

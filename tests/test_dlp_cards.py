"""Payment cards at the edges of their lengths: Maestro's own ranges issue every length from 12 to 19 (a held-out
probe's 14-, 17- and 18-digit ``6759`` cards were missed, and an 18-digit one grouped in fours was redacted only in
part), and a 13-digit number that is also a valid EAN-13 product code (``4052683830951`` in a catalogue) is not a
card. Both matchers. Numbers are generated: an issuer prefix, random digits, the Luhn check digit."""

from __future__ import annotations

import random

import pytest

from tests.dlp_matchers import MATCHERS, engine_for, forwarded
from tollway.governance.dlp import DlpEngine

_rng = random.Random(2026_12_0403)


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DlpEngine:
    return engine_for(request.param, monkeypatch, redact_pii=True)


def luhn_digit(partial: str) -> str:
    total = 0
    for i, c in enumerate(reversed(partial)):
        d = int(c)
        if i % 2 == 0:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
    return str((10 - total % 10) % 10)


def ean_ok(digits: str) -> bool:
    return (sum(int(c) for c in digits[0:12:2]) + 3 * sum(int(c) for c in digits[1:12:2]) + int(digits[12])) % 10 == 0


def card(prefix: str, length: int, ean: bool | None = None) -> str:
    while True:
        body = prefix + "".join(_rng.choice("0123456789") for _ in range(length - len(prefix) - 1))
        number = body + luhn_digit(body)
        if ean is None or ean_ok(number) == ean:
            return number


@pytest.mark.parametrize("length", range(12, 20))
@pytest.mark.parametrize("prefix", ["6759", "5018", "6304", "6763"])
def test_maestro_cards_of_every_length_are_found(engine: DlpEngine, prefix: str, length: int) -> None:
    number = card(prefix, length, ean=False if length == 13 else None)
    out = forwarded(engine, f"paid with {number} yesterday")
    assert out == "paid with [REDACTED:payment_card:1] yesterday"


def test_a_grouped_18_digit_maestro_card_is_redacted_whole(engine: DlpEngine) -> None:
    number = card("6759", 18)
    grouped = " ".join(number[i:i + 4] for i in range(0, 18, 4))  # 6759 3846 6892 0962 22
    assert forwarded(engine, f"card: {grouped}, exp 09/29") == "card: [REDACTED:payment_card:1], exp 09/29"


def test_a_13_digit_number_that_is_an_ean_is_not_a_card(engine: DlpEngine) -> None:
    ean = card("40", 13, ean=True)  # a German product code that happens to pass Luhn too
    visa = card("4", 13, ean=False)
    text = f"sku,ean\nA-1,{ean}\nvisa {visa}"
    assert forwarded(engine, text) == f"sku,ean\nA-1,{ean}\nvisa [REDACTED:payment_card:1]"


def test_a_non_maestro_prefix_keeps_its_lengths(engine: DlpEngine) -> None:
    number = card("51", 18)  # Mastercard issues 16 digits only
    assert forwarded(engine, f"ref {number}") == f"ref {number}"

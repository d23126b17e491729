"""PII written the ways people write it, found by a held-out probe in the ninth session: phone numbers
grouped otherwise than their region's national format but after a word that says phone, the trunk
prefix in parentheses after a country code, the ``00`` international prefix, Diners Club's 14-digit
cards, e-mail addresses with letters beyond ASCII; and what must stay clean: numbers in lists,
dates after a phone word, four-part version numbers. Both matchers. Values are synthetic (the
numbers are examples of each numbering plan's shapes, checked valid by libphonenumber's metadata)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig
from tollway.governance.dlp.prefilter import available

MATCHERS = ["python", pytest.param("hyperscan", marks=pytest.mark.skipif(not available(),
                                                                          reason="no hyperscan wheel here"))]
_engines: dict[str, DlpEngine] = {}


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[DlpEngine]:
    matcher = request.param
    if matcher not in _engines:
        monkeypatch.setenv("TOLLWAY_DLP_MATCHER", matcher)
        _engines[matcher] = DlpEngine(DlpConfig(cache_items=0, ip_addresses=True))
        _engines[matcher].wait_ready()
    assert _engines[matcher].matcher == matcher
    yield _engines[matcher]


def spans(engine: DlpEngine, text: str) -> list[tuple[str, str]]:
    """(matched text, kind) of every built-in finding, to check what exactly is found."""
    return [(text[s:e], kind) for s, e, kind in engine.builtin.scan(text)]


def kinds(engine: DlpEngine, text: str) -> set[str]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    return {f.kind for f in engine.inspect(body).findings}


FOUND = [
    # +CC (0)…: the trunk prefix in parentheses, as British, French and Swiss signatures write it
    ("Tel: +44 (0)20 7123 4567", "+44 (0)20 7123 4567", "phone_number"),
    ("+44 (0) 20 7123 4567 (office)", "+44 (0) 20 7123 4567", "phone_number"),
    ("Mobile +44 (0)7911 123456", "+44 (0)7911 123456", "phone_number"),
    ("T +33 (0)1 42 68 53 00", "+33 (0)1 42 68 53 00", "phone_number"),
    ("+41 (0)79 123 45 67", "+41 (0)79 123 45 67", "phone_number"),
    # grouped otherwise than the national format, after a phone word
    ("Tel: 912 345 678", "912 345 678", "phone_number"),                    # ES 3-3-3
    ("Tel: 07911 123 456", "07911 123 456", "phone_number"),                # GB 5-3-3
    ("Tel.: 030/12345678", "030/12345678", "phone_number"),                 # DE area code / number
    ("Handy: 0151 23456789", "0151 23456789", "phone_number"),              # DE mobile 4-8
    ("Ruf mich an unter 030-123 456 78, bitte.", "030-123 456 78", "phone_number"),
    ("telefoon 020-1234567", "020-1234567", "phone_number"),                # NL
    ("Tel: 02-12345678", "02-12345678", "phone_number"),                    # IT
    ("Jane Roe\nT: 02/234.56.78\nwww.example.com", "02/234.56.78", "phone_number"),  # BE
    ("Mobil: 0664/123 45 67", "0664/123 45 67", "phone_number"),            # AT
    ("Appelez le (01) 512 88 00 après 14h.", "(01) 512 88 00", "phone_number"),
    ("mobile 98765 43210", "98765 43210", "phone_number"),                  # IN, no trunk 0
    ("contact: 011-23456789", "011-23456789", "phone_number"),              # IN STD code
    ("cell: 3331234567", "3331234567", "phone_number"),                     # a bare run after "cell:"
    ("お問い合わせ: 030/12345678", "030/12345678", "phone_number"),
    # the 00 international prefix, after a phone word
    ("Tel: 0044 20 7123 4567", "0044 20 7123 4567", "phone_number"),
    ("Contact our office on 00 33 1 42 68 53 00.", "00 33 1 42 68 53 00", "phone_number"),
    # Diners Club International: 14 digits in 38-39 and 3095
    ("card: 38342720517822", "38342720517822", "payment_card"),
    ("card 3095 277235 2965", "3095 277235 2965", "payment_card"),
    # e-mail: internationalised domains, Latin letters in the local part
    ("info@bücher.de", "info@bücher.de", "email"),
    ("sales@例え.jp まで", "sales@例え.jp", "email"),
    ("write to josé.garcía@correo.es", "josé.garcía@correo.es", "email"),
    ("请联系foo@example.com谢谢", "foo@example.com", "email"),
    # addresses that stay addresses
    ('{"remote_addr": "8.8.8.8"}', "8.8.8.8", "ip_address"),
    ("ssh deploy@10.0.0.5", "10.0.0.5", "ip_address"),
    ("dev 10.1.2.3", "10.1.2.3", "ip_address"),
]

CLEAN = [
    "frames 030 123 456 789 012",             # a phone-shaped window inside a list of numbers
    "CPU 012 345 678 901",
    "sizes: 120 240 480 960 1920",
    "SIRET 732 829 320 00074",
    "912 345 678 units shipped",              # grouped otherwise, no phone word: a count
    "order number 912 345 678",
    "phone call on 2024/09/19 14:30",         # a date after a phone word
    "phone-like 1234567890 and 555-1234",     # a 7-digit local number
    "the cell count was 123456789",           # "cell" is a phone word only as a label (cell:)
    "Upgraded to 2.7.18.1 in CI",             # four-part versions
    "Firefox 115.0.2.8",
    "Python 3.11.4.0",
    "see section 4.2.1.3 of the spec",
    "Upgraded from 2.7.18.1",
    "AssemblyVersion 4.19.0.1",
    "icon@2x.png",
]


@pytest.mark.parametrize(("text", "value", "kind"), FOUND, ids=[f"{k}-{i}" for i, (_t, _v, k) in enumerate(FOUND)])
def test_found_whole(engine: DlpEngine, text: str, value: str, kind: str) -> None:
    assert (value, kind) in spans(engine, text)


@pytest.mark.parametrize("text", CLEAN)
def test_clean(engine: DlpEngine, text: str) -> None:
    assert kinds(engine, text) == set()

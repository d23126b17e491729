"""Phone numbers and SSNs in tables, found by their column's name (``dlp/tables.py``): a customer export carries
them as bare runs of digits with no word before each one, so the header says what they are. CSV, TSV (and the
rows of a pg_dump ``COPY``), ``;``-separated files, Markdown tables and SQL ``INSERT … (columns) VALUES``. The same
digits in another column, outside a table, or in a row that does not fit its header are not findings. Both
matchers. Numbers are synthetic: valid in their region's numbering plan, assigned to nobody known."""

from __future__ import annotations

import random
from typing import Any

import pytest

from tests.dlp_matchers import MATCHERS, engine_for, forwarded
from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.tables import column_words


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DlpEngine:
    return engine_for(request.param, monkeypatch, redact_pii=True)


FR, US, DE, SSN = "0612345678", "4155552671", "015123456789", "123456789"
FOUND = [
    # (table, the values that must be redacted)
    (f"name,email_verified,phone\nAnn,true,{FR}\nBob,false,{US}\n", [FR, US]),
    (f'"name","mobile_number"\n"Ann","{FR}"\n"Bob, Jr.","{DE}"\n', [FR, DE]),
    (f"PhoneNumber;Name\n{FR};Ann\n{US};Bob\n", [FR, US]),
    (f"id\tname\tTelefon\n1\tAnn\t{DE}\n2\tBob\t{FR}\n", [DE, FR]),
    (f"| Name | Phone |\n|------|-------|\n| Ann | {FR} |\n| Bob | {US} |\n", [FR, US]),
    (f"INSERT INTO customers (id, name, phone) VALUES (1, 'Ann, B', '{FR}'), (2, 'Bob', '{US}');", [FR, US]),
    (f"INSERT INTO `people` (`id`, `ssn`, `note`) VALUES\n(1, '{SSN}', 'x'),\n(2, '234567890', 'y');",
     [SSN, "234567890"]),
    (f"COPY public.customers (id, name, cell_phone) FROM stdin;\n1\tAnn\t{FR}\n2\tBob\t{US}\n\\.\n", [FR, US]),
    (f"customer_id,social_security_number\n17,{SSN}\n", [SSN]),
    # A grouping no region writes, in a phone column.
    ("name,phone\nAnn,0612 345 678\n", ["0612 345 678"]),
]


@pytest.mark.parametrize(("table", "values"), FOUND, ids=[f"found-{i}" for i in range(len(FOUND))])
def test_a_number_in_a_phone_or_ssn_column_is_found(engine: DlpEngine, table: str, values: list[str]) -> None:
    out = forwarded(engine, table)
    for value in values:
        assert value not in out
    assert out.count("[REDACTED:") == len(values)


# (A word that says phone or SSN within 40 characters before a number makes it one anyway, table or not: these
# keep the header's words further away than that.)
NOT_FOUND = [
    f"id,order_no,amount\n1,{FR},12.00\n2,{US},3.50\n",  # no column says phone
    f"name,phone,notes_of_the_account_manager,order_no\nAnn,n/a,none,{FR}\n",  # a number in another column
    f"name,phone,city_of_residence_for_billing\nAnn,Lyon,x,{FR},extra\n",  # the row does not fit its header
    f"INSERT INTO orders (id, phone, tracking_number_from_carrier) VALUES (1, NULL, '{US}');",
    f"total={FR}, count={US}",  # not a table
    "ref,phone\n" + "notes_" * 10 + "," + ",".join([FR] * 600) + "\n",  # longer than a row: not read as one
    f"id,ssn_verified,the_reference_of_the_customer_account\n1,true,{SSN}\n",
]


@pytest.mark.parametrize("text", NOT_FOUND, ids=[f"not-{i}" for i in range(len(NOT_FOUND))])
def test_the_same_digits_elsewhere_are_not_findings(engine: DlpEngine, text: str) -> None:
    assert forwarded(engine, text) == text


def test_a_long_export_is_found_row_by_row(engine: DlpEngine) -> None:
    rng = random.Random(20261204)
    numbers = [f"06{rng.randrange(10**8):08d}" for _ in range(2000)]
    rows = ["id,name,city,phone,amount"] + [f"{i},Name {i},Lyon,{n},{i % 97}.50" for i, n in enumerate(numbers)]
    out = forwarded(engine, "\n".join(rows))
    assert not any(n in out for n in numbers)
    assert out.count("[REDACTED:phone_number:") == len(numbers)
    assert out.startswith("id,name,city,phone,amount\n0,Name 0,Lyon,[REDACTED:phone_number:")


def test_a_header_in_another_content_block_is_not_read(engine: DlpEngine) -> None:
    """Each content block is scanned (and its verdict cached) on its own, so a header in one block says nothing
    about the rows of the next: otherwise the same block could be a finding in one request and not in another."""
    padding = "x" * 60  # more than 40 characters between the header's word and the number
    body: dict[str, Any] = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "text", "text": f"id,name,phone\n1,{padding},{US}"},
        {"type": "text", "text": f"2,{padding},{FR}"}]}]}
    blocks = engine.inspect(body).body["messages"][0]["content"]
    assert US not in blocks[0]["text"] and blocks[1]["text"] == f"2,{padding},{FR}"


def test_column_names_read_as_words() -> None:
    assert column_words("PhoneNumber") == "phone number"
    assert column_words("`mobile_number`") == "mobile number"
    assert column_words('"Tel-Nr"') == "tel nr"


def test_each_insert_statement_names_its_own_columns(engine: DlpEngine) -> None:
    """Two INSERT statements one after the other: a tuple belongs to the statement it is in (the first one's
    column list ends at its ';'), in upper and lower case."""
    pad = "x" * 50  # keeps the column names more than 40 characters away from the numbers
    text = (f"INSERT INTO orders (id, note, tracking) VALUES\n(1, '{pad}', '{US}');\n"
            f"insert into people (id, note, phone) values\n(2, '{pad}', '{FR}'),\n(3, '{pad}', '{US}');\n"
            f"INSERT INTO refs (id, note, code) VALUES (4, '{pad}', '{FR}');")
    out = forwarded(engine, text)
    assert out == text.replace(f"(2, '{pad}', '{FR}')", f"(2, '{pad}', '[REDACTED:phone_number:1]')").replace(
        f"(3, '{pad}', '{US}')", f"(3, '{pad}', '[REDACTED:phone_number:2]')")


def test_a_long_dump_is_read_row_by_row(engine: DlpEngine) -> None:
    """Thousands of tuples under one INSERT, every one read. (Its speed is measured outside the tests: each tuple
    now finds its statement by a look-up, see docs/dlp.md, "Tables".)"""
    rng = random.Random(7)
    numbers = [f"06{rng.randrange(10**8):08d}" for _ in range(3000)]
    rows = ["INSERT INTO customers (id, full_name_of_the_customer_account, phone) VALUES"]
    rows += [f"({i}, 'Annabelle Montgomery-Fitzgerald {i}', '{n}')," for i, n in enumerate(numbers)]
    out = forwarded(engine, "\n".join(rows)[:-1] + ";")
    assert not any(n in out for n in numbers)

"""An unquoted secret is redacted up to its real end (a defect found by a held-out probe: the value was read up to
the first ``, ; ) } ] &``, which end a value in code, so ``DB_PASSWORD=Tr0ub4dor&3xy`` in a .env file forwarded
``&3xy``, and ``password = I9Ta:Us,r[tp9K`` in YAML forwarded ``,r[tp9K``; in a connection string,
``Password=Mosk1to&3317`` was cut to a value too short to count and forwarded whole). On a configuration line the
value runs to the next space; in a connection string's entry, to the next ``;`` or quote. In code the old ends
stay (``f(token=…, other=1)``). Both matchers. Synthetic values from a seeded generator."""

from __future__ import annotations

import random
import string
from typing import Any

import orjson
import pytest

from tests.dlp_matchers import MATCHERS, engine_for, forwarded
from tollway.governance.dlp import DlpEngine

_rng = random.Random(20261204)
ALNUM = string.ascii_letters + string.digits


def rnd(n: int) -> str:
    return "".join(_rng.choice(ALNUM) for _ in range(n - 1)) + _rng.choice(string.digits)


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DlpEngine:
    return engine_for(request.param, monkeypatch, redact_pii=True)


A, B = rnd(10), rnd(6)
WHOLE = [
    # (text, the secret, what the forwarded text must read)
    (f"DB_PASSWORD={A}&{B}\n", f"{A}&{B}", "DB_PASSWORD=[REDACTED:password_assignment:1]\n"),
    (f"password = {A}:Us,r[{B}\nnext: 1", f"{A}:Us,r[{B}", "password = [REDACTED:password_assignment:1]\nnext: 1"),
    (f"  smtp_password: {A};{B}  # rotated", f"{A};{B}",
     "  smtp_password: [REDACTED:password_assignment:1]  # rotated"),
    (f"export API_TOKEN={A}){B}", f"{A}){B}", "export API_TOKEN=[REDACTED:password_assignment:1]"),
    (f"spring.datasource.password={A}}}{B}", f"{A}}}{B}",
     "spring.datasource.password=[REDACTED:password_assignment:1]"),
    (f'conn = "Server=db;User Id=sa;Password={A[:7]}&{B};Encrypt=true";', f"{A[:7]}&{B}",
     'conn = "Server=db;User Id=sa;Password=[REDACTED:password_assignment:1];Encrypt=true";'),
]


@pytest.mark.parametrize(("text", "secret", "expected"), WHOLE, ids=[f"whole-{i}" for i in range(len(WHOLE))])
def test_an_unquoted_secret_is_redacted_to_its_end(engine: DlpEngine, text: str, secret: str, expected: str) -> None:
    out = forwarded(engine, text)
    assert out == expected
    for part in (secret[:5], secret[-5:]):
        assert part not in out


CODE = [
    # In code, the value still ends where the code says (the rest of the line is forwarded as is).
    (f"client = Client(token={A}, retries=3)", "client = Client(token=[REDACTED:password_assignment:1], retries=3)"),
    (f"curl 'https://api.example.com/v1?api_key={A}&page=2'",
     "curl 'https://api.example.com/v1?api_key=[REDACTED:password_assignment:1]&page=2'"),
    ("password = get_password(user)", "password = get_password(user)"),
    # A reference in an object literal, its trailing comma included, is still code (a held-out probe, 9 forms).
    ("  password: process.env.PGPASSWORD,", "  password: process.env.PGPASSWORD,"),
    ("\tPassword: cfg.DBPassword,", "\tPassword: cfg.DBPassword,"),
    ("    Password = model.Password,", "    Password = model.Password,"),
    ("  secret: secretFromVault,", "  secret: secretFromVault,"),
    ("token = tokens[0],rest", "token = tokens[0],rest"),
]


@pytest.mark.parametrize(("text", "expected"), CODE, ids=[f"code-{i}" for i in range(len(CODE))])
def test_in_code_the_value_ends_where_the_code_ends_it(engine: DlpEngine, text: str, expected: str) -> None:
    assert forwarded(engine, text) == expected


def test_the_whole_body_is_forwarded_without_the_secret(engine: DlpEngine) -> None:
    text = "\n".join(t for t, _s, _e in WHOLE)
    body: dict[str, Any] = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    out = orjson.dumps(engine.inspect(body).body).decode()
    for _t, secret, _e in WHOLE:
        assert secret[-4:] not in out


# A quote escaped inside a quoted value (a held-out probe: ``{"password": "xSRk2heW\"7SdhRk9W"}`` forwarded
# ``\"7SdhRk9W``): JSON has no other way to write a quote in a string, so the value runs to the unescaped one.
C, D = rnd(8), rnd(8)
ESCAPED = [
    ('{"password": "' + C + '\\"' + D + '", "user": "bob"}', C + '\\"' + D,
     '{"password": "[REDACTED:password_assignment:1]", "user": "bob"}'),
    ("api_key = '" + C + "\\'" + D + "'\n", C + "\\'" + D, "api_key = '[REDACTED:password_assignment:1]'\n"),
    ('"{\\"token\\": \\"' + C + D + '\\"}"', C + D, '"{\\"token\\": \\"[REDACTED:password_assignment:1]\\"}"'),
]


@pytest.mark.parametrize(("text", "secret", "expected"), ESCAPED, ids=[f"escaped-{i}" for i in range(len(ESCAPED))])
def test_a_quoted_secret_with_an_escaped_quote_is_redacted_whole(engine: DlpEngine, text: str, secret: str,
                                                                 expected: str) -> None:
    out = forwarded(engine, text)
    assert out == expected
    assert secret[-6:] not in out


# A raw '@' in a URL's password (a held-out probe: ``postgres://app:0v5Ujj3E@11a6Ro@db:5432/app`` forwarded
# ``@11a6Ro``): drivers take the last '@' of the authority, and so does the redaction.
E, F = rnd(8), rnd(6)
AT_SIGNS = [
    (f"postgres://app:{E}@{F}@db:5432/app", f"{E}@{F}", "postgres://app:[REDACTED:url_credentials:1]@db:5432/app"),
    (f"REDIS_URL=redis://:{E}@{F}@cache:6379/0", f"{E}@{F}", "REDIS_URL=redis://:[REDACTED:url_credentials:1]@cache:6379/0"),
    # An '@' after the authority (a path or a query) is not part of the password.
    (f"https://ci:{E}@git.example.org/u/a@b?by=me@x.org", E,
     "https://ci:[REDACTED:url_credentials:1]@git.example.org/u/a@b?by=[REDACTED:email:1]"),
]


@pytest.mark.parametrize(("text", "secret", "expected"), AT_SIGNS, ids=[f"at-{i}" for i in range(len(AT_SIGNS))])
def test_a_url_password_with_an_at_sign_is_redacted_whole(engine: DlpEngine, text: str, secret: str,
                                                          expected: str) -> None:
    out = forwarded(engine, text)
    assert out == expected
    assert secret not in out


def test_a_percent_encoded_json_password_with_a_raw_question_mark_is_redacted_whole(engine: DlpEngine) -> None:
    """A query may hold ``?`` raw; stopping the encoded JSON value there forwarded the rest (a held-out probe)."""
    secret = f"{rnd(6)}?{rnd(12)}"
    text = f"GET /login?data=%7B%22password%22%3A%22{secret}%22%2C%22user%22%3A%22ana%22%7D"
    out = forwarded(engine, text)
    assert out == ("GET /login?data=%7B%22password%22%3A%22[REDACTED:password_assignment:1]"
                   "%22%2C%22user%22%3A%22ana%22%7D")
    assert secret.split("?")[1] not in out

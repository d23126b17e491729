"""Two value shapes a held-out probe found handled wrongly under secret-named names:

- random passwords of letters only (``POSTGRES_PASSWORD: lvgvgjntyjtnjxlr``, a Google app password; mixed case
  ``DB_PASSWORD=uRFyyjQgBrkZ``) and dash-joined passphrases (``violet-timber-maple-harbor``) were taken for names
  and missed; words and identifiers in the same places (``credentials``, ``userPassword``, ``downgrades``) stay
  no findings;
- references to a secret store (``op://…``, a Secrets Manager ARN, ``projects/…/secrets/…``, ``@Microsoft.KeyVault(…)``,
  ``vault:secret/…``, ``ref+vault://…``) were redacted, though they name a secret without holding it.

Both matchers. Values are synthetic, from a seeded generator."""

from __future__ import annotations

import random
import string
from itertools import pairwise
from typing import Any

import pytest

from tests.dlp_matchers import MATCHERS, engine_for, forwarded
from tollway.governance.dlp import DlpEngine

_rng = random.Random(2026_12_04)


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DlpEngine:
    return engine_for(request.param, monkeypatch, redact_pii=True)


def app_password() -> str:
    """16 random lower-case letters, as Google shows an app password (without its spaces)."""
    return "".join(_rng.choice(string.ascii_lowercase) for _ in range(16))


def mixed(n: int) -> str:
    while True:
        v = "".join(_rng.choice(string.ascii_letters) for _ in range(n))
        if sum(a.islower() != b.islower() for a, b in pairwise(v)) >= n // 2:
            return v


WORDS = ["violet", "timber", "harbor", "maple", "quartz", "falcon", "meadow", "lantern", "walnut", "glacier"]


def passphrase() -> str:
    return "-".join(_rng.choice(WORDS) for _ in range(4))


P1, P2, P3, P4, P5 = app_password(), app_password(), mixed(12), mixed(14), passphrase()
FOUND = [
    (f"POSTGRES_PASSWORD: {P1}", P1),
    (f"  - MYSQL_ROOT_PASSWORD={P2}", P2),
    (f"spring.datasource.password={P3}", P3),
    (f'signing_password = "{P4}"', P4),
    (f'postgresPassword: "{P5}"', P5),
    (f"- DB_PASSWORD={P5}", P5),
    (f"machine db.internal login app password {P1}", P1),
]


@pytest.mark.parametrize(("text", "secret"), FOUND, ids=[f"found-{i}" for i in range(len(FOUND))])
def test_random_letters_and_passphrases_are_found(engine: DlpEngine, text: str, secret: str) -> None:
    out = forwarded(engine, text)
    assert secret not in out and "[REDACTED:password_assignment:1]" in out


NOT_FOUND = [
    "password = credentials",  # a word (a variable in code)
    "password = userPassword",  # an identifier
    'downgrade_token: str = "downgrades"',  # a word with a run of four consonants
    "password = strengths",
    "password: administrator",
    "token = SomeTokenProvider",
    f"  secret_name: {P5}",  # a passphrase shape, but not under a password's name
    f"log.info(password, {P1})",  # not an assignment
]


@pytest.mark.parametrize("text", NOT_FOUND, ids=[f"not-{i}" for i in range(len(NOT_FOUND))])
def test_words_and_identifiers_are_not_findings(engine: DlpEngine, text: str) -> None:
    assert forwarded(engine, text) == text


REFERENCES = [
    "password: op://Engineering/Postgres/password",
    "api_key: arn:aws:secretsmanager:us-east-1:123456789012:secret:prod/api-key-AbCdEf",
    "DB_PASSWORD=arn:aws:ssm:eu-west-1:123456789012:parameter/prod/db/password",
    "client_secret: projects/acme-prod/secrets/oauth-client/versions/3",
    "DB_PASSWORD=@Microsoft.KeyVault(SecretUri=https://acme.vault.azure.net/secrets/db-password/)",
    "password: vault:secret/data/prod/db#password",
    "token: ref+vault://secret/data/ci#/token",
]


@pytest.mark.parametrize("text", REFERENCES, ids=[f"ref-{i}" for i in range(len(REFERENCES))])
def test_a_reference_to_a_secret_store_is_not_a_finding(engine: DlpEngine, text: str) -> None:
    assert forwarded(engine, text) == text


# Generated passwords and salts hold brackets and angle brackets (WordPress's salts, password managers' output);
# they were taken for templates (``{…}``) and placeholders (``<…>``). A template or a name in angle brackets
# still is one.
SALT = "lg-C!JH^e:WgozU_atx&WDV,56K$d]Q<tE}*s(I3.f33m!9@])UkgLY(h8RJP^Zd"
BRACKETED = [
    (f"define( 'AUTH_KEY',         '{SALT}' );", SALT),
    ("$mail->Password = 'Y!g6??KWN@<:]g1mg)TRsmPI';", "Y!g6??KWN@<:]g1mg)TRsmPI"),
    ("SMTP_PASSWORD=3Wx/pVAX%Lc9IqR+GV#(eX{", "3Wx/pVAX%Lc9IqR+GV#(eX{"),
    ("define( 'AUTH_KEY', 'CI1WfSG7=[<D_aNta%<k3,r>x,uSeCG:>e+{;t[_m0+t1MPm/8' );",  # '<k3,r>' is no name
     "CI1WfSG7=[<D_aNta%<k3,r>x,uSeCG:>e+{;t[_m0+t1MPm/8"),
    (f'_conn = "Server=db;User Id=sa;Password={P1};Encrypt=true";', P1),  # letters only, in a connection string
]


@pytest.mark.parametrize(("text", "secret"), BRACKETED, ids=[f"brackets-{i}" for i in range(len(BRACKETED))])
def test_a_password_with_brackets_is_found(engine: DlpEngine, text: str, secret: str) -> None:
    out = forwarded(engine, text)
    assert secret not in out and "[REDACTED:password_assignment:1]" in out


TEMPLATES = [
    'password = "<your-password>"',
    'API_KEY="<YOUR_API_KEY>"',
    "API_KEY=<paste key here>",
    'token = "Bearer <token>"',
    'password = "{password}"',
    'password = f"{prefix}{suffix}"',
    "PASSWORD=$(cat /run/secrets/db)",
    "DB_PASSWORD=getpass()",
    "API_TOKEN=${{ secrets.TOKEN }}",
    # Anti-forgery tokens prove a form's origin, not who sends it (a held-out probe's HTTP dumps).
    "Cookie: csrftoken=QBRs5Zitpnhe20BCxDtCxZ7UOKNSbwMZ; theme=dark",
    '<input type="hidden" name="csrfmiddlewaretoken" value="m3eGgXc1zPRJ96gu20G7aSdBmQDm9Z2s">',
    "X-XSRF-TOKEN: LkB2UqWmnYFWhq8Q08Ix86vVwWgRk1mv",
]


@pytest.mark.parametrize("text", TEMPLATES, ids=[f"template-{i}" for i in range(len(TEMPLATES))])
def test_templates_and_names_in_angle_brackets_stay_placeholders(engine: DlpEngine, text: str) -> None:
    assert forwarded(engine, text) == text


def test_a_provider_token_under_a_secret_name_is_labelled_by_its_kind(engine: DlpEngine) -> None:
    """Both the assignment and the token are findings; the placeholder says what the value is, which tells the
    model more than where it was (a held-out probe counted 200 such labels as ``password_assignment``)."""
    token = "ghp_" + "".join(_rng.choice(string.ascii_letters + string.digits) for _ in range(36))
    body: dict[str, Any] = {"model": "m", "max_tokens": 1,
                            "messages": [{"role": "user", "content": f"GITHUB_TOKEN={token}\nexport X=1"}]}
    result = engine.inspect(body)
    assert {f.kind for f in result.findings} >= {"github_token", "password_assignment"}
    assert result.body["messages"][0]["content"] == "GITHUB_TOKEN=[REDACTED:github_token:1]\nexport X=1"


def test_a_random_token_holding_mixed_case_x_is_not_a_filler(engine: DlpEngine) -> None:
    """``xxxx`` and ``XXXX`` are fillers; ``XXxx`` inside a random token is chance (the quality bench drew one)."""
    token = "dp.ct.bHv02ZSo7vqmUj0Ffj1KXXxxSbiWNCrurG6qUZ3rtph"
    assert forwarded(engine, f"DOPPLER={token}").endswith("[REDACTED:doppler_token:1]")
    assert forwarded(engine, "token = 'xxxxxxxxxxxx'") == "token = 'xxxxxxxxxxxx'"
    assert forwarded(engine, "API_KEY=XXXXXXXXXXXX") == "API_KEY=XXXXXXXXXXXX"

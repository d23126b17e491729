"""Secrets in the forms deployment and configuration files give them, which a held-out probe of realistic files
found missed: Laravel's ``APP_KEY=base64:…``, ``appKey``, New Relic's ``*_LICENSE_KEY``, Rails' ``secret_key_base``,
OAuth ``CONSUMER_KEY``, Ansible's ``ansible_become_pass``/``ansible_ssh_pass``, a PEM private key in base64 as
Kubernetes keeps it (``tls.key``, ``client-key-data``), a kubeadm bootstrap token, a Mailchimp key
(``<32 hex>-us15``) and ``docker login -p``. Each with negatives in the same places. Both matchers; values
synthetic, from a seeded generator."""

from __future__ import annotations

import base64
import random
import string
from typing import Any

import pytest

from tests.dlp_matchers import MATCHERS, engine_for
from tollway.governance.dlp import DlpEngine

_rng = random.Random(2026_12_0402)
ALNUM = string.ascii_letters + string.digits


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DlpEngine:
    return engine_for(request.param, monkeypatch, redact_pii=True)


def inspect(engine: DlpEngine, text: str) -> tuple[str, set[str]]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    result = engine.inspect(body)
    content = result.body["messages"][0]["content"]
    assert isinstance(content, str)
    return content, {f.kind for f in result.findings}


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def hex_(n: int) -> str:
    return rnd(n, "0123456789abcdef")


def pem(label: str) -> str:
    body = base64.b64encode(_rng.randbytes(900)).decode()
    lines = "\n".join(body[i:i + 64] for i in range(0, len(body), 64))
    return f"-----BEGIN {label}-----\n{lines}\n-----END {label}-----\n"


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


KEY, CERT = b64(pem("PRIVATE KEY")), b64(pem("CERTIFICATE"))
RSA_KEY = b64(pem("RSA PRIVATE KEY"))
LARAVEL = "base64:" + base64.b64encode(_rng.randbytes(32)).decode()
BOOTSTRAP = rnd(5, string.ascii_lowercase) + "1." + rnd(15, string.ascii_lowercase) + "7"
DOCKER = rnd(20)

FOUND = [
    # (text, the secret, the kind)
    (f"APP_KEY={LARAVEL}\nAPP_DEBUG=false", LARAVEL, "password_assignment"),
    (f"  appKey: {hex_(40)}", None, "password_assignment"),
    (f"NEW_RELIC_LICENSE_KEY={hex_(40)}", None, "password_assignment"),
    (f"production:\n  secret_key_base: {hex_(128)}", None, "password_assignment"),
    (f"CONSUMER_KEY='{rnd(25)}'", None, "password_assignment"),
    (f"ansible_become_pass: {rnd(14)}", None, "password_assignment"),
    (f"ansible_ssh_pass={rnd(14)}", None, "password_assignment"),
    (f"data:\n  tls.crt: {CERT}\n  tls.key: {KEY}\n", KEY, "private_key"),
    (f'users:\n- name: admin\n  user:\n    client-key-data: {RSA_KEY}\n', RSA_KEY, "private_key"),
    (f"kubeadm join 10.0.0.1:6443 --token {BOOTSTRAP} --discovery-token-unsafe-skip-ca-verification", BOOTSTRAP,
     "password_assignment"),
    (f"bootstrapTokens:\n- token: {BOOTSTRAP}\n", BOOTSTRAP, "password_assignment"),
    (f"$config['mailchimp_api_key'] = '{hex_(32)}-us15';", None, "password_assignment"),
    (f"    - run: docker login -u ci-bot -p {DOCKER} ghcr.io", DOCKER, "password_assignment"),
    (f"docker login --password={DOCKER} registry.example.com", DOCKER, "password_assignment"),
]


@pytest.mark.parametrize(("text", "secret", "kind"), FOUND, ids=[f"found-{i}" for i in range(len(FOUND))])
def test_the_secret_is_found_and_redacted(engine: DlpEngine, text: str, secret: str | None, kind: str) -> None:
    out, kinds = inspect(engine, text)
    assert kind in kinds
    if secret is None:  # the value after the name, up to the end of its line or quote
        after = text.split("=", 1)[-1] if "=" in text.split("\n")[-1] else text.rsplit(": ", 1)[-1]
        secret = after.strip().strip(";").strip("'\"")
    assert secret not in out and secret[len(secret) // 2:][:8] not in out


NOT_FOUND = [
    f"  tls.crt: {CERT}\n",  # a certificate is no secret
    "app_key = settings",  # a name
    "for key, value in app_key_map.items():",
    "token: config.auth.token_name",  # a dotted name, not a bootstrap token
    "docker login -u ci-bot -p $REGISTRY_TOKEN ghcr.io",  # a variable
    "docker login -u ci-bot --password-stdin ghcr.io",
    "docker pull -p 8080 image",  # not login
    f"sha256: {hex_(64)}",
]


@pytest.mark.parametrize("text", NOT_FOUND, ids=[f"not-{i}" for i in range(len(NOT_FOUND))])
def test_lookalikes_are_not_findings(engine: DlpEngine, text: str) -> None:
    out, kinds = inspect(engine, text)
    assert out == text and not kinds


# A second held-out probe (source code, runtime output, transcripts): forms within the documented kinds.
TOKEN = rnd(32)
SECOND = [
    (f"axios.defaults.headers.common['Authorization'] = 'Bearer {TOKEN}';", TOKEN, "authorization_header"),
    (f'headers["Authorization"] = "Bearer {TOKEN}"', TOKEN, "authorization_header"),
    (f"$client->get('/me', ['headers' => ['Authorization' => 'Bearer {TOKEN}']]);", TOKEN, "authorization_header"),
    ("password=jF2qQ.mq3CWQyZ", "jF2qQ.mq3CWQyZ", "password_assignment"),
    ("ansible_become_pass=kjyAG.lDlU6KI9", "kjyAG.lDlU6KI9", "password_assignment"),
    ("Client : Vous pouvez me rappeler au 0615006023.", "0615006023", "phone_number"),
    ("Klant: mijn nummer is 0612411899", "0612411899", "phone_number"),
    ("Customer: you can reach me on 07484340162 after 5pm", "07484340162", "phone_number"),
    ("Cliente: il mio numero è 3126836058", "3126836058", "phone_number"),
    ("Klient: mój numer to 510519606", "510519606", "phone_number"),
    # Postman and HAR name/value lists
    (f'{{"key": "password", "value": "{TOKEN[:18]}", "type": "text"}}', TOKEN[:18], "password_assignment"),
    (f'"bearer": [{{"key": "token", "value": "{TOKEN}", "type": "string"}}]', TOKEN, "password_assignment"),
    (f'{{"name": "api_key", "value": "{TOKEN[4:24]}"}}', TOKEN[4:24], "password_assignment"),
    # a hard-coded fallback after an environment read
    (f'const secret = process.env.JWT_SECRET || "{TOKEN[:20]}";', TOKEN[:20], "password_assignment"),
    (f"const apiKey = process.env.API_KEY ?? '{TOKEN[8:28]}';", TOKEN[8:28], "password_assignment"),
    # an IBAN in dash-separated groups (mod-97 checked)
    ("IBAN DE89-3704-0044-0532-0130-00", "DE89-3704-0044-0532-0130-00", "iban"),
    ("payee: GB82-WEST-1234-5698-7654-32.", "GB82-WEST-1234-5698-7654-32", "iban"),
    # a C# auto-property's initialiser
    (f'public string ClientSecret {{ get; set; }} = "{TOKEN[:17]}";', TOKEN[:17], "password_assignment"),
    (f'public string ApiKey {{ get; init; }} = "{TOKEN[3:23]}";', TOKEN[3:23], "password_assignment"),
]


@pytest.mark.parametrize(("text", "secret", "kind"), SECOND, ids=[f"second-{i}" for i in range(len(SECOND))])
def test_forms_of_the_second_probe_are_found(engine: DlpEngine, text: str, secret: str, kind: str) -> None:
    out, kinds = inspect(engine, text)
    assert kind in kinds and secret not in out


SECOND_NOT = [
    "token = OAuth2Client.token",  # a class, not a random part
    "password = settings.DB_PASSWORD",
    "secret = self.Base64Encoder",
    'headers["Authorization"] = "Bearer " + token',  # the credential is a variable
    "you can reach me on Monday",
    '{"key": "password", "value": "{{password}}"}',  # a Postman variable
    '{"key": "username", "value": "ana.lopez"}',
    'put("password", "value")',
    'const token = process.env.TOKEN ?? "dev";',
    'const secret = process.env.JWT_SECRET || "changeme-in-prod";',
    "public string Password { get; set; } = string.Empty;",
    "IBAN DE89-3704-0044-0532-0130-01",  # the check digits do not hold
    "ref DE89-3704-0044 0532-0130-00",  # two kinds of separator: not one IBAN
    'public string Token { get; set; } = "";',
]


@pytest.mark.parametrize("text", SECOND_NOT, ids=[f"second-not-{i}" for i in range(len(SECOND_NOT))])
def test_lookalikes_of_the_second_probe_are_not_findings(engine: DlpEngine, text: str) -> None:
    out, kinds = inspect(engine, text)
    assert out == text and not kinds

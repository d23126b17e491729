"""Secret forms of the tenth held-out probe: Docker registry ``auth`` (base64 of ``user:password``) and ``.npmrc``'s
``_auth``, the ``pass`` of an auth object (nodemailer, JSON, YAML), a secret-named Terraform variable's
``default``, HTTP Digest responses, legacy (52-character) Azure DevOps PATs in context, URL-encoded values, 12-digit
Maestro cards and Azure storage account keys named in prose. Each form has positives (only the secret is
redacted, the rest is forwarded as is), negatives and placeholders, under both matchers.

Values are synthetic, from a seeded generator and the documented shapes: no real credential is in this file.
"""

from __future__ import annotations

import base64
import random
import string
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tests.dlp_matchers import MATCHERS, engine_for
from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig

_rng = random.Random(2026_12_0410)
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"
B32 = string.ascii_lowercase + "234567"
HEX = "0123456789abcdef"


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def pw() -> str:
    """A password with lower- and upper-case letters, digits and a symbol."""
    return rnd(5, string.ascii_lowercase) + rnd(3, string.digits) + rnd(3, string.ascii_uppercase) + "!"


def b64(s: str) -> str:
    return base64.b64encode(s.encode()).decode()


PW = [pw() for _ in range(16)]
# Docker's config.json: "auth" is base64 of "user:password" (docs.docker.com, "docker login", credential stores)
DAUTH = [b64(f"{u}:{p}") for u, p in zip(["robot$ci", "jdoe", "_json_key", "AWS"], PW[:4], strict=True)]
IDT = rnd(40)
AZ = rnd(86, B64) + "=="  # an Azure storage account key: 64 random bytes in base64
RESP = [rnd(32, HEX), rnd(64, HEX)]  # RFC 7616 Digest responses: MD5 (32 hex) and SHA-256 (64 hex)
NONCE = rnd(34, HEX)
HAR_TOKEN = rnd(40)
PAT = [rnd(52, B32) for _ in range(8)]  # legacy Azure DevOps PATs: 52 characters of lower-case base32
# percent-encoded passwords: a symbol first (the value starts with an escape), symbols inside
ENC = [urllib.parse.quote(rnd(1, "!@#$&=") + pw(), safe="") for _ in range(6)]
# ... and inside another parameter's value (a URL in a query parameter), encoded once more
ENC2 = [urllib.parse.quote(urllib.parse.quote(rnd(1, "!@#$&=") + pw(), safe=""), safe="") for _ in range(2)]

POSITIVES: list[tuple[str, str, str]] = [
    # 1. Docker registry credentials (~/.docker/config.json, a .dockerconfigjson) and .npmrc's _auth
    ("password_assignment", f'{{"auths": {{"registry.acme.io": {{"auth": "{DAUTH[0]}"}}}}}}', DAUTH[0]),
    ("password_assignment", f'{{\n  "auths": {{\n    "https://index.docker.io/v1/": {{\n      "auth": "{DAUTH[1]}"'
                            f'\n    }}\n  }}\n}}', DAUTH[1]),
    ("password_assignment", f'{{"auths":{{"gcr.io":{{"auth":"{DAUTH[2]}","email":"ci@acme.io"}}}}}}', DAUTH[2]),
    ("password_assignment", f"registry=https://npm.acme.io/\n_auth={DAUTH[3]}\nalways-auth=true", DAUTH[3]),
    ("password_assignment", f'{{"auths": {{"acr.azurecr.io": {{"identitytoken": "{IDT}"}}}}}}', IDT),
    # 2. the pass of an auth object: nodemailer, JSON, YAML
    ("password_assignment", f"nodemailer.createTransport({{ host: 'smtp.acme.io', auth: {{ user: 'a@acme.io', "
                            f"pass: '{PW[4]}' }} }})", PW[4]),
    ("password_assignment", f'{{"smtp": {{"user": "mailer", "pass": "{PW[5]}"}}}}', PW[5]),
    ("password_assignment", f"mail:\n  auth:\n    user: mailer@acme.io\n    pass: {PW[6]}\n", PW[6]),
    ("password_assignment", f'auth: {{\n  pass: "{PW[7]}"\n}}', PW[7]),
    # 3. Terraform: a secret-named variable's default, across lines
    ("password_assignment", f'variable "db_password" {{\n  type      = string\n  sensitive = true\n  default   = '
                            f'"{PW[8]}"\n}}', PW[8]),
    ("password_assignment", f'variable "api_token" {{ default = "{PW[9]}" }}', PW[9]),
    ("password_assignment", f'variable "admin_pass" {{\n  validation {{\n    condition = length(var.admin_pass) > 8'
                            f'\n    error_message = "too short"\n  }}\n  default = "{PW[10]}"\n}}', PW[10]),
    # 4. HTTP Digest: the response only (username, realm, nonce, uri are forwarded)
    ("authorization_header", f'Authorization: Digest username="bob", realm="api@acme.io", nonce="{NONCE}", '
                             f'uri="/v1/x", qop=auth, nc=00000001, cnonce="0a4f113b", response="{RESP[0]}", '
                             f'opaque="{rnd(32, HEX)}"', RESP[0]),
    ("authorization_header", f'Proxy-Authorization: Digest realm="r", nonce="{NONCE}", username="u", '
                             f'algorithm=SHA-256, response="{RESP[1]}"', RESP[1]),
    ("authorization_header", f"-H 'Authorization: Digest username=bob, response={RESP[0]}'", RESP[0]),
    ("authorization_header", f'{{"raw": "GET /x HTTP/1.1\\r\\nAuthorization: Digest username=\\"bob\\", '
                             f'realm=\\"r\\", response=\\"{RESP[1]}\\""}}', RESP[1]),
    # a HAR file's request header (name/value pairs)
    ("authorization_header", f'"headers": [{{"name": "Authorization", "value": "Bearer {HAR_TOKEN}"}}]', HAR_TOKEN),
    ("authorization_header", f'{{"name":"authorization","value":"Digest username=\\"u\\", response=\\"{RESP[0]}\\""}}',
     RESP[0]),
    # 5. legacy Azure DevOps PATs in context
    ("azure_devops_pat", f"AZURE_DEVOPS_PAT={PAT[0]}", PAT[0]),
    ("azure_devops_pat", f'export ADO_PAT="{PAT[1]}"', PAT[1]),
    ("azure_devops_pat", f"azure_devops_token: {PAT[2]}", PAT[2]),
    ("azure_devops_pat", f"SYSTEM_ACCESSTOKEN={PAT[3]} ./build.sh", PAT[3]),
    ("azure_devops_pat", f"git clone https://acme:{PAT[4]}@dev.azure.com/acme/web/_git/web", PAT[4]),
    ("azure_devops_pat", f"git remote add o https://{PAT[5]}@dev.azure.com/acme/web/_git/web", PAT[5]),
    ("azure_devops_pat", f"https://ci:{PAT[6]}@acme.visualstudio.com/web/_git/web", PAT[6]),
    ("azure_devops_pat", 'git -c http.extraheader="AUTHORIZATION: basic ' + b64(":" + PAT[7]) + '" clone '
                         "https://dev.azure.com/acme/web/_git/web", b64(":" + PAT[7])),
    # 6. URL-encoded: a value that starts with an escape; a pair inside another parameter's encoded URL or JSON;
    # pass as a form or query field beside a user field
    ("password_assignment", f"grant_type=password&username=bob&password={ENC[0]}&scope=openid", ENC[0]),
    ("password_assignment", f"POST /token HTTP/1.1\r\n\r\nclient_id=app&client_secret={ENC[1]}", ENC[1]),
    ("password_assignment", f"GET /cb?next=%2Flogin%3Fuser%3Dbob%26password%3D{ENC2[0]}%26r%3D1 HTTP/1.1", ENC2[0]),
    ("password_assignment", f"redirect=https%3A%2F%2Fapp.acme.io%2Fhook%3Fapi_key%3D{ENC2[1]}", ENC2[1]),
    ("password_assignment", f"payload=%7B%22user%22%3A%22bob%22%2C%22password%22%3A%22{ENC[4]}%22%7D", ENC[4]),
    ("password_assignment", f"GET /login.php?user=admin&pass={ENC[5]} HTTP/1.1", ENC[5]),
    ("password_assignment", f"pass={PW[11]}&username=admin&submit=Login", PW[11]),
    # an encoded '$' first is a character sent as is, not a variable reference
    ("password_assignment", f"grant_type=password&username=bob&password=%24{PW[13]}", f"%24{PW[13]}"),
    # an escaped quote inside an encoded JSON string is part of the value (json.dumps: '"', ': ', '\\"')
    ("password_assignment", "data=" + urllib.parse.quote('{"password": "' + PW[14][:5] + '\\"' + PW[14][5:] + '"}',
                                                         safe=""),
     urllib.parse.quote(PW[14][:5] + '\\"' + PW[14][5:], safe="")),
    # a lone encoded brace is a symbol of the password, not a template
    ("password_assignment", f"username=bob&password={PW[12][:4]}%7B{PW[12][4:]}", f"{PW[12][:4]}%7B{PW[12][4:]}"),
    # an escaped quote inside an HCL string is part of the default
    ("password_assignment", f'variable "db_password" {{\n  default = "{PW[15][:4]}\\"{PW[15][4:]}"\n}}',
     f'{PW[15][:4]}\\"{PW[15][4:]}'),
    # 8. an Azure storage account key named in prose
    ("azure_storage_key", f"the storage account key is {AZ}, please rotate it", AZ),
    ("azure_storage_key", f"AccountKey: {AZ}", AZ),
    ("azure_storage_key", f"Storage key for acme-logs -> {AZ}", AZ),
]

NEGATIVES: list[tuple[str, str]] = [
    # base64 that does not decode to user:password; another key; oauth
    ("password_assignment", f'{{"auths": {{"registry.acme.io": {{"auth": "{b64(rnd(24))}"}}}}}}'),
    ("password_assignment", f'{{"auth": "{rnd(40, B64)}"}}'),
    ("password_assignment", f'{{"oauth": "{DAUTH[0]}"}}'),
    ("password_assignment", f'{{"auths": {{"r.io": {{"auth": "{b64("no colon here at all")}"}}}}}}'),
    ("password_assignment", 'auth: "Basic"'),
    # pass that is not the whole key, pass with no user beside it and no auth object, values of code
    ("password_assignment", f"bypass: '{PW[4]}'\nuser: bob"),
    ("password_assignment", f"render_pass: '{PW[4]}'\nuser: bob"),
    ("password_assignment", f"pass_rate: '{PW[4]}'\nuser: bob"),
    ("password_assignment", f"stage:\n  pass: '{PW[4]}'\n  fail: 'x'"),
    ("password_assignment", "auth: { user: 'a@acme.io', pass: true }"),
    ("password_assignment", "auth: { user: 'a@acme.io', pass: 3 }"),
    ("password_assignment", "auth: { user: 'a@acme.io', pass: process.env.SMTP_PASSWORD }"),
    ("password_assignment", "auth: { user, pass: smtpPass }"),
    ("password_assignment", "def f():\n    pass\n# user: none"),
    # a Terraform default of another variable, a default outside a variable block, argparse
    ("password_assignment", f'variable "db_password" {{\n  type = string\n}}\nvariable "region" {{\n  default = '
                            f'"{PW[8]}"\n}}'),
    ("password_assignment", f'variable "region" {{\n  default = "{PW[8]}"\n}}'),
    ("password_assignment", f'parser.add_argument("--password-file", default="{PW[8]}")'),
    ("password_assignment", 'variable "db_password" {\n  default = "eu-west-1"\n}'),
    # a Digest challenge (no response), a Digest credential whose response is not there yet, a username
    ("authorization_header", f'WWW-Authenticate: Digest realm="r", nonce="{NONCE}", opaque="{rnd(32, HEX)}"'),
    ("authorization_header", f'Authorization: Digest username="bob{rnd(4, string.digits)}", realm="r", '
                             f'nonce="{NONCE}"'),
    ("authorization_header", f"the response={RESP[0]} was logged"),
    # a PAT's shape with no Azure DevOps context: a commit hash-like run, another host, a bare pat name
    ("azure_devops_pat", f"commit {PAT[0]}"),
    ("azure_devops_pat", f"https://{PAT[0]}@github.com/acme/web"),
    ("azure_devops_pat", f"pat = {PAT[0]}"),
    ("azure_devops_pat", f"ADO_PAT={PAT[0].upper()}"),
    ("azure_devops_pat", f"spat_count = {PAT[0]}"),
    # format strings, encoded paths and other encoded names; pass as a field with no user field; code
    ("password_assignment", 'log("password=%s" % pw)'),
    ("password_assignment", "password=%2Fetc%2Fsecrets%2Fdb"),
    ("password_assignment", f"next=%2Fhome%3Ftab%3D{ENC[0]}"),
    ("password_assignment", f"GET /check?pass={PW[11]}&level=3"),
    ("password_assignment", f"total_pass={PW[11]}&user=bob"),
    ("password_assignment", "for (pass=0; pass<n; pass++) user=lookup(pass);"),
    # the key's shape without the words, the words without the key's shape
    ("azure_storage_key", f"integrity {AZ}"),
    ("azure_storage_key", "the storage account key is rotated every 90 days"),
    ("azure_storage_key", f"the storage account key is rotated every 90 days; integrity sha512-{AZ}"),
    ("azure_storage_key", f"storage key of the package: sha512-{AZ}"),
    ("azure_storage_key", f"account key\n\n\n{'word ' * 20}{AZ}"),
]

PLACEHOLDERS: list[tuple[str, str]] = [
    ("password_assignment", f'{{"auths": {{"r.io": {{"auth": "{b64("user:<password>")}"}}}}}}'),
    ("password_assignment", f'{{"auths": {{"r.io": {{"auth": "{b64("user:xxxxxxxx")}"}}}}}}'),
    ("password_assignment", f'{{"auths": {{"r.io": {{"auth": "{b64("user:${REGISTRY_PASSWORD}")}"}}}}}}'),
    ("password_assignment", f'{{"auths": {{"r.io": {{"auth": "{b64("admin:changeme")}"}}}}}}'),
    ("password_assignment", '{"auths": {"r.io": {"auth": "<base64 of user:password>"}}}'),
    ("password_assignment", "auth: { user: 'a@acme.io', pass: '<password>' }"),
    ("password_assignment", "auth: { user: 'a@acme.io', pass: '${SMTP_PASS}' }"),
    ("password_assignment", "auth:\n  user: bob\n  pass: xxxxxxxx"),
    ("password_assignment", "auth: { user: 'a@acme.io', pass: 'changeme' }"),
    ("password_assignment", 'variable "db_password" {\n  default = "changeme"\n}'),
    ("password_assignment", 'variable "db_password" {\n  default = "<your-password>"\n}'),
    ("password_assignment", 'variable "db_password" {\n  default = "${var.fallback}"\n}'),
    ("azure_storage_key", "the storage account key is " + "x" * 86 + "=="),
    ("authorization_header", 'Authorization: Digest username="u", response="00000000000000000000000000000000"'),
    ("authorization_header", 'Authorization: Digest username="u", response="<response>"'),
    ("azure_devops_pat", "AZURE_DEVOPS_PAT=<your-pat>"),
    ("password_assignment", "grant_type=password&username=bob&password=%3Cpassword%3E"),
    ("password_assignment", "next=%2Flogin%3Fpassword%3D%24%7BPASSWORD%7D%26u%3D1"),
    ("password_assignment", "grant_type=password&username=bob&password=%24%28cat+pw.txt%29"),
    ("password_assignment", "data=%7B%22password%22%3A%22xxxxxxxx%22%7D"),
    ("password_assignment", "GET /login?user=admin&pass=changeme HTTP/1.1"),
    ("azure_devops_pat", "AZURE_DEVOPS_PAT=$(System.AccessToken)"),
    ("azure_devops_pat", "export ADO_PAT=${ADO_PAT}"),
    ("azure_devops_pat", "git clone https://" + "x" * 52 + "@dev.azure.com/acme/web/_git/web"),
]

@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> DlpEngine:
    return engine_for(request.param, monkeypatch, redact_pii=False)


def inspect(engine: DlpEngine, text: str) -> tuple[set[str], str]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    result = engine.inspect(body)
    return {f.kind for f in result.findings}, result.body["messages"][0]["content"]


@pytest.mark.parametrize(("kind", "text", "secret"), POSITIVES,
                         ids=[f"{k}-{i}" for i, (k, _t, _s) in enumerate(POSITIVES)])
def test_positive_only_the_secret_is_redacted(engine: DlpEngine, kind: str, text: str, secret: str) -> None:
    found, out = inspect(engine, text)
    assert kind in found
    assert out == text.replace(secret, f"[REDACTED:{kind}:1]")


@pytest.mark.parametrize(("kind", "text"), NEGATIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(NEGATIVES)])
def test_negative(engine: DlpEngine, kind: str, text: str) -> None:
    assert kind not in inspect(engine, text)[0]


@pytest.mark.parametrize(("kind", "text"), PLACEHOLDERS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(PLACEHOLDERS)])
def test_placeholder_is_not_a_finding(engine: DlpEngine, kind: str, text: str) -> None:
    assert kind not in inspect(engine, text)[0]


def luhn(prefix: str, length: int) -> str:
    """A number of ``length`` digits that starts with ``prefix``, random in between, with its Luhn check digit."""
    body = prefix + rnd(length - len(prefix) - 1, string.digits)
    total = sum(int(d) if i % 2 else (2 * int(d) if int(d) < 5 else 2 * int(d) - 9)
                for i, d in enumerate(reversed(body)))
    return body + str(-total % 10)


# 7. 12-digit Maestro cards: Maestro issues 12 to 19 digits (ISO/IEC 7812 IINs 5018, 5020, 5038, 5893, 6304, 6759,
# 6761-6763); 12 digits only in those ranges, with Luhn
MAESTRO = [luhn(p, 12) for p in ("5018", "5020", "5038", "5893", "6304", "6759", "6761", "6763")]
CARDS: list[tuple[str, str]] = [
    *((f"card number {m}, exp 09/28", m) for m in MAESTRO),
    (f"Maestro {MAESTRO[0][:4]} {MAESTRO[0][4:8]} {MAESTRO[0][8:]}",
     f"{MAESTRO[0][:4]} {MAESTRO[0][4:8]} {MAESTRO[0][8:]}"),
    (f"pan={MAESTRO[1][:4]}-{MAESTRO[1][4:8]}-{MAESTRO[1][8:]};",
     f"{MAESTRO[1][:4]}-{MAESTRO[1][4:8]}-{MAESTRO[1][8:]}"),
]


def _not_luhn(number: str) -> str:
    return number[:-1] + str((int(number[-1]) + 1) % 10)


NOT_CARDS: list[str] = [
    f"order {_not_luhn(MAESTRO[0])} shipped",  # a Maestro range without Luhn
    f"visa {luhn('4111', 12)}",  # 12 digits in another brand's range (Visa issues 13, 16, 19)
    f"maestro range 56 {luhn('5612', 12)}",  # 56-58: Maestro, but shared; 13 digits and up only
    f"account {luhn('1234', 12)}",
    f"ts {luhn('1733', 13)} ms",  # a timestamp in ms: 13 digits, no brand at 13 there
    f"AWS account {luhn('3010', 12)}",
]
_card_engines: dict[str, DlpEngine] = {}


@pytest.fixture(params=MATCHERS)
def card_engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[DlpEngine]:
    """An engine that redacts payment cards (personal data is logged by default: nothing would be redacted)."""
    matcher = request.param
    if matcher not in _card_engines:
        monkeypatch.setenv("TOLLWAY_DLP_MATCHER", matcher)
        _card_engines[matcher] = DlpEngine(DlpConfig(cache_items=0,
                                                     policies={"default": {"kinds": {"payment_card": "redact"}}}))
        _card_engines[matcher].wait_ready()
    yield _card_engines[matcher]


@pytest.mark.parametrize(("text", "card"), CARDS, ids=[f"maestro-{i}" for i in range(len(CARDS))])
def test_twelve_digit_maestro_is_a_card(card_engine: DlpEngine, text: str, card: str) -> None:
    found, out = inspect(card_engine, text)
    assert "payment_card" in found
    assert out == text.replace(card, "[REDACTED:payment_card:1]")


@pytest.mark.parametrize("text", NOT_CARDS, ids=[f"not-card-{i}" for i in range(len(NOT_CARDS))])
def test_twelve_digits_outside_maestro_are_not_cards(card_engine: DlpEngine, text: str) -> None:
    assert "payment_card" not in inspect(card_engine, text)[0]

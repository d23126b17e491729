"""The detectors added for issue 15: a positive, a negative and a placeholder case for each. Pure CPU.

Values are synthetic, built from the documented formats (see docs/dlp.md for each source) with a
seeded generator, so no real credential is in this file.
"""

from __future__ import annotations

import random
import string
from typing import Any

import pytest

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig

_rng = random.Random(15)
ALNUM = string.ascii_letters + string.digits
HEX = "0123456789abcdef"
B64 = ALNUM + "+/"


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def luhn_complete(prefix: str, length: int) -> str:
    body = prefix + "".join(_rng.choice(string.digits) for _ in range(length - len(prefix) - 1))
    for check in string.digits:
        digits = body + check
        total = sum(int(c) if i % 2 == 0 else sum(divmod(int(c) * 2, 10)) for i, c in enumerate(reversed(digits)))
        if total % 10 == 0:
            return digits
    raise AssertionError


def kinds(text: str, **config: Any) -> set[str]:
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    return {f.kind for f in DlpEngine(DlpConfig(**config)).inspect(body).findings}


GITLAB_FAMILIES = ["glpat", "gldt", "glrt", "glcbt", "glptt", "glft", "glimt", "glagent", "gloas", "glsoat", "glffct"]

POSITIVES: list[tuple[str, str]] = [
    *[("gitlab_token", f"token: {fam}-{rnd(20, ALNUM + '_-')}") for fam in GITLAB_FAMILIES],
    ("gitlab_token", f"--registration-token GR1348941{rnd(20)}"),
    ("stripe_key", f"STRIPE_KEY={'sk'}_test_{rnd(24)}"),
    ("stripe_key", f"restricted {'rk'}_test_{rnd(24)} and {'rk'}_live_{rnd(24)}"),
    ("stripe_key", f"endpoint secret whsec_{rnd(32)}"),
    ("slack_token", f"SLACK_APP_TOKEN=xapp-1-A{rnd(10, string.ascii_uppercase + string.digits)}"
                    f"-{rnd(13, string.digits)}-{rnd(64, HEX)}"),
    ("slack_token", f"refresh xoxe-1-{rnd(140, ALNUM + '-')}"),
    ("slack_token", f"rotating xoxe.xoxp-1-{rnd(140, ALNUM + '-')}"),
    ("slack_webhook", f"curl -X POST https://hooks.slack.com/services/T{rnd(8, string.ascii_uppercase)}"
                      f"/B{rnd(8, string.ascii_uppercase)}/{rnd(24)}"),
    ("aws_access_key", f"aws_access_key_id = ABIA{rnd(16, string.ascii_uppercase + '234567')}"),
    ("aws_access_key", f"key ACCA{rnd(16, string.ascii_uppercase + '234567')}"),
    ("azure_storage_key", f"DefaultEndpointsProtocol=https;AccountName=acct;AccountKey={rnd(86, B64)}==;"
                          "EndpointSuffix=core.windows.net"),
    ("azure_storage_key", f"Endpoint=sb://ns.servicebus.windows.net/;SharedAccessKeyName=root;"
                          f"SharedAccessKey={rnd(43, B64)}="),
    ("azure_storage_key", f"https://a.blob.core.windows.net/c/b?sv=2022-11-02&ss=b&sig={rnd(44, ALNUM)}%3D"),
    ("azure_client_secret", f'"clientSecret": "{rnd(3)}8Q~{rnd(34, ALNUM + "_~.-")}"'),
    ("twilio_api_key", f"TWILIO_API_KEY=SK{rnd(32, HEX)}"),
    ("sendgrid_key", f"SENDGRID_API_KEY=SG.{rnd(22, ALNUM + '_-')}.{rnd(43, ALNUM + '_-')}"),
    ("npm_token", f"//registry.npmjs.org/:_authToken=npm_{rnd(36)}"),
    ("pypi_token", f"password = pypi-AgEIcHlwaS5vcmc{rnd(70, ALNUM + '_-')}"),
    ("huggingface_token", f"HF_TOKEN=hf_{rnd(34, string.ascii_letters)}"),
    ("huggingface_token", f"org api_org_{rnd(34, string.ascii_letters)}"),
    ("databricks_token", f"DATABRICKS_TOKEN=dapi{rnd(32, HEX)}"),
    ("hashicorp_token", f"VAULT_TOKEN=hvs.{rnd(90, ALNUM + '_-')}"),
    ("hashicorp_token", f"token = \"{rnd(14, string.ascii_lowercase + string.digits)}.atlasv1.{rnd(67, ALNUM)}\""),
    ("digitalocean_token", f"DIGITALOCEAN_TOKEN=dop_v1_{rnd(64, HEX)}"),
    ("sentry_token", f"SENTRY_AUTH_TOKEN=sntryu_{rnd(64, HEX)}"),
    ("url_credentials", f"DATABASE_URL=postgres://app:{rnd(16)}@db.internal:5432/app"),
    ("url_credentials", f"redis://default:{rnd(20)}@localhost:6379/0"),
    ("url_credentials", f"https://deploy:{rnd(12)}@git.example-corp.com/org/repo.git"),
    ("authorization_header", f"Authorization: Basic {rnd(24, B64)}="),
    ("authorization_header", f'curl -H "Authorization: Bearer {rnd(40, ALNUM + "._-")}" https://api'),
    ("authorization_header", f"headers = {{'Authorization': 'token {rnd(40, HEX)}'}}"),
    ("password_assignment", 'password = "correct horse battery staple"'),
    ("password_assignment", f'System.setProperty("DB_TOKEN", "{rnd(20)}");'),
    ("password_assignment", f'os.environ["API_KEY"] = "{rnd(24)}"'),
    ("password_assignment", f'config.put("password", "{rnd(12)}9!");'),
    ("password_assignment", f"<server><id>nexus</id><password>{rnd(14)}</password></server>"),
    ("password_assignment", f"<apiKey> {rnd(20, HEX)} </apiKey>"),
    ("password_assignment", f"az login --service-principal -u app --password {rnd(16)}9 --tenant t"),
    ("password_assignment", f'helm repo add x https://charts --username ci --password "{rnd(10)} {rnd(8)}"'),
    # a ``pass`` that ends a compound name (detect-secrets' db_pass) and ``passphrase``, in any case
    ("password_assignment", f"export DB_PASS='{rnd(14)}9'"),
    ("password_assignment", f"SMTP_PASS={rnd(12)}7"),
    ("password_assignment", f"redis-pass: {rnd(12)}4"),
    ("password_assignment", f'config["Mail_Pass"] = "{rnd(12)}"'),
    ("password_assignment", f"GPG_PASSPHRASE={rnd(12)}3"),
    ("password_assignment", 'passphrase: "amber violet canyon river"'),
    ("password_assignment", f"<db_pass>{rnd(12)}5</db_pass>"),
    ("password_assignment", f"mycli login --db-pass {rnd(12)}6"),
    # a flag whose keyword follows a '_' or '.' (both matchers: the prefilter looks for the separator too)
    ("password_assignment", f"tool --db_password {rnd(12)}7 --x"),
    ("password_assignment", f"tool --client_secret {rnd(16)}8"),
    ("password_assignment", f"tool --my_api_key {rnd(20)}9"),
    ("password_assignment", f"tool --deploy.token {rnd(20)}1"),
    ("password_assignment", f"tool --gpg_passphrase {rnd(12)}2"),
    ("payment_card", f"mir {luhn_complete('2200', 16)}"),
    ("payment_card", f"rupay {luhn_complete('6521', 16)}"),
    ("payment_card", f"troy {luhn_complete('9792', 16)}"),
    ("payment_card", f"maestro {luhn_complete('5612', 16)}"),
    ("us_ssn", "SSN: 536221234"),
    ("us_ssn", "social security number 536221234"),
    ("phone_number", "Tel.: 030 12345678"),
    ("phone_number", "call 020 7946 0958 today"),
    # dots and dashes as France writes them, and after a country code
    ("phone_number", "tél. 01.42.68.53.00"),
    ("phone_number", "portable 06-12-34-56-78"),
    ("phone_number", "+33.1.42.68.53.00"),
    ("phone_number", "+48.512.345.678"),
    # one run of digits, after a word that says phone (its trunk prefix written where the region dials one)
    ("phone_number", "Tel: 0612345678"),
    ("phone_number", "phone 4155552671"),
    ("phone_number", "Handy: 015123456789"),
    ("phone_number", "call me at 07400123456 tomorrow"),
    ("phone_number", "電話 0312345678"),
    ("iban", "IBAN: NL91ABNA0417164300"),
    ("ip_address", "client 81.2.69.160 connected"),
]
IP_CONFIG = {"ip_addresses": True}


@pytest.mark.parametrize(("kind", "text"), POSITIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(POSITIVES)])
def test_positive(kind: str, text: str) -> None:
    assert kind in kinds(text, **(IP_CONFIG if kind == "ip_address" else {}))


NEGATIVES: list[tuple[str, str]] = [
    ("gitlab_token", "see glpat-short and the gl-pattern docs"),
    ("stripe_key", f"publishable pk_test_{rnd(24)} is public"),
    ("slack_webhook", "https://hooks.slack.com/services/ (set the URL here)"),
    ("aws_access_key", "AIDAJQABLZS4A3QDU576 is a user id, not a key"),
    ("twilio_api_key", f"TASK{rnd(32, HEX)}"),
    ("npm_token", "npm_config_cache=/tmp/npm"),
    ("huggingface_token", "hf_hub_download(repo_id='x')"),
    ("databricks_token", "dapi-client v2"),
    ("url_credentials", "postgres://app@db:5432/app and https://example.org/a:b@c"),
    ("url_credentials", "ssh git@github.com:org/repo.git"),
    ("email", f"SENTRY_DSN=https://{rnd(32, HEX)}@o4504.ingest.sentry.io/4505 and ssh://git@github.com/org/r.git"),
    ("authorization_header", "Authorization: Bearer"),
    ("authorization_header", "the Authorization header carries a bearer token"),
    ("password_assignment", 'token = "end of file"'),
    ("password_assignment", 'error_message = "Password must be at least 8 characters."'),
    ("password_assignment", "</password> closes the element</p>"),
    ("password_assignment", "<passwordHint>the name of my first pet</passwordHint>"),
    ("password_assignment", "replace <token> with yours</p>"),
    ("password_assignment", f"my password {rnd(12)}9 is not a flag"),
    ("password_assignment", "docker login --password-stdin < pw.txt; use --token to pass a token"),
    # ``pass`` as a word of its own or inside another (Python's statement, bypass, compass), and names whose
    # values are code or numbers
    ("password_assignment", "def bypass(x):\n    pass\nif second_pass: pass"),
    ("password_assignment", "first_pass = compute_pass(x); max_pass = 3; by_pass: true"),
    ("password_assignment", "compass = 'northwest'; encompass: everything here"),
    ("password_assignment", "passphrase = get_passphrase(); skip_pass = 'something'"),
    # a ``pass`` that owns no credential: render, compiler and lint passes, filters (a second reader's list)
    ("password_assignment", 'render_pass = "GBufferPass"; shadow_pass = "ShadowPass01"; pass3 = RenderPass3D'),
    ("password_assignment", "second_pass = FirstPass2D\non_pass: notifySlack2\nyield_pass: AsyncGen1"),
    ("password_assignment", "The lint_pass: firstPass2 ran fine; result_pass = 0x1F2E3D4C; first-pass: 1920x1080"),
    ("password_assignment", "high_pass: 3.5kHz_filter and low-pass: 120Hz_cutoff"),
    # a flag keyword glued to the word before it is not one (``--mytoken``): neither matcher takes it
    ("password_assignment", f"tool --mytoken {rnd(20)}3 --gpgPassphrase {rnd(12)}4"),
    ("payment_card", f"order {luhn_complete('7', 16)}"),
    ("us_ssn", "order id 536221234 shipped"),
    # one run of digits with no word that says phone, or a Unix time read as a number without its trunk prefix
    ("phone_number", "order 0612345678 shipped; user_id 4155552671"),
    ("phone_number", "call at 1700000000; the cell count was 123456789; the API call took 2.5s"),
    # dotted versions, OIDs, dates, and IPv4 addresses
    ("phone_number", "kernel 4.19.0.25.100, oid 1.3.6.1.4.1.2021.10.1.3.1, on 2024.01.15.10.30 from 10.20.30.40"),
    ("phone_number", "created_at >= '2024-09-19 14:30' and 19.09.2024 14 30"),
    ("ip_address", "version 1.2.3.4 of the lib"),
    ("ip_address", "server 256.1.1.1 and 10.0.0.300"),
]


@pytest.mark.parametrize(("kind", "text"), NEGATIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(NEGATIVES)])
def test_negative(kind: str, text: str) -> None:
    assert kind not in kinds(text, **IP_CONFIG)


def test_a_bare_number_is_a_phone_number_only_where_a_word_says_so() -> None:
    """A run's findings are remembered by its text within a scan, except where the words before it decide them."""
    from tollway.governance.dlp import DlpEngine
    from tollway.governance.dlp.policy import DlpConfig

    engine = DlpEngine(DlpConfig())
    result = engine.inspect({"model": "m", "max_tokens": 1, "messages": [
        {"role": "user", "content": "order 0612345678 shipped. " + "x " * 25 + "phone 0612345678. " + "y " * 25
         + "ref 0612345678"}]})
    assert [(f.kind, f.count) for f in result.findings] == [("phone_number", 1)]


def test_ip_addresses_are_opt_in() -> None:
    assert "ip_address" not in kinds("client 81.2.69.160 connected")


PLACEHOLDERS: list[tuple[str, str]] = [
    ("aws_access_key", "aws_access_key_id = AKIAIOSFODNN7EXAMPLE"),
    ("aws_secret_key", "aws_secret_access_key = wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("github_token", "GITHUB_TOKEN=ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("github_token", "example: ghp_16C7e42F292c6912E7710c838347Ae178B4a"),
    ("gcp_api_key", 'apiKey: "AIzaSyDOCAbC123dEf456GhI789jKl012-MnO"'),
    ("stripe_key", "Stripe.api_key = 'sk_test_4eC39HqLyjWDarjtT1zdp7dc'"),
    ("gitlab_token", "glpat-XXXXXXXXXXXXXXXXXXXX"),
    ("npm_token", "npm_000000000000000000000000000000000000"),
    ("password_assignment", 'password = "<your-password>"'),
    ("password_assignment", "API_KEY=${API_KEY}"),
    ("password_assignment", "token: {{ secrets.TOKEN }}"),
    ("password_assignment", "secret = 'xxxxxxxxxxxx'"),
    ("password_assignment", "<password>${env.NEXUS_PASSWORD}</password>"),
    ("password_assignment", "DB_PASS=${DB_PASS}"),
    ("password_assignment", "db_pass: <your-password>"),
    ("password_assignment", "<password>changeme</password>"),
    ("password_assignment", "psql --password $DB_PASSWORD && vault login --token ${VAULT_TOKEN}"),
    ("password_assignment", "--password <your-password>"),
    ("url_credentials", "postgres://user:password@localhost/db"),
    ("url_credentials", "mysql://root:${DB_PASSWORD}@db/app"),
    ("url_credentials", "https://user:<token>@example.com"),
    ("authorization_header", "Authorization: Bearer <token>"),
    ("authorization_header", "Authorization: Bearer ${TOKEN}"),
    ("authorization_header", "Authorization: Bearer xxxxxxxxxxxxxxxx"),
    ("private_key", "-----BEGIN RSA PRIVATE KEY-----\n...\n-----END RSA PRIVATE KEY-----"),
    ("openai_key", "OPENAI_API_KEY=sk-xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("ip_address", "server 192.0.2.10 (documentation range)"),
]


@pytest.mark.parametrize(("kind", "text"), PLACEHOLDERS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(PLACEHOLDERS)])
def test_placeholder_is_not_a_finding(kind: str, text: str) -> None:
    assert kinds(text, **IP_CONFIG) == set()


def test_only_the_secret_part_is_redacted() -> None:
    password = rnd(16)
    body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": [
        {"type": "text", "text": f"postgres://app:{password}@db:5432/x"},
        {"type": "text", "text": f"AccountName=a;AccountKey={rnd(86, B64)}==;EndpointSuffix=x"}]}]}
    out = DlpEngine(DlpConfig()).inspect(body).body["messages"][0]["content"]
    assert out[0]["text"] == "postgres://app:[REDACTED:url_credentials:1]@db:5432/x"
    assert out[1]["text"] == "AccountName=a;AccountKey=[REDACTED:azure_storage_key:1];EndpointSuffix=x"


def test_secret_words_in_prose_cost_no_prefilter_hit_but_flags_do() -> None:
    """The flag form (``--password VALUE``) is looked for only right after a '-': the words alone, common in
    prose ("a password is", "spoken words", "the token count"), are no Hyperscan hits (each would be a Python step)."""
    from tollway.governance.dlp.candidates import Builtin
    from tollway.governance.dlp.policy import DEFAULT_PHONE_REGIONS

    # Built directly: the engine would follow TOLLWAY_DLP_MATCHER, and this is about the prefilter itself.
    prefilter = Builtin(DEFAULT_PHONE_REGIONS, prefilter=True).prefilter
    assert prefilter is not None  # hyperscan is a pinned dependency
    prose = ("Choose a password that is long. The spoken word and the token count matter; a secret kept. "
             "Use a passphrase and not a bypass: the first pass and the db_pass check come later. ") * 20
    assert prefilter.anchors(prose) == []
    flag = f"az login --password {rnd(14)}9 --api-key {rnd(20)}7 --db-pass {rnd(12)}5"
    assert len(prefilter.anchors(flag) or []) == 3

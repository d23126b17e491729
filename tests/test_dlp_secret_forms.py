"""Secrets written in forms a held-out probe found missed: credentials set through code (``Header.Set``,
``AuthenticationHeaderValue``), keys named by their context (Azure storage account keys, an AWS secret next to
its key id), command-line passwords (``curl -u``, ``mysql -p``), DSNs without a scheme, XML attribute pairs, and
two false positives (``${VAR:?msg}``, ``sk-ant-...``). Each form has positives (only the secret is redacted, the
rest is forwarded as is), negatives and placeholders, under both matchers.

Values are synthetic, from a seeded generator and the documented shapes (an Azure account key is 64 random
bytes in base64, 88 characters ending ``==``; an AWS secret access key 40 base64 characters): no real
credential is in this file.
"""

from __future__ import annotations

import base64
import random
import string
import urllib.parse
from collections.abc import Iterator
from typing import Any

import pytest

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig
from tollway.governance.dlp.prefilter import available

_rng = random.Random(2026_12_0309)
ALNUM = string.ascii_letters + string.digits
B64 = ALNUM + "+/"


def rnd(n: int, alphabet: str = ALNUM) -> str:
    return "".join(_rng.choice(alphabet) for _ in range(n))


def b64_mixed(n: int) -> str:
    """``n`` base64 characters with at least one lower- and upper-case letter, a digit and a '/' or '+'."""
    while True:
        v = rnd(n, B64)
        if any(c.islower() for c in v) and any(c.isupper() for c in v) and any(c.isdigit() for c in v) \
                and any(c in "+/" for c in v):
            return v


AKIA = "AKIA" + rnd(16, string.ascii_uppercase + string.digits)
TOK = rnd(40)
GHP = "ghp_" + rnd(36)  # GitHub's classic token format: ghp_ and 36 letters and digits
STRIPE = "sk_" + "live_" + rnd(24)
BASIC = base64.b64encode(f"admin:{rnd(12)}".encode()).decode()
AWS = [b64_mixed(40) for _ in range(7)]  # AWS secret access keys: 40 base64 characters
AZ = b64_mixed(86) + "=="  # an Azure storage account key: 64 random bytes in base64
PW = [rnd(6, string.ascii_lowercase) + rnd(3, string.digits) + rnd(3, string.ascii_uppercase) for _ in range(16)]
# PuTTY's key file (the PuTTY manual, appendix C "PPK file format"): header, public and private base64 lines, MAC
HEX = "0123456789abcdef"
PPK = ("PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: eddsa-key-20261203\nPublic-Lines: 2\n"
       f"{rnd(64, B64)}\n{rnd(24, B64)}\nPrivate-Lines: 1\n{rnd(44, B64)}\nPrivate-MAC: {rnd(64, HEX)}")
PPK2 = ("PuTTY-User-Key-File-2: ssh-rsa\r\nEncryption: aes256-cbc\r\nComment: imported-openssh-key\r\n"
        f"Public-Lines: 1\r\n{rnd(64, B64)}\r\nPrivate-Lines: 2\r\n{rnd(64, B64)}\r\n{rnd(20, B64)}==\r\n"
        f"Private-MAC: {rnd(40, HEX)}")
# a Slack incoming webhook (api.slack.com/messaging/webhooks: hooks.slack.com/services/T…/B…/…), percent-encoded
HOOK = "hooks.slack.com/services/T" + rnd(8, string.ascii_uppercase + string.digits) + "/B" + \
    rnd(10, string.ascii_uppercase + string.digits) + "/" + rnd(24)
HOOK_ENC = urllib.parse.quote(HOOK, safe="")

# (kind, text, the secret: what must be redacted, and nothing else but an access key id)
POSITIVES: list[tuple[str, str, str]] = [
    # three dots inside a password are part of it (only a value that ends with them is elided: sk-ant-...)
    ("password_assignment", f'DB_PASSWORD="{PW[0][:5]}...{PW[0][5:]}"', f"{PW[0][:5]}...{PW[0][5:]}"),
    # 1. Authorization set through code
    ("authorization_header", f"fetch(url, {{ headers: {{ Authorization: `Bearer {TOK}` }} }})", TOK),
    ("authorization_header", f'req.Header.Set("Authorization", "Bearer {TOK}")', TOK),
    ("authorization_header", f'conn.setRequestProperty("Authorization", "Basic {BASIC}");', BASIC),
    ("authorization_header", f'client.DefaultRequestHeaders.Authorization = new AuthenticationHeaderValue("Bearer", '
                             f'"{TOK}");', TOK),
    ("authorization_header", f"AUTHORIZATION: Bearer {TOK}", TOK),
    # 2. an Azure storage account key named by its context, outside a connection string
    ("azure_storage_key", f"AZURE_STORAGE_KEY={AZ}", AZ),
    ("azure_storage_key", f'storage_account_key = "{AZ}"', AZ),
    ("azure_storage_key", f"az storage blob list --account-name acme --account-key {AZ} -c logs", AZ),
    ("azure_storage_key", f'new StorageSharedKeyCredential("acme", "{AZ}");', AZ),
    ("azure_storage_key", f"export AZURE_STORAGE_ACCESS_KEY='{AZ}'", AZ),
    # 3. an AWS secret access key next to its key id, or set by the AWS CLI
    ("aws_secret_key", f'credentials.NewStaticCredentials("{AKIA}", "{AWS[0]}", "")', AWS[0]),
    ("aws_secret_key", f'new BasicAWSCredentials("{AKIA}","{AWS[1]}");', AWS[1]),
    ("aws_secret_key", f"| key id | secret |\n|---|---|\n| {AKIA} | {AWS[2]} |", AWS[2]),
    ("aws_secret_key", f"my aws secret key is {AWS[3]} (access key {AKIA})", AWS[3]),
    ("aws_secret_key", f"aws configure set aws_secret_access_key {AWS[4]}", AWS[4]),
    ("aws_secret_key", f'provider "aws" {{\n  region = "us-east-1"\n  secret_key = "{AWS[5]}"\n}}', AWS[5]),
    ("aws_secret_key", f"cloud:\n  aws:\n    credentials:\n      secret-key: {AWS[6]}", AWS[6]),
    # 4. a password on curl's command line, in a Go MySQL DSN, in an Oracle thin JDBC URL
    ("url_credentials", f"curl -u admin:{PW[0]} https://jenkins.acme.io/api/json", PW[0]),
    ("url_credentials", f'curl -s -X POST --user "ci-bot:{PW[1]}" https://ci.acme.io/job/x/build', PW[1]),
    ("url_credentials", f'dsn := "app:{PW[2]}@tcp(127.0.0.1:3306)/shop?parseTime=true"', PW[2]),
    ("url_credentials", f"jdbc:oracle:thin:scott/{PW[3]}@db.corp:1521:ORCL", PW[3]),
    ("url_credentials", f"http -a admin:{PW[0]} POST pie.dev/post", PW[0]),
    ("url_credentials", f"https --auth=admin:{PW[1]} pie.dev/get", PW[1]),
    ("authorization_header", f"http --auth-type bearer --auth {TOK} GET api.acme.io/me", TOK),
    # a provider's token in an Authorization line is reported as its own kind
    ("github_token", f'curl -H "Authorization: Bearer {GHP}" https://api.github.com/user', GHP),
    ("stripe_key", f"Authorization: Bearer {STRIPE}", STRIPE),
    # command-line passwords given with a short flag
    ("password_assignment", f"mysqldump -uroot -p'{PW[4]}' shop > dump.sql", PW[4]),
    ("password_assignment", f"mysql -h db -u app -p{PW[5]} shop", PW[5]),
    ("password_assignment", f"redis-cli -h cache -a {PW[6]} ping", PW[6]),
    ("password_assignment", f"sshpass -p '{PW[7]}' ssh root@10.0.0.5", PW[7]),
    # 5. XML attribute pairs, type annotations, .netrc, RABBITMQ_DEFAULT_PASS, passphrases, prose
    ("password_assignment", f'<add key="ApiKey" value="{PW[8]}" />', PW[8]),
    ("password_assignment", f'<property name="password" value="{PW[9]}"/>', PW[9]),
    ("password_assignment", f'PASSWORD: str = "{PW[10]}"', PW[10]),
    ("password_assignment", f'api_token: Optional[str] = "{PW[11]}"', PW[11]),
    ("password_assignment", f"machine api.acme.io\n  login dev\n  password {PW[12]}\n", PW[12]),
    ("password_assignment", f"machine api.acme.io login dev password {PW[13]}", PW[13]),
    ("password_assignment", f"RABBITMQ_DEFAULT_PASS={PW[14]}", PW[14]),
    ("password_assignment", 'password: "Summer Vacation 2024!"', "Summer Vacation 2024!"),
    ("password_assignment", 'the wifi passphrase is "correct horse battery staple"', "correct horse battery staple"),
    ("password_assignment", f"my password is {PW[15]}, lol", PW[15]),
    # 7. PuTTY private keys; a percent-encoded Slack webhook
    ("private_key", PPK, PPK),
    ("private_key", f"here is my key:\n{PPK2}\nthanks", PPK2),
    ("slack_webhook", f"GET /notify?channel=ops&redirect=https%3A%2F%2F{HOOK_ENC}&x=1", HOOK_ENC),
]

NEGATIVES: list[tuple[str, str]] = [
    ("authorization_header", 'req.Header.Set("Authorization", "Bearer "+token)'),
    ("authorization_header", 'conn.setRequestProperty("Authorization", "Basic " + encoded);'),
    ("authorization_header", 'new AuthenticationHeaderValue("Basic", Convert.ToBase64String(bytes))'),
    ("authorization_header", "headers: { Authorization: `Bearer ${token}` }"),
    # an npm integrity hash has the same shape as an account key: not one without a name that says so
    ("azure_storage_key", f'"integrity": "sha512-{AZ}"'),
    ("azure_storage_key", f"integrity sha512-{AZ}"),
    ("azure_storage_key", f"checksum: {AZ}"),
    # under these names, anything but the key's shape is an identifier as often as a secret
    ("azure_storage_key", 'account_key = "acct_8f7a6b5c4d3e"'),
    ("password_assignment", 'account_key = "acct_8f7a6b5c4d3e"'),
    ("password_assignment", "AZURE_STORAGE_KEY=Xk29fQ0w"),
    # near a key id: a SHA-1, a longer base64 run, an absolute path, a run without a digit
    ("aws_secret_key", f"{AKIA} commit {rnd(40, '0123456789abcdef')}"),
    ("aws_secret_key", f"{AKIA} {b64_mixed(44)}"),
    ("aws_secret_key", f"{AKIA} in /Users/Alice/Projects/App2024/build/Logs"),
    ("aws_secret_key", f"{AKIA} {rnd(40, string.ascii_letters)}"),
    # too far from it, or with no key id at all
    ("aws_secret_key", f"{AKIA} " + "word " * 30 + AWS[0]),
    ("aws_secret_key", f'NewStaticCredentials(keyId, "{AWS[0]}", "")'),
    ("aws_secret_key", f"aws configure set region {AWS[0]}"),
    # a user without a password, a prompt, another command, a '-p' that is not glued (mysql: a database name)
    ("url_credentials", "curl -u admin https://jenkins.acme.io/api/json"),
    ("url_credentials", f"curl -u sk_test_{rnd(24)}: https://api.stripe.com/v1/charges"),
    ("url_credentials", f"libcurl -u admin:{PW[0]}"),
    ("url_credentials", "mail bob@tcp.example.com"),
    ("url_credentials", f"an http request with -a flag, then admin:{PW[0]}"),
    ("url_credentials", f"see http://x.io -a admin:{PW[0]}"),
    ("url_credentials", "jdbc:oracle:thin:@db.corp:1521:ORCL"),
    ("password_assignment", "mysql -u root -p shop"),
    ("password_assignment", "mysql -u root -P 3306 -p"),
    ("password_assignment", f"grep -p {PW[4]} file.txt"),
    ("password_assignment", "redis-cli -h cache ping"),
    # an attribute pair under another name; a type annotation alone; prose about passwords; messages
    ("password_assignment", f'<add key="Theme" value="{PW[8]}" />'),
    ("password_assignment", f'"password" value="{PW[8]}"'),
    ("password_assignment", "password: str"),
    ("password_assignment", "the password is incorrect"),
    ("password_assignment", "Your password is required to continue"),
    ("password_assignment", "the password was reset yesterday"),
    ("password_assignment", "token is abcdef123456"),
    ("password_assignment", "enter your password and press enter"),
    ("password_assignment", 'error: "Passwords do not match!"'),
    ("password_assignment", 'password: "Must contain 1 number!"'),
    ("password_assignment", f"use the password {PW[12]} here"),
    ("private_key", "PuTTY-User-Key-File-3: ssh-ed25519\nEncryption: none\nComment: a public key only"),
    ("slack_webhook", f"redirect=https%3A%2F%2Fhooks.slack.com%2Fservices%2F{rnd(10)}"),
]

PLACEHOLDERS: list[tuple[str, str]] = [
    ("authorization_header", 'new AuthenticationHeaderValue("Bearer", "<your-token>")'),
    ("authorization_header", 'req.Header.Set("Authorization", "Bearer xxxxxxxxxxxxxxxx")'),
    ("authorization_header", "AUTHORIZATION: Bearer YOUR_API_TOKEN_HERE"),
    ("azure_storage_key", "AZURE_STORAGE_KEY=<your-storage-key>"),
    ("azure_storage_key", "az storage blob list --account-key $AZURE_STORAGE_KEY"),
    ("azure_storage_key", 'new StorageSharedKeyCredential("acme", "' + "x" * 86 + '==");'),
    ("aws_secret_key", "AKIAIOSFODNN7EXAMPLE wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"),
    ("aws_secret_key", f'BasicAWSCredentials("{AKIA}", "EXAMPLEKEYwJalrXUtnFEMI/K7MDENG/bPxRfiCY")'),
    ("aws_secret_key", "aws configure set aws_secret_access_key $AWS_SECRET_ACCESS_KEY"),
    ("url_credentials", "curl -u $USER:$PASS https://jenkins.acme.io/"),
    ("url_credentials", 'curl --user "admin:<password>" https://jenkins.acme.io/'),
    ("url_credentials", 'DSN="root:${MYSQL_PASSWORD}@tcp(db:3306)/shop"'),
    ("url_credentials", "user:password@tcp(localhost:3306)/dbname"),
    ("url_credentials", "http -a $USER:$PASS pie.dev"),
    ("authorization_header", "http -A bearer -a <token> pie.dev"),
    ("github_token", "Authorization: Bearer ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx"),
    ("url_credentials", "jdbc:oracle:thin:scott/<password>@db.corp:1521:ORCL"),
    ("password_assignment", "mysql -u root -p$MYSQL_PWD shop"),
    ("password_assignment", "redis-cli -a <password> ping"),
    ("password_assignment", "sshpass -p 'changeme' ssh root@host"),
    ("password_assignment", '<property name="password" value="${db.password}"/>'),
    ("password_assignment", "machine api.acme.io login dev password <your-password>"),
    ("password_assignment", "my password is xxxxxxxx"),
    ("private_key", "PuTTY-User-Key-File-3: ssh-rsa\nPrivate-Lines: 1\nxxxxxxxxxxxxxxxxxxxxxxxx\n"),
    ("slack_webhook", "redirect=https%3A%2F%2Fhooks.slack.com%2Fservices%2FTxxxxxxxx%2FBxxxxxxxx%2Fxxxxxxxxxxxx"),
    # 6. false positives: shell parameter expansion (an error message, an alternative), an elided value
    ("password_assignment", "DB_PASSWORD=${DB_PASSWORD:?missing}"),
    ("password_assignment", 'export API_TOKEN="${API_TOKEN:?set API_TOKEN first}"'),
    ("password_assignment", "ANTHROPIC_API_KEY=sk-ant-..."),
    ("password_assignment", 'OPENAI_API_KEY="sk-proj-..."'),
]

MATCHERS = ["python", pytest.param("hyperscan", marks=pytest.mark.skipif(not available(),
                                                                          reason="no hyperscan wheel here"))]
_engines: dict[str, DlpEngine] = {}


@pytest.fixture(params=MATCHERS)
def engine(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Iterator[DlpEngine]:
    matcher = request.param
    if matcher not in _engines:
        monkeypatch.setenv("TOLLWAY_DLP_MATCHER", matcher)
        _engines[matcher] = DlpEngine(DlpConfig(cache_items=0))
        _engines[matcher].wait_ready()
    assert _engines[matcher].matcher == matcher
    yield _engines[matcher]


def inspect(engine: DlpEngine, text: str) -> tuple[set[str], str]:
    body: dict[str, Any] = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
    result = engine.inspect(body)
    return {f.kind for f in result.findings}, result.body["messages"][0]["content"]


@pytest.mark.parametrize(("kind", "text", "secret"), POSITIVES,
                         ids=[f"{k}-{i}" for i, (k, _t, _s) in enumerate(POSITIVES)])
def test_positive_only_the_secret_is_redacted(engine: DlpEngine, kind: str, text: str, secret: str) -> None:
    found, out = inspect(engine, text)
    assert kind in found
    expected = text.replace(secret, f"[REDACTED:{kind}:1]").replace(AKIA, "[REDACTED:aws_access_key:1]")
    assert out == expected


@pytest.mark.parametrize(("kind", "text"), NEGATIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(NEGATIVES)])
def test_negative(engine: DlpEngine, kind: str, text: str) -> None:
    assert kind not in inspect(engine, text)[0]


@pytest.mark.parametrize(("kind", "text"), PLACEHOLDERS, ids=[f"{k}-{i}" for i, (k, _) in enumerate(PLACEHOLDERS)])
def test_placeholder_is_not_a_finding(engine: DlpEngine, kind: str, text: str) -> None:
    assert kind not in inspect(engine, text)[0]

"""DLP quality report: per-kind recall and false-positive rate on a test set built from documented formats.

    .venv/bin/python bench/dlp_quality.py            # the table (markdown)
    .venv/bin/python bench/dlp_quality.py --json     # the same as JSON
    TOLLWAY_DLP_MATCHER=python .venv/bin/python bench/dlp_quality.py   # with the pure-Python matcher

Every positive is generated here, with a seeded generator, from the format its vendor or standard
documents (the source is cited next to each generator); nothing is copied from another project's
test files. Each value is placed in several contexts (an environment file, code, JSON, a log line,
prose). Negatives are code, logs and prose of the kind coding agents send, plus lookalikes for
every kind (wrong length or prefix, bad checksum, documentation placeholders).

Recall of kind K: the share of K's positives in which the engine reports K. False-positive rate of
K: the share of negative samples in which the engine reports K. Targets (issue 15): recall >= 95 %
and false positives <= 2 % for every kind. Exit status 1 when a target is missed.
"""

from __future__ import annotations

import argparse
import base64
import json
import random
import string
import sys
import urllib.parse
import zlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.policy import DlpConfig

R = random.Random(20261203)
UP, LO, DG = string.ascii_uppercase, string.ascii_lowercase, string.digits
AN = UP + LO + DG
HEX = DG + "abcdef"
B64 = AN + "+/"
URLSAFE = AN + "-_"


def r(n: int, alphabet: str = AN) -> str:
    return "".join(R.choice(alphabet) for _ in range(n))


def luhn(prefix: str, length: int) -> str:
    body = prefix + r(length - len(prefix) - 1, DG)
    for c in DG:
        digits = body + c
        if sum(int(d) if i % 2 == 0 else sum(divmod(int(d) * 2, 10)) for i, d in enumerate(reversed(digits))) % 10 == 0:
            return digits
    raise AssertionError


def iban(country: str, bban: str) -> str:
    """ISO 13616: check digits make the mod-97 of (BBAN + country + '00') rearranged equal 1."""
    numeric = "".join(str(int(c, 36)) for c in bban + country + "00")
    return f"{country}{98 - int(numeric) % 97:02d}{bban}"


BECH32 = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"


def ean_luhn() -> str:
    """A German EAN-13 (prefix 400-440, GS1 "GS1 Company Prefix") that happens to pass Luhn too."""
    while True:
        v = luhn("40", 13)
        if (sum(int(c) for c in v[0:12:2]) + 3 * sum(int(c) for c in v[1:12:2]) + int(v[12])) % 10 == 0:
            return v


def bech32(hrp: str, payload: bytes) -> str:
    """BIP 173: the payload in 5-bit groups, then the 6-character checksum (polymod over the expanded HRP)."""
    data, acc, bits = [], 0, 0
    for byte in payload:
        acc, bits = (acc << 8) | byte, bits + 8
        while bits >= 5:
            bits -= 5
            data.append((acc >> bits) & 31)
    if bits:
        data.append((acc << (5 - bits)) & 31)
    chk = 1
    for v in [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp] + data + [0] * 6:
        top, chk = chk >> 25, ((chk & 0x1FFFFFF) << 5) ^ v
        for i, g in enumerate((0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)):
            chk ^= g if (top >> i) & 1 else 0
    chk ^= 1
    return hrp + "1" + "".join(BECH32[d] for d in data + [(chk >> 5 * (5 - i)) & 31 for i in range(6)])


def glsa(secret: str) -> str:
    """Grafana's token generator: ``glsa_<secret>_`` and the CRC-32 (IEEE) of ``glsa_<secret>``, little-endian hex."""
    key = "glsa_" + secret
    return f"{key}_{zlib.crc32(key.encode()).to_bytes(4, 'little').hex()}"


def b64pem(label: str) -> str:
    """A PEM block of random bytes under LABEL, in base64 as Kubernetes stores it."""
    body = "\n".join(r(64, B64) for _ in range(8))
    return base64.b64encode(f"-----BEGIN {label}-----\n{body}\n-----END {label}-----\n".encode()).decode()


WORDS = ["violet", "timber", "harbor", "maple", "quartz", "falcon", "meadow", "lantern", "walnut", "glacier"]


def grouped(value: str) -> str:
    """Written in groups of four, as IBANs are printed."""
    return " ".join(value[i : i + 4] for i in range(0, len(value), 4))


# --- generators, one per documented format -------------------------------------------------------------------
# Each returns the value; CONTEXT places it. Sources:
GEN: dict[str, list[Callable[[], str]]] = {
    # AWS IAM User Guide, "IAM identifiers" (unique ID prefixes AKIA, ASIA, ABIA, ACCA; 20 characters)
    # https://docs.aws.amazon.com/IAM/latest/UserGuide/reference_identifiers.html#identifiers-unique-ids
    "aws_access_key": [lambda: R.choice(["AKIA", "ASIA", "ABIA", "ACCA"]) + r(16, UP + "234567")],
    # Same guide, "Managing access keys": a 40-character secret access key, in the CLI's config files
    # https://docs.aws.amazon.com/cli/latest/userguide/cli-configure-files.html
    "aws_secret_key": [lambda: f"aws_secret_access_key = {r(40, B64)}", lambda: f"AWS_SECRET_ACCESS_KEY={r(40, B64)}"],
    # Google Cloud, "Manage API keys" (keys start AIza, 39 characters)
    # https://cloud.google.com/docs/authentication/api-keys
    "gcp_api_key": [lambda: "AIza" + r(35, URLSAFE)],
    # RFC 7468 (textual encodings: PKCS #8 "PRIVATE KEY", RFC 3447 "RSA PRIVATE KEY"); OpenSSH PROTOCOL.key
    "private_key": [
        lambda: (
            f"-----BEGIN {R.choice(['RSA ', 'EC ', 'OPENSSH ', ''])}PRIVATE KEY-----\n"
            + "\n".join(r(64, B64) for _ in range(6))
            + "\n-----END PRIVATE KEY-----"
        ),
        # Kubernetes, "Secrets" (kubernetes.io/docs/concepts/configuration/secret/#tls-secrets): a TLS Secret's
        # data.tls.key is the PEM key in base64; so is a kubeconfig's client-key-data
        lambda: f"  tls.key: {b64pem('PRIVATE KEY')}",
        lambda: f"    client-key-data: {b64pem('RSA PRIVATE KEY')}",
    ],
    # GitHub blog, "Behind GitHub's new authentication token formats" (ghp_, gho_, ghu_, ghs_, ghr_ + 36);
    # GitHub docs, fine-grained personal access tokens (github_pat_)
    # https://github.blog/engineering/platform-security/behind-githubs-new-authentication-token-formats/
    "github_token": [
        lambda: R.choice(["ghp_", "gho_", "ghu_", "ghs_", "ghr_"]) + r(36),
        lambda: f"github_pat_11{r(20, UP + DG)}_{r(59)}",
    ],
    # GitLab docs, "GitLab token overview", token prefixes
    # https://docs.gitlab.com/security/tokens/#token-prefixes
    "gitlab_token": [
        lambda: (
            R.choice(
                [
                    "glpat-",
                    "gldt-",
                    "glrt-",
                    "glcbt-",
                    "glptt-",
                    "glft-",
                    "glimt-",
                    "glagent-",
                    "gloas-",
                    "glsoat-",
                    "glffct-",
                ]
            )
            + r(20, URLSAFE)
        ),
        lambda: "GR1348941" + r(20, URLSAFE),
    ],
    # Slack API, "Token types" (xoxb-, xoxp-, xapp-, xoxe. refresh/rotation tokens)
    # https://api.slack.com/authentication/token-types
    "slack_token": [
        lambda: f"xox{R.choice('bp')}-{r(12, DG)}-{r(13, DG)}-{r(24)}",
        lambda: f"xapp-1-A{r(10, UP + DG)}-{r(13, DG)}-{r(64, HEX)}",
        lambda: f"xoxe.xoxp-1-{r(140, AN + '-')}",
    ],
    # Slack API, "Sending messages using incoming webhooks"  https://api.slack.com/messaging/webhooks
    "slack_webhook": [lambda: f"https://hooks.slack.com/services/T{r(8, UP + DG)}/B{r(8, UP + DG)}/{r(24)}"],
    # Stripe docs, "API keys" (sk_live_, sk_test_, rk_live_, rk_test_) and "Webhooks" (whsec_)
    # https://docs.stripe.com/keys  https://docs.stripe.com/webhooks
    "stripe_key": [
        lambda: f"{R.choice(['sk', 'rk'])}_{R.choice(['live', 'test'])}_51{r(96)}",
        lambda: f"whsec_{r(32)}",
    ],
    # OpenAI API reference, "Authentication" (sk-, sk-proj-)  https://platform.openai.com/docs/api-reference
    "openai_key": [lambda: f"sk-proj-{r(48, URLSAFE)}T3BlbkFJ{r(48, URLSAFE)}", lambda: f"sk-{r(48)}"],
    # Anthropic API docs, "Getting started" (x-api-key: sk-ant-api03-...)  https://docs.anthropic.com/en/api
    "anthropic_key": [lambda: f"sk-ant-api03-{r(93, URLSAFE)}AA"],
    # Azure Storage, "Configure a connection string" (AccountKey=, base64 of 64 bytes) and "SAS overview" (sig=);
    # Service Bus/Event Hubs connection strings (SharedAccessKey=, base64 of 32 bytes)
    # https://learn.microsoft.com/azure/storage/common/storage-configure-connection-string
    # https://learn.microsoft.com/azure/storage/common/storage-sas-overview
    "azure_storage_key": [
        lambda: f"DefaultEndpointsProtocol=https;AccountName=prod;AccountKey={r(86, B64)}==",
        lambda: f"Endpoint=sb://x.servicebus.windows.net/;SharedAccessKeyName=Root;SharedAccessKey={r(43, B64)}=",
        lambda: f"https://acct.blob.core.windows.net/c/f?sv=2022-11-02&sp=r&sig={r(43, AN)}%3D",
        # an account key named in prose, after the words of the portal's "Access keys" blade
        lambda: f"the {R.choice(['storage account key', 'storage key', 'AccountKey'])} is {r(86, B64)}==",
    ],
    # Microsoft Purview, sensitive information type "Microsoft Entra client secret" (3 chars, digit, Q~, 31-34)
    # https://learn.microsoft.com/purview/sit-defn-azure-ad-client-secret
    "azure_client_secret": [lambda: f"{r(3)}{r(1, DG)}Q~{r(34, AN + '_~.-')}"],
    # Twilio docs, "API keys" (SID starting SK + 32 hex)  https://www.twilio.com/docs/iam/api-keys
    "twilio_api_key": [lambda: "SK" + r(32, HEX)],
    # Twilio SendGrid docs, "API keys" (SG.<22>.<43>)  https://www.twilio.com/docs/sendgrid/ui/account-and-settings/api-keys
    "sendgrid_key": [lambda: f"SG.{r(22, URLSAFE)}.{r(43, URLSAFE)}"],
    # GitHub changelog 2021-09-23, "npm has a new access token format" (npm_ + 36)
    # https://github.blog/changelog/2021-09-23-npm-has-a-new-access-token-format/
    "npm_token": [lambda: "npm_" + r(36)],
    # PyPI help, "API tokens" (pypi- + macaroon, whose base64 starts AgEIcHlwaS5vcmc)  https://pypi.org/help/#apitoken
    "pypi_token": [lambda: "pypi-AgEIcHlwaS5vcmc" + r(120, URLSAFE)],
    # Hugging Face docs, "User access tokens" (hf_)  https://huggingface.co/docs/hub/security-tokens
    "huggingface_token": [lambda: "hf_" + r(34, UP + LO)],
    # Databricks docs, "Personal access token authentication" (dapi + 32 hex)
    # https://docs.databricks.com/dev-tools/auth/pat.html
    "databricks_token": [lambda: "dapi" + r(32, HEX)],
    # HashiCorp Vault docs, "Tokens" (hvs., hvb., hvr. prefixes); Terraform Cloud API tokens (<14>.atlasv1.<60+>)
    # https://developer.hashicorp.com/vault/docs/concepts/tokens#token-prefixes
    "hashicorp_token": [lambda: f"hvs.{r(90, URLSAFE)}", lambda: f"{r(14, LO + DG)}.atlasv1.{r(67, AN)}"],
    # DigitalOcean docs, "How to create a personal access token" (dop_v1_ + 64 hex; doo_, dor_ for OAuth)
    # https://docs.digitalocean.com/reference/api/create-personal-access-token/
    "digitalocean_token": [lambda: f"do{R.choice('por')}_v1_{r(64, HEX)}"],
    # Sentry docs, "Auth tokens" (sntryu_ user tokens, sntrys_ organization tokens)  https://docs.sentry.io/account/auth-tokens/
    "sentry_token": [lambda: "sntryu_" + r(64, HEX), lambda: f"sntrys_eyJpYXQiOjE3M{r(120, AN)}_{r(43, URLSAFE)}"],
    # Shopify developer changelog: "Length of the Shopify access token is increasing" (2020-04-01: shpat_, shpca_,
    # shppa_ + 32) and "App secret key length has increased" (2020-01-28: shpss_ + 32)
    # https://shopify.dev/changelog/length-of-the-shopify-access-token-is-increasing
    # https://shopify.dev/changelog/app-secret-key-length-has-increased
    "shopify_token": [lambda: R.choice(["shpat_", "shpca_", "shppa_", "shpss_"]) + r(32, HEX)],
    # Grafana's service-account token generator, grafana/grafana pkg/components/satokengen/tokengen.go:
    # "gl" + "sa" + "_" + 32 random letters/digits + "_" + CRC-32 of the rest (8 hex); Grafana docs,
    # "Service account tokens" (glsa_ prefix)  https://grafana.com/docs/grafana/latest/administration/service-accounts/
    "grafana_token": [lambda: glsa(r(32))],
    # Doppler API reference, "Authentication" (CLI, personal, service, service account, SCIM, audit tokens) and
    # "Service Tokens" (dp.st.<config>.<token>); the prefixes dp.pt./dp.sa./dp.ct./dp.scim. as Doppler's own MCP
    # server tells them apart (DopplerHQ/mcp-server, src/auth.ts). Doppler does not publish the length: 43 here.
    # https://docs.doppler.com/reference/api  https://docs.doppler.com/docs/service-tokens
    "doppler_token": [
        lambda: f"dp.{R.choice(['pt', 'sa', 'ct', 'scim', 'st'])}.{r(43)}",
        lambda: f"dp.st.{R.choice(['prd', 'dev', 'stg_eu'])}.{r(43)}",
    ],
    # C2SP age specification (age-encryption.org/v1), "The X25519 recipient type": 32 random bytes encoded as
    # Bech32 (BIP 173) with the HRP AGE-SECRET-KEY-, upper case  https://c2sp.org/age
    "age_secret_key": [lambda: bech32("age-secret-key-", R.randbytes(32)).upper()],
    # Microsoft Purview, sensitive information type "Azure DevOps personal access token": 84 letters and digits,
    # the fixed signature AZDO at positions 76-80  https://learn.microsoft.com/purview/sit-defn-azure-devops-personal-access-token
    "azure_devops_pat": [
        lambda: r(76) + "AZDO" + r(4),
        # Legacy PATs (before Sprint 241: 52 characters): Purview's definition of the same type reads them as the
        # "Base32-encoded 256-bit symmetric key pattern" (RFC 4648 base32, lower case) with the keywords pat, ado,
        # vsts, azuredevops, dev.azure.com; Azure DevOps docs, "Use personal access tokens" (the PAT as the password
        # of a Git URL, or Basic with an empty user name in http.extraheader) and "Predefined variables"
        # (SYSTEM_ACCESSTOKEN)  https://learn.microsoft.com/azure/devops/organizations/accounts/use-personal-access-tokens-to-authenticate
        lambda: f"{R.choice(['AZURE_DEVOPS_PAT', 'ADO_PAT', 'SYSTEM_ACCESSTOKEN', 'azure_devops_token'])}="
                f"{r(52, LO + '234567')}",
        lambda: f"git clone https://{R.choice(['acme:', ''])}{r(52, LO + '234567')}@dev.azure.com/acme/web/_git/web",
        lambda: 'git -c http.extraheader="AUTHORIZATION: basic '
                + base64.b64encode(b":" + r(52, LO + "234567").encode()).decode() + '" fetch',
    ],
    # RFC 7519 (JSON Web Token: base64url header "{"alg":...}" . payload . signature)
    "jwt": [lambda: f"eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJ{r(60, URLSAFE)}.{r(43, URLSAFE)}"],
    # RFC 3986 section 3.2.1 (userinfo in a URI); PostgreSQL, MySQL, Redis, MongoDB, AMQP connection URIs
    "url_credentials": [
        lambda: (
            f"{R.choice(['postgres', 'postgresql', 'mysql', 'redis', 'mongodb+srv', 'amqp', 'https'])}"
            f"://{R.choice(['app', 'admin', 'svc_user'])}:{r(16)}@{R.choice(['db', 'localhost', 'h.internal'])}"
            f":{R.choice(['5432', '3306', '6379'])}/x"
        )
    ],
    # RFC 7617 (Basic), RFC 6750 (Bearer), RFC 7616 (Digest: the response, 32 hex with MD5, 64 with SHA-256)
    "authorization_header": [
        lambda: f"Authorization: Basic {r(32, B64)}=",
        lambda: f"-H 'Authorization: Bearer {r(40, URLSAFE)}'",
        lambda: f'Authorization: Digest username="{R.choice(["bob", "ci"])}", realm="api", nonce="{r(32, HEX)}", '
                f'uri="/v1/x", qop=auth, nc=00000001, cnonce="{r(8, HEX)}", response="{r(R.choice([32, 64]), HEX)}"',
        # HAR 1.2 (W3C Web Performance WG draft, "HTTP Archive format"): request headers as name/value objects
        lambda: f'"headers": [{{"name": "Authorization", "value": "Bearer {r(40, URLSAFE)}"}}]',
    ],
    # Assignments to secret-named variables (the detect-secrets KeywordDetector idea; our own forms)
    "password_assignment": [
        # The eleventh session's forms (a held-out probe of deployment files):
        # a .env value with an '&' in it (dotenv: an unquoted value runs to the end of the line; these two forms
        # are lines of a file, so they are placed on their own lines)
        lambda: f"\nDB_PASSWORD={r(10)}&{r(6)}\n",
        # Google Account Help, "Sign in with app passwords": 16 letters; random letters under a password's name
        lambda: f"\nPOSTGRES_PASSWORD: {r(16, 'bcdfghjklmnpqrstvwxz')}\n",
        # a four-word passphrase as password managers generate it (EFF's diceware word lists)
        lambda: f'postgresPassword: "{"-".join(R.choice(WORDS) for _ in range(4))}"',
        # Laravel, "Configuration: Encryption key" (APP_KEY=base64: + 32 random bytes)
        lambda: f"APP_KEY=base64:{base64.b64encode(R.randbytes(32)).decode()}",
        # Kubernetes, "Authenticating with Bootstrap Tokens": [a-z0-9]{6}.[a-z0-9]{16}
        lambda: f"kubeadm join 10.0.0.1:6443 --token {r(5, LO)}1.{r(15, LO + DG)}7",
        # Docker CLI reference, "docker login": -p/--password
        lambda: f"docker login -u ci-bot -p {r(20)} ghcr.io",
        lambda: f'DB_PASSWORD="{r(14)}!"',
        lambda: f"client_secret: {r(24)}",
        lambda: f'System.setProperty("API_TOKEN", "{r(20)}");',
        lambda: f'os.environ["SERVICE_API_KEY"] = "{r(24)}"',
        # command-line flags (az, helm, docker, vault: --password VALUE, --api-key VALUE)
        lambda: f"{R.choice(['az login -u app', 'helm repo add r https://c', 'mycli deploy'])} "
                f"--{R.choice(['password', 'api-key', 'client-secret'])} {r(17)}{r(1, DG)}",
        # XML configuration (Maven settings.xml <server><password>, Spring and .NET elements)
        lambda: f"<server><id>releases</id><username>ci</username><password>{r(16)}</password></server>",
        lambda: (lambda name: f"<{name}>{r(24)}</{name}>")(R.choice(["apiKey", "accessToken", "clientSecret"])),
        # .env files and compose files: a compound name ending in _pass (detect-secrets' db_pass), a passphrase
        lambda: f"{R.choice(['DB_PASS', 'SMTP_PASS', 'redis_pass', 'Mail-Pass'])}={r(15)}{r(1, DG)}",
        lambda: f"{R.choice(['GPG_PASSPHRASE', 'ssh_passphrase', 'passphrase'])}: '{r(14)}{r(1, DG)}'",
        # Docker's config.json: "auths": {"<registry>": {"auth": base64 of "user:password"}} (Docker docs, "docker
        # login", "Credential stores")  https://docs.docker.com/reference/cli/docker/login/ ; .npmrc's _auth (npm docs,
        # "npmrc", auth-related configuration: base64 of username:password)  https://docs.npmjs.com/cli/configuring-npm/npmrc
        lambda: '{"auths": {"' + R.choice(["registry.acme.io", "https://index.docker.io/v1/", "ghcr.io"])
                + '": {"auth": "'
                + base64.b64encode(f"{R.choice(['ci', 'robot$x'])}:{r(14)}{r(1, DG)}".encode()).decode() + '"}}}',
        lambda: f"_auth={base64.b64encode(f'dev:{r(12)}{r(1, DG)}'.encode()).decode()}",
        # Nodemailer docs, "SMTP transport" (auth: { user, pass })  https://nodemailer.com/smtp/
        lambda: f"auth: {{ user: '{R.choice(['ops', 'mailer'])}@acme.io', pass: '{r(12)}{r(1, DG)}!' }}",
        # Terraform docs, "Input variables" (variable blocks, default, sensitive)
        # https://developer.hashicorp.com/terraform/language/values/variables
        lambda: f'variable "{R.choice(["db_password", "api_token", "admin_pass"])}" {{\n  type = string\n'
                f'  default = "{r(14)}{r(1, DG)}"\n}}',
        # WHATWG URL standard, application/x-www-form-urlencoded (percent-encoded values), e.g. an OAuth 2.0
        # password grant body (RFC 6749 section 4.3.2) and a URL inside another URL's query
        lambda: "grant_type=password&username=bob&password="
                + urllib.parse.quote(R.choice("!@#$") + r(12) + r(1, DG), safe=""),
        lambda: "next=%2Flogin%3Fpassword%3D" + urllib.parse.quote(urllib.parse.quote(r(12) + "@" + r(2, DG), safe=""),
                                                                 safe="") + "%26r%3D1",
        lambda: f"GET /login?user=admin&pass={r(12)}{r(1, DG)} HTTP/1.1",
        lambda: (
            'password = "'
            + " ".join(
                R.choice(["amber", "violet", "canyon", "river", "falcon", "pepper", "orbit", "maple"]) for _ in range(4)
            )
            + '"'
        ),
    ],
    # RFC 5322 addr-spec
    "email": [
        lambda: (
            f"{R.choice(['ana', 'j.smith', 'li.wei', 'o.brien'])}{r(2, DG)}"
            f"@{R.choice(['acme-corp.com', 'mail.co.uk', 'uni.edu'])}"
        )
    ],
    # ITU-T E.164 (+ country code); national formats as published by NANPA (US), Ofcom (UK), Bundesnetzagentur (DE)
    "phone_number": [
        # a customer export: the column's name says phone, no word before the number (RFC 4180 CSV)
        lambda: (f"\nid,name,phone,notes\n17,Annabelle Montgomery-Fitzgerald of Westminster,"
                 f"06{R.choice('1245')}{r(7, DG)},ok\n"),
        lambda: f"+1 {R.choice(['212', '415', '617', '312', '206'])}-{R.choice('23456789')}{r(2, DG)}-{r(4, DG)}",
        lambda: f"({R.choice(['212', '415', '617', '312', '206'])}) {R.choice('23456789')}{r(2, DG)}-{r(4, DG)}",
        lambda: f"+44 20 7{r(3, DG)} {r(4, DG)}",
        lambda: f"020 7{r(3, DG)} {r(4, DG)}",
        lambda: f"+49 30 {r(8, DG)}",
        lambda: f"+33 1 {r(2, DG)} {r(2, DG)} {r(2, DG)} {r(2, DG)}",
        # National formats that end in a two-digit group, as each regulator's numbering plan writes them:
        # ARCEP (France: 0 + 9 digits in pairs), CNMC (Spain: mobile 6xx xx xx xx), OFCOM Switzerland (0xx xxx xx xx),
        # BIPT (Belgium: mobile 04xx xx xx xx), PTS (Sweden: mobile 07x-xxx xx xx), UKE (Poland: xx xxx xx xx)
        lambda: f"01 {r(2, DG)} {r(2, DG)} {r(2, DG)} {r(2, DG)}",
        lambda: f"06 {R.choice('1245')}{r(1, DG)} {r(2, DG)} {r(2, DG)} {r(2, DG)}",
        lambda: f"6{r(2, DG)} {r(2, DG)} {r(2, DG)} {r(2, DG)}",
        lambda: f"0{R.choice(['21', '22', '31', '44', '61'])} {r(3, DG)} {r(2, DG)} {r(2, DG)}",
        lambda: f"04{R.choice('789')}{r(1, DG)} {r(2, DG)} {r(2, DG)} {r(2, DG)}",
        lambda: f"07{R.choice('0236')}-{r(3, DG)} {r(2, DG)} {r(2, DG)}",
        lambda: f"{R.choice(['12', '22', '58', '61', '71'])} {r(3, DG)} {r(2, DG)} {r(2, DG)}",
        # ARCEP's pairs with dots or dashes, as French addresses and signatures write them, and a country code
        # followed by dots (ITU-T E.123 writes spaces; dots are the common variant)
        lambda: f"01.{r(2, DG)}.{r(2, DG)}.{r(2, DG)}.{r(2, DG)}",
        lambda: f"06-{R.choice('1245')}{r(1, DG)}-{r(2, DG)}-{r(2, DG)}-{r(2, DG)}",
        lambda: f"+33.6.{R.choice('1245')}{r(1, DG)}.{r(2, DG)}.{r(2, DG)}.{r(2, DG)}",
        # one run of digits after a word that says phone (the trunk prefix written where the region dials one)
        lambda: f"Tel: 06{R.choice('1245')}{r(7, DG)}",
        lambda: f"phone {R.choice(['212', '415', '617'])}{R.choice('23456789')}{r(6, DG)}",
    ],
    # ISO/IEC 7812 IIN ranges (Visa 4, Mastercard 51-55 and 2221-2720, Amex 34/37, Discover 6011/65, JCB 3528-3589,
    # UnionPay 62, Mir 2200-2204, RuPay 60/65) with the Luhn check digit
    "payment_card": [
        lambda: luhn("4", 16),
        lambda: luhn(R.choice(["51", "55", "2221", "2720"]), 16),
        lambda: luhn(R.choice(["34", "37"]), 15),
        lambda: luhn(R.choice(["6011", "65"]), 16),
        lambda: luhn("35" + R.choice(["28", "60", "89"]), 16),
        lambda: luhn("62", 16),
        lambda: luhn("220" + R.choice("01234"), 16),
        lambda: grouped(luhn("4", 16)),
        lambda: grouped(luhn("5" + R.choice("12345"), 16)).replace(" ", "-"),
        # Maestro issues 12 to 19 digits (ISO/IEC 7812 IINs 5018, 5020, 5038, 5893, 6304, 6759, 6761-6763)
        lambda: luhn(R.choice(["5018", "5020", "5038", "5893", "6304", "6759", "6761", "6762", "6763"]), 12),
        lambda: luhn(R.choice(["6759", "6304", "5018"]), R.choice([14, 15, 17, 18])),
    ],
    # SSA, "Social Security Number Randomization" (area 001-899 but 666, group 01-99, serial 0001-9999)
    # https://www.ssa.gov/employer/randomization.html
    "us_ssn": [
        lambda: (
            f"{R.choice([a for a in range(1, 900) if a != 666]):03d}-{R.randint(1, 99):02d}-{R.randint(1, 9999):04d}"
        ),
        lambda: f"SSN {R.randint(1, 665):03d}{R.randint(1, 99):02d}{R.randint(1, 9999):04d}",
        # an SQL dump: the column list names the SSN
        lambda: (f"INSERT INTO people (id, full_name, ssn) VALUES (1, 'Annabelle Montgomery-Fitzgerald', "
                 f"'{R.randint(1, 665):03d}{R.randint(1, 99):02d}{R.randint(1, 9999):04d}');\n"),
    ],
    # ISO 13616 / SWIFT IBAN registry (country lengths), mod-97 check digits
    "iban": [
        lambda: iban("DE", r(18, DG)),
        lambda: iban("GB", "WEST" + r(14, DG)),
        lambda: iban("FR", r(23, DG)),
        lambda: iban("NL", "ABNA" + r(10, DG)),
        lambda: grouped(iban("ES", r(20, DG))),
    ],
    # RFC 791 dotted-quad IPv4 (opt-in kind), outside RFC 5737 documentation ranges and loopback (RFC 1122)
    "ip_address": [
        lambda: (
            f"{R.choice([a for a in range(11, 224) if a != 127])}.{R.randint(0, 255)}"
            f".{R.randint(0, 255)}.{R.randint(1, 254)}"
        )
    ],
}

CONTEXTS = [
    "{v}",
    "export SOME_VALUE={v}",
    "I pasted {v} here by mistake, sorry.",
    '{{"value": "{v}"}}',
    "2026-12-03T07:00:00Z INFO worker-3 using {v} for the job",
    "    config.set('x', '{v}')  # from the vault",
]
# Values that already carry their own context are placed in prose and logs only.
SELF_CONTEXT = {"aws_secret_key", "password_assignment", "authorization_header", "url_credentials", "azure_storage_key"}


def positives() -> dict[str, list[str]]:
    R.seed(20261203)
    out: dict[str, list[str]] = {}
    for kind, gens in GEN.items():
        contexts = CONTEXTS[:1] + CONTEXTS[2:3] + CONTEXTS[4:5] if kind in SELF_CONTEXT else CONTEXTS
        out[kind] = [c.format(v=g()) for g in gens for c in contexts for _ in range(max(2, 12 // len(gens)))]
    return out


def negatives() -> list[str]:
    R.seed(7)
    code = [
        "def load(path: str) -> dict:\n    with open(path) as f:\n        return json.load(f)\n",
        "const token = getToken(req.headers);\nif (!token) throw new Error('missing token');",
        "password = os.environ['DB_PASSWORD']\nsecret = settings.SECRET_KEY\napi_key = config.get('api_key')",
        "for i in range(1000000):\n    total += i * 2654435761 % 4294967296",
        "id = uuid.UUID('550e8400-e29b-41d4-a716-446655440000')",
        "git checkout 9fceb02d0ae598e95dc970b74767f19372d61af8",
        "sha256 = 'e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855'",
        "import { createHash } from 'crypto';\nexport const key = createHash('sha1').update(s).digest('hex');",
        "version = '1.24.3'\nrequires = ['requests>=2.31.0', 'numpy==1.26.4']",
        "x = 0x7fffffff; y = 1e-9; z = 3.14159265358979",
        "b64 = 'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=='",
        "token_count = len(tokens)\nmax_tokens = 4096\nkey_fn = lambda k: k.lower()",
        "@pytest.fixture\ndef client(app):\n    return app.test_client()",
        "ssh git@github.com:org/repo.git && npm i lodash@4.17.21",
        "SELECT id, email FROM users WHERE created_at > '2024-01-15 10:30:00' LIMIT 100;",
        "kubectl get pods -n kube-system -o wide | grep coredns-5d78c9869d-x7k2p",
    ]
    logs = [
        f"2026-12-0{d}T1{d}:2{d}:3{d}.{d}12Z INFO request_id=req_{r(24)} status=200 duration_ms={R.randint(1, 999)}"
        for d in range(1, 10)
    ] + [
        "Dec  3 06:59:59 host sshd[31337]: Accepted publickey for deploy from port 52344 ssh2",
        "GET /api/v1/items?page=2&per_page=50 HTTP/1.1 200 1532 0.004",
        "java.lang.NullPointerException\n\tat com.acme.Foo.bar(Foo.java:42)\n\tat com.acme.Main.main(Main.java:7)",
        "pid 48213 rss 182340 KB cpu 12.5% threads 24 fds 1023",
        "build #4521 finished in 00:03:21 (exit 0)",
    ]
    prose = [
        "The quick brown fox jumps over the lazy dog. Passwords should be rotated every 90 days.",
        "Please review the token budget before the release; secrets must never be logged.",
        "We met on 12/03/2026 at 10:30 and agreed on a 15% discount for orders over 1,000 units.",
        "Order 1234567812345678 shipped on 2024-01-15; call the desk if it has not arrived by Friday.",
        "The API key is stored in the vault and injected at runtime; see the runbook for details.",
    ]
    lookalikes = [
        "AKIAIOSFODNN7EXAMPLE and wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY from the AWS docs",
        "ghp_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx",
        "ghp_16C7e42F292c6912E7710c838347Ae178B4a",
        "glpat-XXXXXXXXXXXXXXXXXXXX",
        "sk_test_4eC39HqLyjWDarjtT1zdp7dc",
        "pk_live_" + r(24),
        "AIzaSyDOCAbC123dEf456GhI789jKl012-MnO",
        "xoxb-your-token-here",
        "https://hooks.slack.com/services/XXX/YYY/ZZZ",
        "npm_config_registry=https://r",
        "hf_hub_download(repo_id='bert')",
        "dapi-version 2",
        "sk-" + "x" * 40,
        "Bearer <token>",
        "Authorization: Bearer ${TOKEN}",
        "postgres://user:password@localhost/db",
        "mysql://root:${PW}@db/app",
        "redis://localhost:6379/0",
        'password = "<your password>"',
        "API_KEY=${API_KEY}",
        "secret: {{ secrets.X }}",
        "4111 1111 1111 1112",
        "DE88 3704 0044 0532 0130 00",
        "000-12-3456 and 666-12-3456 and 900-12-3456",
        "id 123456789 of the order",
        "192.0.2.1 and 198.51.100.7 (RFC 5737)",
        "release 1.2.3.4 of the tool",
        "AIDAJQABLZS4A3QDU576 is a user id",
        "phone-like 1234567890 and 555-1234",
        "00000010  01 23 45 67 89 12 34 56  78 90 12 34 56 78 90 12  |.#Eg..4Vx..4Vx..|",  # hexdump -C
        "scores 10 20 30 40 50 and 12 34 56 78",
        "</password> closes the element</p> and <passwordHint>first pet</passwordHint>",
        "docker login --password-stdin < pw.txt; use --token to pass a token; my password is long",
        "def bypass(x):\n    pass\nfirst_pass = compute_pass(x)\ncompass = 'northwest'\nDB_PASS=${DB_PASS}",
        'render_pass = "GBufferPass"\nlint_pass: firstPass2\nhigh_pass: 3.5kHz_filter\nresult_pass = 0x1F2E3D4C',
        "order 0612345678 shipped at 1700000000; kernel 4.19.0.25.100; oid 1.3.6.1.4.1.2021.10.1.3.1",
        "created_at >= '2024-09-19 14:30' and 19.09.2024 14 30; the API call took 4155552671 ns",
        "matrix rows: 01 02 03 04 05 06 07 08",
        "eyJhelloworld.foo.bar",
        "-----BEGIN PUBLIC KEY-----\nMIIBIjANBgkqhkiG9w0BAQEFAAOCAQ8AMIIBCgKCAQEA\n-----END PUBLIC KEY-----",
        "SK-1234 ticket",
        "SG.short.value",
        "whsec_",
        "hvs.",
        "dop_v1_short",
        "shpat_" + r(31, HEX) + " and shpxx_" + r(32, HEX),
        glsa(r(32))[:-8] + "00000000",  # a bad checksum
        "glsa_xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx_xxxxxxxx",
        "echo 'dp.st.prd.xxxx' | doppler configure set token --scope /usr/src/app",
        "dp.pt." + r(39),
        "AGE-SECRET-KEY-1GFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPYYSJZGFPQ4EGAEX",  # the age spec's example
        "AGE-SECRET-KEY-1" + r(58, BECH32.upper()),  # the Bech32 checksum does not hold
        "age1" + r(58, BECH32) + " is a recipient (public key)",
        "abcdefghijklmnopqrstuvwxyz012345679ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnoAZDOabcd",  # Purview's example
        r(75) + "AZDO" + r(4) + " and " + r(76) + "AZDX" + r(4),
        # the tenth probe's forms, as code and text that look like them
        '{"auths": {"registry.acme.io": {"auth": "' + base64.b64encode(R.randbytes(18)).decode() + '"}}}',
        '{"oauth": "' + base64.b64encode(b"ci:" + r(12).encode()).decode() + '", "auth": "Basic"}',
        "stage:\n  pass: 'all tests green'\n  fail: 0\nauth: { user, pass: smtpPass }\nbypass: '" + r(12) + "'",
        'variable "region" {\n  default = "' + r(14) + '"\n}\n'
        'parser.add_argument("--pw-file", default="' + r(12) + '")',
        'WWW-Authenticate: Digest realm="api", nonce="' + r(32, HEX) + '", opaque="' + r(32, HEX) + '"',
        "commit " + r(52, LO + "234567") + " and https://" + r(52, LO + "234567") + "@github.com/acme/web",
        'log("password=%s" % pw); next=%2Fhome%3Ftab%3D' + r(10) + "; GET /check?pass=" + r(10) + "&level=3",
        "the storage account key is rotated every 90 days; integrity " + r(86, B64) + "==",
        "order " + luhn("1234", 12) + ", AWS account " + luhn("3010", 12) + ", visa " + luhn("4111", 12),
        # the eleventh session's: references to a secret store (1Password "Secret reference syntax", AWS ARNs,
        # Google Secret Manager resource names, Azure App Service Key Vault references), anti-forgery tokens,
        # a certificate in base64, a product's EAN-13, words and names under secret names
        "password: op://Engineering/Postgres/password\napi_key: arn:aws:secretsmanager:us-east-1:123456789012:"
        "secret:prod/api-AbCdEf\nclient_secret: projects/acme/secrets/oauth/versions/3\n"
        "DB_PASSWORD=@Microsoft.KeyVault(SecretUri=https://acme.vault.azure.net/secrets/db/)",
        "Cookie: csrftoken=" + r(32) + "; theme=dark\nX-XSRF-TOKEN: " + r(32),
        "  tls.crt: " + b64pem("CERTIFICATE"),
        "sku,ean,price\nA-1," + ean_luhn() + ",9.99",
        "password = credentials\ndowngrade_token: str = \"downgrades\"\nsecret_name: my-app-secret-name-prod",
        "id,order_no,amount\n1,0612345678,12.00\n2,4155552671,3.50",
    ]
    return [*code, *logs, *prose, *lookalikes]


def evaluate() -> dict[str, dict[str, Any]]:
    engine = DlpEngine(DlpConfig(ip_addresses=True, cache_items=0, timeout_ms=60_000))

    def kinds_of(text: str) -> set[str]:
        body = {"model": "m", "max_tokens": 1, "messages": [{"role": "user", "content": text}]}
        return {f.kind for f in engine.inspect(body).findings}

    neg = [kinds_of(t) for t in negatives()]
    report: dict[str, dict[str, Any]] = {}
    for kind, samples in positives().items():
        hits = sum(kind in kinds_of(s) for s in samples)
        fps = sum(kind in k for k in neg)
        report[kind] = {
            "positives": len(samples),
            "recall": hits / len(samples),
            "negatives": len(neg),
            "false_positive_rate": fps / len(neg),
        }
    return report


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    report = evaluate()
    if args.json:
        print(json.dumps(report, indent=2))
    else:
        print("| kind | positives | recall | negatives | false positives |\n|---|---:|---:|---:|---:|")
        for kind, m in report.items():
            print(
                f"| {kind} | {m['positives']} | {m['recall']:.1%} | {m['negatives']} | {m['false_positive_rate']:.1%} |"
            )
    missed = [k for k, m in report.items() if m["recall"] < 0.95 or m["false_positive_rate"] > 0.02]
    if missed:
        print(f"targets missed: {', '.join(missed)}", file=sys.stderr)
    return 1 if missed else 0


if __name__ == "__main__":
    raise SystemExit(main())

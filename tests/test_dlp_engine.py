"""The DLP engine on its own: detectors, policies, redaction, locations, fail-closed. Pure CPU, no network."""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterator
from typing import Any

import pytest
import yaml
from pydantic import ValidationError

from tollway.governance.dlp import DlpEngine, DlpError, DlpResult, RegexDetector, placeholder
from tollway.governance.dlp.policy import BUILTIN_KINDS, DlpConfig

# --- values used throughout (all fake) -----------------------------------------------------------

AWS_KEY = "AKIAZ7QW3ERT5YUI9OPL"
AWS_SECRET = "Jb8uT2vQx9LmN4pR7sW1yZ3cF6hK0eG5aD8iU2oX"
GCP_KEY = "AIzaSyD3x9Q2mL7vK4pR8sT1uW5yZ0bC6fG2hJ4"
GITHUB = "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5"
GITHUB_PAT = "github_pat_11ABCDEFG0aBcDeFgHiJkL_mNoPqRsTuVwXyZ0123456789aBcDeFgHiJkLmNoPqRsTuVwXyZ012345"
GITLAB = "glpat-xY9zA8bC7dE6fG5hI4jK"
SLACK = "xoxb-123456789012-1234567890123-AbCdEfGhIjKlMnOpQrStUvWx"
STRIPE = "sk_live_51HxT9bKq2L7mN4pR8sW1yZ3c"
OPENAI = "sk-proj-Ab3De5Gh7Jk9Mn1Pq3St5Vw7Yz9Bc1Ef3Hi5Kl7No9Qr1Tu3Wx5"
ANTHROPIC = "sk-ant-api03-Zx9Yw8Vu7Ts6Rq5Po4Nm3Lk2Ji1Hg0Fe9Dc8Ba7-AbCdEfGh"
JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkpvaG4gRG9lIn0."
       "SflKxwRJSMeKKF2QT4fwpMeJf36POk6yJV_adQssw5c")
PEM = ("-----BEGIN RSA PRIVATE KEY-----\nMIIEowIBAAKCAQEA0Z3VS5JJcds3xfn/ygWyF8PbnGy0AHB7MhgHcTz6sE2I2yPB\n"
       "aFDrBz9vFqU4yq9nOr5eQAbCdEfGhIjKlMnOpQrStUvWxYz0123456789+/=\n-----END RSA PRIVATE KEY-----")
PASSWORD = "s3cr3t-Pa55w0rd!"
EMAIL = "maria.gonzalez@example-corp.com"
EMAIL2 = "j.doe+billing@mail.example.org"
PHONE = "+1 415-555-2671"
CARD = "4111 1111 1111 1111"
SSN = "536-22-1234"
IBAN = "DE89 3704 0044 0532 0130 00"


def engine(**config: Any) -> DlpEngine:
    return DlpEngine(DlpConfig(**config))


def user(content: Any) -> dict[str, Any]:
    return {"model": "m", "max_tokens": 10, "messages": [{"role": "user", "content": content}]}


def kinds(text: str, **config: Any) -> set[str]:
    return {f.kind for f in engine(**config).inspect(user(text)).findings}


def strings(value: Any) -> Iterator[str]:
    """Every string in a JSON value, keys included."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for k, v in value.items():
            yield k
            yield from strings(v)
    elif isinstance(value, list):
        for v in value:
            yield from strings(v)


def assert_no_value(result: DlpResult, values: list[str]) -> None:
    rendered = [repr(result), str(result), *(str(f) for f in result.findings), *(repr(f) for f in result.findings)]
    for value in values:
        for text in rendered:
            assert value not in text


# --- detectors: true positives ---------------------------------------------------------------------

TRUE_POSITIVES = [
    ("aws_access_key", f"export AWS_ACCESS_KEY_ID={AWS_KEY}"),
    ("aws_access_key", "creds: ASIAY34FZKBOKMUTVV7A (temporary)"),
    ("aws_secret_key", f'aws_secret_access_key = "{AWS_SECRET}"'),
    ("aws_secret_key", f"AWS_SECRET_ACCESS_KEY={AWS_SECRET}"),
    ("aws_secret_key", f'{{"SecretAccessKey": "{AWS_SECRET}"}}'),
    ("gcp_api_key", f"const key = '{GCP_KEY}';"),
    ("private_key", f"here it is:\n{PEM}\nthanks"),
    ("private_key", "-----BEGIN OPENSSH PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQ\n"),
    ("github_token", f"git clone https://{GITHUB}@github.com/org/repo"),
    ("github_token", f"token {GITHUB_PAT}"),
    ("github_token", "gho_27D8f53A303d7a23F8821d949458Bf289C5b here"),
    ("gitlab_token", f"PRIVATE-TOKEN: {GITLAB}"),
    ("slack_token", f"SLACK_BOT={SLACK}"),
    ("stripe_key", f"Stripe.api_key = {STRIPE}"),
    ("stripe_key", "rk_live_51HxT9bKq2L7mN4pR8sW1yZ3c"),
    ("openai_key", f"OPENAI={OPENAI}"),
    ("openai_key", "sk-3aB9cD8eF7gH6iJ5kL4mN3oP2qR1sT0uV9wX8yZ7aB6cD5eF"),
    ("anthropic_key", f"x-api-key: {ANTHROPIC}"),
    ("jwt", f"Authorization: Bearer {JWT}"),
    ("password_assignment", f'DB_PASSWORD="{PASSWORD}"'),
    ("password_assignment", "password: hunter2hunter2"),
    ("password_assignment", '{"client_secret": "q8Zr2LmN5vX1"}'),
    ("password_assignment", "mysql --user=root --passwd=Tr0ub4dor3x"),
    ("password_assignment", "GITHUB_TOKEN: 'a1b2c3d4e5f6g7h8'"),
    ("password_assignment", 'self.apiKey = "9f8e7d6c5b4a39281706"'),
    ("password_assignment", "SECRET_KEY = 'django-insecure-8h2k$x9q!z'"),
    ("email", f"contact {EMAIL} today"),
    ("email", f"<{EMAIL2}>"),
    ("phone_number", f"call {PHONE}"),
    ("phone_number", "office: (415) 555-2671."),
    ("phone_number", "London +44 20 7946 0958"),
    ("phone_number", "cell 415.555.2671"),
    ("phone_number", "toll free 1-800-555-0199?"),
    ("phone_number", "Tel. +4930123456789"),
    ("phone_number", "+1 415-555-2671 ext 12"),
    ("payment_card", f"card {CARD} exp 12/27"),
    ("payment_card", "4111-1111-1111-1111"),
    ("payment_card", "pan=5555555555554444;"),
    ("payment_card", "amex 3782 822463 10005"),
    ("payment_card", "exp 12/27 4111111111111111"),
    ("payment_card", "4111 1111 1111 1111 12 27"),
    ("us_ssn", f"SSN: {SSN}"),
    ("us_ssn", "ssn 536 22 1234"),
    ("iban", f"IBAN {IBAN}"),
    ("iban", "GB82WEST12345698765432"),
    ("iban", "to GB82 WEST 1234 5698 7654 32 please"),
    ("iban", "FR14 2004 1010 0505 0001 3M02 606"),
]


@pytest.mark.parametrize(("kind", "text"), TRUE_POSITIVES, ids=[f"{k}-{i}" for i, (k, _) in enumerate(TRUE_POSITIVES)])
def test_detector_finds(kind: str, text: str) -> None:
    assert kind in kinds(text)


def test_every_builtin_kind_has_a_true_positive() -> None:
    from tests.test_dlp_detectors import POSITIVES  # the kinds added for issue 15
    from tests.test_dlp_tokens import POSITIVES as TOKENS  # the token families added after it

    found = {k for k, _ in TRUE_POSITIVES} | {k for k, _ in POSITIVES} | {k for k, _ in TOKENS}
    assert found == set(BUILTIN_KINDS) - {"binary"}


# --- detectors: false positives --------------------------------------------------------------------

FALSE_POSITIVES = [
    "4111 1111 1111 1112",  # Luhn-invalid
    "4111111111111112",
    "order 1234567812345678 shipped",  # Luhn-invalid 16 digits
    "DE88 3704 0044 0532 0130 00",  # IBAN with a bad checksum
    "GB00WEST12345698765432",
    "id 550e8400-e29b-41d4-a716-446655440000",  # UUID
    "commit 9fceb02d0ae598e95dc970b74767f19372d61af8 and 9fceb02",  # git SHAs
    "sha256:3b1c2d7a4e5f60718293a4b5c6d7e8f901234567890abcdef1234567890abcd",
    "The quick brown fox jumps over the lazy dog. Passwords should be rotated; tokens expire after 3600 s.",
    "000-12-3456 666-12-3456 900-12-3456 123-00-4567 123-45-0000",  # invalid SSN ranges
    "2024-01-15 10:30:00, 2024-01-15T10:30:00Z, 15/01/2024",  # dates and times
    "192.168.1.100 10.0.0.1:8080 v1.2.3 3.14159265358979",
    '{"score": 0.6011000990139424, "ratio": 12.4111111111111111, "x": 1.2 4111}',  # Luhn-valid decimals
    "ts 1712345678901 id 123456789012345 size 4096 pid 31337",
    "phone-like 1234567890 and 555-1234",  # bare 10 digits, 7-digit local number
    "password = get_password()",
    "token: str",
    "max_tokens: 1024",
    'password = "changeme"',
    'token = os.environ["GITHUB_TOKEN"]',
    "secret = settings.SECRET_KEY",
    "api_key: ${{ secrets.API_KEY }}",
    'password: "<your password here>"',
    "PWD=/home/dev/project",
    "tokenizer = 'cl100k_base'",
    "@pytest.fixture\n@app.route('/x')",  # decorators
    "icon@2x.png lodash@4.17.21 @types/node",
    "git clone git@github.com:org/repo.git",
    "sklearn and task-management-system-implementation-guide",
    "XAKIAZ7QW3ERT5YUI9OPLX",  # an AWS-looking run inside a longer word
    "eyJhelloworld.foofoofoo.barbarbar",  # starts like a JWT, is not one
    "AIza",
    "     1\u2192import os\n     2\u2192import sys\n    10\u2192def main() -> None:",
]


@pytest.mark.parametrize("text", FALSE_POSITIVES)
def test_no_false_positive(text: str) -> None:
    assert kinds(text) == set()


def test_phone_regions_config() -> None:
    text = "ruf uns an: 030 12345678"
    assert "phone_number" not in kinds(text, phone_regions=["US"])
    assert "phone_number" in kinds(text, phone_regions=["DE"])
    assert "phone_number" in kinds(text)  # Germany is one of the default regions
    with pytest.raises(ValidationError, match="phone_regions"):
        DlpConfig(phone_regions=["XX"])


# --- redaction -------------------------------------------------------------------------------------

def test_same_value_same_placeholder_within_a_request() -> None:
    body = {
        "system": f"Escalations go to {EMAIL}.",
        "messages": [
            {"role": "user", "content": f"mail {EMAIL} and {EMAIL2}"},
            {"role": "assistant", "content": [{"type": "text", "text": f"ok, {EMAIL2} then {EMAIL}"}]},
        ],
    }
    result = engine(policies={"default": {"actions": {"pii": "redact"}}}).inspect(body)
    one, two = placeholder("email", 1), placeholder("email", 2)
    assert one == "[REDACTED:email:1]"
    assert result.body["system"] == f"Escalations go to {one}."
    assert result.body["messages"][0]["content"] == f"mail {one} and {two}"
    assert result.body["messages"][1]["content"][0]["text"] == f"ok, {two} then {one}"
    assert result.changed


def test_numbering_is_per_kind_and_follows_scan_order() -> None:
    body = user(f"{GITHUB} {AWS_KEY} {GITHUB} {STRIPE}")
    body["tools"] = [{"name": "t", "description": f"uses {AWS_KEY}", "input_schema": {"type": "object"}}]
    result = engine().inspect(body)
    assert result.body["tools"][0]["description"] == "uses [REDACTED:aws_access_key:1]"
    assert result.body["messages"][0]["content"] == (
        "[REDACTED:github_token:1] [REDACTED:aws_access_key:1] [REDACTED:github_token:1] [REDACTED:stripe_key:1]")


def test_assignment_redacts_only_the_value() -> None:
    result = engine().inspect(user(f'config:\n  DB_PASSWORD="{PASSWORD}"\n'))
    assert result.body["messages"][0]["content"] == 'config:\n  DB_PASSWORD="[REDACTED:password_assignment:1]"\n'


def test_overlapping_findings_redact_as_one() -> None:
    result = engine().inspect(user(f"GITHUB_TOKEN={GITHUB} gh pr list"))
    assert {f.kind for f in result.findings} == {"password_assignment", "github_token"}
    text = result.body["messages"][0]["content"]
    assert text.count("[REDACTED:") == 1
    assert "ghp_" not in text and GITHUB[10:] not in text


def test_unchanged_body_is_the_same_object() -> None:
    body = user(f"mail {EMAIL}")  # pii is logged by default, not redacted
    result = engine().inspect(body)
    assert result.body is body
    assert not result.changed
    assert [f.action for f in result.findings] == ["log"]


def test_redaction_copies_and_never_mutates_the_input() -> None:
    body = user([{"type": "text", "text": f"key {AWS_KEY}"}, {"type": "text", "text": "unchanged"}])
    body["metadata"] = {"user_id": "u1"}
    before = copy.deepcopy(body)
    result = engine().inspect(body)
    assert body == before
    assert result.body is not body
    assert result.body["messages"][0]["content"][1] == {"type": "text", "text": "unchanged"}
    assert result.body["messages"][0]["content"][1] is not body["messages"][0]["content"][1]  # a deep copy
    assert result.body["metadata"] == {"user_id": "u1"}


def test_redacted_body_rescans_clean() -> None:
    text = f"{AWS_KEY} {GITHUB} {STRIPE} {OPENAI} {ANTHROPIC} {JWT} {SLACK} {GITLAB}\n{PEM}\npassword='{PASSWORD}'"
    first = engine().inspect(user(text))
    assert first.changed
    second = engine().inspect(first.body)
    assert second.findings == []


def test_redaction_never_leaves_the_value_anywhere() -> None:
    secrets = [AWS_KEY, AWS_SECRET, GCP_KEY, GITHUB, GITLAB, SLACK, STRIPE, OPENAI, ANTHROPIC, JWT, PASSWORD,
               EMAIL, PHONE, CARD, SSN, IBAN]
    text = (f"{AWS_KEY} aws_secret_access_key={AWS_SECRET} {GCP_KEY} {GITHUB} {GITLAB} {SLACK} {STRIPE} {OPENAI} "
            f"{ANTHROPIC} {JWT} password=\"{PASSWORD}\" {EMAIL} call {PHONE} card {CARD} ssn {SSN} iban {IBAN}\n{PEM}")
    body = user([{"type": "text", "text": text}])
    body["messages"].append({"role": "assistant", "content": [
        {"type": "tool_use", "id": "t1", "name": "Bash", "input": {"command": text, AWS_KEY: [text]}}]})
    everything = {"secrets": "redact", "pii": "redact"}
    result = engine(policies={"default": {"actions": everything}}).inspect(body)
    assert {f.kind for f in result.findings} == {k for k, _ in TRUE_POSITIVES}
    assert_no_value(result, [*secrets, PEM, "MIIEowIBAAKCAQEA"])
    forwarded = json.dumps(result.body)
    for value in [*secrets, "MIIEowIBAAKCAQEA", "4111", "0532 0130"]:
        assert value not in forwarded
    assert "[REDACTED:aws_access_key:1]" in result.body["messages"][1]["content"][0]["input"]  # the renamed key


def test_nothing_leaks_when_logging_or_blocking_either() -> None:
    text = f"{AWS_KEY} {EMAIL} {CARD}"
    for action in ("log", "block", "allow"):
        result = engine(policies={"default": {"actions": {"secrets": action, "pii": action}}}).inspect(user(text))
        assert len(result.findings) == 3
        assert_no_value(result, [AWS_KEY, EMAIL, CARD, "4111"])
        assert result.blocked is (action == "block")


# --- locations ---------------------------------------------------------------------------------------

def test_every_location_is_scanned() -> None:
    e = EMAIL
    body = {
        "system": [{"type": "text", "text": "intro"}, {"type": "text", "text": f"owner {e}"}],
        "tools": [
            {"name": "a", "description": "nothing", "input_schema": {"type": "object"}},
            {"name": "b", "description": "nothing", "input_schema": {"type": "object"}},
            {"name": "c", "description": f"mail {e}",
             "input_schema": {"type": "object", "properties": {"to": {"description": f"default {e}"}}}},
        ],
        "messages": [
            {"role": "user", "content": f"hello {e}"},
            {"role": "user", "content": [{"type": "text", "text": "x"}, {"type": "text", "text": f"hi {e}"}]},
            {"role": "assistant", "content": [
                {"type": "tool_use", "id": "t1", "name": "send", "input": {"args": [{"to": e}], "n": 3}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": f"sent to {e}"}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "t1", "content": [
                {"type": "text", "text": "ok"}, {"type": "text", "text": f"sent to {e}"}]}]},
            {"role": "user", "content": [
                {"type": "document", "source": {"type": "text", "media_type": "text/plain", "data": f"doc {e}"},
                 "title": f"from {e}"},
                {"type": "document", "source": {"type": "content", "content": [{"type": "text", "text": f"c {e}"}]}},
            ]},
            {"role": "assistant", "content": [{"type": "thinking", "thinking": f"{e}", "signature": "sig"}]},
            {"role": "user", "content": [{"type": "search_result", "source": "https://x", "title": "t",
                                          "content": [{"type": "text", "text": f"found {e}"}]}]},
        ],
    }
    body_with_string_system = {**body, "system": f"system {e}"}
    where = {f.where for f in engine().inspect(body).findings}
    assert where == {
        "system[1]",
        "tools[2].description",
        "tools[2].input_schema",
        "messages[0].content",
        "messages[1].content[1]",
        "messages[2].content[0].input",
        "messages[3].content[0].content",
        "messages[4].content[0].content[1]",
        "messages[5].content[0].source.data",
        "messages[5].content[0].title",
        "messages[5].content[1].source.content[0]",
        "messages[6].content[0].thinking",
        "messages[7].content[0]",
    }
    assert "system" in {f.where for f in engine().inspect(body_with_string_system).findings}
    redacted = engine(policies={"default": {"actions": {"pii": "redact"}}}).inspect(body).body
    assert not [s for s in strings(redacted) if EMAIL in s]  # thinking blocks too: they are forwarded


def test_counts_aggregate_per_location_and_kind() -> None:
    result = engine().inspect(user(f"{EMAIL} {EMAIL} {EMAIL2} {AWS_KEY}"))
    counts = {(f.kind, f.where): f.count for f in result.findings}
    assert counts == {("email", "messages[0].content"): 3, ("aws_access_key", "messages[0].content"): 1}


def test_tool_input_keys_are_scanned_and_redacted() -> None:
    body = {"messages": [{"role": "assistant", "content": [
        {"type": "tool_use", "id": "t", "name": "x", "input": {AWS_KEY: {"inner": [f"and {AWS_KEY}"]}}}]}]}
    result = engine().inspect(body)
    assert result.findings[0].count == 2
    assert result.body["messages"][0]["content"][0]["input"] == {
        "[REDACTED:aws_access_key:1]": {"inner": ["and [REDACTED:aws_access_key:1]"]}}


# --- policies ----------------------------------------------------------------------------------------

def test_default_config_is_secrets_redact_pii_log() -> None:
    config = DlpConfig()
    assert config.enabled and config.timeout_ms == 200 and config.binary == "log" and config.custom == []
    assert config.policies.default.actions == {"secrets": "redact", "pii": "log"}
    table = config.action_table()
    for kind, category in BUILTIN_KINDS.items():
        assert table[kind] == {"secrets": "redact", "pii": "log", "binary": "log"}[category]
    result = DlpEngine(config).inspect(user(f"{AWS_KEY} {EMAIL}"))
    assert {(f.kind, f.action) for f in result.findings} == {("aws_access_key", "redact"), ("email", "log")}
    assert result.policy == "default"


EXAMPLE_YAML = """
dlp:
  enabled: true
  timeout_ms: 200
  binary: log
  policies:
    default:
      actions: {secrets: redact, pii: log}
      kinds: {aws_access_key: block, email: allow}
    groups:
      contractors: {actions: {pii: block}}
  custom:
    - {name: employee_id, pattern: "EMP-[0-9]{6}", action: block}
"""


def test_the_documented_yaml_loads_and_applies() -> None:
    config = DlpConfig.model_validate(yaml.safe_load(EXAMPLE_YAML)["dlp"])
    e = DlpEngine(config)
    body = user(f"{AWS_KEY} {GITHUB} {EMAIL} {CARD} EMP-000042")
    default = {f.kind: f.action for f in e.inspect(body).findings}
    assert default == {"aws_access_key": "block", "github_token": "redact", "email": "allow",
                       "payment_card": "log", "employee_id": "block"}
    contractors = {f.kind: f.action for f in e.inspect(body, ["contractors"]).findings}
    assert contractors == {**default, "payment_card": "block"}
    with pytest.raises(ValidationError) as info:
        DlpConfig.model_validate({"custom": [{"name": "x", "pattern": "(unclosed"}]})
    assert "custom.0.pattern" in str(info.value)
    assert "not a valid regular expression" in str(info.value)


def test_kind_action_wins_over_category() -> None:
    e = engine(policies={"default": {"actions": {"secrets": "redact", "pii": "log"},
                                     "kinds": {"aws_access_key": "block", "email": "allow"}}})
    result = e.inspect(user(f"{AWS_KEY} {GITHUB} {EMAIL} {EMAIL2} {CARD}"))
    actions = {f.kind: f.action for f in result.findings}
    assert actions == {"aws_access_key": "block", "github_token": "redact", "email": "allow", "payment_card": "log"}
    assert result.blocked and result.blocked_kinds == ["aws_access_key"]
    assert EMAIL in result.body["messages"][0]["content"]  # allowed: forwarded as is
    assert GITHUB not in result.body["messages"][0]["content"]


def test_a_category_missing_from_the_default_keeps_its_builtin_action() -> None:
    result = engine(policies={"default": {"actions": {"secrets": "block"}}}).inspect(user(f"{AWS_KEY} {EMAIL}"))
    assert {f.kind: f.action for f in result.findings} == {"aws_access_key": "block", "email": "log"}


def test_group_override_applies_first_group_wins() -> None:
    e = engine(policies={
        "default": {"actions": {"secrets": "redact", "pii": "log"}},
        "groups": {"contractors": {"actions": {"pii": "block"}}, "auditors": {"kinds": {"email": "allow"}}},
    })
    body = user(f"mail {EMAIL}")
    default = e.inspect(body, ["engineering"])
    assert default.policy == "default" and not default.blocked
    contractors = e.inspect(body, ["engineering", "contractors", "auditors"])
    assert contractors.policy == "contractors"
    assert contractors.blocked and contractors.blocked_kinds == ["email"]
    auditors = e.inspect(body, ["auditors", "contractors"])
    assert auditors.policy == "auditors"
    assert [f.action for f in auditors.findings] == ["allow"]
    assert e.inspect(body, "contractors").policy == "contractors"  # a bare name is one group


def test_group_override_is_merged_over_the_default() -> None:
    e = engine(policies={
        "default": {"actions": {"secrets": "redact", "pii": "log"}, "kinds": {"email": "allow"}},
        "groups": {"contractors": {"actions": {"pii": "block"}}},
    })
    result = e.inspect(user(f"{EMAIL} {CARD} {AWS_KEY}"), ["contractors"])
    # secrets come from the default, pii from the group; the default's kind entry still wins over a category
    assert {f.kind: f.action for f in result.findings} == {
        "email": "allow", "payment_card": "block", "aws_access_key": "redact"}


def test_disabled_finds_nothing() -> None:
    body = user(AWS_KEY)
    result = engine(enabled=False).inspect(body)
    assert result.findings == [] and result.body is body and not result.blocked


# --- custom patterns ---------------------------------------------------------------------------------

def test_custom_regex() -> None:
    e = engine(custom=[{"name": "employee_id", "pattern": "EMP-[0-9]{6}", "action": "block"},
                       {"name": "project", "pattern": r"project (falcon|osprey)", "ignore_case": True}])
    result = e.inspect(user("ticket for EMP-123456 on Project Falcon, not EMP-12"))
    found = {f.kind: (f.category, f.action, f.count) for f in result.findings}
    assert found == {"employee_id": ("custom", "block", 1), "project": ("custom", "redact", 1)}
    assert result.blocked_kinds == ["employee_id"]
    assert result.body["messages"][0]["content"] == "ticket for EMP-123456 on [REDACTED:project:1], not EMP-12"


def test_custom_action_can_be_overridden_per_group() -> None:
    e = engine(custom=[{"name": "employee_id", "pattern": "EMP-[0-9]{6}", "action": "block"}],
               policies={"groups": {"hr": {"kinds": {"employee_id": "allow"}}}})
    assert e.inspect(user("EMP-123456")).blocked
    assert not e.inspect(user("EMP-123456"), ["hr"]).blocked


@pytest.mark.parametrize(("custom", "field"), [
    ({"name": "bad", "pattern": "EMP-[0-9"}, "custom.0.pattern"),
    ({"name": "empty", "pattern": "x*"}, "custom.0.pattern"),
    ({"name": "email", "pattern": "x"}, "custom.0.name"),
    ({"name": "Bad Name", "pattern": "x"}, "custom.0.name"),
    ({"name": "ok", "pattern": "x", "action": "explode"}, "custom.0.action"),
])
def test_bad_custom_pattern_is_a_config_error_naming_the_field(custom: dict[str, Any], field: str) -> None:
    with pytest.raises(ValidationError) as info:
        DlpConfig(custom=[custom])
    assert field in {".".join(str(p) for p in err["loc"]) for err in info.value.errors()}


def test_config_rejects_unknown_kinds_categories_and_actions() -> None:
    with pytest.raises(ValidationError, match="unknown detector kind"):
        DlpConfig(policies={"default": {"kinds": {"emial": "block"}}})
    with pytest.raises(ValidationError, match="unknown detector kind"):
        DlpConfig(policies={"groups": {"g": {"kinds": {"nope": "log"}}}})
    with pytest.raises(ValidationError):
        DlpConfig(policies={"default": {"actions": {"secret": "block"}}})
    with pytest.raises(ValidationError):
        DlpConfig(binary="drop")
    with pytest.raises(ValidationError):
        DlpConfig(timeout_ms=0)
    with pytest.raises(ValidationError):
        DlpConfig.model_validate({"surprise": True})
    with pytest.raises(ValidationError, match="duplicate"):
        DlpConfig(custom=[{"name": "a", "pattern": "x"}, {"name": "a", "pattern": "y"}])
    DlpConfig(custom=[{"name": "a", "pattern": "x"}], policies={"default": {"kinds": {"a": "log"}}})


# --- binary content ----------------------------------------------------------------------------------

IMAGE: dict[str, Any] = {
    "type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
PDF: dict[str, Any] = {
    "type": "document", "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0x"},
    "title": f"for {EMAIL}"}


def test_binary_content_gets_the_binary_action() -> None:
    body = user([IMAGE, {"type": "text", "text": "what is this?"}, PDF,
                 {"type": "tool_result", "tool_use_id": "t", "content": [IMAGE]}])
    result = engine().inspect(body)
    binary = [(f.where, f.category, f.action) for f in result.findings if f.kind == "binary"]
    assert binary == [("messages[0].content[0]", "binary", "log"), ("messages[0].content[2]", "binary", "log"),
                      ("messages[0].content[3].content[0]", "binary", "log")]
    assert "messages[0].content[2].title" in {f.where for f in result.findings if f.kind == "email"}
    assert result.body is body
    blocked = engine(binary="block").inspect(body)
    assert blocked.blocked and blocked.blocked_kinds == ["binary"]
    assert engine(binary="allow").inspect(body).findings[0].action == "allow"
    assert not [f for f in engine().inspect(user([{"type": "document", "source": {
        "type": "text", "media_type": "text/plain", "data": "plain"}}])).findings if f.kind == "binary"]


def test_url_sources_are_binary_and_their_url_is_scanned() -> None:
    url = f"https://bucket.s3.amazonaws.com/x.png?X-Amz-Credential={AWS_KEY}%2F20240101"
    body = user([{"type": "image", "source": {"type": "url", "url": url}},
                 {"type": "document", "source": {"type": "url", "url": "https://example.com/a.pdf"}}])
    result = engine().inspect(body)
    assert [(f.kind, f.where) for f in result.findings] == [
        ("binary", "messages[0].content[0]"), ("aws_access_key", "messages[0].content[0].source.url"),
        ("binary", "messages[0].content[1]")]
    assert AWS_KEY not in json.dumps(result.body)


def test_binary_redact_replaces_the_block() -> None:
    body = user([IMAGE, IMAGE, {**IMAGE, "source": {**IMAGE["source"], "data": "R0lGODlh"},
                                "cache_control": {"type": "ephemeral"}}])
    result = engine(binary="redact").inspect(body)
    assert result.body["messages"][0]["content"] == [
        {"type": "text", "text": "[REDACTED:binary:1]"}, {"type": "text", "text": "[REDACTED:binary:1]"},
        {"type": "text", "text": "[REDACTED:binary:2]", "cache_control": {"type": "ephemeral"}}]
    assert body["messages"][0]["content"][0] is IMAGE


def test_binary_action_by_group() -> None:
    e = engine(policies={"groups": {"contractors": {"kinds": {"binary": "block"}}}})
    assert not e.inspect(user([IMAGE])).blocked
    assert e.inspect(user([IMAGE]), ["contractors"]).blocked


# --- failing closed ----------------------------------------------------------------------------------

def test_a_detector_that_raises_fails_closed_without_data() -> None:
    def check(value: str) -> bool:
        raise RuntimeError(f"cannot handle {value}")

    e = DlpEngine(DlpConfig(), extra_detectors=[RegexDetector("badge", "custom", r"BADGE-\d+", check=check)])
    with pytest.raises(DlpError) as info:
        e.inspect(user("visitor BADGE-4242 at the desk"))
    message = str(info.value)
    assert "badge" in message and "RuntimeError" in message
    assert "4242" not in message and "4242" not in repr(info.value)
    assert info.value.__cause__ is None and info.value.__context__ is None
    assert e.inspect(user("no badge here")).findings == []  # the engine stays usable


def test_extra_detector_finds_and_takes_its_category_action() -> None:
    e = DlpEngine(DlpConfig(), extra_detectors=[RegexDetector("badge", "pii", r"BADGE-\d+",
                                                              check=lambda v: v.endswith("2"))])
    result = e.inspect(user("BADGE-4242 BADGE-4241"))
    assert [(f.kind, f.category, f.action, f.count) for f in result.findings] == [("badge", "pii", "log", 1)]
    with pytest.raises(ValueError, match="already defined"):
        DlpEngine(DlpConfig(), extra_detectors=[RegexDetector("email", "pii", "x")])


def test_timeout_fails_closed_with_a_slow_clock() -> None:
    ticks = iter(range(0, 10_000, 1))  # every reading of the clock is one second later

    def clock() -> float:
        return float(next(ticks))

    e = DlpEngine(DlpConfig(timeout_ms=200), clock=clock)
    with pytest.raises(DlpError, match="time budget") as info:
        e.inspect(user([{"type": "text", "text": f"a {AWS_KEY}"}, {"type": "text", "text": "b"}]))
    assert AWS_KEY not in str(info.value)


def test_timeout_fails_closed_on_a_real_scan() -> None:
    body = user([{"type": "text", "text": f"line {i} of some text with numbers 415-555-{i:04d}" * 50}
                 for i in range(200)])
    with pytest.raises(DlpError, match=re.escape("timeout_ms=0.001")):
        engine(timeout_ms=0.001, timeout_ms_per_mb=0).inspect(body)
    # The same body with time to finish (a generous budget: this checks the scan, not the speed,
    # and a loaded CI machine can take longer than the 200 ms default).
    assert engine(timeout_ms=10_000).inspect(body).findings


def test_malformed_body_fails_closed() -> None:
    with pytest.raises(DlpError):
        engine().inspect(["not", "a", "dict"])  # type: ignore[arg-type]


def test_odd_shapes_do_not_crash() -> None:
    body = {"system": 3, "tools": [None, {"name": "x"}], "messages": [
        None, {"role": "user"}, {"role": "user", "content": [None, 5, f"bare string {EMAIL}", {"type": "text"}]}]}
    assert [f.where for f in engine().inspect(body).findings] == ["messages[2].content[2]"]


def test_no_matched_value_in_reprs_of_a_real_scan() -> None:
    result = engine().inspect(user(f"{AWS_KEY} {EMAIL} {SSN}"))
    assert re.search(r"body=", repr(result)) is None
    assert_no_value(result, [AWS_KEY, EMAIL, SSN])


def test_large_requests_are_scanned_in_batches_with_the_right_locations() -> None:
    filler = "ordinary text with numbers 12 and 2024-01-15, nothing to see. " * 30
    blocks = [{"type": "text", "text": filler} for _ in range(300)]
    for i in (0, 150, 299):
        blocks[i] = {"type": "text", "text": f"{filler}{EMAIL} {filler}"}
    huge = filler * 200 + f" {AWS_KEY} " + filler * 200  # one string longer than a batch
    body = user([*blocks, {"type": "text", "text": huge}])
    result = engine(timeout_ms=10_000, policies={"default": {"actions": {"pii": "redact"}}}).inspect(body)
    assert [(f.kind, f.where) for f in result.findings] == [
        ("email", "messages[0].content[0]"), ("email", "messages[0].content[150]"),
        ("email", "messages[0].content[299]"), ("aws_access_key", "messages[0].content[300]")]
    content = result.body["messages"][0]["content"]
    assert content[150]["text"] == f"{filler}[REDACTED:email:1] {filler}"
    assert content[300]["text"] == filler * 200 + " [REDACTED:aws_access_key:1] " + filler * 200


def test_nul_characters_inside_strings() -> None:
    result = engine().inspect(user(f"a\x00{AWS_KEY}\x00b {EMAIL}\x00"))
    assert {f.kind for f in result.findings} == {"aws_access_key", "email"}
    assert result.body["messages"][0]["content"] == f"a\x00[REDACTED:aws_access_key:1]\x00b {EMAIL}\x00"

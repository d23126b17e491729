"""Bedrock credentials from STS, through botocore's own credential chain: an AssumeRole profile
(`role_arn` + `source_profile`) and EKS IRSA web identity (`AWS_ROLE_ARN` +
`AWS_WEB_IDENTITY_TOKEN_FILE`), against a loopback STS (tests/bedrock_sts_emulator.py) reached
through botocore's endpoint configuration (`AWS_ENDPOINT_URL_STS`). STS answers with
credentials that are already inside botocore's advisory refresh window and reach its mandatory
one a few seconds later, so the test watches Tollway replace them while they are still valid;
the Bedrock emulator verifies every request's SigV4 with the key STS issued and refuses a key
past its expiry. Also: a key AWS calls expired is replaced from STS on the retry; a role STS
refuses is a clear 502 naming the upstream in the client's dialect (Anthropic and Bedrock), and
STS is not asked again at once."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import anthropic
import httpx
import pytest

from tests.bedrock_emulator import BedrockEmulator
from tests.bedrock_sts_emulator import StsEmulator
from tests.conftest import NO_RETRIES, Gateway, start_gateway
from tests.test_bedrock import ISOLATED_AWS, PROFILE_MODEL, bedrock

ACCOUNT = "arn:aws:iam::123456789012:role/"
ROLE, IRSA_ROLE, DENIED_ROLE = ACCOUNT + "tollway-bedrock", ACCOUNT + "tollway-irsa", ACCOUNT + "not-for-tollway"
STABLE_ROLE = ACCOUNT + "tollway-hourly"  # an hour of life: not refreshed during the test
SOURCE_KEY, SOURCE_SECRET = "AKIDTESTSOURCE", "source-secret-for-tests"
# botocore refreshes in its last 15 minutes when it can (advisory) and must in its last 10
# (mandatory): 600 + LEAD seconds of life is mandatory LEAD seconds after each grant.
LEAD = 3
LIFETIME = 600 + LEAD


@pytest.fixture(scope="module")
def clouds(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[BedrockEmulator, StsEmulator, Path]]:
    work = tmp_path_factory.mktemp("sts")
    token = work / "web-identity-token"
    token.write_text("eks-projected-token-1")
    with BedrockEmulator() as emu, StsEmulator(emu, {SOURCE_KEY: SOURCE_SECRET}, "eks-projected-token-1",
                                               lifetime=LIFETIME, denied=(DENIED_ROLE,),
                                               lifetimes={STABLE_ROLE: 3600}) as sts:
        yield emu, sts, token


@pytest.fixture(scope="module")
def gw(clouds: tuple[BedrockEmulator, StsEmulator, Path], tmp_path_factory: pytest.TempPathFactory
       ) -> Iterator[Gateway]:
    emu, sts, token = clouds
    work = tmp_path_factory.mktemp("sts-gw")
    (work / "aws-config").write_text(
        f"[profile source]\naws_access_key_id = {SOURCE_KEY}\naws_secret_access_key = {SOURCE_SECRET}\n"
        f"[profile tollway-role]\nrole_arn = {ROLE}\nsource_profile = source\nrole_session_name = tollway\n"
        f"[profile denied-role]\nrole_arn = {DENIED_ROLE}\nsource_profile = source\n"
        f"[profile stable-role]\nrole_arn = {STABLE_ROLE}\nsource_profile = source\n")
    config = {"retries": {**NO_RETRIES, "max_attempts": 3, "base_delay": 0.01}, "models": [
        {"id": "claude-role", "upstream": bedrock(emu.base_url, PROFILE_MODEL, aws_profile="tollway-role")},
        {"id": "claude-irsa", "upstream": bedrock(emu.base_url, PROFILE_MODEL)},  # the default chain
        {"id": "claude-denied", "upstream": bedrock(emu.base_url, PROFILE_MODEL, aws_profile="denied-role")},
        {"id": "claude-stable", "upstream": bedrock(emu.base_url, PROFILE_MODEL, aws_profile="stable-role")},
    ]}
    env = {**ISOLATED_AWS, "AWS_CONFIG_FILE": str(work / "aws-config"), "AWS_ENDPOINT_URL_STS": sts.endpoint,
           "AWS_ROLE_ARN": IRSA_ROLE, "AWS_WEB_IDENTITY_TOKEN_FILE": str(token),
           "AWS_ROLE_SESSION_NAME": "tollway-pod"}
    gateway = start_gateway(work / "gw", config, env=env)
    yield gateway
    gateway.stop()


def ask(gw: Gateway, model: str, text: str = "x") -> str:
    msg = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0).messages.create(
        model=model, max_tokens=20, messages=[{"role": "user", "content": text}])
    return msg.content[0].text


def keys_until_a_new_one(gw: Gateway, emu: BedrockEmulator, model: str) -> list[str]:
    """Ask MODEL at a client's pace until Bedrock sees a second access key; the keys used, in order."""
    used: list[str] = []
    deadline = time.monotonic() + 10 * LEAD
    while len(set(used)) < 2:
        assert time.monotonic() < deadline, f"the credentials of {model} were never refreshed: {used}"
        assert ask(gw, model, f"turn {len(used)}").endswith(f"You said: turn {len(used)}")  # SigV4 verified
        key = emu.received[-1].access_key_id
        assert key is not None
        used.append(key)
        time.sleep(0.2)
    return used


@pytest.mark.parametrize(("model", "role", "action"), [
    ("claude-role", ROLE, "AssumeRole"), ("claude-irsa", IRSA_ROLE, "AssumeRoleWithWebIdentity")])
def test_sts_credentials_are_reused_then_refreshed_before_they_expire(
        gw: Gateway, clouds: tuple[BedrockEmulator, StsEmulator, Path], model: str, role: str, action: str) -> None:
    emu, sts, _ = clouds
    before = len(sts.grants_for(role))
    used = keys_until_a_new_one(gw, emu, model)
    grants = sts.grants_for(role)[before:]
    assert [g.action for g in grants] == [action, action], "one grant, reused, then exactly one refresh"
    first, second = grants
    assert used[0] == first.access_key_id and used[-1] == second.access_key_id and used.count(used[0]) >= 2
    assert second.issued < first.expires, "refreshed while the old credentials were still valid"
    # Each request carried the session token STS issued with its key.
    assert all(s.headers["x-amz-security-token"] == "session-" + s.access_key_id
               for s in emu.received if s.access_key_id in (first.access_key_id, second.access_key_id))


def test_web_identity_reads_the_rotated_token_file(gw: Gateway, clouds: tuple[BedrockEmulator, StsEmulator, Path]
                                                   ) -> None:
    emu, sts, token = clouds
    token.write_text("eks-projected-token-2")  # the kubelet rotates the projected token
    sts.web_identity_token = "eks-projected-token-2"
    before = len(sts.grants_for(IRSA_ROLE))
    keys_until_a_new_one(gw, emu, "claude-irsa")
    assert len(sts.grants_for(IRSA_ROLE)) > before and IRSA_ROLE not in sts.refusals


def test_a_key_aws_calls_expired_is_replaced_from_sts_on_the_retry(
        gw: Gateway, clouds: tuple[BedrockEmulator, StsEmulator, Path]) -> None:
    """AWS revokes the session early: the refused attempt drops the credentials, the retry (the
    gateway allows 3 attempts) resolves them again from STS, and the client never sees it. One
    extra Bedrock call and one extra grant, not a storm. (With nowhere to retry, the same refusal
    is the 502 of tests/test_bedrock.py::test_expired_credentials_are_a_clear_502_naming_the_upstream.)"""
    emu, sts, _ = clouds
    ask(gw, "claude-stable")
    key = emu.received[-1].access_key_id
    assert key is not None
    emu.expired.add(key)
    grants = len(sts.grants_for(STABLE_ROLE))
    seen = len(emu.received)
    assert ask(gw, "claude-stable", "after").endswith("You said: after")
    assert [s.access_key_id for s in emu.received[seen:]] == [key, sts.grants_for(STABLE_ROLE)[-1].access_key_id]
    assert len(sts.grants_for(STABLE_ROLE)) == grants + 1


def test_a_role_sts_refuses_is_a_502_in_each_dialect_without_a_storm(
        gw: Gateway, clouds: tuple[BedrockEmulator, StsEmulator, Path]) -> None:
    emu, sts, _ = clouds
    seen = len(emu.received)
    with pytest.raises(anthropic.InternalServerError) as err:
        ask(gw, "claude-denied")
    assert err.value.status_code == 502
    message = err.value.body["error"]["message"]
    assert "the upstream bedrock (us-east-1) is unavailable" in message and "AccessDenied" in message
    assert SOURCE_SECRET not in message
    # The same through the Bedrock ingress: Bedrock's error shape, naming the upstream.
    r = httpx.post(gw.base_url + "/model/claude-denied/invoke", timeout=10,
                   headers={"authorization": f"Bearer {gw.key}"},
                   json={"anthropic_version": "bedrock-2023-05-31", "max_tokens": 5,
                         "messages": [{"role": "user", "content": "x"}]})
    assert r.status_code == 502 and r.headers["x-amzn-errortype"] == "InternalServerException"
    assert "the upstream bedrock (us-east-1) is unavailable" in r.json()["message"]
    # Two requests with three attempts each, and STS was asked once: the refusal is remembered.
    assert sts.refusals.count(DENIED_ROLE) == 1 and len(emu.received) == seen

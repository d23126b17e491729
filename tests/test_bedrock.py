"""Tollway → Amazon Bedrock, driven by the real anthropic SDK through a real `tollway serve`, against
the Bedrock emulator that verifies every SigV4 signature with botocore (tests/bedrock_emulator.py)."""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.bedrock_emulator import AwsError, BedrockEmulator, RawStream, chunk_frame, stream_frames
from tests.conftest import NO_RETRIES, Gateway, start_gateway
from tollway.wire.tokens import count_input_tokens

PROFILE_MODEL = "us.anthropic.claude-sonnet-4-5-20250929-v1:0"
COUNTING_MODEL = "anthropic.claude-sonnet-4-5-20250929-v1:0"
KEY_ID, SECRET = "AKIDTESTSTATIC", "static-secret-for-tests"
BEDROCK_API_KEY = "ABSKtest-bedrock-api-key"
TOOLS = [{"name": "Bash", "description": "run a command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}]
ISOLATED_AWS = {"AWS_CONFIG_FILE": "/nonexistent/aws-config", "AWS_SHARED_CREDENTIALS_FILE": "/nonexistent/creds",
                "AWS_EC2_METADATA_DISABLED": "true"}


def bedrock(url: str, model: str, **extra: Any) -> dict[str, Any]:
    return {"provider": "bedrock", "base_url": url, "region": "us-east-1", "model": model, **extra}


@pytest.fixture(scope="module")
def emu() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(credentials={KEY_ID: (SECRET, None)}, api_keys=(BEDROCK_API_KEY,),
                         count_models=(COUNTING_MODEL,)) as e:
        yield e


@pytest.fixture
def bedrock_emu(emu: BedrockEmulator) -> BedrockEmulator:
    emu.reset()
    return emu


@pytest.fixture(scope="module")
def gw(emu: BedrockEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = {
        "retries": NO_RETRIES,
        "models": [
            {"id": "claude-bedrock", "upstream": bedrock(emu.base_url, PROFILE_MODEL)},
            {"id": "claude-bedrock-counting", "upstream": bedrock(emu.base_url, COUNTING_MODEL)},
            {"id": "claude-bedrock-apikey", "upstream": bedrock(emu.base_url, PROFILE_MODEL,
                                                                api_key="${TEST_BEDROCK_KEY}")},
            {"id": "claude-bedrock-1m", "upstream": bedrock(emu.base_url, PROFILE_MODEL + "[1m]")},
        ],
    }
    env = {**ISOLATED_AWS, "AWS_ACCESS_KEY_ID": KEY_ID, "AWS_SECRET_ACCESS_KEY": SECRET,
           "TEST_BEDROCK_KEY": BEDROCK_API_KEY}
    gateway = start_gateway(tmp_path_factory.mktemp("bedrock"), config, env=env)
    yield gateway
    gateway.stop()


def client(gw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0)


def test_message_is_signed_and_shaped_for_bedrock(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    resp = client(gw).messages.with_raw_response.create(
        model="claude-bedrock", max_tokens=50, messages=[{"role": "user", "content": "hi"}],
        extra_headers={"anthropic-beta": "interleaved-thinking-2025-05-14,claude-code-20250219,made-up-2099-01-01"})
    msg = resp.parse()
    assert msg.content[0].text == "Hello from the Tollway mock model. You said: hi"
    assert msg.stop_reason == "end_turn" and msg.usage.input_tokens > 0
    seen = bedrock_emu.received[-1]
    assert seen.path == f"/model/{PROFILE_MODEL}/invoke" and seen.access_key_id == KEY_ID
    assert seen.json["anthropic_version"] == "bedrock-2023-05-31"
    assert "model" not in seen.json and "stream" not in seen.json
    # The beta header became the body field, less what Bedrock does not take.
    assert seen.json["anthropic_beta"] == ["interleaved-thinking-2025-05-14"]
    assert "anthropic-beta" not in seen.headers
    assert resp.http_response.headers["x-amzn-requestid"].startswith("bedrock-")


def test_stream_is_exact_anthropic_sse(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    body = {"model": "claude-bedrock", "max_tokens": 50, "stream": True,
            "messages": [{"role": "user", "content": "stream me"}]}
    with httpx.stream("POST", gw.base_url + "/v1/messages", json=body, timeout=10,
                      headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"}) as r:
        raw = b"".join(r.iter_bytes())
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/event-stream")
    assert bedrock_emu.received[-1].path == f"/model/{PROFILE_MODEL}/invoke-with-response-stream"
    events = [e for e in raw.split(b"\n\n") if e and not e.startswith(b"event: ping")]
    names = [e.split(b"\n")[0] for e in events]
    assert names[0] == b"event: message_start" and names[-1] == b"event: message_stop"
    assert events[-1] == b'event: message_stop\ndata: {"type":"message_stop"}'  # Bedrock's metrics removed
    text = "".join(orjson.loads(e.split(b"\ndata: ", 1)[1])["delta"].get("text", "") for e in events
                   if e.startswith(b"event: content_block_delta"))
    assert text == "Hello from the Tollway mock model. You said: stream me"


def test_sdk_stream_and_tool_round_trip(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    c = client(gw)
    ask = [{"role": "user", "content": 'call Bash with {"command": "echo hi"}'}]
    with c.messages.stream(model="claude-bedrock", max_tokens=200, tools=TOOLS, messages=ask) as stream:
        first = stream.get_final_message()
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "Bash" and use.input == {"command": "echo hi"}
    follow = [*ask, {"role": "assistant", "content": [b.model_dump() for b in first.content]},
              {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "hi"}]}]
    final = c.messages.create(model="claude-bedrock", max_tokens=200, tools=TOOLS, messages=follow)
    assert final.content[0].text == "The tool returned: hi"
    assert [s.json.get("tools") == TOOLS for s in bedrock_emu.received] == [True, True]


def test_bedrock_api_key_is_a_bearer_token(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    msg = client(gw).messages.create(model="claude-bedrock-apikey", max_tokens=20,
                                     messages=[{"role": "user", "content": "hi"}])
    assert msg.content[0].text.endswith("You said: hi")
    seen = bedrock_emu.received[-1]
    assert seen.headers["authorization"] == f"Bearer {BEDROCK_API_KEY}" and seen.access_key_id is None


def test_one_m_suffix_and_cache_ttl(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    msg = client(gw).messages.create(model="claude-bedrock-1m", max_tokens=20, messages=[{"role": "user", "content": [
        {"type": "text", "text": "cached", "cache_control": {"type": "ephemeral", "ttl": "1h"}}]}])
    assert msg.usage.cache_creation_input_tokens > 0  # cache usage fields come back from Bedrock
    seen = bedrock_emu.received[-1]
    assert seen.path == f"/model/{PROFILE_MODEL}/invoke"
    assert seen.json["anthropic_beta"] == ["context-1m-2025-08-07"]
    assert seen.json["messages"][0]["content"][0]["cache_control"] == {"type": "ephemeral"}


def test_count_tokens_uses_bedrock_where_it_can_else_the_local_count(gw: Gateway,
                                                                      bedrock_emu: BedrockEmulator) -> None:
    messages = [{"role": "user", "content": "count these words please"}]
    counted = client(gw).messages.count_tokens(model="claude-bedrock-counting", messages=messages)
    assert bedrock_emu.received[-1].path == f"/model/{COUNTING_MODEL}/count-tokens"
    assert counted.input_tokens == count_input_tokens({"messages": messages})  # the emulator's (mock's) count
    for _ in range(2):
        local = client(gw).messages.count_tokens(model="claude-bedrock", messages=messages)
        assert local.input_tokens == count_input_tokens({"messages": messages}) > 0
    # Bedrock said once that this model cannot count; it is not asked again.
    assert [s.path for s in bedrock_emu.received].count(f"/model/{PROFILE_MODEL}/count-tokens") == 1


def test_throttling_is_relayed_with_retry_after(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    bedrock_emu.script(AwsError(429, "ThrottlingException", "Too many requests, please wait before trying again.",
                                {"retry-after": "3"}))
    with pytest.raises(anthropic.RateLimitError) as err:
        client(gw).messages.create(model="claude-bedrock", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert err.value.response.headers["retry-after"] == "3"
    assert err.value.body["error"]["type"] == "rate_limit_error"
    assert "ThrottlingException: Too many requests" in err.value.body["error"]["message"]


def test_expired_credentials_are_a_clear_502_naming_the_upstream(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    bedrock_emu.expired.add(KEY_ID)
    with pytest.raises(anthropic.InternalServerError) as err:
        client(gw).messages.create(model="claude-bedrock", max_tokens=20, messages=[{"role": "user", "content": "x"}])
    assert err.value.status_code == 502
    assert err.value.response.headers["x-should-retry"] == "false"
    message = err.value.body["error"]["message"]
    assert "bedrock (us-east-1)" in message and "ExpiredTokenException" in message
    assert SECRET not in message and len(bedrock_emu.received) == 1


def test_stream_cut_mid_frame_ends_with_an_error_event(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    frames = stream_frames([{"type": "message_start", "message": {
        "id": "msg_cut", "type": "message", "role": "assistant", "model": PROFILE_MODEL, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 5, "output_tokens": 1}}}])
    partial = chunk_frame({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    bedrock_emu.script(RawStream([*frames, partial[:17]], reset_at_end=True))
    body = {"model": "claude-bedrock", "max_tokens": 50, "stream": True, "messages": [{"role": "user", "content": "x"}]}
    with httpx.stream("POST", gw.base_url + "/v1/messages", json=body, timeout=10,
                      headers={"x-api-key": gw.key, "anthropic-version": "2023-06-01"}) as r:
        raw = b"".join(r.iter_bytes())
    assert raw.startswith(b"event: message_start\n")
    last = raw.rstrip(b"\n").split(b"\n\n")[-1]
    assert last.startswith(b"event: error\n")
    assert orjson.loads(last.split(b"data: ", 1)[1])["error"] == {
        "type": "api_error", "message": "the Bedrock stream broke off inside an event-stream frame"}


# -- credentials from a refreshing source -------------------------------------------------------

MINT = """
import datetime, hashlib, json, pathlib, sys
counter = pathlib.Path(sys.argv[1])
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
akid = f"ASIATEST{n:08d}"
secret = hashlib.sha256(b"tollway-test-secret:" + akid.encode()).hexdigest()[:40]
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds=int(sys.argv[2]))
print(json.dumps({"Version": 1, "AccessKeyId": akid, "SecretAccessKey": secret, "SessionToken": "token-" + akid,
                  "Expiration": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}))
"""


def test_temporary_credentials_are_refreshed(tmp_path: Path) -> None:
    """A profile with credential_process (botocore's RefreshableCredentials, as for AssumeRole and
    web identity): credentials in their last minutes are replaced before use, each signed request
    verifies, and the session token goes along."""
    script = tmp_path / "mint.py"
    script.write_text(MINT)
    counter = tmp_path / "minted"
    (tmp_path / "aws-config").write_text(
        f"[profile tollway]\ncredential_process = {sys.executable} {script} {counter} 300\n")
    with BedrockEmulator(derive_secrets=True) as emu:
        config = {"retries": NO_RETRIES, "models": [{"id": "claude-bedrock", "upstream": bedrock(
            emu.base_url, PROFILE_MODEL, aws_profile="tollway")}]}
        env = {**ISOLATED_AWS, "AWS_CONFIG_FILE": str(tmp_path / "aws-config")}
        gateway = start_gateway(tmp_path / "gw", config, env=env)
        try:
            for i in range(3):
                msg = client(gateway).messages.create(model="claude-bedrock", max_tokens=20,
                                                      messages=[{"role": "user", "content": f"turn {i}"}])
                assert msg.content[0].text.endswith(f"You said: turn {i}")
            keys = [s.access_key_id for s in emu.received]
            # 300 s left is inside botocore's mandatory refresh window (10 min): fresh keys every time.
            assert len(set(keys)) == 3 and all(k and k.startswith("ASIATEST") for k in keys)
            assert all(s.headers["x-amz-security-token"] == "token-" + s.access_key_id for s in emu.received)
        finally:
            gateway.stop()


def test_missing_credentials_fail_fast_without_a_storm(tmp_path: Path) -> None:
    with BedrockEmulator() as emu:
        config = {"retries": {"max_attempts": 3, "base_delay": 0.01, "breaker_failures": 1000},
                  "models": [{"id": "claude-bedrock", "upstream": bedrock(emu.base_url, PROFILE_MODEL,
                                                                          aws_profile="missing")}]}
        (tmp_path / "aws-config").write_text("[profile other]\nregion = us-east-1\n")
        gateway = start_gateway(tmp_path / "gw", config, env={**ISOLATED_AWS,
                                                              "AWS_CONFIG_FILE": str(tmp_path / "aws-config")})
        try:
            started = time.monotonic()
            for _ in range(3):
                r = httpx.post(gateway.base_url + "/v1/messages", timeout=10, headers={"x-api-key": gateway.key},
                               json={"model": "claude-bedrock", "max_tokens": 5,
                                     "messages": [{"role": "user", "content": "x"}]})
                assert r.status_code == 502
                assert "the upstream bedrock (us-east-1) is unavailable" in r.json()["error"]["message"]
            assert time.monotonic() - started < 5 and emu.received == []
        finally:
            out = gateway.stop()
        # Logged for the operator, once per failed resolution (remembered for 5 s), not once per attempt.
        lines = [json.loads(line) for line in out.splitlines() if "credentials could not be obtained" in line]
        assert len(lines) == 1 and lines[0]["upstream"] == "bedrock (us-east-1)"

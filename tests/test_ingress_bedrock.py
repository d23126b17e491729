"""Bedrock ingress: the real `AnthropicBedrock` client (and botocore-decoded raw requests) against a
real `tollway serve`, answered in Bedrock's wire format from the mock model, the Anthropic
emulator, and — chained — the Bedrock upstream emulator."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import quote

import anthropic
import httpx
import pytest
from anthropic import AnthropicBedrock
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.eventstream import EventStreamBuffer

from tests.bedrock_emulator import BedrockEmulator
from tests.conftest import UPSTREAM_KEY, Gateway, standard_config, start_gateway
from tests.emulator import AnthropicEmulator, JSONReply, SSEReply, default_stream_events, sse_event
from tests.test_bedrock import ISOLATED_AWS, KEY_ID, PROFILE_MODEL, SECRET, bedrock

BASH = {"name": "Bash", "description": "Run a shell command", "input_schema": {
    "type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
HI = [{"role": "user", "content": "ping"}]


@pytest.fixture(scope="module")
def bedrock_emu() -> Iterator[BedrockEmulator]:
    with BedrockEmulator(credentials={KEY_ID: (SECRET, None)}) as e:
        yield e


@pytest.fixture(scope="module")
def gw(emulator: AnthropicEmulator, bedrock_emu: BedrockEmulator,
       tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    config = standard_config(emulator.base_url)
    config["models"].append({"id": "claude-on-bedrock", "deployments": [
        {"name": "bedrock-us-east-1", "upstream": bedrock(bedrock_emu.base_url, PROFILE_MODEL)}]})
    env = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, **ISOLATED_AWS, "AWS_ACCESS_KEY_ID": KEY_ID,
           "AWS_SECRET_ACCESS_KEY": SECRET}
    gateway = start_gateway(tmp_path_factory.mktemp("ingress-bedrock"), config, env=env)
    yield gateway
    gateway.stop()


def client(gw: Gateway, key: str | None = None) -> AnthropicBedrock:
    # api_key: the SDK sends it as `Authorization: Bearer` (what AWS_BEARER_TOKEN_BEDROCK does).
    return AnthropicBedrock(base_url=gw.base_url, api_key=key or gw.key, aws_region="us-east-1", max_retries=0)


def admin_key(gw: Gateway) -> str:
    return str(json.loads(gw.cli("keys", "create", "--name", "ingress-auditor", "--admin", "--json").stdout)["key"])


def wait_for(fetch: Any, timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = fetch()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_invoke_answers_a_message(gw: Gateway) -> None:
    raw = client(gw).messages.with_raw_response.create(model="tollway-mock", max_tokens=100, messages=HI)
    msg = raw.parse()
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Hello from the Tollway mock model. You said: ping"
    assert raw.headers["x-amzn-requestid"].startswith("req_")


def streamed(sdk: Any, model: str, text: str) -> tuple[list[str], Any]:
    """(the text deltas, the final message) of one SDK stream — any of the SDK's clients."""
    deltas: list[str] = []
    with sdk.messages.stream(model=model, max_tokens=100, messages=[{"role": "user", "content": text}]) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas.append(event.delta.text)
        return deltas, stream.get_final_message()


def test_stream_is_aws_event_stream_and_the_sdk_reads_it(gw: Gateway) -> None:
    deltas, final = streamed(client(gw), "tollway-mock-slow", "stream this please")
    assert len(deltas) > 3 and "".join(deltas) == final.content[0].text
    assert final.content[0].text.endswith("You said: stream this please")


def test_stream_frames_are_bedrocks_chunk_frames(gw: Gateway) -> None:
    resp = httpx.post(gw.base_url + "/model/tollway-mock/invoke-with-response-stream", timeout=10,
                      headers={"authorization": f"Bearer {gw.key}"},
                      json={"anthropic_version": "bedrock-2023-05-31", "max_tokens": 50, "messages": HI})
    assert resp.status_code == 200 and resp.headers["content-type"] == "application/vnd.amazon.eventstream"
    buffer = EventStreamBuffer()
    buffer.add_data(resp.content)
    messages = list(buffer)  # botocore checks both CRCs
    assert messages
    types = []
    for m in messages:
        assert m.headers == {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
        types.append(json.loads(base64.b64decode(json.loads(m.payload)["bytes"]))["type"])
    assert types[0] == "message_start" and types[-1] == "message_stop"


def test_tool_use_round_trip(gw: Gateway) -> None:
    sdk = client(gw)
    first = sdk.messages.create(model="tollway-mock", max_tokens=200, tools=[BASH],  # type: ignore[list-item]
                                messages=[{"role": "user", "content": 'call Bash with {"command": "ls"}'}])
    assert first.stop_reason == "tool_use"
    use = next(b for b in first.content if b.type == "tool_use")
    assert use.name == "Bash" and use.input == {"command": "ls"}
    second = sdk.messages.create(model="tollway-mock", max_tokens=200, tools=[BASH],  # type: ignore[list-item]
                                 messages=[{"role": "user", "content": 'call Bash with {"command": "ls"}'},
                                           {"role": "assistant", "content": first.content},  # type: ignore[typeddict-item]
                                           {"role": "user", "content": [{"type": "tool_result",
                                                                         "tool_use_id": use.id,
                                                                         "content": "file-a"}]}])
    assert second.stop_reason == "end_turn" and "file-a" in second.content[0].text  # type: ignore[union-attr]


def test_errors_are_bedrock_shaped(gw: Gateway) -> None:
    with pytest.raises(anthropic.AuthenticationError):
        client(gw, "tw-wrong").messages.create(model="tollway-mock", max_tokens=10, messages=HI)
    resp = httpx.post(gw.base_url + "/model/tollway-mock/invoke", json={"max_tokens": 10, "messages": HI},
                      headers={"authorization": "Bearer tw-wrong"})
    assert resp.status_code == 401 and resp.headers["x-amzn-errortype"] == "UnrecognizedClientException"
    assert set(resp.json()) == {"message"}
    with pytest.raises(anthropic.NotFoundError) as missing:
        client(gw).messages.create(model="no-such-model", max_tokens=10, messages=HI)
    assert missing.value.response.headers["x-amzn-errortype"] == "ResourceNotFoundException"
    with pytest.raises(anthropic.BadRequestError) as bad:
        client(gw).messages.create(model="tollway-mock", max_tokens=10, messages=[])
    assert bad.value.response.headers["x-amzn-errortype"] == "ValidationException"
    assert "messages" in bad.value.response.json()["message"]
    created = gw.cli("keys", "create", "--name", "narrow", "--models", "tollway-mock", "--json")
    narrow = json.loads(created.stdout)["key"]
    with pytest.raises(anthropic.PermissionDeniedError) as denied:
        client(gw, narrow).messages.create(model="claude-sonnet-4-5-20250929", max_tokens=10, messages=HI)
    assert denied.value.response.headers["x-amzn-errortype"] == "AccessDeniedException"
    junk = httpx.post(gw.base_url + "/model/tollway-mock/invoke", content=b"{not json",
                      headers={"x-api-key": gw.key, "content-type": "application/json"})
    assert junk.status_code == 400 and junk.headers["x-amzn-errortype"] == "ValidationException"


def _signed(gw: Gateway, extra: dict[str, str]) -> httpx.Response:
    """A request SigV4-signed by botocore, as a client that can only sign sends it (the SDK's
    signing path needs boto3, which Tollway's test environment does not install)."""
    url = gw.base_url + "/model/tollway-mock/invoke"
    body = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 20, "messages": HI})
    request = AWSRequest("POST", url, data=body, headers={"content-type": "application/json", **extra})
    SigV4Auth(Credentials("AKIDIGNORED", "ignored"), "bedrock", "us-east-1").add_auth(request)
    headers = dict(request.headers.items())
    assert headers["Authorization"].startswith("AWS4-HMAC-SHA256 ")
    return httpx.post(url, content=body, headers=headers, timeout=10)


def test_sigv4_authorization_is_ignored_for_x_api_key(gw: Gateway) -> None:
    """A client that can only sign: the SigV4 header is dropped, the key comes in x-api-key."""
    ok = _signed(gw, {"x-api-key": gw.key})
    assert ok.status_code == 200 and ok.json()["content"][0]["text"].endswith("You said: ping")
    unsigned_key = _signed(gw, {})
    assert unsigned_key.status_code == 401 and unsigned_key.headers["x-amzn-errortype"] == "UnrecognizedClientException"


def test_inference_profile_arn_and_betas_reach_the_anthropic_upstream(gw: Gateway, upstream: AnthropicEmulator) -> None:
    arn = "arn:aws:bedrock:us-east-1:123456789012:inference-profile/us.anthropic.claude-sonnet-4-5-20250929-v1:0"
    resp = httpx.post(gw.base_url + f"/model/{quote(arn, safe='')}/invoke", timeout=10,
                      headers={"authorization": f"Bearer {gw.key}"},
                      json={"anthropic_version": "bedrock-2023-05-31", "anthropic_beta": ["context-1m-2025-08-07"],
                            "max_tokens": 20, "messages": HI})
    assert resp.status_code == 200, resp.text
    seen = upstream.received[-1]
    assert seen.headers["anthropic-beta"] == "context-1m-2025-08-07"
    body = json.loads(seen.body)
    assert body["model"] == "claude-sonnet-4-5-20250929"
    assert "anthropic_version" not in body and "anthropic_beta" not in body


def test_bedrock_ingress_to_bedrock_upstream(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    bedrock_emu.reset()
    with client(gw).messages.stream(model="claude-on-bedrock", max_tokens=50, messages=HI) as stream:
        final = stream.get_final_message()
    assert final.content and final.content[0].type == "text"
    invokes = [s for s in bedrock_emu.received if s.path.startswith(f"/model/{PROFILE_MODEL}/invoke")]
    assert len(invokes) == 1 and invokes[0].access_key_id == KEY_ID  # signed by Tollway with its own credentials


def test_usage_and_audit_name_the_ingress_and_the_cloud(gw: Gateway, bedrock_emu: BedrockEmulator) -> None:
    admin = admin_key(gw)
    raw = client(gw).messages.with_raw_response.create(model="claude-on-bedrock", max_tokens=20, messages=HI)
    request_id = raw.headers["x-amzn-requestid"]

    def audit() -> list[dict[str, Any]]:
        return list(httpx.get(gw.base_url + "/admin/v1/audit", params={"request_id": request_id},
                              headers={"x-api-key": admin}).json()["data"])

    def usage() -> list[dict[str, Any]]:
        rows = httpx.get(gw.base_url + "/admin/v1/usage/requests", params={"key_id": gw.key_id},
                         headers={"x-api-key": admin}).json()
        return [r for r in rows if r["request_id"] == request_id]

    records, rows = wait_for(audit), wait_for(usage)
    assert len(records) == 1 and records[0]["route"] == "bedrock_invoke" and records[0]["status"] == 200
    assert len(rows) == 1 and rows[0]["route"] == "bedrock_invoke"
    assert rows[0]["deployment"] == "bedrock-us-east-1" and records[0]["deployment"] == "bedrock-us-east-1"


def test_count_tokens(gw: Gateway) -> None:
    inner = json.dumps({"anthropic_version": "bedrock-2023-05-31", "max_tokens": 10, "messages": HI})
    resp = httpx.post(gw.base_url + "/model/tollway-mock/count-tokens", headers={"x-api-key": gw.key},
                      json={"input": {"invokeModel": {"body": inner}}})
    assert resp.status_code == 200 and isinstance(resp.json()["inputTokens"], int) and resp.json()["inputTokens"] > 0


def test_failure_mid_stream_is_an_exception_frame(gw: Gateway, upstream: AnthropicEmulator) -> None:
    events = [sse_event(e) for e in default_stream_events("claude-sonnet-4-5-20250929")]
    upstream.script(SSEReply([*events[:2], sse_event({"type": "error", "error": {"type": "overloaded_error",
                                                                                 "message": "busy"}})]))
    resp = httpx.post(gw.base_url + "/model/claude-sonnet-4-5-20250929/invoke-with-response-stream", timeout=10,
                      headers={"x-api-key": gw.key}, json={"max_tokens": 20, "messages": HI})
    assert resp.status_code == 200
    buffer = EventStreamBuffer()
    buffer.add_data(resp.content)
    frames = list(buffer)
    assert [f.headers[":message-type"] for f in frames] == ["event", "event", "exception"]
    assert frames[-1].headers[":exception-type"] == "serviceUnavailableException"
    assert json.loads(frames[-1].payload) == {"message": "busy"}
    with pytest.raises(anthropic.APIError):  # and the SDK raises it
        upstream.script(SSEReply([*events[:2], sse_event({"type": "error", "error": {"type": "overloaded_error",
                                                                                     "message": "busy"}})]))
        with client(gw).messages.stream(model="claude-sonnet-4-5-20250929", max_tokens=20, messages=HI) as stream:
            stream.get_final_message()


def test_upstream_error_is_bedrock_shaped(gw: Gateway, upstream: AnthropicEmulator) -> None:
    upstream.script(JSONReply(529, {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}))
    resp = httpx.post(gw.base_url + "/model/claude-sonnet-4-5-20250929/invoke", timeout=10,
                      headers={"x-api-key": gw.key}, json={"max_tokens": 20, "messages": HI})
    assert resp.status_code == 503 and resp.headers["x-amzn-errortype"] == "ServiceUnavailableException"
    assert resp.json() == {"message": "Overloaded"}


def test_keepalive_pings_during_upstream_silence_do_not_break_the_sdk(gw: Gateway, upstream: AnthropicEmulator) -> None:
    # ping_interval is 0.3 s (standard_config): 0.5 s gaps make the gateway send pings as chunk frames.
    events = [sse_event(e) for e in default_stream_events("claude-sonnet-4-5-20250929")]
    upstream.script(SSEReply(events, delay=0.5))
    raw = httpx.post(gw.base_url + "/model/claude-sonnet-4-5-20250929/invoke-with-response-stream", timeout=30,
                     headers={"x-api-key": gw.key}, json={"max_tokens": 20, "messages": HI})
    buffer = EventStreamBuffer()
    buffer.add_data(raw.content)
    types = [json.loads(base64.b64decode(json.loads(m.payload)["bytes"]))["type"] for m in buffer]
    assert types.count("ping") > 1  # the upstream's own one, and the gateway's keepalives
    upstream.script(SSEReply(events, delay=0.5))
    with client(gw).messages.stream(model="claude-sonnet-4-5-20250929", max_tokens=20, messages=HI) as stream:
        final = stream.get_final_message()
    assert final.stop_reason is not None and final.content

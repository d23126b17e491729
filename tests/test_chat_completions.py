"""`POST /v1/chat/completions` with the stock OpenAI SDK, over the mock model and over the
Anthropic emulator: plain answers, streams with usage, tools and a tool round trip, every error
in the OpenAI envelope, and the route's audit and usage records."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import openai
import orjson
import pytest

from tests.conftest import Gateway
from tests.emulator import AnthropicEmulator, JSONReply, SSEReply, default_stream_events, error_body, sse_event

SONNET = "claude-sonnet-4-5-20250929"
BASH_FN: Any = {"type": "function", "function": {
    "name": "Bash", "description": "Run a shell command",
    "parameters": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}}
HI: Any = [{"role": "user", "content": "hi"}]


@pytest.fixture
def gpt(gateway: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=gateway.key, max_retries=0)


def _post(gateway: Gateway, body: Any, key: str | None = None) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(gateway.base_url + "/v1/chat/completions", content=content, timeout=10,
                      headers={"authorization": f"Bearer {key or gateway.key}", "content-type": "application/json"})


# -- the mock model ---------------------------------------------------------------------------------


def test_plain_completion(gpt: openai.OpenAI) -> None:
    raw = gpt.chat.completions.with_raw_response.create(
        model="tollway-mock", messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    resp = raw.parse()
    assert raw.headers["x-request-id"] == raw.headers["request-id"] and raw.headers["x-request-id"].startswith("req_")
    assert resp.object == "chat.completion" and resp.model == "tollway-mock" and resp.id.startswith("chatcmpl-")
    choice = resp.choices[0]
    assert choice.message.role == "assistant" and choice.finish_reason == "stop"
    assert choice.message.content == "Hello from the Tollway mock model. You said: hi"
    assert resp.usage is not None and resp.usage.completion_tokens == 9
    assert resp.usage.total_tokens == resp.usage.prompt_tokens + 9 and resp.usage.prompt_tokens > 0


def test_stream_with_include_usage(gpt: openai.OpenAI) -> None:
    chunks = list(gpt.chat.completions.create(model="tollway-mock", messages=HI, stream=True,
                                              stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the Tollway mock model. You said: hi"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None and last.usage.completion_tokens == 9
    assert all(c.usage is None for c in chunks[:-1]) and len({c.id for c in chunks}) == 1


def test_stream_wire_format_without_usage(gateway: Gateway) -> None:
    with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", timeout=10,
                      json={"model": "tollway-mock", "messages": HI, "stream": True},
                      headers={"authorization": f"Bearer {gateway.key}"}) as resp:
        data = b"".join(resp.iter_bytes())
    assert resp.status_code == 200 and resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["x-request-id"] == resp.headers["request-id"]
    frames = [f for f in data.split(b"\n\n") if f and f != b": ping"]  # keep-alive comments aside
    assert all(f.startswith(b"data: ") for f in frames) and frames[-1] == b"data: [DONE]"
    chunks = [orjson.loads(f[6:]) for f in frames[:-1]]
    assert all("usage" not in c for c in chunks) and all(c["object"] == "chat.completion.chunk" for c in chunks)


def test_tool_call_and_round_trip(gpt: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": 'call Bash with {"command": "echo hi"}'}]
    first = gpt.chat.completions.create(model="tollway-mock", messages=messages, tools=[BASH_FN])
    choice = first.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.type == "function" and call.function.name == "Bash"
    assert json.loads(call.function.arguments) == {"command": "echo hi"}
    messages += [choice.message.model_dump(exclude_none=True),
                 {"role": "tool", "tool_call_id": call.id, "content": "hi"}]
    second = gpt.chat.completions.create(model="tollway-mock", messages=messages, tools=[BASH_FN])
    assert second.choices[0].message.content == "The tool returned: hi"
    assert second.choices[0].finish_reason == "stop"


def test_streamed_tool_call_arguments_accumulate(gpt: openai.OpenAI) -> None:
    stream = gpt.chat.completions.create(model="tollway-mock", tools=[BASH_FN], stream=True, messages=[
        {"role": "user", "content": 'call Bash with {"command": "echo tollway"}'}])
    fragments = [tc for c in stream if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert len(fragments) >= 3 and {f.index for f in fragments} == {0}
    assert fragments[0].id and fragments[0].function is not None and fragments[0].function.name == "Bash"
    arguments = "".join(f.function.arguments or "" for f in fragments if f.function)
    assert json.loads(arguments) == {"command": "echo tollway"}


# -- errors in the OpenAI envelope --------------------------------------------------------------------


def test_wrong_key_is_authentication_error(gateway: Gateway) -> None:
    sdk = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key="tw-wrong", max_retries=0)
    with pytest.raises(openai.AuthenticationError) as err:
        sdk.chat.completions.create(model="tollway-mock", messages=HI)
    assert err.value.status_code == 401 and err.value.code == "invalid_api_key"
    assert err.value.type == "authentication_error"
    assert err.value.request_id == err.value.response.headers["request-id"]
    body = err.value.response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "code", "param"}
    no_key = httpx.post(gateway.base_url + "/v1/chat/completions", json={"model": "tollway-mock", "messages": HI})
    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"


def test_unknown_model_is_404_model_not_found(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as err:
        gpt.chat.completions.create(model="gpt-9-nonexistent", messages=HI)
    assert err.value.code == "model_not_found" and err.value.param == "model"
    assert "gpt-9-nonexistent" in err.value.message


def test_model_not_granted_is_403_permission(gateway: Gateway) -> None:
    created = json.loads(gateway.cli("keys", "create", "--name", "mock-only", "--models", "tollway-mock",
                                     "--json").stdout)
    sdk = openai.OpenAI(base_url=gateway.base_url + "/v1", api_key=created["key"], max_retries=0)
    # No wait: a key the gateway does not know yet makes it check the store before it answers.
    assert sdk.chat.completions.create(model="tollway-mock", messages=HI).choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as err:
        sdk.chat.completions.create(model=SONNET, messages=HI)
    assert err.value.code == "model_access_denied" and err.value.type == "permission_error"


@pytest.mark.parametrize(("body", "param"), [
    ({"model": "tollway-mock", "messages": []}, "messages"),
    ({"messages": HI}, "model"),
    ({"model": "tollway-mock", "messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"model": "tollway-mock", "messages": HI, "stream": "yes"}, "stream"),
    ({"model": "tollway-mock", "messages": HI, "tollway": {"system_prompt": "agent_default"}}, "tollway"),
    ({"model": "tollway-mock", "messages": [{"role": "system", "content": "only a system prompt"}]}, "messages"),
])
def test_invalid_bodies_are_400_with_param(gateway: Gateway, body: dict[str, Any], param: str) -> None:
    resp = _post(gateway, body)
    assert resp.status_code == 400, resp.text
    error = resp.json()["error"]
    assert error["type"] == "invalid_request_error" and error["param"] == param and error["code"] == "invalid_body"
    assert resp.headers["x-request-id"].startswith("req_")


def test_tollway_block_raises_bad_request_in_sdk(gpt: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        gpt.chat.completions.create(model="tollway-mock", messages=HI, extra_body={"tollway": {}})
    assert err.value.param == "tollway"


def test_malformed_json_is_400(gateway: Gateway) -> None:
    resp = _post(gateway, b"{not json")
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"


# -- over the Anthropic emulator ------------------------------------------------------------------------


def test_anthropic_upstream_gets_canonical_request(gpt: openai.OpenAI, upstream: AnthropicEmulator) -> None:
    resp = gpt.chat.completions.create(model=SONNET, max_tokens=50, temperature=1.5, stop="END", messages=[
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}])
    assert resp.model == SONNET and resp.choices[0].message.content == "Hello from the emulator."
    assert resp.usage is not None and resp.usage.prompt_tokens == 12 and resp.usage.completion_tokens == 6
    sent = upstream.received[0]
    assert sent.path == "/v1/messages" and "anthropic-version" in sent.headers
    assert sent.json == {"model": SONNET, "system": [{"type": "text", "text": "Be brief."}],
                         "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}],
                         "max_tokens": 50, "stop_sequences": ["END"], "temperature": 1.0}


def test_renamed_model_answers_under_requested_id(gpt: openai.OpenAI, upstream: AnthropicEmulator) -> None:
    resp = gpt.chat.completions.create(model="claude-renamed", messages=HI)
    assert resp.model == "claude-renamed" and upstream.received[0].json["model"] == "claude-haiku-4-5-20251001"
    chunks = list(gpt.chat.completions.create(model="claude-renamed", messages=HI, stream=True))
    assert {c.model for c in chunks} == {"claude-renamed"}


def test_anthropic_stream_translated(gpt: openai.OpenAI, upstream: AnthropicEmulator) -> None:
    chunks = list(gpt.chat.completions.create(model=SONNET, messages=HI, stream=True,
                                              stream_options={"include_usage": True}))
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Hello from the emulator."
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert upstream.received[0].json["stream"] is True


def test_upstream_error_in_openai_envelope(gpt: openai.OpenAI, upstream: AnthropicEmulator) -> None:
    upstream.script(JSONReply(400, error_body("invalid_request_error", "max_tokens: too large", "req_up")))
    with pytest.raises(openai.BadRequestError) as err:
        gpt.chat.completions.create(model=SONNET, messages=HI)
    body: Any = err.value.body
    assert body == {"message": "max_tokens: too large", "type": "invalid_request_error", "code": None, "param": None}
    assert err.value.request_id is not None and err.value.request_id != "req_up"


def _broken_stream() -> SSEReply:
    events = default_stream_events(SONNET, "one two three four")[:5]
    events.append({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    return SSEReply([sse_event(e) for e in events])


def test_midstream_failure_is_error_line_then_done(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    upstream.script(_broken_stream())
    with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", timeout=10,
                      json={"model": SONNET, "messages": HI, "stream": True},
                      headers={"authorization": f"Bearer {gateway.key}"}) as resp:
        frames = [f for f in b"".join(resp.iter_bytes()).split(b"\n\n") if f]
    assert resp.status_code == 200
    assert frames[-1] == b"data: [DONE]"
    error = orjson.loads(frames[-2][6:])
    assert error == {"error": {"message": "Overloaded", "type": "overloaded_error", "code": "stream_error",
                               "param": None}}
    assert any(b'"content":"one ' in f for f in frames)  # what came before the failure reached the client


def test_midstream_failure_raises_in_sdk(gpt: openai.OpenAI, upstream: AnthropicEmulator) -> None:
    upstream.script(_broken_stream())
    received: list[Any] = []
    with pytest.raises(openai.APIError) as err:
        for c in gpt.chat.completions.create(model=SONNET, messages=HI, stream=True):
            received.append(c)
    assert "Overloaded" in err.value.message and received


# -- audit and usage records ----------------------------------------------------------------------------------


def _admin_key(gateway: Gateway) -> str:
    return str(json.loads(gateway.cli("keys", "create", "--name", "chat-auditor", "--admin", "--json").stdout)["key"])


def _wait(fetch: Any, timeout: float = 8.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = fetch()
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def test_audit_record_for_chat_completions(gateway: Gateway, gpt: openai.OpenAI) -> None:
    admin = _admin_key(gateway)
    raw = gpt.chat.completions.with_raw_response.create(model="tollway-mock", messages=HI)
    request_id = raw.headers["x-request-id"]
    refused = _post(gateway, {"model": "tollway-mock", "messages": []})

    def audit(rid: str) -> list[dict[str, Any]]:
        resp = httpx.get(gateway.base_url + "/admin/v1/audit", params={"request_id": rid},
                         headers={"x-api-key": admin})
        return list(resp.json()["data"])

    records = _wait(lambda: audit(request_id))
    assert len(records) == 1, records
    rec = records[0]
    assert rec["route"] == "chat_completions" and rec["status"] == 200 and rec["requested_model"] == "tollway-mock"
    assert rec["usage"]["output"] == 9 and rec["usage"]["input"] > 0
    bad = _wait(lambda: audit(refused.headers["x-request-id"]))
    assert len(bad) == 1 and bad[0]["status"] == 400 and bad[0]["error_type"] == "invalid_request_error"


def test_usage_ledger_row_for_chat_completions(gateway: Gateway, gpt: openai.OpenAI) -> None:
    admin = _admin_key(gateway)
    raw = gpt.chat.completions.with_raw_response.create(model="tollway-mock", messages=HI)
    request_id = raw.headers["x-request-id"]

    def rows() -> list[dict[str, Any]]:
        resp = httpx.get(gateway.base_url + "/admin/v1/usage/requests", params={"key_id": gateway.key_id},
                         headers={"x-api-key": admin})
        return [r for r in resp.json() if r["request_id"] == request_id]

    found = _wait(rows, timeout=2.0)
    assert len(found) == 1, found
    assert found[0]["route"] == "chat_completions" and found[0]["output_tokens"] == 9 and found[0]["status"] == 200


def test_body_over_the_limit_is_413(gateway: Gateway) -> None:
    resp = _post(gateway, b"x" * (1024 * 1024 + 1))
    assert resp.status_code == 413
    assert resp.json()["error"] == {"message": resp.json()["error"]["message"], "type": "invalid_request_error",
                                    "code": "request_too_large", "param": None}


def test_client_leaving_mid_stream_ends_the_call(gateway: Gateway) -> None:
    """The relay underneath closes the upstream reply, so the call is settled and audited (499)."""
    admin = _admin_key(gateway)
    with httpx.stream("POST", gateway.base_url + "/v1/chat/completions", timeout=10,
                      json={"model": "tollway-mock-slow", "messages": HI, "stream": True},
                      headers={"authorization": f"Bearer {gateway.key}"}) as resp:
        request_id = resp.headers["x-request-id"]
        next(resp.iter_bytes())
    records = _wait(lambda: httpx.get(gateway.base_url + "/admin/v1/audit", params={"request_id": request_id},
                                      headers={"x-api-key": admin}).json()["data"])
    assert len(records) == 1 and records[0]["status"] == 499 and records[0]["route"] == "chat_completions"


def test_wrong_method_is_answered_in_the_openai_envelope(gateway: Any) -> None:
    resp = httpx.get(gateway.base_url + "/v1/chat/completions")
    assert resp.status_code == 405
    assert resp.json()["error"]["type"] == "invalid_request_error"
    assert resp.headers["x-request-id"] == resp.headers["request-id"]

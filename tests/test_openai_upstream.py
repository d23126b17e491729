"""The OpenAI-compatible upstream (`provider: openai`) through real clients: the Anthropic SDK and
Claude Code translated to Chat Completions and back, the OpenAI SDK passed through, Azure's
endpoint form, upstream errors, and the local count_tokens against OpenAI's published counts."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import Gateway, start_gateway
from tests.openai_emulator import (
    JSONReply,
    OpenAIEmulator,
    SSEReply,
    ToolCall,
    chat_completion,
    error_body,
    stream_chunks,
)
from tests.test_node_clients import CLAUDE
from tollway.config import UpstreamConfig
from tollway.upstream.openai import chat_request, passthrough_body
from tollway.wire.chat_turns import chat_request_to_messages
from tollway.wire.tokens_openai import count_chat_tokens

OPENAI_KEY = "sk-openai-upstream-test"
HI: Any = [{"role": "user", "content": "hi"}]
BASH = {"name": "Bash", "description": "Run a shell command",
        "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]}}
BASH_FN = {"type": "function", "function": {"name": "Bash", "description": "Run a shell command",
                                            "parameters": BASH["input_schema"]}}
# OpenAI cookbook "How to count tokens with tiktoken", with the prompt_tokens OpenAI's API reported.
COOKBOOK_MESSAGES = [
    {"role": "system", "content": "You are a helpful, pattern-following assistant that translates corporate jargon "
                                  "into plain English."},
    {"role": "system", "name": "example_user", "content": "New synergies will help drive top-line growth."},
    {"role": "system", "name": "example_assistant", "content": "Things working well together will increase revenue."},
    {"role": "system", "name": "example_user", "content": "Let's circle back when we have more bandwidth to touch "
                                                          "base on opportunities for increased leverage."},
    {"role": "system", "name": "example_assistant", "content": "Let's talk later when we're less busy about how to "
                                                               "do better."},
    {"role": "user", "content": "This late pivot means we don't have time to boil the ocean for the client "
                                "deliverable."},
]
WEATHER_SYSTEM = "You are a helpful assistant that can answer to questions about the weather."
WEATHER_USER = "What's the weather like in San Francisco?"
WEATHER_SCHEMA = {
    "type": "object",
    "properties": {
        "location": {"type": "string", "description": "The city and state, e.g. San Francisco, CA"},
        "unit": {"type": "string", "description": "The unit of temperature to return",
                 "enum": ["celsius", "fahrenheit"]},
    },
    "required": ["location"],
}


@pytest.fixture(scope="module")
def emu() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_key=OPENAI_KEY) as server:
        yield server


@pytest.fixture
def oai(emu: OpenAIEmulator) -> OpenAIEmulator:
    emu.reset()
    return emu


@pytest.fixture(scope="module")
def ogw(emu: OpenAIEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    up = {"provider": "openai", "base_url": emu.base_url + "/v1", "api_key": "${TEST_OPENAI_KEY}"}
    config = {
        "server": {"ping_interval": 0.3, "key_refresh_interval": 0.2},
        "retries": {"max_attempts": 1},
        "models": [
            {"id": "gpt-emu", "upstream": {**up, "model": "gpt-4o-mini"}, "pricing": {"input": 0.15, "output": 0.6}},
            {"id": "gpt-4o", "upstream": up},
            {"id": "gpt-4", "upstream": up},
            {"id": "gpt-azure", "upstream": {"provider": "openai", "base_url": emu.base_url,
                                             "api_key": "${TEST_OPENAI_KEY}", "api_version": "2024-10-21",
                                             "deployment": "prod-4o"}},
            {"id": "gpt-then-mock", "upstream": up, "fallbacks": ["tollway-mock"]},
            {"id": "gpt-slow-first-byte", "upstream": {**up, "first_byte_timeout": 0.3}},
            {"id": "tollway-mock", "upstream": {"provider": "mock"}},
        ],
    }
    gw = start_gateway(tmp_path_factory.mktemp("openai-gw"), config, env={"TEST_OPENAI_KEY": OPENAI_KEY})
    yield gw
    gw.stop()


@pytest.fixture
def claude(ogw: Gateway) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=ogw.base_url, api_key=ogw.key, max_retries=0)


@pytest.fixture
def gpt(ogw: Gateway) -> openai.OpenAI:
    return openai.OpenAI(base_url=ogw.base_url + "/v1", api_key=ogw.key, max_retries=0)


def _args(fragments: str, n: int) -> list[str]:
    step = -(-len(fragments) // n)
    return [fragments[i : i + step] for i in range(0, len(fragments), step)]


# -- the Anthropic SDK over an OpenAI upstream ----------------------------------------------------


def test_anthropic_sdk_message_is_translated_both_ways(claude: anthropic.Anthropic, oai: OpenAIEmulator) -> None:
    msg = claude.messages.create(model="gpt-emu", max_tokens=300, system="Be brief.",
                                 messages=[{"role": "user", "content": "hi"}])
    assert msg.model == "gpt-emu"  # the id the client asked for, not the upstream's
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello from the OpenAI emulator."
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == 7 and msg.usage.input_tokens > 0
    sent = oai.received[0]
    assert sent.path == "/v1/chat/completions" and sent.headers["authorization"] == f"Bearer {OPENAI_KEY}"
    assert "x-api-key" not in sent.headers and "anthropic-version" not in sent.headers
    assert sent.json == {"model": "gpt-4o-mini", "max_tokens": 300, "messages": [
        {"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]}


def test_anthropic_sdk_streams_tool_call_assembled_from_fragments(claude: anthropic.Anthropic,
                                                                  oai: OpenAIEmulator) -> None:
    args = '{"command": "ls -la /tmp"}'
    oai.script(SSEReply(stream_chunks("gpt-4o-mini", "Let me look.",
                                      tool_calls=[ToolCall("functions.Bash:0", "Bash", _args(args, 4))],
                                      prompt_tokens=40, completion_tokens=12)))
    with claude.messages.stream(model="gpt-emu", max_tokens=200, tools=[BASH],  # type: ignore[list-item]
                                messages=[{"role": "user", "content": "list /tmp"}]) as stream:
        events = [e.type for e in stream]
        final = stream.get_final_message()
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert [b.type for b in final.content] == ["text", "tool_use"]
    tool = final.content[1]
    assert tool.type == "tool_use" and tool.name == "Bash" and tool.input == {"command": "ls -la /tmp"}
    assert tool.id.startswith("twid_")  # `functions.Bash:0` is no valid Anthropic id
    assert final.stop_reason == "tool_use"
    assert final.usage.input_tokens == 40 and final.usage.output_tokens == 12
    assert oai.received[0].json["stream_options"] == {"include_usage": True}

    # The tool result goes back upstream under the upstream's own id.
    claude.messages.create(model="gpt-emu", max_tokens=200, tools=[BASH],  # type: ignore[list-item]
                           messages=[{"role": "user", "content": "list /tmp"},
                                     {"role": "assistant", "content": final.content},  # type: ignore[typeddict-item]
                                     {"role": "user", "content": [
                                         {"type": "tool_result", "tool_use_id": tool.id, "content": "a b c"}]}])
    history = oai.received[1].json["messages"]
    assert history[1]["tool_calls"][0]["id"] == "functions.Bash:0"
    assert history[2] == {"role": "tool", "tool_call_id": "functions.Bash:0", "content": "a b c"}


def test_upstream_error_becomes_anthropic_envelope_with_its_status(claude: anthropic.Anthropic,
                                                                   oai: OpenAIEmulator) -> None:
    oai.script(JSONReply(400, error_body("This model's maximum context length is 128000 tokens.",
                                         code="context_length_exceeded", param="messages")))
    with pytest.raises(anthropic.BadRequestError) as err:
        claude.messages.create(model="gpt-emu", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert err.value.status_code == 400
    body: Any = err.value.body
    assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    assert body["error"]["message"].startswith("This model's maximum context length")
    assert err.value.response.headers["request-id"].startswith("req_")

    oai.script(JSONReply(429, error_body("Rate limit reached", "requests", "rate_limit_exceeded"),
                         headers={"retry-after": "7"}))
    with pytest.raises(anthropic.RateLimitError) as limited:
        claude.messages.create(model="gpt-emu", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert limited.value.response.headers["retry-after"] == "7"


def test_midstream_upstream_error_ends_anthropic_stream_with_error_event(claude: anthropic.Anthropic,
                                                                       oai: OpenAIEmulator) -> None:
    chunks = stream_chunks("gpt-4o-mini", "partial answer here", done=False, include_usage=False)[:3]
    chunks.append(b"data: " + orjson.dumps(error_body("The server had an error", "server_error")) + b"\n\n")
    oai.script(SSEReply(chunks))
    with pytest.raises(anthropic.APIStatusError) as err, \
            claude.messages.stream(model="gpt-emu", max_tokens=50,
                                   messages=[{"role": "user", "content": "hi"}]) as stream:
        for _ in stream:
            pass
    assert "The server had an error" in str(err.value)


def test_streams_reuse_the_pooled_upstream_connection(claude: anthropic.Anthropic, oai: OpenAIEmulator) -> None:
    # A pause between chunks, so `[DONE]` and the end of the body come after the usage chunk that
    # completes the message: the adapter must still read them to give the connection back.
    oai.script(*(SSEReply(stream_chunks("gpt-4o-mini", "Hello from the OpenAI emulator."), delay=0.02)
                 for _ in range(3)))
    for _ in range(3):
        with claude.messages.stream(model="gpt-emu", max_tokens=20, messages=[{"role": "user", "content": "hi"}]) as s:
            assert s.get_final_text() == "Hello from the OpenAI emulator."
    assert len(oai.peers) == 3 and len(set(oai.peers)) == 1, oai.peers


def test_server_ignoring_stream_flag_still_yields_a_stream(claude: anthropic.Anthropic, oai: OpenAIEmulator) -> None:
    oai.script(JSONReply(body=chat_completion("gpt-4o-mini", "whole answer at once")))
    with claude.messages.stream(model="gpt-emu", max_tokens=50, messages=[{"role": "user", "content": "hi"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "whole answer at once" and final.stop_reason == "end_turn" and final.usage.output_tokens == 7


def test_azure_deployment_url_and_api_key_header(claude: anthropic.Anthropic, oai: OpenAIEmulator) -> None:
    msg = claude.messages.create(model="gpt-azure", max_tokens=10, messages=[{"role": "user", "content": "hi"}])
    assert msg.model == "gpt-azure"
    sent = oai.received[0]
    assert sent.path == "/openai/deployments/prod-4o/chat/completions" and sent.query == "api-version=2024-10-21"
    assert sent.headers["api-key"] == OPENAI_KEY and "authorization" not in sent.headers


# -- count_tokens: OpenAI's tokenizer, OpenAI's published counts ----------------------------------


def test_local_count_matches_openai_reported_prompt_tokens() -> None:
    """The cookbook's two examples, counted by OpenAI's API: 124/129 and 101/105 (module doc of
    tollway.wire.tokens_openai)."""
    weather = {"messages": [{"role": "system", "content": WEATHER_SYSTEM}, {"role": "user", "content": WEATHER_USER}],
               "tools": [{"type": "function", "function": {"name": "get_current_weather",
                                                           "description": "Get the current weather in a given location",
                                                           "parameters": WEATHER_SCHEMA}}]}
    assert count_chat_tokens({"messages": COOKBOOK_MESSAGES}, "o200k_base") == 124  # gpt-4o, gpt-4o-mini
    assert count_chat_tokens({"messages": COOKBOOK_MESSAGES}, "cl100k_base") == 129  # gpt-4, gpt-3.5-turbo
    assert count_chat_tokens(weather, "o200k_base") == 101
    assert count_chat_tokens(weather, "cl100k_base") == 105


@pytest.mark.parametrize(("model", "expected"), [("gpt-4o", 101), ("gpt-4", 105)])
def test_count_tokens_on_openai_model_through_the_gateway(claude: anthropic.Anthropic, oai: OpenAIEmulator,
                                                          model: str, expected: int) -> None:
    counted = claude.messages.count_tokens(
        model=model, system=WEATHER_SYSTEM, messages=[{"role": "user", "content": WEATHER_USER}],
        tools=[{"name": "get_current_weather", "description": "Get the current weather in a given location",
                "input_schema": WEATHER_SCHEMA}])  # type: ignore[list-item]
    assert counted.input_tokens == expected
    assert oai.received == []  # counted locally: nothing went upstream


# -- the OpenAI SDK through the gateway to an OpenAI upstream: passthrough -------------------------


def test_openai_sdk_body_passes_through(gpt: openai.OpenAI, oai: OpenAIEmulator) -> None:
    resp = gpt.chat.completions.create(
        model="gpt-emu", messages=[{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "hi"}],
        temperature=1.7, seed=7, logit_bias={"1734": -100}, presence_penalty=0.5, max_completion_tokens=64,
        user="ann@example.com", metadata={"team": "x"}, response_format={"type": "json_object"},
    )
    assert resp.model == "gpt-emu" and resp.choices[0].message.content == "Hello from the OpenAI emulator."
    assert resp.usage is not None and resp.usage.completion_tokens == 7
    sent = oai.received[0].json
    # Kept as the client sent it (a translation would clamp temperature to 1, drop seed/logit_bias…).
    assert sent["model"] == "gpt-4o-mini" and sent["temperature"] == 1.7 and sent["seed"] == 7
    assert sent["logit_bias"] == {"1734": -100} and sent["presence_penalty"] == 0.5
    assert sent["max_completion_tokens"] == 64 and sent["response_format"] == {"type": "json_object"}
    assert sent["messages"] == [{"role": "developer", "content": "Be terse."}, {"role": "user", "content": "hi"}]
    assert "user" not in sent and "metadata" not in sent and "stream" not in sent


def test_openai_sdk_stream_passes_through_with_usage(gpt: openai.OpenAI, oai: OpenAIEmulator) -> None:
    chunks = list(gpt.chat.completions.create(model="gpt-emu", messages=[{"role": "user", "content": "hi"}],
                                              stream=True, stream_options={"include_usage": True}, seed=3))
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello from the OpenAI emulator."
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 7
    assert all(c.model == "gpt-emu" for c in chunks)
    sent = oai.received[0].json
    assert sent["seed"] == 3 and sent["stream"] is True and sent["stream_options"] == {"include_usage": True}


def test_passthrough_restores_upstream_tool_ids(gpt: openai.OpenAI, oai: OpenAIEmulator) -> None:
    oai.script(JSONReply(body=chat_completion("gpt-4o-mini", None, tool_calls=[
        ToolCall("functions.Bash:0", "Bash", ['{"command": "date"}'])])))
    first = gpt.chat.completions.create(model="gpt-emu", tools=[BASH_FN],  # type: ignore[list-item]
                                        messages=[{"role": "user", "content": "what day is it"}])
    call = first.choices[0].message.tool_calls[0]  # type: ignore[index]
    assert call.id.startswith("twid_") and first.choices[0].finish_reason == "tool_calls"
    gpt.chat.completions.create(model="gpt-emu", tools=[BASH_FN], seed=1, messages=[  # type: ignore[list-item]
        {"role": "user", "content": "what day is it"},
        first.choices[0].message.model_dump(exclude_none=True),  # type: ignore[misc]
        {"role": "tool", "tool_call_id": call.id, "content": "Monday"},
    ])
    sent = oai.received[1].json
    assert sent["seed"] == 1  # passed through
    assert sent["messages"][1]["tool_calls"][0]["id"] == "functions.Bash:0"
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": "functions.Bash:0", "content": "Monday"}


def test_passthrough_with_a_non_openai_fallback(gpt: openai.OpenAI, oai: OpenAIEmulator) -> None:
    gpt.chat.completions.create(model="gpt-then-mock", temperature=1.7, seed=7, messages=HI)
    assert oai.received[0].json["temperature"] == 1.7 and oai.received[0].json["seed"] == 7
    # The OpenAI deployment fails: the mock fallback answers from the canonical request.
    oai.script(JSONReply(503, error_body("The engine is currently overloaded", "server_error")))
    resp = gpt.chat.completions.create(model="gpt-then-mock", temperature=1.7, seed=7, messages=HI)
    assert resp.model == "gpt-then-mock"
    assert resp.choices[0].message.content == "Hello from the Tollway mock model. You said: hi"


def test_dlp_redaction_turns_passthrough_off(gpt: openai.OpenAI, oai: OpenAIEmulator) -> None:
    """End to end: the default DLP policy redacts a secret in the canonical request, so the
    client's own (unredacted) body must not be what reaches the OpenAI upstream."""
    secret = "AKIAQWERTYUIOPASDFGH"
    resp = gpt.chat.completions.create(model="gpt-emu", seed=5, temperature=1.7,
                                       messages=[{"role": "user", "content": f"deploy with {secret}"}])
    assert resp.choices[0].message.content
    sent = oai.received[0]
    assert secret not in sent.body.decode() and "[REDACTED:aws_access_key:1]" in sent.body.decode()
    assert "seed" not in sent.json and sent.json["temperature"] == 1.0  # translated from the redacted form


def test_passthrough_sends_the_native_body_only_when_given_one() -> None:
    """The client's body rides on the request as `native` (no registry beside it): the adapter
    sends it, with the deployment's model id, when the pipeline hands it on, and translates the
    canonical request when it does not (the pipeline drops it once a step changed the request)."""
    chat = {"model": "gpt-emu", "messages": [{"role": "user", "content": "my key is sk-live-123"}], "seed": 1}
    canonical = chat_request_to_messages(chat)
    native = passthrough_body(chat)
    assert native is not None
    cfg = UpstreamConfig(provider="openai")
    canonical["model"] = "gpt-4o-mini"  # what the pipeline does per deployment
    sent, _, used = chat_request(canonical, cfg, stream=False, native=native)
    assert used and sent["seed"] == 1 and sent["model"] == "gpt-4o-mini"
    assert native["model"] == "gpt-emu"  # the client's body itself is never modified
    redacted = {**canonical, "messages": [{"role": "user", "content": [{"type": "text", "text": "key [X]"}]}]}
    sent, _, used = chat_request(redacted, cfg, stream=False)
    assert not used and "seed" not in sent and sent["messages"] == [{"role": "user", "content": "key [X]"}]


def test_passthrough_only_for_bodies_the_translation_carries_completely() -> None:
    named = {"model": "m", "messages": [{"role": "user", "name": "ann", "content": "hi"}]}
    audio = {"model": "m", "messages": [{"role": "user", "content": [
        {"type": "input_audio", "input_audio": {"data": "AAAA", "format": "wav"}}]}]}
    assert passthrough_body(named) is None and passthrough_body(audio) is None
    plain = {"model": "m", "messages": [{"role": "user", "content": [{"type": "text", "text": "hi"}]}], "n": 3,
             "user": "u", "prediction": {"type": "content", "content": "x"}, "top_logprobs": 2}
    assert passthrough_body(plain) == {"model": "m", "messages": plain["messages"], "top_logprobs": 2}


def test_upstream_error_code_reaches_openai_client(gpt: openai.OpenAI, oai: OpenAIEmulator) -> None:
    oai.script(JSONReply(400, error_body("This model's maximum context length is 128000 tokens.",
                                         code="context_length_exceeded", param="messages")))
    with pytest.raises(openai.BadRequestError) as err:
        gpt.chat.completions.create(model="gpt-emu", messages=[{"role": "user", "content": "hi"}])
    assert err.value.code == "context_length_exceeded" and err.value.param == "messages"
    assert err.value.type == "invalid_request_error"
    assert err.value.request_id is not None and err.value.request_id.startswith("req_")

    oai.script(JSONReply(503, error_body("The engine is currently overloaded", "server_error")))
    with pytest.raises(openai.InternalServerError) as busy:
        gpt.chat.completions.create(model="gpt-emu", messages=[{"role": "user", "content": "hi"}])
    assert busy.value.status_code == 503 and busy.value.response.headers["retry-after"]


def test_openai_sdk_streams_upstream_tool_call_fragments(gpt: openai.OpenAI, oai: OpenAIEmulator) -> None:
    args = '{"command": "echo hi"}'
    oai.script(SSEReply(stream_chunks("gpt-4o-mini", tool_calls=[ToolCall("call_1", "Bash", _args(args, 3))])))
    chunks = list(gpt.chat.completions.create(model="gpt-emu", tools=[BASH_FN],  # type: ignore[list-item]
                                              messages=[{"role": "user", "content": "say hi"}], stream=True))
    calls = [tc for c in chunks if c.choices for tc in c.choices[0].delta.tool_calls or ()]
    assert calls[0].id == "call_1" and calls[0].function is not None and calls[0].function.name == "Bash"
    assert json.loads("".join(tc.function.arguments or "" for tc in calls if tc.function)) == {"command": "echo hi"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"


# -- Claude Code over an OpenAI upstream: a real Bash tool round trip -----------------------------


def _bash_then_quote(body: dict[str, Any]) -> JSONReply | SSEReply | None:
    """First turn: a Bash call whose arguments arrive in four fragments; once a tool result is in
    the history: text quoting it."""
    model = str(body["model"])
    results = [m for m in body["messages"] if m.get("role") == "tool"]
    if results:
        text = f"The command printed: {str(results[-1].get('content')).strip()}"
        return SSEReply(stream_chunks(model, text)) if body.get("stream") else JSONReply(
            body=chat_completion(model, text))
    names = {t.get("function", {}).get("name") for t in body.get("tools") or ()}
    if "Bash" not in names or not body.get("stream"):
        return None
    args = orjson.dumps({"command": "echo tollway-$((6*7))", "description": "Print a greeting"}).decode()
    return SSEReply(stream_chunks(model, tool_calls=[ToolCall("call_bash_1", "Bash", _args(args, 4))]))


def test_claude_code_runs_bash_over_openai_upstream(ogw: Gateway, oai: OpenAIEmulator, tmp_path: Path) -> None:
    oai.responder = _bash_then_quote
    home = tmp_path / "home"
    home.mkdir()
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(home),
        "ANTHROPIC_BASE_URL": ogw.base_url, "ANTHROPIC_API_KEY": ogw.key,
        "DISABLE_TELEMETRY": "1", "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1", "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1", "CLAUDE_CODE_MAX_RETRIES": "0",
    }
    proc = subprocess.run(
        [str(CLAUDE), "-p", "print the greeting", "--output-format", "json", "--model", "gpt-emu",
         "--allowedTools", "Bash"],
        capture_output=True, text=True, env=env, timeout=180, cwd=tmp_path, stdin=subprocess.DEVNULL,
    )
    try:
        result = json.loads(proc.stdout)
    except json.JSONDecodeError:
        pytest.fail(f"claude printed no JSON (exit {proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    assert result["is_error"] is False, result
    assert "tollway-42" in result["result"] and result["result"].startswith("The command printed:")
    chats = [r.json for r in oai.received if r.path == "/v1/chat/completions"]
    with_result = [b for b in chats if any(m.get("role") == "tool" for m in b["messages"])]
    assert with_result, [list(b) for b in chats]
    tool_message = next(m for m in with_result[0]["messages"] if m.get("role") == "tool")
    assert tool_message["tool_call_id"] == "call_bash_1" and "tollway-42" in tool_message["content"]
    assert all(b["model"] == "gpt-4o-mini" for b in chats)


def test_models_list_includes_openai_models(ogw: Gateway) -> None:
    ids = [m["id"] for m in httpx.get(ogw.base_url + "/v1/models", headers={"x-api-key": ogw.key}).json()["data"]]
    assert {"gpt-emu", "gpt-azure"} <= set(ids)


def test_first_byte_timeout_applies_to_openai_upstreams(claude: anthropic.Anthropic, oai: OpenAIEmulator) -> None:
    """The same transport rules as the Anthropic adapter: an upstream silent past
    `first_byte_timeout` is a clean 504 timeout_error, not a hung request."""
    from tests.emulator import JSONReply

    oai.script(JSONReply(200, {"late": True}, delay=1.5))
    with pytest.raises(anthropic.APIStatusError) as exc:
        claude.messages.create(model="gpt-slow-first-byte", max_tokens=5,
                               messages=[{"role": "user", "content": "hi"}])
    assert exc.value.status_code == 504
    assert exc.value.body["error"]["type"] == "timeout_error"

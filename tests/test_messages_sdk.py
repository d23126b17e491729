"""The stock `anthropic` SDK against Tollway's built-in mock model: create, stream, tools,
count_tokens, models, and the mock's own contract (max_tokens, stop_sequences, cache usage)."""

from __future__ import annotations

from typing import Any

import anthropic
import pytest

BASH = {
    "name": "Bash",
    "description": "Run a shell command",
    "input_schema": {"type": "object", "properties": {"command": {"type": "string"}}, "required": ["command"]},
}


def test_create_returns_a_message(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(model="tollway-mock", max_tokens=100,
                                 messages=[{"role": "user", "content": "ping"}])
    assert msg.type == "message" and msg.role == "assistant" and msg.model == "tollway-mock"
    assert msg.content[0].type == "text"
    assert msg.content[0].text == "Hello from the Tollway mock model. You said: ping"
    assert msg.stop_reason == "end_turn"
    assert msg.usage.output_tokens == len(msg.content[0].text.split())
    assert msg.usage.input_tokens > 0
    assert msg._request_id and msg._request_id.startswith("req_")


def test_stream_arrives_in_several_chunks(client: anthropic.Anthropic) -> None:
    deltas: list[str] = []
    with client.messages.stream(model="tollway-mock-slow", max_tokens=100,
                                messages=[{"role": "user", "content": "stream this please"}]) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "text_delta":
                deltas.append(event.delta.text)
        final = stream.get_final_message()
    assert len(deltas) > 3
    assert "".join(deltas) == final.content[0].text
    assert final.content[0].text.endswith("You said: stream this please")
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == len(deltas)


def test_max_tokens_cuts_the_answer(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(model="tollway-mock", max_tokens=3,
                                 messages=[{"role": "user", "content": "a long answer please"}])
    assert msg.stop_reason == "max_tokens"
    assert msg.usage.output_tokens == 3
    assert msg.content[0].text == "Hello from the "


def test_stop_sequence_ends_the_answer(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(model="tollway-mock", max_tokens=100, stop_sequences=["mock"],
                                 messages=[{"role": "user", "content": "hi"}])
    assert msg.stop_reason == "stop_sequence"
    assert msg.stop_sequence == "mock"
    assert msg.content[0].text == "Hello from the Tollway "


def _tool_turn(client: anthropic.Anthropic, stream: bool) -> Any:
    messages: list[dict[str, Any]] = [{"role": "user", "content": 'call Bash with {"command": "echo hi"}'}]
    kwargs: dict[str, Any] = {"model": "tollway-mock", "max_tokens": 200, "tools": [BASH]}
    if stream:
        with client.messages.stream(messages=messages, **kwargs) as s:
            first = s.get_final_message()
    else:
        first = client.messages.create(messages=messages, **kwargs)
    assert first.stop_reason == "tool_use"
    tool_use = next(b for b in first.content if b.type == "tool_use")
    assert tool_use.name == "Bash" and tool_use.input == {"command": "echo hi"}
    messages += [
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use.id, "content": "hi"}]},
    ]
    if stream:
        with client.messages.stream(messages=messages, **kwargs) as s:
            return s.get_final_message()
    return client.messages.create(messages=messages, **kwargs)


@pytest.mark.parametrize("stream", [False, True], ids=["json", "sse"])
def test_tool_round_trip(client: anthropic.Anthropic, stream: bool) -> None:
    final = _tool_turn(client, stream)
    assert final.stop_reason == "end_turn"
    assert final.content[0].text == "The tool returned: hi"


def test_tool_arguments_stream_as_input_json_deltas(client: anthropic.Anthropic) -> None:
    fragments = []
    with client.messages.stream(model="tollway-mock", max_tokens=200, tools=[BASH],
                                messages=[{"role": "user", "content": 'call Bash with {"command": "ls -la /tmp"}'}]
                                ) as stream:
        for event in stream:
            if event.type == "content_block_delta" and event.delta.type == "input_json_delta":
                fragments.append(event.delta.partial_json)
        final = stream.get_final_message()
    assert len(fragments) >= 2
    assert "".join(fragments) == '{"command":"ls -la /tmp"}'
    assert [b.type for b in final.content] == ["text", "tool_use"]


def test_count_tokens_matches_the_mock_usage(client: anthropic.Anthropic) -> None:
    body: dict[str, Any] = {"model": "tollway-mock", "system": "You are terse.", "tools": [BASH],
                            "messages": [{"role": "user", "content": "count me " * 20}]}
    counted = client.messages.count_tokens(**body)
    used = client.messages.create(max_tokens=5, **body)
    assert counted.input_tokens > 20
    assert counted.input_tokens == used.usage.input_tokens


def test_cache_control_reports_cache_write_then_read(client: anthropic.Anthropic) -> None:
    system = [{"type": "text", "text": "A long shared system prompt. " * 30, "cache_control": {"type": "ephemeral"}}]
    history = [{"role": "user", "content": "first"}, {"role": "assistant", "content": "ok"}]
    first = client.messages.create(model="tollway-mock", max_tokens=10, system=system,
                                   messages=[*history, {"role": "user", "content": "one"}])
    second = client.messages.create(model="tollway-mock", max_tokens=10, system=system,
                                    messages=[*history, {"role": "user", "content": "two"}])
    assert first.usage.cache_creation_input_tokens > 0 and first.usage.cache_read_input_tokens == 0
    assert second.usage.cache_read_input_tokens == first.usage.cache_creation_input_tokens
    assert second.usage.cache_creation_input_tokens == 0


def test_no_cache_fields_without_cache_control(client: anthropic.Anthropic) -> None:
    msg = client.messages.create(model="tollway-mock", max_tokens=10, messages=[{"role": "user", "content": "x"}])
    assert msg.usage.cache_creation_input_tokens == 0 and msg.usage.cache_read_input_tokens == 0


def test_models_list_pages_through_every_model(client: anthropic.Anthropic) -> None:
    first = client.models.list(limit=1)
    assert len(first.data) == 1 and first.has_more
    ids = [m.id for m in client.models.list(limit=1)]
    assert ids == ["tollway-mock", "tollway-mock-slow", "claude-sonnet-4-5-20250929", "claude-renamed"]
    sonnet = client.models.retrieve("claude-sonnet-4-5-20250929")
    assert sonnet.display_name == "Claude Sonnet 4.5"
    assert sonnet.created_at.year == 2025


def test_models_list_before_id_pages_backwards(client: anthropic.Anthropic) -> None:
    page = client.models.list(before_id="claude-renamed", limit=2)
    assert [m.id for m in page.data] == ["tollway-mock-slow", "claude-sonnet-4-5-20250929"]
    assert page.has_more


def test_unknown_model_is_not_found(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as exc:
        client.messages.create(model="claude-nope", max_tokens=5, messages=[{"role": "user", "content": "x"}])
    assert exc.value.body["error"]["message"] == "model: claude-nope"
    with pytest.raises(anthropic.NotFoundError):
        client.models.retrieve("claude-nope")


def test_models_shape_serves_both_sdk_families(gateway: Any) -> None:
    import httpx

    body = httpx.get(gateway.base_url + "/v1/models", headers={"x-api-key": gateway.key}).json()
    assert body["object"] == "list" and body["first_id"] == "tollway-mock"
    item = body["data"][2]
    assert item["type"] == "model" and item["object"] == "model"
    assert item["created_at"] == "2025-09-29T00:00:00Z" and item["created"] == 1759104000
    assert item["owned_by"] == "anthropic"

"""Translators between the OpenAI Responses and Anthropic Messages dialects. No network.

Golden fixtures live in `tests/golden/responses/*.json`: each holds an input (a Responses
request, an Anthropic Message, or an Anthropic event list) and the exact expected output. What
they produce is also checked against openai-python's own types: every Response object is
parsed with `Response.model_validate`, every stream event with the `ResponseStreamEvent` type
adapter, every stored item with the `ResponseItem` adapter, and every stream is run through the
SDK's own stream accumulator (`ResponseStreamState`, what `client.responses.stream()` uses).
Every stream also goes through `assert_responses_stream_discipline`.

To re-record the expected halves after a deliberate change: `TOLLWAY_REGEN_GOLDEN=1 pytest
tests/test_translate_responses.py`, then review the diff — a golden file is only as good as its
review.
"""

from __future__ import annotations

import os
import random
from pathlib import Path
from typing import Any

import orjson
import pytest
from openai._types import omit
from openai.lib.streaming.responses._responses import ResponseStreamState
from openai.types.responses import Response, ResponseItem, ResponseStreamEvent
from pydantic import TypeAdapter

from tollway.wire.anthropic_to_responses import (
    MessagesStreamToResponses,
    frame,
    item_id,
    message_to_response,
    response_output_items,
    response_skeleton,
    response_status,
    response_usage,
)
from tollway.wire.responses_items import ResponsesInvalid, input_items
from tollway.wire.responses_to_anthropic import responses_request_to_messages
from tollway.wire.sse_decode import SSEDecoder

GOLDEN = Path(__file__).parent / "golden" / "responses"
REGEN = os.environ.get("TOLLWAY_REGEN_GOLDEN") == "1"
EVENT = TypeAdapter(ResponseStreamEvent)
ITEM = TypeAdapter(ResponseItem)
TERMINAL = {"response.completed", "response.incomplete", "response.failed"}
ID_PREFIX = {"message": "msg_", "function_call": "fc_", "reasoning": "rs_"}
BASH = {"type": "function", "name": "Bash",
        "parameters": {"type": "object", "properties": {"command": {"type": "string"}}}}
PARAMS: dict[str, Any] = {
    "response_id": "resp_test",
    "model": "claude-sonnet-4-5",
    "created_at": 1767225600,
    "request": {"model": "claude-sonnet-4-5", "input": "hi", "tools": [BASH]},
    "previous_response_id": None,
    "conversation_id": None,
    "store": True,
}


# ---------------------------------------------------------------------------------------------
# Stream discipline


def assert_responses_stream_discipline(events: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """The rules a Responses event stream must obey for openai-python and codex; returns the
    final Response object.

    * every data object has `type` equal to its event name and `sequence_number` 0, 1, 2…, and
      parses as openai-python's `ResponseStreamEvent`; no `[DONE]` anywhere;
    * `response.created` then `response.in_progress` first (status in_progress, no output);
    * items added with output_index 0, 1, 2…, each added once and done once, never two open;
      every item-level event names the open item by `output_index` and `item_id`;
    * content parts / summary parts opened in order, deltas only to an open part, and each
      `.done` equal to the concatenation of its deltas (text, summary, function arguments);
    * exactly one terminal event, last: `response.completed` / `.incomplete` (every item done,
      output equal to the done items, usage present) or `response.failed` right after `error`;
    * the response id never changes; the final response parses as openai-python's `Response`.
    """
    assert events, "an empty stream"
    for n, (name, data) in enumerate(events):
        assert data["type"] == name, f"event {name} carries type {data['type']}"
        assert data["sequence_number"] == n, f"sequence_number {data['sequence_number']} at position {n}"
        EVENT.validate_python(data)
        framed = frame(name, data)
        assert framed == b"event: " + name.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"
        assert b"[DONE]" not in framed
    names = [name for name, _ in events]
    assert names[:2] == ["response.created", "response.in_progress"], names[:2]
    rid = events[0][1]["response"]["id"]
    for _, data in events[:2]:
        assert data["response"]["status"] == "in_progress" and data["response"]["output"] == []
    assert names[-1] in TERMINAL, f"stream ends with {names[-1]}"
    assert sum(name in TERMINAL for name in names) == 1, "more than one terminal event"
    failed = names[-1] == "response.failed"
    if failed:
        assert names[-2] == "error" and names.count("error") == 1
    else:
        assert "error" not in names

    added: list[dict[str, Any]] = []
    done: dict[int, dict[str, Any]] = {}
    open_index: int | None = None
    parts: dict[tuple[int, int], str] = {}  # (output_index, content/summary index) → text so far
    closed_parts: set[tuple[int, int]] = set()
    arguments: dict[int, str] = {}
    for name, data in events[2:]:
        if name in TERMINAL or name == "error":
            continue
        if name == "response.output_item.added":
            assert open_index is None, "an item added while another is open"
            assert data["output_index"] == len(added), "output_index out of order"
            item = data["item"]
            assert item["id"].startswith(ID_PREFIX[item["type"]]) and item["status"] == "in_progress"
            added.append(item)
            open_index = data["output_index"]
            if item["type"] == "function_call":
                assert item["arguments"] == "" and item["call_id"] and item["name"]
                arguments[open_index] = ""
            continue
        assert open_index is not None and data["output_index"] == open_index, f"{name} for an item that is not open"
        current = added[open_index]
        if name == "response.output_item.done":
            assert data["item"]["id"] == current["id"] and data["item"]["type"] == current["type"]
            assert data["item"]["status"] in ("completed", "incomplete")
            done[open_index] = data["item"]
            open_index = None
            continue
        assert data["item_id"] == current["id"], f"{name} names item {data['item_id']}, open is {current['id']}"
        if name == "response.content_part.added":
            key = (open_index, data["content_index"])
            assert key not in parts and data["content_index"] == sum(k[0] == open_index for k in parts)
            parts[key] = data["part"]["text"]
        elif name == "response.reasoning_summary_part.added":
            key = (open_index, data["summary_index"])
            assert key not in parts
            parts[key] = data["part"]["text"]
        elif name in ("response.output_text.delta", "response.reasoning_summary_text.delta"):
            key = (open_index, data.get("content_index", data.get("summary_index")))
            assert key in parts and key not in closed_parts, f"{name} to a part that is not open"
            parts[key] += data["delta"]
        elif name in ("response.output_text.done", "response.reasoning_summary_text.done"):
            key = (open_index, data.get("content_index", data.get("summary_index")))
            assert data["text"] == parts[key], "text .done differs from its deltas"
        elif name in ("response.content_part.done", "response.reasoning_summary_part.done"):
            key = (open_index, data.get("content_index", data.get("summary_index")))
            assert data["part"]["text"] == parts[key]
            closed_parts.add(key)
        elif name == "response.function_call_arguments.delta":
            arguments[open_index] += data["delta"]
        elif name == "response.function_call_arguments.done":
            assert data["arguments"] == arguments[open_index], "arguments .done differs from its deltas"
            assert data["name"] == current["name"]
            if not failed:
                orjson.loads(data["arguments"])  # the whole arguments of a finished call parse
        else:
            raise AssertionError(f"unexpected event {name}")

    final = events[-1][1]["response"]
    assert final["id"] == rid
    Response.model_validate(final)
    assert [i["id"] for i in final["output"]] == [i["id"] for i in added], "final output differs from the items added"
    if failed:
        assert final["status"] == "failed" and final["error"]["code"] == events[-2][1]["code"]
    else:
        assert open_index is None and len(done) == len(added), "an item was never done"
        assert final["output"] == [done[i] for i in range(len(added))], "final output differs from the done items"
        assert final["usage"] is not None and final["usage"]["total_tokens"] >= 0
        assert final["status"] == ("completed" if names[-1] == "response.completed" else "incomplete")
        for key in parts:
            assert key in closed_parts, "a content part never closed"
    return final


def sdk_accumulate(events: list[tuple[str, dict[str, Any]]]) -> Any:
    """Run the stream through openai-python's own accumulator (`client.responses.stream()`)."""
    state: ResponseStreamState[Any] = ResponseStreamState(input_tools=omit, text_format=omit)
    for _, data in events:
        state.handle_event(EVENT.validate_python(data))
    return state


# ---------------------------------------------------------------------------------------------
# Golden runners


def run_stream(fixture: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    translator = MessagesStreamToResponses(response_skeleton(**fixture["params"]))
    events: list[tuple[str, dict[str, Any]]] = []
    for event in fixture["events"]:
        events.extend(translator.feed(event))
    if fixture.get("finish"):
        events.extend(translator.finish())
    assert translator.finish() == [], "finish() after the end must say nothing"
    return events


def run(fixture: dict[str, Any]) -> Any:
    kind = fixture["kind"]
    if kind == "responses_request_to_messages":
        return responses_request_to_messages(
            fixture["input"],
            fixture.get("history"),
            prefix_system=fixture.get("prefix_system"),
            extra_tools=fixture.get("extra_tools", ()),
        )
    if kind == "message_to_response":
        return message_to_response(fixture["input"], **fixture["params"])
    if kind == "messages_stream_to_responses":
        return [list(pair) for pair in run_stream(fixture)]
    if kind == "input_items":
        return input_items(fixture["input"], response_id=fixture["response_id"])
    raise AssertionError(f"unknown fixture kind {kind}")


FIXTURES = sorted(GOLDEN.glob("*.json"))


def test_there_is_a_golden_fixture_for_every_kind() -> None:
    kinds = {orjson.loads(p.read_bytes())["kind"] for p in FIXTURES}
    assert kinds == {"responses_request_to_messages", "message_to_response", "messages_stream_to_responses",
                     "input_items"}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden(path: Path) -> None:
    fixture = orjson.loads(path.read_bytes())
    actual = run(fixture)
    if REGEN:
        fixture["expected"] = actual
        path.write_bytes(orjson.dumps(fixture, option=orjson.OPT_INDENT_2) + b"\n")
    assert actual == fixture["expected"]
    assert orjson.loads(orjson.dumps(actual)) == actual  # what goes on the wire is what we compared
    kind = fixture["kind"]
    if kind == "message_to_response":
        parsed = Response.model_validate(actual)
        assert parsed.output_text == fixture["output_text"]
    elif kind == "messages_stream_to_responses":
        events = [(name, data) for name, data in actual]
        final = assert_responses_stream_discipline(events)
        state = sdk_accumulate(events)
        if final["status"] == "completed":
            assert state._completed_response is not None
            assert state._completed_response.output_text == Response.model_validate(final).output_text
    elif kind == "input_items":
        for item in actual:
            ITEM.validate_python(item)
        assert len({item["id"] for item in actual}) == len(actual)


# ---------------------------------------------------------------------------------------------
# Requests


def _request(**fields: Any) -> dict[str, Any]:
    return {"model": "claude-sonnet-4-5", "input": "hi", **fields}


@pytest.mark.parametrize(
    ("choice", "expected_choice", "expected_tools"),
    [
        ("auto", {"type": "auto"}, ["Bash", "get_weather"]),
        ("none", {"type": "none"}, ["Bash", "get_weather"]),
        ("required", {"type": "any"}, ["Bash", "get_weather"]),
        ({"type": "function", "name": "Bash"}, {"type": "tool", "name": "Bash"}, ["Bash", "get_weather"]),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "function", "name": "Bash"}]},
         {"type": "auto"}, ["Bash"]),
        ({"type": "allowed_tools", "mode": "required", "tools": [{"type": "function", "name": "get_weather"}]},
         {"type": "any"}, ["get_weather"]),
        (None, None, ["Bash", "get_weather"]),
    ],
    ids=["auto", "none", "required", "function", "allowed-auto", "allowed-required", "absent"],
)
def test_every_tool_choice_form(choice: Any, expected_choice: Any, expected_tools: list[str]) -> None:
    tools = [BASH, {"type": "function", "name": "get_weather", "description": "Weather", "strict": False}]
    body = _request(tools=tools, **({"tool_choice": choice} if choice is not None else {}))
    out = responses_request_to_messages(body)
    assert out.get("tool_choice") == expected_choice
    assert [t["name"] for t in out["tools"]] == expected_tools
    for tool in out["tools"]:
        assert tool["input_schema"]["type"] == "object"
    weather = next((t for t in out["tools"] if t["name"] == "get_weather"), None)
    if weather is not None:
        assert weather["description"] == "Weather" and weather["strict"] is False
        assert weather["input_schema"] == {"type": "object", "properties": {}}


def test_parallel_tool_calls_false_disables_parallel_use_on_the_choice() -> None:
    out = responses_request_to_messages(_request(tools=[BASH], tool_choice="required", parallel_tool_calls=False))
    assert out["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}


def test_reasoning_effort_uses_the_chat_budgets() -> None:
    for effort, budget in (("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 32768),
                           ("max", 32768)):
        out = responses_request_to_messages(_request(reasoning={"effort": effort}, temperature=0.5))
        assert out["thinking"] == {"type": "enabled", "budget_tokens": budget}, effort
        assert out["max_tokens"] == (4096 if budget < 4096 else budget + 4096) and "temperature" not in out
    out = responses_request_to_messages(_request(reasoning={"effort": "none"}, temperature=0.5))
    assert "thinking" not in out and out["temperature"] == 0.5 and out["max_tokens"] == 4096


def test_forced_tool_choice_turns_thinking_off() -> None:
    out = responses_request_to_messages(_request(tools=[BASH], tool_choice="required", reasoning={"effort": "high"}))
    assert "thinking" not in out and out["tool_choice"] == {"type": "any"}


def test_curated_prefix_goes_before_instructions_and_system_items() -> None:
    body = _request(instructions="Client instructions.", input=[
        {"role": "system", "content": "Client system item."},
        {"role": "user", "content": "hi"},
    ])
    out = responses_request_to_messages(body, prefix_system="Curated prompt.")
    assert [b["text"] for b in out["system"]] == ["Curated prompt.", "Client instructions.", "Client system item."]
    plain = responses_request_to_messages(body)
    assert [b["text"] for b in plain["system"]] == ["Client instructions.", "Client system item."]


def test_history_is_prepended_in_order() -> None:
    history = [
        {"id": "msg_a", "type": "message", "role": "user", "status": "completed",
         "content": [{"type": "input_text", "text": "first"}]},
        {"id": "msg_b", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "text": "answer one", "annotations": []}]},
    ]
    out = responses_request_to_messages(_request(input="second"), history)
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "first"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "answer one"}]},
        {"role": "user", "content": [{"type": "text", "text": "second"}]},
    ]
    # With history, `input` may be left out (a continuation that only replays).
    assert responses_request_to_messages({"model": "m"}, history)["messages"][0]["content"][0]["text"] == "first"


def test_a_function_call_output_may_answer_a_call_in_the_history() -> None:
    history = [
        {"type": "message", "role": "user", "content": "ls"},
        {"type": "function_call", "call_id": "toolu_1", "name": "Bash", "arguments": '{"command":"ls"}'},
    ]
    body = _request(tools=[BASH], input=[{"type": "function_call_output", "call_id": "toolu_1", "output": "a.txt"}])
    out = responses_request_to_messages(body, history)
    assert out["messages"][-1] == {
        "role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1", "content": "a.txt"}],
    }


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"input": "hi"}, "model", "invalid_body"),
        ({"model": "m"}, "input", "invalid_body"),
        (_request(input=42), "input", "invalid_body"),
        (_request(input=["hi"]), "input[0]", "invalid_body"),
        (_request(input=[{"content": "x"}]), "input[0].type", "invalid_body"),
        (_request(input=[{"type": "message", "content": "x"}]), "input[0].role", "invalid_body"),
        (_request(input=[{"role": "tool", "content": "x"}]), "input[0].role", "invalid_body"),
        (_request(input=[{"role": "user"}]), "input[0].content", "invalid_body"),
        (_request(input=[{"role": "user", "content": 7}]), "input[0].content", "invalid_body"),
        (_request(input=[{"role": "user", "content": [{"type": "input_video"}]}]), "input[0].content[0].type",
         "invalid_body"),
        (_request(input=[{"role": "user", "content": [{"type": "input_text"}]}]), "input[0].content[0].text",
         "invalid_body"),
        (_request(input=[{"role": "user", "content": [{"type": "input_image", "file_id": "file-abc"}]}]),
         "input[0].content[0].file_id", "unsupported_parameter"),
        (_request(input=[{"role": "user", "content": [{"type": "input_image"}]}]), "input[0].content[0].image_url",
         "invalid_body"),
        (_request(input=[{"role": "user", "content": [{"type": "input_image", "image_url": "ftp://x/y.png"}]}]),
         "input[0].content[0].image_url", "invalid_body"),
        (_request(input=[{"role": "user", "content": [{"type": "input_file", "file_id": "file-abc"}]}]),
         "input[0].content[0].file_id", "unsupported_parameter"),
        (_request(input=[{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]),
         "input[0].content[0].type", "unsupported_parameter"),
        (_request(input=[{"role": "assistant", "content": [
            {"type": "input_image", "image_url": "https://x/y.png"}]}]), "input[0].content[0].type", "invalid_body"),
        (_request(input=[{"role": "user", "content": "a"}, {"type": "function_call", "name": "f", "arguments": "{}"}]),
         "input[1].call_id", "invalid_body"),
        (_request(input=[{"type": "function_call", "call_id": "c", "arguments": "{}"}]), "input[0].name",
         "invalid_body"),
        (_request(input=[{"type": "function_call", "call_id": "c", "name": "f", "arguments": {"a": 1}}]),
         "input[0].arguments", "invalid_body"),
        (_request(input=[{"type": "function_call_output", "call_id": "c"}]), "input[0].output", "invalid_body"),
        (_request(input=[{"type": "function_call_output", "output": "x"}]), "input[0].call_id", "invalid_body"),
        (_request(input=[{"role": "user", "content": "a"}, {"type": "function_call", "call_id": "c1", "name": "f",
                                                           "arguments": "{}"},
                         {"type": "function_call_output", "call_id": "c2", "output": "x"}]),
         "input[2].call_id", "invalid_body"),
        (_request(input=[{"type": "item_reference", "id": "msg_1"}]), "input[0].type", "unsupported_parameter"),
        (_request(input=[{"type": "reasoning"}]), "input[0].summary", "invalid_body"),
        (_request(input=[{"type": "web_search_call"}]), "input[0].type", "invalid_body"),
        (_request(tools=[{"type": "web_search"}]), "tools[0].type", "unsupported_tool_type"),
        (_request(tools=[BASH, {"type": "function"}]), "tools[1].name", "invalid_body"),
        (_request(tools=[{"type": "function", "name": "f", "parameters": "x"}]), "tools[0].parameters",
         "invalid_body"),
        (_request(tools=[BASH], tool_choice="sometimes"), "tool_choice", "invalid_body"),
        (_request(tools=[BASH], tool_choice={"type": "function"}), "tool_choice.name", "invalid_body"),
        (_request(tools=[BASH], tool_choice={"type": "file_search"}), "tool_choice.type", "unsupported_tool_type"),
        (_request(tools=[BASH], tool_choice={"type": "allowed_tools", "mode": "any", "tools": []}),
         "tool_choice.mode", "invalid_body"),
        (_request(max_output_tokens=0), "max_output_tokens", "invalid_body"),
        (_request(temperature="hot"), "temperature", "invalid_body"),
        (_request(text={"format": {"type": "json_schema", "name": "x"}}), "text.format.schema", "invalid_body"),
        (_request(text={"format": {"type": "yaml"}}), "text.format.type", "invalid_body"),
        (_request(instructions=["x"]), "instructions", "invalid_body"),
        (_request(input=[{"role": "system", "content": "only a system item"}]), "input", "invalid_body"),
    ],
)
def test_malformed_requests_name_the_param(body: dict[str, Any], param: str, code: str) -> None:
    with pytest.raises(ResponsesInvalid) as info:
        responses_request_to_messages(body)
    assert info.value.param == param, info.value.message
    assert info.value.code == code
    assert info.value.message and str(info.value) == info.value.message


def test_malformed_history_items_are_named_as_history() -> None:
    with pytest.raises(ResponsesInvalid) as info:
        responses_request_to_messages(_request(), [{"role": "user", "content": "ok"}, {"type": "function_call"}])
    assert info.value.param == "history[1].call_id"


def test_messages_are_worded_as_openai_words_them() -> None:
    with pytest.raises(ResponsesInvalid) as info:
        responses_request_to_messages(_request(input=[{"role": "robot", "content": "x"}]))
    assert info.value.message == (
        "Invalid value: 'robot'. Supported values are: 'user', 'assistant', 'system', and 'developer'."
    )
    with pytest.raises(ResponsesInvalid) as info:
        responses_request_to_messages(_request(input=[{"type": "function_call", "call_id": 3}]))
    assert info.value.message == (
        "Invalid type for 'input[0].call_id': expected a string, but got a number instead."
    )


def test_extra_tool_types_are_skipped_only_when_listed() -> None:
    body = _request(tools=[BASH, {"type": "tollway_web_search"}], tool_choice={"type": "tollway_web_search"})
    with pytest.raises(ResponsesInvalid) as info:
        responses_request_to_messages(body)
    assert info.value.param == "tools[1].type" and info.value.code == "unsupported_tool_type"
    out = responses_request_to_messages(body, extra_tools={"tollway_web_search"})
    assert [t["name"] for t in out["tools"]] == ["Bash"]
    assert "tool_choice" not in out  # a hosted tool's choice is the caller's
    only_extra = responses_request_to_messages(
        _request(tools=[{"type": "tollway_web_search"}]), extra_tools=["tollway_web_search"]
    )
    assert "tools" not in only_extra and "__tollway" not in orjson.dumps(only_extra).decode()


def test_metadata_is_never_forwarded() -> None:
    out = responses_request_to_messages(_request(metadata={"user_id": "secret"}))
    assert "metadata" not in out and "secret" not in orjson.dumps(out).decode()


# ---------------------------------------------------------------------------------------------
# Responses


@pytest.mark.parametrize(
    ("stop", "status", "reason"),
    [("end_turn", "completed", None), ("stop_sequence", "completed", None), ("tool_use", "completed", None),
     ("pause_turn", "completed", None), ("max_tokens", "incomplete", "max_output_tokens"),
     ("model_context_window_exceeded", "incomplete", "max_output_tokens"), ("refusal", "incomplete", "content_filter"),
     (None, "completed", None)],
)
def test_stop_reason_to_status(stop: Any, status: str, reason: str | None) -> None:
    assert response_status(stop) == (status, {"reason": reason} if reason else None)
    message = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop, "usage": {}}
    Response.model_validate(message_to_response(message, **PARAMS))


def test_usage_counts_every_input_token() -> None:
    usage = response_usage({"input_tokens": 10, "output_tokens": 4, "cache_read_input_tokens": 90,
                            "cache_creation_input_tokens": 5})
    assert usage == {"input_tokens": 105, "input_tokens_details": {"cached_tokens": 90, "cache_write_tokens": 5},
                     "output_tokens": 4, "output_tokens_details": {"reasoning_tokens": 0}, "total_tokens": 109}
    assert response_usage(None)["total_tokens"] == 0


def test_output_items_round_trip_as_history() -> None:
    """A response's output items, stored and sent back as history, rebuild the same assistant turn
    (thinking block with its signature included) and keep the call ids matching."""
    message = {
        "id": "msg_rt",
        "content": [
            {"type": "thinking", "thinking": "Need ls.", "signature": "SIG=="},
            {"type": "text", "text": "Listing."},
            {"type": "tool_use", "id": "toolu_rt", "name": "Bash", "input": {"command": "ls"}},
        ],
        "stop_reason": "tool_use",
        "usage": {"input_tokens": 1, "output_tokens": 1},
    }
    items = response_output_items(message, response_id="resp_rt")
    for item in items:
        ITEM.validate_python(item)
    assert [i["id"] for i in items] == [item_id(p, "resp_rt", f"out{n}") for n, p in enumerate(("rs", "msg", "fc"))]
    history = [*input_items({"input": "list files"}, response_id="resp_rt"), *items]
    body = _request(tools=[BASH], reasoning={"effort": "low"},
                    input=[{"type": "function_call_output", "call_id": "toolu_rt", "output": "a.txt"}])
    out = responses_request_to_messages(body, history)
    assert out["messages"][1] == {"role": "assistant", "content": message["content"]}
    assert out["messages"][2]["content"][0]["tool_use_id"] == "toolu_rt"
    # Thinking off: the reasoning item is left out rather than sent as an unsigned block.
    plain = responses_request_to_messages({**body, "reasoning": None}, history)
    assert [b["type"] for b in plain["messages"][1]["content"]] == ["text", "tool_use"]


def test_thinking_is_left_off_in_a_tool_loop_whose_calls_carry_no_thinking() -> None:
    history: list[dict[str, Any]] = [
        {"type": "message", "role": "user", "content": "ls"},
        {"type": "reasoning", "summary": [{"type": "summary_text", "text": "x"}], "encrypted_content": "gAAAA-openai"},
        {"type": "function_call", "call_id": "call_1", "name": "Bash", "arguments": '{"command":"ls"}'},
    ]
    answer = [{"type": "function_call_output", "call_id": "call_1", "output": "a.txt"}]
    body = _request(tools=[BASH], reasoning={"effort": "medium"}, temperature=0.4, input=answer)
    out = responses_request_to_messages(body, history)
    assert "thinking" not in out and out["temperature"] == 0.4 and out["max_tokens"] == 4096
    assert [b["type"] for b in out["messages"][1]["content"]] == ["tool_use"]
    # A new user question after the loop: thinking is fine again.
    body["input"] = [*answer, {"role": "assistant", "content": "One file."}, {"role": "user", "content": "Why?"}]
    assert responses_request_to_messages(body, history)["thinking"] == {"type": "enabled", "budget_tokens": 8192}


def test_input_items_without_a_response_id_get_unique_random_ids() -> None:
    first = input_items({"input": [{"role": "user", "content": "hi"}, {"role": "user", "content": "hi"}]})
    second = input_items({"input": "hi"})
    ids = [i["id"] for i in first + second]
    assert len(set(ids)) == 3 and all(i.startswith("msg_") for i in ids)


def test_skeleton_echoes_the_request_and_parses() -> None:
    request = {"model": "claude-sonnet-4-5", "input": "x", "tools": [BASH], "tool_choice": {"type": "function",
               "name": "Bash"}, "temperature": 0.3, "top_p": 0.5, "parallel_tool_calls": False,
               "text": {"format": {"type": "json_schema", "name": "o", "schema": {"type": "object"}}},
               "truncation": "auto", "user": "u1", "max_tool_calls": 3}
    skeleton = response_skeleton(**{**PARAMS, "request": request, "conversation_id": "conv_1"})
    parsed = Response.model_validate(skeleton)
    assert parsed.status == "in_progress" and parsed.conversation is not None and parsed.conversation.id == "conv_1"
    assert skeleton["tool_choice"] == request["tool_choice"] and skeleton["tools"] == [BASH]
    assert (skeleton["temperature"], skeleton["top_p"], skeleton["parallel_tool_calls"]) == (0.3, 0.5, False)
    assert skeleton["truncation"] == "auto" and skeleton["max_tool_calls"] == 3 and skeleton["user"] == "u1"
    bare = response_skeleton(**{**PARAMS, "request": {}})
    assert (bare["tool_choice"], bare["tools"], bare["temperature"], bare["metadata"]) == ("auto", [], 1.0, {})


# ---------------------------------------------------------------------------------------------
# Streams beyond the goldens


def _events_for(message: dict[str, Any], rng: random.Random) -> list[dict[str, Any]]:
    """An Anthropic event stream for `message`, text and tool arguments cut at random places."""
    events: list[dict[str, Any]] = [{"type": "message_start", "message": {
        "id": message["id"], "type": "message", "role": "assistant", "model": "m", "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 9, "output_tokens": 1}}}]

    def cuts(text: str) -> list[str]:
        if len(text) < 2:
            return [text]
        points = sorted(rng.sample(range(1, len(text)), min(len(text) - 1, rng.randint(0, 12))))
        return [text[a:b] for a, b in zip([0, *points], [*points, len(text)], strict=True)]

    for index, block in enumerate(message["content"]):
        if block["type"] == "text":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": "text", "text": ""}})
            events += [{"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": t}}
                       for t in cuts(block["text"])]
        elif block["type"] == "thinking":
            events.append({"type": "content_block_start", "index": index,
                           "content_block": {"type": "thinking", "thinking": "", "signature": ""}})
            events += [{"type": "content_block_delta", "index": index,
                        "delta": {"type": "thinking_delta", "thinking": t}} for t in cuts(block["thinking"])]
            events.append({"type": "content_block_delta", "index": index,
                           "delta": {"type": "signature_delta", "signature": block["signature"]}})
        else:
            start = {**block, "input": {}}
            events.append({"type": "content_block_start", "index": index, "content_block": start})
            raw = orjson.dumps(block["input"]).decode() if block["input"] else ""
            events += [{"type": "content_block_delta", "index": index,
                        "delta": {"type": "input_json_delta", "partial_json": f}} for f in (cuts(raw) if raw else [])]
        events.append({"type": "content_block_stop", "index": index})
        if rng.random() < 0.3:
            events.append({"type": "ping"})
    events.append({"type": "message_delta", "delta": {"stop_reason": message["stop_reason"], "stop_sequence": None},
                   "usage": {"output_tokens": 33}})
    events.append({"type": "message_stop"})
    return events


def _random_message(rng: random.Random) -> dict[str, Any]:
    words = ["alpha", "beta", "γάμμα", "delta \"quoted\"", "\\back", "new\nline", "emoji 🚀", " "]
    content: list[dict[str, Any]] = []
    for n in range(rng.randint(1, 5)):
        if rng.random() < 0.2:
            content.append({"type": "thinking", "thinking": rng.choice(words) * 3, "signature": f"SIG{n}=="})
        elif rng.random() < 0.5:
            content.append({"type": "text", "text": "".join(rng.choice(words) for _ in range(rng.randint(1, 8)))})
        else:
            args = {rng.choice(["a", "path", "cmd"]): rng.choice(words) for _ in range(rng.randint(0, 3))}
            name = rng.choice(["Bash", "Read"])
            content.append({"type": "tool_use", "id": f"toolu_{n}", "name": name, "input": args})
    used_tools = any(b["type"] == "tool_use" for b in content)
    stop = rng.choice(["max_tokens", "tool_use" if used_tools else "end_turn"])
    return {"id": f"msg_r{rng.random()}", "content": content, "stop_reason": stop, "usage": {}}


@pytest.mark.parametrize("seed", range(40))
def test_random_streams_keep_the_discipline_and_match_the_non_streaming_answer(seed: int) -> None:
    rng = random.Random(seed)
    message = _random_message(rng)
    translator = MessagesStreamToResponses(response_skeleton(**PARAMS))
    events: list[tuple[str, dict[str, Any]]] = []
    for event in _events_for(message, rng):
        events.extend(translator.feed(event))
    final = assert_responses_stream_discipline(events)
    assert translator.response == final
    sdk_accumulate(events)
    whole = message_to_response(message, **PARAMS)
    assert final["status"] == whole["status"] and final["incomplete_details"] == whole["incomplete_details"]
    assert len(final["output"]) == len(whole["output"])
    for streamed, single in zip(final["output"], whole["output"], strict=True):
        assert {k: v for k, v in streamed.items() if k != "arguments"} == {
            k: v for k, v in single.items() if k != "arguments"
        }
        if streamed["type"] == "function_call":  # same JSON, maybe not the same spacing
            assert orjson.loads(streamed["arguments"]) == orjson.loads(single["arguments"])


def test_arguments_split_into_single_characters_arrive_whole() -> None:
    raw = '{"command": "echo \\"hi\\" && ls -la /tmp", "timeout": 30}'
    translator = MessagesStreamToResponses(response_skeleton(**PARAMS))
    events = translator.feed({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}})
    events += translator.feed({"type": "content_block_start", "index": 0,
                               "content_block": {"type": "tool_use", "id": "toolu_x", "name": "Bash", "input": {}}})
    for ch in raw:
        events += translator.feed({"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "input_json_delta", "partial_json": ch}})
    events += translator.feed({"type": "content_block_stop", "index": 0})
    events += translator.feed({"type": "message_delta", "delta": {"stop_reason": "tool_use"},
                               "usage": {"output_tokens": 12}})
    events += translator.feed({"type": "message_stop"})
    final = assert_responses_stream_discipline(events)
    deltas = [d for n, d in events if n == "response.function_call_arguments.delta"]
    assert len(deltas) == len(raw) and "".join(d["delta"] for d in deltas) == raw
    assert final["output"][0]["arguments"] == raw and final["status"] == "completed"
    state = sdk_accumulate(events)
    assert state._completed_response.output[0].arguments == raw


def test_finish_after_message_delta_completes_normally() -> None:
    translator = MessagesStreamToResponses(response_skeleton(**PARAMS))
    events = translator.feed({"type": "message_start", "message": {"id": "m", "usage": {"input_tokens": 3}}})
    events += translator.feed({"type": "content_block_start", "index": 0,
                               "content_block": {"type": "text", "text": ""}})
    events += translator.feed({"type": "content_block_delta", "index": 0,
                               "delta": {"type": "text_delta", "text": "ok"}})
    events += translator.feed({"type": "message_delta", "delta": {"stop_reason": "end_turn"},
                               "usage": {"output_tokens": 1}})
    events += translator.finish()
    final = assert_responses_stream_discipline(events)
    assert final["status"] == "completed" and final["output"][0]["content"][0]["text"] == "ok"
    assert translator.feed({"type": "message_stop"}) == [] and translator.finish() == []


def test_failure_before_any_output_still_opens_the_stream() -> None:
    translator = MessagesStreamToResponses(response_skeleton(**PARAMS))
    events = translator.feed({"type": "error", "error": {"type": "rate_limit_error", "message": "Slow down"}})
    assert [n for n, _ in events] == ["response.created", "response.in_progress", "error", "response.failed"]
    assert events[2][1] == {"type": "error", "code": "rate_limit_exceeded", "message": "Slow down", "param": None,
                            "sequence_number": 2}
    final = assert_responses_stream_discipline(events)
    assert final["error"] == {"code": "rate_limit_exceeded", "message": "Slow down"} and final["usage"] is None


def test_start_can_be_called_early_and_only_once() -> None:
    translator = MessagesStreamToResponses(response_skeleton(**PARAMS))
    head = translator.start()
    assert [n for n, _ in head] == ["response.created", "response.in_progress"] and translator.start() == []
    rest = translator.feed({"type": "message_start", "message": {"id": "m", "usage": {}}})
    assert rest == []


def test_events_handed_out_do_not_change_afterwards() -> None:
    translator = MessagesStreamToResponses(response_skeleton(**PARAMS))
    events = translator.feed({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    before = orjson.dumps(events)
    translator.feed({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "more"}})
    translator.feed({"type": "content_block_stop", "index": 0})
    assert orjson.dumps(events) == before


def test_frames_decode_back_to_the_same_events() -> None:
    fixture = orjson.loads((GOLDEN / "stream_text_then_tool.json").read_bytes())
    events = run_stream(fixture)
    body = b"".join(frame(name, data) for name, data in events)
    decoder = SSEDecoder()
    decoded = []
    for i in range(0, len(body), 7):
        decoded += decoder.feed(body[i : i + 7])
    decoded += decoder.finish()
    assert [(e.event, orjson.loads(e.data)) for e in decoded] == events

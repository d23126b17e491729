"""Translators between the OpenAI Chat Completions and Anthropic Messages dialects. No network.

Golden fixtures live in `tests/golden/openai/*.json`: each holds an input (a recorded-style
upstream SSE stream, an event list, a request or a response) and the exact expected output.
Streams are fed through `SSEDecoder` at several chunkings — one byte at a time included — and
must give the same events every time. Every Anthropic stream produced anywhere in this file goes
through `assert_anthropic_stream_discipline`, the rules Claude Code and the SDKs enforce
(wire-contract §2.4, §9.5).

To re-record the expected halves after a deliberate change: `TOLLWAY_REGEN_GOLDEN=1 pytest
tests/test_translate.py`, then review the diff — a golden file is only as good as its review.
"""

from __future__ import annotations

import os
import random
import re
from pathlib import Path
from typing import Any

import orjson
import pytest

from tollway.wire.anthropic_to_openai import (
    MessagesStreamToChat,
    StreamFailed,
    message_to_chat_response,
)
from tollway.wire.chat_turns import chat_request_to_messages
from tollway.wire.ids import ToolNames, restore_tool_id, sanitize_tool_id, shorten_tool_name
from tollway.wire.messages_to_chat import messages_request_to_chat
from tollway.wire.openai_schema import ChatInvalid, openai_error, validate_chat
from tollway.wire.openai_to_anthropic import ChatStreamToMessages, chat_response_to_message
from tollway.wire.sse import frame
from tollway.wire.sse_decode import SSEDecoder, SSEEvent

GOLDEN = Path(__file__).parent / "golden" / "openai"
REGEN = os.environ.get("TOLLWAY_REGEN_GOLDEN") == "1"
ID_PATTERN = re.compile(r"^[a-zA-Z0-9_-]+$")
STOP_REASONS = {"end_turn", "max_tokens", "stop_sequence", "tool_use", "pause_turn", "refusal",
                "model_context_window_exceeded"}
DELTA_FOR_BLOCK = {
    "text": {"text_delta", "citations_delta"},
    "thinking": {"thinking_delta", "signature_delta"},
    "tool_use": {"input_json_delta"},
}
USAGE_FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


# ---------------------------------------------------------------------------------------------
# Stream discipline checkers


def assert_anthropic_stream_discipline(events: list[dict[str, Any]]) -> None:
    """The rules an Anthropic event stream must obey for Claude Code and the SDKs.

    * exactly one `message_start`, first, its usage carrying every count (plus `cache_creation`);
    * blocks indexed 0, 1, 2… in order, each started once and stopped once, never two open;
    * every delta addressed to the open block and of that block's kind;
    * no empty text block (Anthropic refuses them when the history comes back);
    * a tool_use block has an Anthropic-valid id, a name, `input: {}` at start, and its
      concatenated `partial_json` parses to a JSON object (a lost first fragment would not);
    * then exactly one `message_delta` (valid stop_reason, cumulative usage with all four
      counts) and `message_stop` last; `tool_use` blocks never end as `end_turn`;
    * or, for a failed stream, one `error` event last and no `message_stop`;
    * `[DONE]` appears nowhere, and every event frames as SSE with its `type`.
    """
    assert events, "an empty stream"
    for event in events:
        assert isinstance(event.get("type"), str)
        framed = frame(event)
        assert framed.startswith(b"event: " + event["type"].encode() + b"\ndata: ")
        assert b"[DONE]" not in framed, "OpenAI's [DONE] leaked into an Anthropic stream"
    kinds = [e["type"] for e in events]
    failed = kinds[-1] == "error"
    assert kinds.count("error") == int(failed), "an error event must be the last event"
    if failed and len(events) == 1:  # failed before any output
        assert events[0]["error"]["type"] and events[0]["error"]["message"]
        return
    assert kinds[0] == "message_start", "message_start must come first"
    assert kinds.count("message_start") == 1, "duplicate message_start"
    start = events[0]["message"]
    assert start["role"] == "assistant" and start["content"] == [] and start["stop_reason"] is None
    assert isinstance(start["id"], str) and start["id"] and isinstance(start["model"], str)
    for name in USAGE_FIELDS:
        assert isinstance(start["usage"].get(name), int), f"message_start.usage.{name} missing"
    assert isinstance(start["usage"].get("cache_creation"), dict), "message_start.usage.cache_creation missing"

    open_index: int | None = None
    open_kind: str | None = None
    next_index = 0
    text = ""
    partial = ""
    block_kinds: list[str] = []
    ended = False
    delta_seen = False
    for event in events[1:]:
        kind = event["type"]
        assert not ended, f"{kind} after message_stop"
        if kind == "content_block_start":
            assert not delta_seen, "content block after message_delta"
            assert open_index is None, "a block started while another is open"
            assert event["index"] == next_index, f"block index {event['index']}, expected {next_index}"
            block = event["content_block"]
            open_index, open_kind = event["index"], block["type"]
            next_index += 1
            block_kinds.append(open_kind)
            text, partial = block.get("text", ""), ""
            if open_kind == "tool_use":
                assert ID_PATTERN.match(block["id"]), f"tool id {block['id']!r} is not Anthropic-valid"
                assert isinstance(block["name"], str) and block["name"]
                assert block["input"] == {}
            elif open_kind == "thinking":
                assert block["thinking"] == "" and "signature" in block
        elif kind == "content_block_delta":
            assert open_index is not None and event["index"] == open_index, "delta for a block that is not open"
            assert open_kind is not None
            delta = event["delta"]
            assert delta["type"] in DELTA_FOR_BLOCK[open_kind], f"{delta['type']} in a {open_kind} block"
            text += delta.get("text", "") + delta.get("thinking", "")
            partial += delta.get("partial_json", "")
        elif kind == "content_block_stop":
            assert open_index is not None and event["index"] == open_index, "stop for a block that is not open"
            if open_kind == "text":
                assert text, "empty text block"
            if open_kind == "tool_use":
                try:
                    parsed = orjson.loads(partial) if partial else {}
                except orjson.JSONDecodeError:
                    parsed = None
                assert isinstance(parsed, dict), f"tool input {partial!r} is not a JSON object (a lost fragment?)"
            open_index = open_kind = None
        elif kind == "message_delta":
            assert not failed, "message_delta in a failed stream"
            assert open_index is None, "message_delta with a block still open"
            assert not delta_seen, "second message_delta"
            delta_seen = True
            assert event["delta"]["stop_reason"] in STOP_REASONS
            for name in USAGE_FIELDS:
                assert isinstance(event["usage"].get(name), int), f"message_delta.usage.{name} missing"
            if "tool_use" in block_kinds:
                assert event["delta"]["stop_reason"] != "end_turn", "tool calls ending as end_turn"
            if event["delta"]["stop_reason"] == "tool_use":
                assert "tool_use" in block_kinds
        elif kind == "message_stop":
            assert delta_seen, "message_stop without message_delta"
            ended = True
        elif kind == "error":
            assert failed and event is events[-1]
        else:
            assert kind == "ping", f"unexpected event {kind}"
    if not failed:
        assert ended, "stream does not end with message_stop"


def assert_chat_chunk_discipline(chunks: list[dict[str, Any]], include_usage: bool) -> None:
    """The shape openai-python's stream accumulator relies on (types/chat/chat_completion_chunk.py)."""
    assert chunks
    ids = {c["id"] for c in chunks}
    assert len(ids) == 1 and next(iter(ids)).startswith("chatcmpl-")
    assert all(c["object"] == "chat.completion.chunk" for c in chunks)
    assert chunks[0]["choices"][0]["delta"].get("role") == "assistant"
    finishes = [c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] is not None]
    assert len(finishes) <= 1
    seen_tools: set[int] = set()
    for chunk in chunks:
        assert ("usage" in chunk) == include_usage
        for choice in chunk["choices"]:
            for call in choice["delta"].get("tool_calls") or ():
                if call["index"] not in seen_tools:
                    assert call["index"] == len(seen_tools), "tool indices must count 0, 1, 2…"
                    assert call["id"] and call["type"] == "function" and call["function"]["name"]
                    seen_tools.add(call["index"])
    if include_usage and finishes:
        assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["total_tokens"] >= 0


# ---------------------------------------------------------------------------------------------
# Golden runners


def _sse_bytes(fixture: dict[str, Any]) -> bytes:
    """The recorded-style upstream body: dict items as `data: <json>` events, strings verbatim."""
    ending = fixture.get("line_ending", "\n")
    parts = []
    for item in fixture["upstream"]:
        text = item if isinstance(item, str) else "data: " + orjson.dumps(item).decode() + "\n\n"
        parts.append(text.replace("\n", ending))
    return "".join(parts).encode()


def _names(fixture: dict[str, Any]) -> ToolNames:
    names = ToolNames()
    for name in fixture.get("client_tools", ()):
        names.short(name)  # what translating the request registered
    return names


def run_chat_stream(fixture: dict[str, Any], size: int) -> list[dict[str, Any]]:
    """What the OpenAI upstream adapter does: decode SSE, stop at [DONE], translate chunks."""
    translator = ChatStreamToMessages(fixture["model"], _names(fixture), input_tokens=fixture.get("input_tokens", 0))
    decoder = SSEDecoder()
    body = _sse_bytes(fixture)
    events: list[dict[str, Any]] = []
    done = False

    def take(decoded: list[SSEEvent]) -> None:
        nonlocal done
        for sse in decoded:
            if done:
                return
            if sse.is_done:
                events.extend(translator.finish())
                done = True
                return
            events.extend(translator.feed(orjson.loads(sse.data)))

    for i in range(0, len(body), size):
        take(decoder.feed(body[i : i + size]))
    take(decoder.finish())
    if not done:
        if "on_eof" in fixture:
            events.extend(translator.fail(*fixture["on_eof"]))
        else:
            events.extend(translator.finish())
    return events


def run_messages_stream(fixture: dict[str, Any]) -> dict[str, Any]:
    translator = MessagesStreamToChat(fixture["model"], fixture["include_usage"], created=fixture["created"])
    chunks: list[dict[str, Any]] = []
    for event in fixture["events"]:
        try:
            chunks.extend(translator.feed(event))
        except StreamFailed as failure:
            return {"chunks": chunks, "error": failure.payload()}
    return {"chunks": chunks}


def run(fixture: dict[str, Any]) -> Any:
    kind = fixture["kind"]
    if kind == "chat_stream_to_messages":
        return run_chat_stream(fixture, 1 << 20)
    if kind == "messages_stream_to_chat":
        return run_messages_stream(fixture)
    if kind == "chat_request_to_messages":
        return chat_request_to_messages(fixture["input"])
    if kind == "messages_request_to_chat":
        return messages_request_to_chat(fixture["input"])[0]
    if kind == "chat_response_to_message":
        return chat_response_to_message(fixture["input"], fixture["model"], _names(fixture))
    if kind == "message_to_chat_response":
        return message_to_chat_response(fixture["input"], fixture["model"], created=fixture["created"])
    raise AssertionError(f"unknown fixture kind {kind}")


FIXTURES = sorted(GOLDEN.glob("*.json"))


def test_there_is_a_golden_fixture_for_every_kind() -> None:
    kinds = {orjson.loads(p.read_bytes())["kind"] for p in FIXTURES}
    assert kinds == {"chat_stream_to_messages", "messages_stream_to_chat", "chat_request_to_messages",
                     "messages_request_to_chat", "chat_response_to_message", "message_to_chat_response"}


@pytest.mark.parametrize("path", FIXTURES, ids=[p.stem for p in FIXTURES])
def test_golden(path: Path) -> None:
    fixture = orjson.loads(path.read_bytes())
    actual = run(fixture)
    if REGEN:
        fixture["expected"] = actual
        path.write_bytes(orjson.dumps(fixture, option=orjson.OPT_INDENT_2) + b"\n")
    assert actual == fixture["expected"]
    # Round-trip through JSON: what goes on the wire is what we compared.
    assert orjson.loads(orjson.dumps(actual)) == actual
    if fixture["kind"] == "chat_stream_to_messages":
        assert_anthropic_stream_discipline(actual)
        for size in (1, 2, 7, 64):  # the bytes may arrive in any pieces
            assert run_chat_stream(fixture, size) == actual, f"chunk size {size}"
    elif fixture["kind"] == "messages_stream_to_chat":
        assert_chat_chunk_discipline(actual["chunks"], fixture["include_usage"])


# ---------------------------------------------------------------------------------------------
# SSE decoding


def test_sse_decoder_handles_every_split_and_line_ending() -> None:
    body = (
        b"\xef\xbb\xbf: comment\r\n"
        b"event: message\r\ndata: {\"a\": 1}\r\n\r\n"
        b"data: line one\ndata: line two\n\n"
        b"data:no-space\rid: 7\r\r"
        b"data: caf\xc3\xa9\n\n"
        b"data: [DONE]\n\n"
    )
    expected = [
        SSEEvent("message", '{"a": 1}'),
        SSEEvent(None, "line one\nline two"),
        SSEEvent(None, "no-space", "7"),
        SSEEvent(None, "café", "7"),
        SSEEvent(None, "[DONE]", "7"),
    ]
    for size in range(1, len(body) + 1):
        decoder = SSEDecoder()
        got: list[SSEEvent] = []
        for i in range(0, len(body), size):
            got.extend(decoder.feed(body[i : i + size]))
        got.extend(decoder.finish())
        assert got == expected, size
    assert expected[-1].is_done and not expected[0].is_done


def test_sse_decoder_skips_events_without_data_and_flushes_an_unterminated_last_event() -> None:
    decoder = SSEDecoder()
    assert decoder.feed(b"event: ping\n\n: keep-alive\n\nretry: 100\n\n") == []
    assert decoder.feed(b'data: {"usage": 1}') == []
    assert decoder.finish() == [SSEEvent(None, '{"usage": 1}')]
    assert decoder.finish() == []


# ---------------------------------------------------------------------------------------------
# Chat schema and error envelope


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ([], None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 3, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "m"}, "messages"),
        ({"model": "m", "messages": {}}, "messages"),
        ({"model": "m", "messages": []}, "messages"),
        ({"model": "m", "messages": ["hi"]}, "messages[0]"),
        ({"model": "m", "messages": [{"content": "x"}]}, "messages[0].role"),
        ({"model": "m", "messages": [{"role": "user"}, {"role": "robot"}]}, "messages[1].role"),
        ({"model": "m", "messages": [{"role": "user"}], "stream": "yes"}, "stream"),
        ({"model": "m", "messages": [{"role": "user"}], "tollway": {}}, "tollway"),
    ],
)
def test_validate_chat_refuses_with_the_param_named(body: Any, param: str | None) -> None:
    with pytest.raises(ChatInvalid) as info:
        validate_chat(body)
    assert info.value.param == param and info.value.message


def test_validate_chat_accepts_every_role_and_passes_the_rest() -> None:
    roles = ["system", "developer", "user", "assistant", "tool", "function"]
    body = {"model": "m", "messages": [{"role": r, "content": "x"} for r in roles], "stream": False, "new": 1}
    assert validate_chat(body) is body


def test_openai_error_envelope() -> None:
    assert orjson.loads(openai_error("bad", "invalid_request_error", "invalid_body", "model")) == {
        "error": {"message": "bad", "type": "invalid_request_error", "code": "invalid_body", "param": "model"}
    }
    assert orjson.loads(openai_error("x", "server_error"))["error"]["code"] is None


# ---------------------------------------------------------------------------------------------
# Stream behaviour beyond the goldens


def _chunk(delta: dict[str, Any], finish: str | None = None, usage: Any = None) -> dict[str, Any]:
    return {"id": "chatcmpl-t", "object": "chat.completion.chunk", "created": 1, "model": "up",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}], "usage": usage}


def _tool_inputs(events: list[dict[str, Any]]) -> list[tuple[str, Any]]:
    """(name, parsed input) of every tool_use block, as an SDK accumulates them."""
    out: list[tuple[str, Any]] = []
    current: list[Any] | None = None
    for e in events:
        if e["type"] == "content_block_start" and e["content_block"]["type"] == "tool_use":
            current = [e["content_block"]["name"], ""]
        elif e["type"] == "content_block_delta" and current is not None:
            current[1] += e["delta"].get("partial_json", "")
        elif e["type"] == "content_block_stop" and current is not None:
            out.append((current[0], orjson.loads(current[1]) if current[1] else {}))
            current = None
    return out


def test_first_tool_fragment_in_the_same_chunk_as_id_and_name_is_kept() -> None:
    translator = ChatStreamToMessages("claude", ToolNames())
    events = translator.feed(_chunk({"content": "Sure."}))
    first = {"index": 0, "id": "call_1", "type": "function",
             "function": {"name": "Bash", "arguments": '{"command": "l'}}
    events += translator.feed(_chunk({"tool_calls": [first]}))
    events += translator.feed(_chunk({"tool_calls": [{"index": 0, "function": {"arguments": 's"}'}}]}, "tool_calls"))
    events += translator.finish()
    assert_anthropic_stream_discipline(events)
    assert _tool_inputs(events) == [("Bash", {"command": "ls"})]


def test_arguments_before_the_name_are_held_not_lost() -> None:
    translator = ChatStreamToMessages("claude", ToolNames())
    events = translator.feed(_chunk({"tool_calls": [{"index": 0, "id": "c", "function": {"arguments": '{"a"'}}]}))
    events += translator.feed(_chunk({"tool_calls": [{"index": 0, "function": {"name": "T", "arguments": ": 1}"}}]}))
    events += translator.feed(_chunk({}, "tool_calls")) + translator.finish()
    assert_anthropic_stream_discipline(events)
    assert _tool_inputs(events) == [("T", {"a": 1})]


def test_message_delta_is_held_until_the_trailing_usage_chunk() -> None:
    translator = ChatStreamToMessages("claude", ToolNames(), input_tokens=5)
    events = translator.feed(_chunk({"content": "x"}))
    finish = translator.feed(_chunk({}, "stop"))
    assert [e["type"] for e in finish] == ["content_block_stop"]
    assert not translator.usage_reported
    tail = translator.feed({"id": "chatcmpl-t", "choices": [], "usage": {"prompt_tokens": 9, "completion_tokens": 1}})
    assert [e["type"] for e in tail] == ["message_delta", "message_stop"]
    assert tail[0]["usage"] == {"input_tokens": 9, "output_tokens": 1,
                                "cache_creation_input_tokens": 0, "cache_read_input_tokens": 0}
    assert translator.usage_reported
    assert translator.finish() == [] and translator.feed(_chunk({"content": "late"})) == []
    assert translator.fail("api_error", "late") == []
    assert_anthropic_stream_discipline(events + finish + tail)


def test_failure_before_any_output_is_a_lone_error_event() -> None:
    translator = ChatStreamToMessages("claude", ToolNames())
    events = translator.fail("overloaded_error", "upstream busy")
    assert events == [{"type": "error", "error": {"type": "overloaded_error", "message": "upstream busy"}}]
    assert_anthropic_stream_discipline(events)
    assert translator.finish() == []


def test_empty_upstream_stream_is_an_empty_message() -> None:
    translator = ChatStreamToMessages("claude", ToolNames(), input_tokens=3)
    events = translator.finish()
    assert [e["type"] for e in events] == ["message_start", "message_delta", "message_stop"]
    assert events[1]["delta"]["stop_reason"] == "end_turn"
    assert_anthropic_stream_discipline(events)


def _random_stream(rng: random.Random) -> tuple[list[dict[str, Any]], list[tuple[str, Any]], str]:
    """A random upstream stream mixing thinking, text and tool calls, with arguments cut at
    random places and several kinds sometimes packed into one chunk."""
    chunks: list[dict[str, Any]] = [_chunk({"role": "assistant", "content": ""})]
    expected_tools: list[tuple[str, Any]] = []
    texts = ""
    pending: dict[str, Any] = {}
    tool_index = 0
    for _ in range(rng.randint(1, 8)):
        kind = rng.choice(["thinking", "text", "tool", "tool"])
        if kind == "thinking":
            pending.setdefault("reasoning_content", "")
            pending["reasoning_content"] += rng.choice(["hm", " ok", "…"])
        elif kind == "text":
            piece = rng.choice(["Hello", " world", "!", " ünï"])
            texts += piece
            pending["content"] = pending.get("content", "") + piece
        else:
            name = rng.choice(["Bash", "Read", "x" * 70])
            args = orjson.dumps({"n": rng.randint(0, 9), "s": "q\"uote ✓"}).decode()
            cuts = sorted(rng.sample(range(1, len(args)), rng.randint(0, 4)))
            pieces = [args[i:j] for i, j in zip([0, *cuts], [*cuts, len(args)], strict=True)]
            head = pieces[0] if rng.random() < 0.5 else ""  # first fragment with id/name, or not
            first = {"index": tool_index, "id": f"functions.{name[:8]}:{tool_index}", "type": "function",
                     "function": {"name": shorten_tool_name(name), "arguments": head}}
            rest = pieces[1:] if head else pieces
            pending.setdefault("tool_calls", []).append(first)
            chunks.append(_chunk(pending))
            pending = {}
            for piece in rest:
                chunks.append(_chunk({"tool_calls": [{"index": tool_index, "function": {"arguments": piece}}]}))
            expected_tools.append((name, orjson.loads(args)))
            tool_index += 1
            continue
        if rng.random() < 0.5:
            chunks.append(_chunk(pending))
            pending = {}
    finish = "tool_calls" if expected_tools else "stop"
    chunks.append(_chunk(pending, finish))
    chunks.append({"id": "chatcmpl-t", "choices": [], "usage": {"prompt_tokens": 10, "completion_tokens": 5}})
    return chunks, expected_tools, texts


@pytest.mark.parametrize("seed", range(200))
def test_random_streams_keep_the_discipline_and_every_fragment(seed: int) -> None:
    rng = random.Random(seed)
    chunks, expected_tools, texts = _random_stream(rng)
    names = ToolNames()
    for name in ("Bash", "Read", "x" * 70):
        names.short(name)
    translator = ChatStreamToMessages("claude", names)
    events: list[dict[str, Any]] = []
    for chunk in chunks:
        events.extend(translator.feed(chunk))
    events.extend(translator.finish())
    assert_anthropic_stream_discipline(events)
    assert _tool_inputs(events) == expected_tools
    assert "".join(e["delta"].get("text", "") for e in events if e["type"] == "content_block_delta") == texts


@pytest.mark.parametrize(
    "bad",
    [
        "start_not_first",
        "duplicate_start",
        "wrong_kind",
        "lost_first_fragment",
        "done_leak",
        "empty_text",
    ],
)
def test_the_discipline_checker_catches_what_peers_shipped(bad: str) -> None:
    """The checker itself is tested: each stream reproduces a bug from wire-contract §9.5."""
    good = run_chat_stream(orjson.loads((GOLDEN / "stream_first_fragment_with_id_name.json").read_bytes()), 1 << 20)
    assert_anthropic_stream_discipline(good)
    events = [dict(e) for e in good]
    if bad == "duplicate_start":
        events.insert(1, events[0])
    elif bad == "wrong_kind":
        events[2] = {**events[2], "delta": {"type": "thinking_delta", "thinking": "x"}}
    elif bad == "lost_first_fragment":
        first = next(i for i, e in enumerate(events) if e.get("delta", {}).get("type") == "input_json_delta")
        del events[first]
    elif bad == "done_leak":
        events.insert(3, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "[DONE]"}})
    elif bad == "empty_text":
        events = [events[0], {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
                  {"type": "content_block_stop", "index": 0}, *events[-2:]]
    elif bad == "start_not_first":
        events = events[1:2] + events[:1] + events[2:]
    with pytest.raises(AssertionError):
        assert_anthropic_stream_discipline(events)


def test_messages_stream_error_raises_with_the_stream_error_payload() -> None:
    translator = MessagesStreamToChat("m", True, created=1)
    with pytest.raises(StreamFailed) as info:
        translator.feed({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
    assert info.value.payload() == {"error": {"message": "Overloaded", "type": "overloaded_error",
                                              "code": "stream_error", "param": None}}


# ---------------------------------------------------------------------------------------------
# Tool names and ids across requests


def test_tool_ids_sanitise_deterministically_and_restore() -> None:
    for raw in ("functions.Bash:0", "call_abc", "toolu_01A-b", "call:1|sig=Ab+/==", "ü", "twid_x"):
        safe = sanitize_tool_id(raw)
        assert ID_PATTERN.match(safe) and safe == sanitize_tool_id(raw)
        assert restore_tool_id(safe) == raw
    assert sanitize_tool_id("call_abc") == "call_abc"  # valid ids pass unchanged
    assert sanitize_tool_id("a.b") != sanitize_tool_id("a:b")  # no collisions from replacement


def test_long_tool_names_shorten_deterministically_within_64() -> None:
    long = "mcp__" + "very_long_server_name__" * 4 + "tool"
    short = shorten_tool_name(long)
    assert len(short) == 64 and short == shorten_tool_name(long) and short.startswith(long[:55])
    assert shorten_tool_name(long + "2") != short
    assert shorten_tool_name("Bash") == "Bash"


def test_long_tool_name_round_trip_through_an_openai_upstream() -> None:
    long = "mcp__knowledge-base__search_engineering_design_documents_by_keyword_and_team_name"
    request = {"model": "gpt", "max_tokens": 10, "tools": [{"name": long, "input_schema": {"type": "object"}}],
               "tool_choice": {"type": "tool", "name": long},
               "messages": [{"role": "user", "content": "go"}]}
    chat, names = messages_request_to_chat(request)
    short = chat["tools"][0]["function"]["name"]
    assert len(short) <= 64 and chat["tool_choice"] == {"type": "function", "function": {"name": short}}
    upstream = {"id": "chatcmpl-1", "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
        "role": "assistant", "content": None,
        "tool_calls": [{"id": "functions.search:0", "type": "function",
                        "function": {"name": short, "arguments": "{}"}}]}}]}
    message = chat_response_to_message(upstream, "claude", names)
    tool_use = message["content"][0]
    assert tool_use["name"] == long and ID_PATTERN.match(tool_use["id"])
    # The client's next turn carries the translated id; upstream gets its own id and short name back.
    follow = {**request, "messages": [
        {"role": "user", "content": "go"},
        {"role": "assistant", "content": [tool_use]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_use["id"], "content": "found"}]}]}
    chat2, _ = messages_request_to_chat(follow)
    call = chat2["messages"][1]["tool_calls"][0]
    assert call["id"] == "functions.search:0" and call["function"]["name"] == short
    assert chat2["messages"][2] == {"role": "tool", "tool_call_id": "functions.search:0", "content": "found"}


def test_weird_stream_tool_id_maps_identically_in_the_later_tool_result() -> None:
    translator = ChatStreamToMessages("claude", ToolNames())
    events = translator.feed(_chunk({"tool_calls": [
        {"index": 0, "id": "functions.Bash:0", "type": "function", "function": {"name": "Bash", "arguments": "{}"}}]}))
    events += translator.feed(_chunk({}, "tool_calls")) + translator.finish()
    assert_anthropic_stream_discipline(events)
    tool_id = next(e["content_block"]["id"] for e in events if e["type"] == "content_block_start")
    # An OpenAI-dialect client would also see the same id mapping on its way to Anthropic:
    chat_side = chat_request_to_messages({"model": "c", "tools": [{"type": "function", "function": {"name": "Bash"}}],
                                          "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "tool_calls": [{"id": "functions.Bash:0", "type": "function",
                                              "function": {"name": "Bash", "arguments": "{}"}}]},
        {"role": "tool", "tool_call_id": "functions.Bash:0", "content": "ok"}]})
    assert chat_side["messages"][1]["content"][0]["id"] == tool_id
    assert chat_side["messages"][2]["content"][0]["tool_use_id"] == tool_id


# ---------------------------------------------------------------------------------------------
# Mappings, both directions


@pytest.mark.parametrize(
    ("openai", "anthropic"),
    [
        ("auto", {"type": "auto"}),
        ("none", {"type": "none"}),
        ("required", {"type": "any"}),
        ({"type": "function", "function": {"name": "Bash"}}, {"type": "tool", "name": "Bash"}),
    ],
)
def test_tool_choice_maps_both_ways(openai: Any, anthropic: dict[str, Any]) -> None:
    tools = [{"type": "function", "function": {"name": "Bash"}}]
    body = {"model": "m", "tools": tools, "tool_choice": openai, "messages": [{"role": "user", "content": "x"}]}
    assert chat_request_to_messages(body)["tool_choice"] == anthropic
    back, _ = messages_request_to_chat({"model": "m", "max_tokens": 1, "tools": [{"name": "Bash", "input_schema": {}}],
                                        "tool_choice": anthropic, "messages": [{"role": "user", "content": "x"}]})
    assert back["tool_choice"] == openai


def test_parallel_tool_calls_maps_both_ways() -> None:
    tools = [{"type": "function", "function": {"name": "Bash"}}]
    base = {"model": "m", "tools": tools, "messages": [{"role": "user", "content": "x"}]}
    serial = {**base, "parallel_tool_calls": False}
    assert chat_request_to_messages(serial)["tool_choice"] == {"type": "auto", "disable_parallel_tool_use": True}
    assert chat_request_to_messages({**serial, "tool_choice": "required"})["tool_choice"] == {
        "type": "any", "disable_parallel_tool_use": True}
    assert chat_request_to_messages({**serial, "tool_choice": "none"})["tool_choice"] == {"type": "none"}
    assert "tool_choice" not in chat_request_to_messages({**base, "parallel_tool_calls": True})
    anthropic = {"model": "m", "max_tokens": 1, "tools": [{"name": "Bash", "input_schema": {}}],
                 "messages": [{"role": "user", "content": "x"}]}
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    chat, _ = messages_request_to_chat({**anthropic, "tool_choice": choice})
    assert chat["parallel_tool_calls"] is False and chat["tool_choice"] == "auto"
    chat, _ = messages_request_to_chat({**anthropic, "tool_choice": {"type": "auto"}})
    assert "parallel_tool_calls" not in chat
    # OpenAI refuses tool_choice / parallel_tool_calls without tools
    chat, _ = messages_request_to_chat({**anthropic, "tools": [], "tool_choice": {"type": "any"}})
    assert "tool_choice" not in chat and "parallel_tool_calls" not in chat


def test_forced_tool_choice_turns_thinking_off() -> None:
    body = {"model": "m", "reasoning_effort": "high", "tools": [{"type": "function", "function": {"name": "T"}}],
            "tool_choice": "required", "messages": [{"role": "user", "content": "x"}]}
    out = chat_request_to_messages(body)
    assert "thinking" not in out and out["max_tokens"] == 4096
    assert "thinking" not in chat_request_to_messages({**body, "tool_choice": "auto", "reasoning_effort": "none"})
    assert "thinking" not in chat_request_to_messages({**body, "tool_choice": "auto", "max_tokens": 1000})


def test_stop_sequences_drop_empty_entries_both_ways() -> None:
    user = [{"role": "user", "content": "x"}]
    out = chat_request_to_messages({"model": "m", "stop": ["", " ", "\n", "END"], "messages": user})
    assert out["stop_sequences"] == ["END"]
    assert "stop_sequences" not in chat_request_to_messages({"model": "m", "stop": "  ", "messages": user})
    stops = ["", "\t", "a", "b", "c", "d", "e"]
    chat, _ = messages_request_to_chat({"model": "m", "max_tokens": 1, "stop_sequences": stops, "messages": user})
    assert chat["stop"] == ["a", "b", "c", "d"]  # OpenAI takes at most 4
    chat, _ = messages_request_to_chat({"model": "m", "max_tokens": 1, "stop_sequences": [" "],
                                        "messages": [{"role": "user", "content": "x"}]})
    assert "stop" not in chat


def test_images_round_trip_both_ways() -> None:
    anthropic_blocks = [
        {"type": "image", "source": {"type": "base64", "media_type": "image/webp", "data": "UklGRg=="}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/x.gif"}},
    ]
    chat, _ = messages_request_to_chat({"model": "m", "max_tokens": 1,
                                        "messages": [{"role": "user", "content": anthropic_blocks}]})
    parts = chat["messages"][0]["content"]
    assert parts == [{"type": "image_url", "image_url": {"url": "data:image/webp;base64,UklGRg=="}},
                     {"type": "image_url", "image_url": {"url": "https://example.com/x.gif"}}]
    back = chat_request_to_messages({"model": "m", "messages": [{"role": "user", "content": parts}]})
    assert back["messages"][0]["content"] == anthropic_blocks


@pytest.mark.parametrize(
    ("finish", "stop"),
    [("stop", "end_turn"), ("length", "max_tokens"), ("tool_calls", "tool_use"), ("function_call", "tool_use"),
     ("content_filter", "refusal"), (None, "end_turn"), ("weird", "end_turn")],
)
def test_finish_reason_to_stop_reason(finish: Any, stop: str) -> None:
    choice = {"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": "x"}}
    resp = {"id": "c", "choices": [choice]}
    assert chat_response_to_message(resp, "m", ToolNames())["stop_reason"] == stop


@pytest.mark.parametrize(
    ("stop", "finish"),
    [("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
     ("refusal", "content_filter"), ("pause_turn", "stop"), ("model_context_window_exceeded", "length")],
)
def test_stop_reason_to_finish_reason(stop: str, finish: str) -> None:
    message = {"id": "msg_1", "content": [{"type": "text", "text": "x"}], "stop_reason": stop,
               "usage": {"input_tokens": 1, "output_tokens": 1}}
    assert message_to_chat_response(message, "m", created=0)["choices"][0]["finish_reason"] == finish


def test_thinking_to_reasoning_effort_and_flags() -> None:
    base = {"model": "m", "max_tokens": 64000, "messages": [{"role": "user", "content": "x"}]}
    for budget, effort in ((1024, "low"), (8000, "medium"), (31999, "high")):
        chat, _ = messages_request_to_chat({**base, "thinking": {"type": "enabled", "budget_tokens": budget}})
        assert chat["reasoning_effort"] == effort
    chat, _ = messages_request_to_chat({**base, "thinking": {"type": "adaptive"}, "output_config": {"effort": "max"}})
    assert chat["reasoning_effort"] == "high"
    chat, _ = messages_request_to_chat({**base, "thinking": {"type": "disabled"}})
    assert "reasoning_effort" not in chat
    chat, _ = messages_request_to_chat({**base, "thinking": {"type": "enabled", "budget_tokens": 5000}},
                                       reasoning=False, max_tokens_field="max_completion_tokens")
    assert "reasoning_effort" not in chat and chat["max_completion_tokens"] == 64000 and "max_tokens" not in chat


def test_final_assistant_text_loses_trailing_whitespace_and_empty_blocks_go() -> None:
    """Anthropic refuses a final assistant (prefill) ending in whitespace and empty text blocks."""
    out = chat_request_to_messages({"model": "m", "messages": [
        {"role": "user", "content": [{"type": "text", "text": ""}, {"type": "text", "text": "Hi"}]},
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "Sure thing:  \n"}]})
    assert out["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "Sure thing:"}]},
    ]


def test_messages_stream_to_chat_starts_without_message_start_and_ignores_unknown_events() -> None:
    translator = MessagesStreamToChat("m", False, created=1)
    chunks = translator.feed({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}})
    chunks += translator.feed({"type": "some_future_event"})
    chunks += translator.feed({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a"}})
    chunks += translator.feed({"type": "message_stop"})
    assert_chat_chunk_discipline(chunks, include_usage=False)
    assert [c["choices"][0]["delta"] for c in chunks] == [{"role": "assistant", "content": ""}, {"content": "a"}, {}]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_deprecated_functions_and_function_call_still_translate() -> None:
    out = chat_request_to_messages({"model": "m", "functions": [{"name": "f", "parameters": {"type": "object"}}],
                                    "function_call": {"name": "f"}, "messages": [
        {"role": "user", "content": "x"},
        {"role": "assistant", "content": None, "function_call": {"name": "f", "arguments": '{"a": 1}'}},
        {"role": "function", "name": "f", "content": "ok"}]})
    assert out["tools"] == [{"name": "f", "input_schema": {"type": "object"}}]
    assert out["tool_choice"] == {"type": "tool", "name": "f"}
    call, result = out["messages"][1]["content"][0], out["messages"][2]["content"][0]
    assert call["type"] == "tool_use" and call["input"] == {"a": 1}
    assert result == {"type": "tool_result", "tool_use_id": call["id"], "content": "ok"}

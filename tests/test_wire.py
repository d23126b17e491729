"""Pure wire functions, no network: the SSE usage tap and the local token count."""

from __future__ import annotations

import orjson

from tollway.wire.sse import StreamTap, frame
from tollway.wire.tokens import count_input_tokens

EVENTS = [
    {"type": "message_start", "message": {"id": "m", "model": "claude-x", "content": [],
                                          "usage": {"input_tokens": 11, "output_tokens": 1,
                                                    "cache_creation_input_tokens": 7,
                                                    "cache_read_input_tokens": 5}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "message_delta in text"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": 42}},
    {"type": "message_stop"},
]


def _stream() -> bytes:
    return b"".join(frame(e) for e in EVENTS)


def test_tap_reads_usage_whatever_the_chunking() -> None:
    data = _stream()
    for size in (1, 3, 17, 64, len(data)):
        tap = StreamTap()
        for i in range(0, len(data), size):
            tap.feed(data[i : i + size])
        assert (tap.usage.input_tokens, tap.usage.output_tokens) == (11, 42), size
        assert (tap.usage.cache_creation_input_tokens, tap.usage.cache_read_input_tokens) == (7, 5)
        assert tap.stop_reason == "end_turn" and tap.model == "claude-x" and tap.saw_stop
        assert tap.at_boundary


def test_tap_knows_when_it_is_inside_an_event() -> None:
    tap = StreamTap()
    tap.feed(frame(EVENTS[0])[:10])
    assert not tap.at_boundary
    assert not tap.saw_stop


def test_tap_records_an_error_event() -> None:
    tap = StreamTap()
    tap.feed(frame({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}))
    assert tap.error == "overloaded_error"


def test_frame_is_anthropic_framing() -> None:
    assert frame({"type": "ping"}) == b'event: ping\ndata: {"type":"ping"}\n\n'


def test_count_covers_system_tools_and_messages() -> None:
    base = {"messages": [{"role": "user", "content": "abcd" * 10}]}
    with_system = {**base, "system": [{"type": "text", "text": "x" * 40}]}
    with_tools = {**with_system, "tools": [{"name": "t", "input_schema": {"type": "object"}}]}
    n0, n1, n2 = (count_input_tokens(b) for b in (base, with_system, with_tools))
    assert n0 == 10 + 3
    assert n1 == n0 + 10
    assert n2 == n1 + -(-len(orjson.dumps(with_tools["tools"][0])) // 4)

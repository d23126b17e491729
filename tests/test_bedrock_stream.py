"""The Bedrock event-stream decoder (tollway/wire/bedrock_stream.py), and the emulator's encoder
checked against botocore's own decoder, so the emulator speaks the framing Bedrock speaks."""

from __future__ import annotations

import base64

import orjson
from botocore.eventstream import EventStreamBuffer

from tests.bedrock_emulator import chunk_frame, encode_frame, exception_frame, stream_frames
from tollway.wire.bedrock_stream import BedrockStreamDecoder

EVENTS = [
    {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant", "model": "m",
                                          "content": [], "stop_reason": None, "stop_sequence": None,
                                          "usage": {"input_tokens": 12, "output_tokens": 1,
                                                    "cache_creation_input_tokens": 3, "cache_read_input_tokens": 4}}},
    {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "Hé ✓"}},
    {"type": "content_block_stop", "index": 0},
    {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
     "usage": {"output_tokens": 6}},
    {"type": "message_stop"},
]


def sse(events: list[dict]) -> bytes:
    return b"".join(b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events)


def test_emulator_frames_decode_with_botocore() -> None:
    frame = chunk_frame(EVENTS[2]) + exception_frame("throttlingException", "slow down")
    buffer = EventStreamBuffer()
    buffer.add_data(frame)
    first, second = list(buffer)
    assert first.headers == {":event-type": "chunk", ":content-type": "application/json", ":message-type": "event"}
    assert orjson.loads(base64.b64decode(orjson.loads(first.payload)["bytes"])) == EVENTS[2]
    assert second.headers[":exception-type"] == "throttlingException"
    assert orjson.loads(second.payload) == {"message": "slow down"}
    assert second.to_response_dict()["status_code"] == 400


def test_decoded_stream_is_exact_anthropic_sse_in_any_split() -> None:
    body = b"".join(stream_frames(EVENTS))
    for size in (1, 7, 64, len(body)):
        decoder = BedrockStreamDecoder()
        out = b"".join(decoder.feed(body[i:i + size]) for i in range(0, len(body), size)) + decoder.finish()
        # message_stop arrives without Bedrock's invocation metrics: exactly what Anthropic sends.
        assert out == sse(EVENTS), size
        assert decoder.saw_stop and decoder.events == len(EVENTS)


def test_exception_frame_becomes_a_terminal_error_event() -> None:
    decoder = BedrockStreamDecoder()
    out = decoder.feed(chunk_frame(EVENTS[0]) + exception_frame("throttlingException", "Too many tokens"))
    out += decoder.feed(chunk_frame(EVENTS[1]))  # nothing after the error
    assert out == sse(EVENTS[:1]) + sse([{"type": "error", "error": {"type": "rate_limit_error",
                                                                   "message": "Bedrock: Too many tokens"}}])
    assert decoder.finish() == b""


def test_stream_cut_mid_frame_ends_with_an_error_event() -> None:
    body = b"".join(stream_frames(EVENTS))
    cut = len(chunk_frame(EVENTS[0])) + 10
    decoder = BedrockStreamDecoder()
    out = decoder.feed(body[:cut]) + decoder.finish()
    assert out.startswith(sse(EVENTS[:1]))
    assert out.endswith(b"event: error\ndata: " + orjson.dumps({"type": "error", "error": {
        "type": "api_error", "message": "the Bedrock stream broke off inside an event-stream frame"}}) + b"\n\n")


def test_stream_ending_between_frames_without_message_stop_is_an_error() -> None:
    decoder = BedrockStreamDecoder()
    out = decoder.feed(b"".join(stream_frames(EVENTS[:3]))) + decoder.finish()
    assert out.endswith(b'"the Bedrock stream broke off before message_stop"}}\n\n')


def test_corrupt_frame_fails_its_checksum() -> None:
    frame = bytearray(chunk_frame(EVENTS[1]))
    frame[-6] ^= 0xFF  # a payload byte: the message CRC no longer matches
    decoder = BedrockStreamDecoder()
    out = decoder.feed(bytes(frame))
    assert out.startswith(b"event: error\n") and b"ChecksumMismatch" in out
    assert decoder.done


def test_non_chunk_events_are_skipped() -> None:
    decoder = BedrockStreamDecoder()
    initial = encode_frame([(":event-type", "initial-response"), (":message-type", "event")], b"{}")
    assert decoder.feed(initial + chunk_frame(EVENTS[1])) == sse(EVENTS[1:2])

"""The pure pieces of the cloud ingress (tollway/wire/cloud_ingress.py): event-stream encoding
round-tripped through botocore's decoder and through the anthropic SDK's own Bedrock stream
decoder, the paths Claude Code and the SDKs call, the body conversions, and the error bodies."""

from __future__ import annotations

import base64
import json
import urllib.parse

import orjson
import pytest
from anthropic.lib.bedrock._stream_decoder import AWSEventStreamDecoder
from botocore.eventstream import EventStreamBuffer

from tests.test_bedrock_stream import EVENTS, sse
from tollway.wire.bedrock_stream import BedrockStreamDecoder
from tollway.wire.cloud_ingress import (
    BedrockCall,
    SseToEventStream,
    VertexCall,
    bedrock_error,
    bedrock_request,
    parse_bedrock_path,
    parse_vertex_path,
    vertex_error,
    vertex_request,
)

WITH_PING = [*EVENTS[:2], {"type": "ping"}, *EVENTS[2:]]


def encode(events_sse: bytes, size: int) -> bytes:
    enc = SseToEventStream()
    return b"".join(enc.feed(events_sse[i:i + size]) for i in range(0, len(events_sse), size))


@pytest.mark.parametrize("size", [1, 5, 100, 10_000])
def test_frames_decode_with_botocore_in_any_split(size: int) -> None:
    frames = encode(sse(WITH_PING), size)
    buffer = EventStreamBuffer()
    buffer.add_data(frames)
    messages = list(buffer)
    assert len(messages) == len(WITH_PING) and buffer._data == b""
    for message, event in zip(messages, WITH_PING, strict=True):
        assert message.headers == {":event-type": "chunk", ":content-type": "application/json",
                                   ":message-type": "event"}
        assert message.to_response_dict()["status_code"] == 200
        inner = json.loads(message.payload)
        assert list(inner) == ["bytes"]
        assert orjson.loads(base64.b64decode(inner["bytes"])) == event


def test_the_anthropic_sdk_bedrock_decoder_reads_the_frames() -> None:
    frames = encode(sse(WITH_PING), 64)
    got = list(AWSEventStreamDecoder().iter_bytes(iter([frames[:33], frames[33:]])))
    assert [(e.event, e.json()) for e in got] == [(e["type"], e) for e in WITH_PING]


def test_round_trip_back_to_the_same_sse() -> None:
    original = sse(EVENTS)
    decoder = BedrockStreamDecoder()
    assert decoder.feed(encode(original, 7)) == original and decoder.saw_stop


def test_error_event_becomes_the_exception_frame_bedrock_sends() -> None:
    frames = encode(sse([EVENTS[0], {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}]),
                    1000)
    buffer = EventStreamBuffer()
    buffer.add_data(frames)
    _, error = list(buffer)
    assert error.headers == {":exception-type": "serviceUnavailableException", ":content-type": "application/json",
                             ":message-type": "exception"}
    assert orjson.loads(error.payload) == {"message": "busy"}
    sdk = list(AWSEventStreamDecoder().iter_bytes(iter([frames])))
    assert sdk[-1].event == "error" and sdk[-1].json()["error"]["type"] == "serviceUnavailableException"


ARN = "arn:aws:bedrock:us-east-1:123456789012:application-inference-profile/abc123"


@pytest.mark.parametrize(("path", "expected"), [
    ("/model/us.anthropic.claude-sonnet-4-5-20250929-v1:0/invoke",
     BedrockCall("us.anthropic.claude-sonnet-4-5-20250929-v1:0", "invoke")),
    ("/model/claude-sonnet-4-5/invoke-with-response-stream", BedrockCall("claude-sonnet-4-5",
                                                                         "invoke-with-response-stream")),
    (f"/model/{urllib.parse.quote(ARN, safe=':')}/invoke", BedrockCall(ARN, "invoke")),
    ("/model/m/count-tokens", BedrockCall("m", "count-tokens")),
    ("/model/m/converse", None), ("/model//invoke", None), ("/model/a/b/invoke", None), ("/v1/messages", None),
    ("/model/%2E%2E/invoke", None),
])
def test_bedrock_paths(path: str, expected: BedrockCall | None) -> None:
    assert parse_bedrock_path(path) == expected


@pytest.mark.parametrize(("path", "expected"), [
    ("/v1/projects/p1/locations/us-east5/publishers/anthropic/models/claude-sonnet-4-5@20250929:rawPredict",
     VertexCall("p1", "us-east5", "claude-sonnet-4-5@20250929", "rawPredict")),
    ("/v1/projects/p1/locations/global/publishers/anthropic/models/claude-opus-4-1%3Bx:streamRawPredict",
     VertexCall("p1", "global", "claude-opus-4-1;x", "streamRawPredict")),
    ("/v1/projects/p1/locations/eu/publishers/anthropic/models/count-tokens:rawPredict",
     VertexCall("p1", "eu", "count-tokens", "rawPredict")),
    ("/v1/projects/p1/locations/eu/publishers/anthropic/models/count-tokens:streamRawPredict", None),
    ("/v1/projects/p1/locations/eu/publishers/google/models/gemini:rawPredict", None),
    ("/v1/projects/p1/locations/eu/publishers/anthropic/models/m:predict", None),
])
def test_vertex_paths(path: str, expected: VertexCall | None) -> None:
    assert parse_vertex_path(path) == expected


def test_bodies_back_to_the_canonical_request() -> None:
    body = {"anthropic_version": "bedrock-2023-05-31", "anthropic_beta": ["a-1", "b-2"], "max_tokens": 5,
            "messages": [{"role": "user", "content": "hi"}]}
    out, betas = bedrock_request(BedrockCall("m", "invoke-with-response-stream"), body)
    assert out == {"model": "m", "stream": True, "max_tokens": 5, "messages": body["messages"]} and betas == "a-1,b-2"
    out, betas = bedrock_request(BedrockCall("m", "invoke"), {**body, "anthropic_beta": []})
    assert "stream" not in out and betas is None
    vbody = {"anthropic_version": "vertex-2023-10-16", "stream": True, "max_tokens": 5, "messages": []}
    assert vertex_request(VertexCall("p", "r", "m", "streamRawPredict"), vbody) == {
        "stream": True, "max_tokens": 5, "messages": [], "model": "m"}
    assert vertex_request(VertexCall("p", "r", "count-tokens", "rawPredict"), {"model": "m2", "messages": []}) == {
        "model": "m2", "messages": []}


def test_error_bodies() -> None:
    assert bedrock_error(429, "slow down") == (429, {"x-amzn-errortype": "ThrottlingException",
                                                     "content-type": "application/json"}, b'{"message":"slow down"}')
    assert bedrock_error(529, "busy")[0:2] == (503, {"x-amzn-errortype": "ServiceUnavailableException",
                                                     "content-type": "application/json"})
    assert bedrock_error(403, "no")[1]["x-amzn-errortype"] == "AccessDeniedException"
    status, _, body = vertex_error(401, "who are you")
    assert status == 401 and orjson.loads(body) == {"error": {"code": 401, "message": "who are you",
                                                              "status": "UNAUTHENTICATED"}}
    assert orjson.loads(vertex_error(529, "busy")[2])["error"] == {"code": 503, "message": "busy",
                                                                   "status": "UNAVAILABLE"}

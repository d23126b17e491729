"""Bedrock's InvokeModelWithResponseStream answer, decoded back into Anthropic SSE bytes. Pure, no I/O.

Bedrock frames a stream in the AWS event-stream encoding (binary frames: a prelude with lengths
and a CRC32, typed headers, a payload, a message CRC32). Each `chunk` event's payload is JSON,
`{"bytes": "<base64>"}`, and those bytes are exactly one Anthropic stream event as JSON. The
frames are parsed by botocore's `EventStreamBuffer` (never by hand: it checks both CRCs and the
length limits); the event JSON is relayed as it came, framed as Anthropic frames it
(`event: <type>\\ndata: <json>\\n\\n`), and parsed only where something must change: Bedrock adds
`amazon-bedrock-invocationMetrics` to `message_stop`, which no Anthropic client expects.

An `exception` frame (throttling, model stream error…) becomes the Anthropic `error` event that
ends a stream, with the Anthropic error type for it; a frame that fails its checksum, or a body
that ends inside a frame or before `message_stop`, becomes an `api_error` event — never a stream
that just stops.
"""

from __future__ import annotations

import binascii
from typing import Any

import orjson
from botocore.eventstream import EventStreamBuffer, EventStreamHeaderParser, ParserError

# The exception frames of Bedrock's ResponseStream, and the Anthropic error type each becomes.
EXCEPTION_TYPES: dict[str, str] = {
    "throttlingException": "rate_limit_error",
    "serviceUnavailableException": "overloaded_error",
    "modelTimeoutException": "timeout_error",
    "validationException": "invalid_request_error",
    "internalServerException": "api_error",
    "modelStreamErrorException": "api_error",
}
_METRICS_KEY = b'"amazon-bedrock-invocationMetrics"'
_TYPE_PREFIX = b'{"type":"'


def error_event(error_type: str, message: str) -> bytes:
    data = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"


def _event_type(data: bytes) -> bytes | None:
    """The event's `type`, read from the front of its JSON when it is there (it always is in
    Bedrock's output), else by parsing."""
    if data.startswith(_TYPE_PREFIX):
        end = data.find(b'"', len(_TYPE_PREFIX))
        if end > 0:
            return data[len(_TYPE_PREFIX):end]
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        return None
    kind = event.get("type") if isinstance(event, dict) else None
    return kind.encode() if isinstance(kind, str) else None


class _RememberedHeaders:
    """botocore's header parser, its answers remembered by the header bytes. Every `chunk` frame
    of a Bedrock stream carries the same three headers, and parsing them (pure Python, value by
    value) is most of what decoding a frame costs; a stream has a handful of distinct header
    blocks, so the memo stays tiny. The parsed dicts are shared: they are only read."""

    __slots__ = ("_memo", "_parser")
    LIMIT = 32

    def __init__(self) -> None:
        self._parser = EventStreamHeaderParser()
        self._memo: dict[bytes, dict[str, Any]] = {}

    def parse(self, data: bytes) -> dict[str, Any]:
        found = self._memo.get(data)
        if found is None:
            found = self._parser.parse(data)
            if len(self._memo) < self.LIMIT:
                self._memo[bytes(data)] = found
        return found


_HEADERS = _RememberedHeaders()  # shared by every stream: the same few header blocks everywhere


class BedrockStreamDecoder:
    """Feed it the response body as it arrives; it returns the Anthropic SSE bytes ready so far."""

    __slots__ = ("_buffer", "done", "events", "saw_stop")

    def __init__(self) -> None:
        self._buffer = EventStreamBuffer()
        self._buffer._header_parser = _HEADERS
        self.done = False  # message_stop or an error went out: anything after is ignored
        self.saw_stop = False
        self.events = 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        self._buffer.add_data(data)
        out: list[bytes] = []
        try:
            for message in self._buffer:
                out.append(self._message(message.headers, message.payload))
                if self.done:
                    break
        except ParserError as exc:
            self.done = True
            out.append(error_event("api_error", f"the Bedrock event stream was corrupt ({type(exc).__name__})"))
        return b"".join(out)

    def finish(self) -> bytes:
        """At the end of the body: an error event unless the message was complete."""
        if self.done:
            return b""
        self.done = True
        where = "inside an event-stream frame" if self._buffer._data else "before message_stop"
        return error_event("api_error", f"the Bedrock stream broke off {where}")

    def _message(self, headers: dict[str, Any], payload: bytes) -> bytes:
        kind = headers.get(":message-type")
        if kind == "exception" or kind == "error":
            self.done = True
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "internalServerException")
            try:
                message = orjson.loads(payload).get("message") or name
            except (orjson.JSONDecodeError, AttributeError):
                message = name
            return error_event(EXCEPTION_TYPES.get(name, "api_error"), f"Bedrock: {message}")
        if headers.get(":event-type") != "chunk":
            return b""  # initial-response and other non-chunk events carry nothing for the client
        try:
            data = binascii.a2b_base64(orjson.loads(payload)["bytes"])
        except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
            self.done = True
            return error_event("api_error", "Bedrock sent a stream chunk without an event in it")
        event_type = _event_type(data)
        if event_type is None:
            self.done = True
            return error_event("api_error", "Bedrock sent a stream event that is not Anthropic JSON")
        self.events += 1
        if event_type == b"message_stop":
            self.done = self.saw_stop = True
            if _METRICS_KEY in data:
                event = orjson.loads(data)
                event.pop("amazon-bedrock-invocationMetrics", None)
                data = orjson.dumps(event)
        return b"event: " + event_type + b"\ndata: " + data + b"\n\n"

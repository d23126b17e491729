"""Bedrock's InvokeModelWithResponseStream answer, decoded back into Anthropic SSE bytes. Pure, no I/O.

Bedrock frames a stream in the AWS event-stream encoding (binary frames: a prelude with lengths
and a CRC32, typed headers, a payload, a message CRC32). Each `chunk` event's payload is JSON,
`{"bytes": "<base64>"}`, and those bytes are exactly one Anthropic stream event as JSON. The
frames are read by wire/eventstream.py (both CRCs and botocore's length limits checked, the
headers parsed by botocore's parser). The payload is not parsed as JSON when it has the shape
Bedrock sends (`{"bytes":"…"}`, the base64 alphabet has no `"`): the base64 is decoded once
and the event JSON relayed as it came, framed as Anthropic frames it
(`event: <type>\\ndata: <json>\\n\\n`) — no JSON parse and re-serialisation per event. Any other
payload shape is parsed with orjson. The event is parsed only where something must change:
Bedrock adds `amazon-bedrock-invocationMetrics` to `message_stop`, which no Anthropic client
expects.

An `exception` frame (throttling, model stream error…) becomes the Anthropic `error` event that
ends a stream, with the Anthropic error type for it; a frame that fails its checksum, or a body
that ends inside a frame or before `message_stop`, becomes an `api_error` event — never a stream
that just stops.
"""

from __future__ import annotations

import binascii
from binascii import a2b_base64
from typing import Any

import orjson

from tollway.wire.eventstream import FrameReader

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
_TYPE_AT = len(_TYPE_PREFIX)
_BYTES_PREFIX = b'{"bytes":"'
_BYTES_AT = len(_BYTES_PREFIX)
_PAD_PREFIX = b',"p":"'


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


def _base64_of(payload: bytes) -> Any:
    """The `bytes` field of a chunk payload: sliced out when the payload has the shape Bedrock
    sends — `{"bytes":"…"}`, or with Bedrock's padding field after it, `{"bytes":"…","p":"abc…"}`
    (letters and digits) — else parsed (raising what orjson and a missing key raise)."""
    if payload.startswith(_BYTES_PREFIX):
        end = payload.find(b'"', _BYTES_AT)
        rest = payload[end + 1:]
        if rest == b"}" or (rest.startswith(_PAD_PREFIX) and rest.endswith(b'"}') and rest[6:-2].isalnum()):
            return payload[_BYTES_AT:end]
    return orjson.loads(payload)["bytes"]


class BedrockStreamDecoder:
    """Feed it the response body as it arrives; it returns the Anthropic SSE bytes ready so far."""

    __slots__ = ("_frames", "done", "events", "saw_stop")

    def __init__(self) -> None:
        self._frames = FrameReader()
        self.done = False  # message_stop or an error went out: anything after is ignored
        self.saw_stop = False
        self.events = 0

    def feed(self, data: bytes) -> bytes:
        if self.done:
            return b""
        frames = self._frames
        out: list[bytes] = []
        for headers, payload in frames.feed(data):
            if headers.get(":event-type") == "chunk" and headers.get(":message-type") == "event":
                # The hot path, once per streamed event: the payload {"bytes":"…"} (125 is "}")
                # sliced, its base64 decoded, the event's type read from the front of its JSON.
                end = payload.find(b'"', _BYTES_AT)
                try:
                    if end == len(payload) - 2 and payload[-1] == 125 and payload.startswith(_BYTES_PREFIX):
                        event = a2b_base64(payload[_BYTES_AT:end])
                    else:
                        event = a2b_base64(_base64_of(payload))
                except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
                    out.append(self._fail("Bedrock sent a stream chunk without an event in it"))
                    break
                if event.startswith(_TYPE_PREFIX):
                    end = event.find(b'"', _TYPE_AT)
                    kind = event[_TYPE_AT:end] if end > 0 else _event_type(event)
                else:
                    kind = _event_type(event)
                if kind is None:
                    out.append(self._fail("Bedrock sent a stream event that is not Anthropic JSON"))
                    break
                self.events += 1
                if kind == b"message_stop":
                    out.append(self._stop(event))
                    break
                out.append(b"event: " + kind + b"\ndata: " + event + b"\n\n")
            else:
                out.append(self._other(headers, payload))
                if self.done:
                    break
        else:
            if frames.error is not None:
                out.append(self._fail(f"the Bedrock event stream was corrupt ({type(frames.error).__name__})"))
        return b"".join(out)

    def finish(self) -> bytes:
        """At the end of the body: an error event unless the message was complete."""
        if self.done:
            return b""
        where = "inside an event-stream frame" if self._frames.pending else "before message_stop"
        return self._fail(f"the Bedrock stream broke off {where}")

    def _fail(self, message: str) -> bytes:
        self.done = True
        return error_event("api_error", message)

    def _stop(self, event: bytes) -> bytes:
        """message_stop, without the invocation metrics Bedrock adds (module doc)."""
        self.done = self.saw_stop = True
        if _METRICS_KEY in event:
            parsed = orjson.loads(event)
            parsed.pop("amazon-bedrock-invocationMetrics", None)
            event = orjson.dumps(parsed)
        return b"event: message_stop\ndata: " + event + b"\n\n"

    def _other(self, headers: dict[str, Any], payload: bytes) -> bytes:
        """A message that is not a chunk event: an exception ends the stream, the rest is skipped."""
        kind = headers.get(":message-type")
        if kind == "exception" or kind == "error":
            self.done = True
            name = str(headers.get(":exception-type") or headers.get(":error-code") or "internalServerException")
            try:
                message = orjson.loads(payload).get("message") or name
            except (orjson.JSONDecodeError, AttributeError):
                message = name
            return error_event(EXCEPTION_TYPES.get(name, "api_error"), f"Bedrock: {message}")
        return b""  # initial-response and other non-chunk events carry nothing for the client

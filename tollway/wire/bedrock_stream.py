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

The per-event cost is the issue's speed target (at most 20 % over the plain SSE relay, counted in
instructions by bench/clouds.py), so whole `chunk` frames — one per read while a model streams —
are decoded in one fused loop in `feed`: a frame start seen before (prelude, headers block,
`{"bytes":"`) is one dict lookup, then the message CRC, one base64 decode, a text delta's type
known from the front of its JSON. Anything else (a frame split across reads, other headers or
payload shapes, message_stop, a failed check) goes through FrameReader as before, which checks
it again in botocore's order: the same output and the same errors, at the old cost.

An `exception` frame (throttling, model stream error…) becomes the Anthropic `error` event that
ends a stream, with the Anthropic error type for it; a frame that fails its checksum, or a body
that ends inside a frame or before `message_stop`, becomes an `api_error` event — never a stream
that just stops.
"""

from __future__ import annotations

import binascii
import struct
import zlib
from binascii import a2b_base64
from typing import Any

import orjson

from tollway.wire.eventstream import CHUNK_HEAD, MAX_PAYLOAD, MIN_MESSAGE, PRELUDE, FrameReader

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
# A chunk frame with the headers block Bedrock sends (its three headers, in its order): the fused path.
_CHUNK_HEAD_LEN = len(CHUNK_HEAD)
_CHUNK_START = CHUNK_HEAD + _BYTES_PREFIX  # the headers block and the payload's start
_CHUNK_BASE64 = PRELUDE + len(_CHUNK_START)  # where the base64 starts
_CHUNK_MIN = MIN_MESSAGE + _CHUNK_HEAD_LEN + len(b'{"bytes":""}')
_CHUNK_MAX = MIN_MESSAGE + _CHUNK_HEAD_LEN + MAX_PAYLOAD  # botocore's payload limit
_PRELUDE = struct.Struct(">III")
# The starts of chunk frames (prelude, headers block, `{"bytes":"`) already checked — the prelude's
# CRC, botocore's limits, Bedrock's headers — with their (total length, prelude CRC): a pure function
# of those bytes, so a start seen before is one dict lookup (chunk frames repeat a few hundred lengths).
_GOOD_STARTS: dict[bytes, tuple[int, int]] = {}
_GOOD_STARTS_LIMIT = 2048
_DELTA_START = _TYPE_PREFIX + b'content_block_delta"'
_DELTA_AT = len(_DELTA_START)
_DELTA_LINE = b"event: content_block_delta\ndata: "
_UINT32 = struct.Struct(">I")


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
        if rest == b"}" or _padded(rest):
            return payload[_BYTES_AT:end]
    return orjson.loads(payload)["bytes"]


def _chunk_start(data: bytes, pos: int) -> tuple[int, int] | None:
    """(total length, prelude CRC) of the chunk frame at POS when its prelude passes botocore's
    checks and its headers block is Bedrock's, remembered in _GOOD_STARTS; else None."""
    total, head_len, prelude_crc = _PRELUDE.unpack_from(data, pos)
    if head_len != _CHUNK_HEAD_LEN or not _CHUNK_MIN <= total <= _CHUNK_MAX \
            or zlib.crc32(data[pos:pos + 8]) != prelude_crc or data[pos + PRELUDE:pos + _CHUNK_BASE64] != _CHUNK_START:
        return None
    if len(_GOOD_STARTS) < _GOOD_STARTS_LIMIT:
        _GOOD_STARTS[data[pos:pos + _CHUNK_BASE64]] = (total, prelude_crc)
    return total, prelude_crc


def _padded(rest: bytes) -> bool:
    """Whether REST, what follows the base64's closing quote, is Bedrock's padding field and the end."""
    return rest.startswith(_PAD_PREFIX) and rest.endswith(b'"}') and rest[6:-2].isalnum()


class BedrockStreamDecoder:
    """Feed it the response body as it arrives; it returns the Anthropic SSE bytes ready so far."""

    __slots__ = ("_frames", "_pending", "done", "events", "saw_stop")

    def __init__(self) -> None:
        self._frames = FrameReader()
        self._pending = self._frames.tail  # non-empty while a frame is split across reads
        self.done = False  # message_stop or an error went out: anything after is ignored
        self.saw_stop = False
        self.events = 0

    def feed(self, data: bytes) -> bytes:
        """The SSE of the events DATA completes.

        Whole `chunk` frames with Bedrock's headers block (a model streaming tokens sends one per
        read) take the fused loop here, the hot path, once per streamed event: the frame's start
        (prelude, headers, `{"bytes":"`) one dict lookup once seen (_GOOD_STARTS), the message CRC,
        one base64 decode, the event's type read from the front of its JSON. Whatever it does not take — a frame split
        across reads, other headers, another payload shape, message_stop, anything that fails a
        check — goes through FrameReader (_general), which checks it again in botocore's order
        and raises what botocore raises: the fused loop changes no outcome, only what it costs."""
        if self.done:
            return b""
        out: list[bytes] = []
        pos = 0
        end = len(data)
        if not self._pending and end >= _CHUNK_MIN:
            n = 0
            crc32, a2b, starts, crc_of = zlib.crc32, a2b_base64, _GOOD_STARTS, _UINT32.unpack_from
            while True:
                known = starts.get(data[pos:pos + _CHUNK_BASE64]) or _chunk_start(data, pos)
                if known is None:
                    break
                total, prelude_crc = known
                crc_at = pos + total - 4
                at = pos + _CHUNK_BASE64
                if total > end - pos or crc32(data[pos + 8:crc_at], prelude_crc) != crc_of(data, crc_at)[0]:
                    break
                # {"bytes":"…"} (125 is "}"), or with Bedrock's padding after it (_base64_of's rule)
                quote = data.find(b'"', at, crc_at)
                if (quote != crc_at - 2 or data[crc_at - 1] != 125) \
                        and (quote < 0 or not _padded(data[quote + 1:crc_at])):
                    break
                try:
                    event = a2b(data[at:quote])
                except binascii.Error:
                    break
                if event[:_DELTA_AT] == _DELTA_START:  # most events: their type known from the front
                    out.append(_DELTA_LINE + event + b"\n\n")
                else:
                    close = event.find(b'"', _TYPE_AT)
                    if close <= _TYPE_AT or event[:_TYPE_AT] != _TYPE_PREFIX:
                        break
                    kind = event[_TYPE_AT:close]
                    if kind == b"message_stop":
                        break  # the last event: _general (metrics removed, the stream ended)
                    out += (b"event: ", kind, b"\ndata: ", event, b"\n\n")
                n += 1
                pos += total
                if end - pos < _CHUNK_MIN:
                    break
            self.events += n
            if pos == end:
                return out[0] if len(out) == 1 else b"".join(out)
        self._general(data[pos:] if pos else data, out)
        return b"".join(out)

    def _general(self, data: bytes, out: list[bytes]) -> None:
        frames = self._frames
        for headers, payload in frames.feed(data):
            if headers.get(":event-type") == "chunk" and headers.get(":message-type") == "event":
                try:
                    event = a2b_base64(_base64_of(payload))
                except (orjson.JSONDecodeError, KeyError, TypeError, binascii.Error):
                    out.append(self._fail("Bedrock sent a stream chunk without an event in it"))
                    return
                kind = _event_type(event)
                if kind is None:
                    out.append(self._fail("Bedrock sent a stream event that is not Anthropic JSON"))
                    return
                self.events += 1
                if kind == b"message_stop":
                    out.append(self._stop(event))
                    return
                out.append(b"event: " + kind + b"\ndata: " + event + b"\n\n")
            else:
                out.append(self._other(headers, payload))
                if self.done:
                    return
        if frames.error is not None:
            out.append(self._fail(f"the Bedrock event stream was corrupt ({type(frames.error).__name__})"))

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

"""The pure pieces of the cloud ingress (issue 13, items 6-7): Tollway answering Claude Code and
the SDKs' `AnthropicBedrock` / `AnthropicVertex` clients in the clouds' own wire formats. No I/O;
the request runner and surfaces that use them are built elsewhere.

* **Paths**: `/model/{model}/invoke`, `/model/{model}/invoke-with-response-stream` and
  `/model/{model}/count-tokens` (Bedrock; the model id URL-encoded, so ARNs arrive with `%2F`),
  and `/v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict`,
  `:streamRawPredict`, `…/models/count-tokens:rawPredict` (Vertex; the SDK encodes `;` as `%3B`).
* **Bodies**: a cloud body back to the canonical Messages request — `model` from the path,
  `stream` from the action (Bedrock) or the body (Vertex), `anthropic_version` removed (the
  gateway speaks to its upstreams with their own), Bedrock's `anthropic_beta` list back into an
  `anthropic-beta` header value.
* **Event-stream encoding**: Anthropic SSE → AWS event-stream frames exactly as Bedrock frames
  them: each event a `chunk` message (`:event-type`, `:content-type`, `:message-type` string
  headers) whose JSON payload holds the event base64-encoded, prelude and message CRC32 as the
  format specifies (wire/eventstream.py: the headers block built once, zlib's CRC-32, the one
  botocore checks); the SSE is cut at its blank lines and only the `data:` bytes go into the
  frame, never parsed as JSON (a chunk that is one whole text delta, the relay's usual chunk, is
  framed without the cutting, its prelude remembered by length); an Anthropic `error` event
  becomes the exception frame Bedrock would send. Round-tripped through botocore's decoder in
  tests/test_bedrock_ingress_wire.py.
* **Error bodies**: Bedrock's rest-json errors (`x-amzn-ErrorType` header, `{"message"}` body)
  and Google's error envelope for Vertex, from a status, an Anthropic error type and a message.
"""

from __future__ import annotations

import base64
import binascii
import re
import struct
import zlib
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote

import orjson

from tollway.wire import eventstream

BEDROCK_ACTIONS = ("invoke", "invoke-with-response-stream", "count-tokens")
VERTEX_VERBS = ("rawPredict", "streamRawPredict")

# ---------------------------------------------------------------------------------------------
# Paths


@dataclass(frozen=True, slots=True)
class BedrockCall:
    model: str
    action: str  # one of BEDROCK_ACTIONS

    @property
    def stream(self) -> bool:
        return self.action == "invoke-with-response-stream"


@dataclass(frozen=True, slots=True)
class VertexCall:
    project: str
    region: str
    model: str  # "count-tokens" for the count endpoint
    verb: str  # one of VERTEX_VERBS

    @property
    def count_tokens(self) -> bool:
        return self.model == "count-tokens" and self.verb == "rawPredict"


def parse_bedrock_path(path: str) -> BedrockCall | None:
    """The model and action of a Bedrock runtime path as it arrived (still percent-encoded)."""
    if not path.startswith("/model/"):
        return None
    encoded, sep, action = path[len("/model/"):].rpartition("/")
    if not sep or not encoded or action not in BEDROCK_ACTIONS or "/" in encoded:
        return None
    model = unquote(encoded)
    return BedrockCall(model, action) if model and model not in (".", "..") else None


def parse_vertex_path(path: str) -> VertexCall | None:
    parts = path.split("/")
    # ['', 'v1', 'projects', p, 'locations', r, 'publishers', 'anthropic', 'models', 'm:verb']
    if (len(parts) != 10 or parts[1] != "v1" or parts[2] != "projects" or parts[4] != "locations"
            or parts[6:9] != ["publishers", "anthropic", "models"]):
        return None
    model, sep, verb = unquote(parts[9]).rpartition(":")
    if not sep or not model or verb not in VERTEX_VERBS or not parts[3] or not parts[5]:
        return None
    if model == "count-tokens" and verb != "rawPredict":
        return None
    return VertexCall(unquote(parts[3]), unquote(parts[5]), model, verb)


# ---------------------------------------------------------------------------------------------
# Bodies


def bedrock_request(call: BedrockCall, body: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """(the canonical Messages request, the anthropic-beta header value) for a Bedrock body."""
    out = {k: v for k, v in body.items() if k not in ("anthropic_version", "anthropic_beta")}
    out["model"] = call.model
    if call.stream:
        out["stream"] = True
    else:
        out.pop("stream", None)
    betas = body.get("anthropic_beta")
    header = ",".join(str(b) for b in betas) if isinstance(betas, list) and betas else None
    return out, header


def vertex_request(call: VertexCall, body: dict[str, Any]) -> dict[str, Any]:
    """The canonical Messages request for a Vertex body (count-tokens bodies name their model)."""
    out = {k: v for k, v in body.items() if k != "anthropic_version"}
    if not call.count_tokens:
        out["model"] = call.model
    return out


# ---------------------------------------------------------------------------------------------
# Event-stream encoding

def encode_message(headers: list[tuple[str, str]], payload: bytes) -> bytes:
    """One event-stream message with string-valued HEADERS (wire/eventstream.py)."""
    return eventstream.encode(eventstream.header_block(headers), payload)


# Every chunk frame carries the same headers: their block is built once.
_CHUNK_HEAD = eventstream.CHUNK_HEAD
_CHUNK_HEAD_LEN = struct.pack(">I", len(_CHUNK_HEAD))
_CHUNK_OVERHEAD = eventstream.MIN_MESSAGE + len(_CHUNK_HEAD)
_UINT32 = struct.Struct(">I")
# An Anthropic stream error type, and the Bedrock exception frame that says the same.
EXCEPTION_NAMES: dict[str, str] = {
    "rate_limit_error": "throttlingException",
    "overloaded_error": "serviceUnavailableException",
    "timeout_error": "modelTimeoutException",
    "invalid_request_error": "validationException",
}


def chunk_message(event_json: bytes) -> bytes:
    """The chunk frame Bedrock sends for one event (SseToEventStream inlines the same)."""
    return eventstream.encode(_CHUNK_HEAD, b'{"bytes":"' + binascii.b2a_base64(event_json, newline=False) + b'"}')


def exception_message(error_type: str, message: str) -> bytes:
    name = EXCEPTION_NAMES.get(error_type, "internalServerException")
    return encode_message([(":exception-type", name), (":content-type", "application/json"),
                           (":message-type", "exception")], orjson.dumps({"message": message}))


class SseToEventStream:
    """Feed it Anthropic SSE bytes as they come; it returns the event-stream frames ready so far.

    Linear however the SSE is split (as wire/sse.StreamTap): an unfinished event is kept as a
    list of pieces and joined once its blank line arrives; only the new bytes (and the one byte
    before them, for a blank line split across reads) are searched."""

    __slots__ = ("_tail",)

    def __init__(self) -> None:
        self._tail: list[bytes] = []

    def feed(self, chunk: bytes) -> bytes:
        # The hot path, once per streamed token: a chunk that is exactly one whole text delta
        # (`event: content_block_delta\ndata: <json>\n\n`, one line of data — how the relay
        # hands them over) becomes its frame without splitting or searching the SSE further,
        # the prelude of its length taken from a memo. Byte for byte the frame the general
        # path below builds (tests/test_bedrock_eventstream.py holds both to botocore).
        if not self._tail and chunk[:_DELTA_AT] == _DELTA_HEAD and chunk.find(b"\n", _DELTA_AT) == len(chunk) - 2 \
                and chunk[-1] == 10:
            b64 = binascii.b2a_base64(chunk[_DELTA_AT:-2], newline=False)
            prefix = _PREFIXES.get(len(b64)) or _chunk_prefix(len(b64))
            message = b"".join((prefix, b64, b'"}'))
            return message + _UINT32.pack(zlib.crc32(message))
        return self._feed(chunk)

    def _feed(self, chunk: bytes) -> bytes:
        if not chunk:
            return b""
        tail = self._tail
        end = chunk.rfind(b"\n\n")
        if end >= 0:
            data = b"".join((*tail, chunk[:end])) if tail else chunk[:end]
            rest = chunk[end + 2:]
        elif chunk[0] == 0x0A and tail and tail[-1].endswith(b"\n"):  # "...\n" | "\n..."
            data, rest = b"".join(tail)[:-1], chunk[1:]
        else:
            tail.append(chunk)
            return b""
        self._tail = [rest] if rest else []
        out = []
        # Inlined eventstream.encode for the one headers block every chunk has (the hot path).
        head, head_len, pack, crc32, b2a = _CHUNK_HEAD, _CHUNK_HEAD_LEN, _UINT32.pack, zlib.crc32, binascii.b2a_base64
        for raw in data.split(b"\n\n"):
            pos = raw.find(b"data: ")
            if pos < 0:
                continue
            stop = raw.find(b"\n", pos)
            event = raw[pos + 6:stop] if stop > 0 else raw[pos + 6:]
            if raw.startswith(b"event: error"):
                out.append(_error_message(event))
                continue
            payload = b'{"bytes":"' + b2a(event, newline=False) + b'"}'
            prelude = pack(_CHUNK_OVERHEAD + len(payload)) + head_len
            prelude_crc = crc32(prelude)
            rest = pack(prelude_crc) + head + payload
            out.append(prelude + rest + pack(crc32(rest, prelude_crc)))
        return b"".join(out)


_DELTA_HEAD = b"event: content_block_delta\ndata: "
_DELTA_AT = len(_DELTA_HEAD)
# By the base64's length: a chunk frame's prelude (lengths, CRC), headers block and payload start.
_PREFIXES: dict[int, bytes] = {}
_PREFIXES_LIMIT = 4096


def _chunk_prefix(b64_len: int) -> bytes:
    """The bytes of a chunk frame before its base64 of B64_LEN bytes (remembered: they depend
    only on that length)."""
    prelude = _UINT32.pack(_CHUNK_OVERHEAD + len(b'{"bytes":""}') + b64_len) + _CHUNK_HEAD_LEN
    prefix = prelude + _UINT32.pack(zlib.crc32(prelude)) + _CHUNK_HEAD + b'{"bytes":"'
    if len(_PREFIXES) < _PREFIXES_LIMIT:
        _PREFIXES[b64_len] = prefix
    return prefix


def _error_message(event: bytes) -> bytes:
    try:
        error = orjson.loads(event).get("error") or {}
    except (orjson.JSONDecodeError, AttributeError):
        error = {}
    return exception_message(str(error.get("type", "api_error")), str(error.get("message", "the stream failed")))


# ---------------------------------------------------------------------------------------------
# Error bodies

_BEDROCK_ERRORS: dict[int, str] = {
    400: "ValidationException", 401: "UnrecognizedClientException", 403: "AccessDeniedException",
    404: "ResourceNotFoundException", 408: "ModelTimeoutException", 413: "ValidationException",
    424: "ModelErrorException", 429: "ThrottlingException", 500: "InternalServerException",
    502: "InternalServerException", 503: "ServiceUnavailableException", 504: "ModelTimeoutException",
    529: "ServiceUnavailableException",
}
_GOOGLE_STATUS: dict[int, str] = {
    400: "INVALID_ARGUMENT", 401: "UNAUTHENTICATED", 403: "PERMISSION_DENIED", 404: "NOT_FOUND",
    409: "ABORTED", 413: "INVALID_ARGUMENT", 429: "RESOURCE_EXHAUSTED", 499: "CANCELLED", 500: "INTERNAL",
    501: "UNIMPLEMENTED", 502: "UNAVAILABLE", 503: "UNAVAILABLE", 504: "DEADLINE_EXCEEDED", 529: "UNAVAILABLE",
}


def bedrock_error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a Bedrock rest-json error. 529 is not an AWS status: 503."""
    name = _BEDROCK_ERRORS.get(status, "InternalServerException" if status >= 500 else "ValidationException")
    out_status = 503 if status == 529 else status
    return out_status, {"x-amzn-errortype": name, "content-type": "application/json"}, orjson.dumps(
        {"message": message})


def vertex_error(status: int, message: str) -> tuple[int, dict[str, str], bytes]:
    """(status, headers, body) of a Google API error, as Vertex answers before the model runs."""
    out_status = 503 if status == 529 else status
    state = _GOOGLE_STATUS.get(status, "INTERNAL" if status >= 500 else "INVALID_ARGUMENT")
    return out_status, {"content-type": "application/json"}, orjson.dumps(
        {"error": {"code": out_status, "message": message, "status": state}})


# ---------------------------------------------------------------------------------------------
# Model ids

_REGION_PREFIXES = ("us.", "eu.", "apac.", "jp.", "au.", "ca.", "us-gov.", "global.")
_VERSION_SUFFIX = re.compile(r"-v\d+(?::\d+)?$")


def model_candidates(model: str) -> list[str]:
    """The ids a cloud path's model may mean, most specific first (docs/providers.md, "Model ids").

    The rule: the id exactly as sent (a catalogue id or a configured alias, e.g. an alias
    `us.anthropic.claude-sonnet-4-20250514-v1:0`); else, after taking an ARN's last path segment
    (`arn:aws:bedrock:…:inference-profile/ID`, `…:foundation-model/ID`), that id; then the id without
    a cross-region prefix (`us.`, `eu.`, `apac.`, `global.`…), without the `anthropic.` provider
    prefix, and without a Bedrock version suffix (`-v1:0`) or a Vertex one (`@20250514`), each step
    applied to the previous one. The first candidate the catalogue resolves wins; none → 404 with
    the id as sent.
    """
    out = [model]
    current = model
    if current.startswith("arn:") and "/" in current:
        current = current.rsplit("/", 1)[1]
        out.append(current)
    for prefix in _REGION_PREFIXES:
        if current.startswith(prefix):
            current = current[len(prefix):]
            out.append(current)
            break
    if current.startswith("anthropic."):
        current = current[len("anthropic."):]
        out.append(current)
    stripped = _VERSION_SUFFIX.sub("", current)
    if "@" in stripped:
        stripped = stripped.split("@", 1)[0]
    if stripped != current:
        out.append(stripped)
    return [c for i, c in enumerate(out) if c and c not in out[:i]]


def bedrock_count_request(body: Any) -> dict[str, Any] | None:
    """The Messages body inside a Bedrock CountTokens request
    (`{"input": {"invokeModel": {"body": "<the InvokeModel body as a JSON string>"}}}`), or None."""
    if not isinstance(body, dict):
        return None
    invoke = (body.get("input") or {}).get("invokeModel") if isinstance(body.get("input"), dict) else None
    inner = invoke.get("body") if isinstance(invoke, dict) else None
    if isinstance(inner, str):  # a blob: base64 on the wire (rest-json), or plain JSON text
        try:
            inner = orjson.loads(inner)
        except orjson.JSONDecodeError:
            try:
                inner = orjson.loads(base64.b64decode(inner, validate=True))
            except (binascii.Error, orjson.JSONDecodeError):
                return None
    return inner if isinstance(inner, dict) else None

"""A faithful emulator of Anthropic's upstream API, served on loopback for the gateway's tests.

It records exactly what it received (method, path, raw query, headers, body bytes) and answers with
scripted replies or, by default, with what api.anthropic.com does, in Anthropic's exact wire format
(wire-contract.md sections 2-3): the error envelope with ``request_id``, a ``request-id`` header on
every response, and SSE events framed as ``event: <type>`` + ``data: <compact json>`` + blank line.

The server runs in a daemon thread with its own event loop, so synchronous tests and tests running
their own asyncio loop (the gateway) can both use it::

    with AnthropicEmulator() as emu:
        emu.script(JSONReply(status=529, body=error_body("overloaded_error", "Overloaded")))
        ...  # point the gateway at emu.base_url
        assert emu.received[0].headers["anthropic-version"]
"""

from __future__ import annotations

import asyncio
import itertools
import re
import socket
import struct
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson
from aiohttp import web

from tests.loopback import LoopbackServer

API_KEY_DEFAULT = "sk-ant-upstream-test"
MAX_BODY_BYTES = 32 * 1024 * 1024  # Anthropic's limit for Messages and Token Counting
MODELS = [  # newest first, as Anthropic lists them
    {"type": "model", "id": model_id, "display_name": name, "created_at": created}
    for model_id, name, created in [
        ("claude-haiku-4-5-20251001", "Claude Haiku 4.5", "2025-10-15T00:00:00Z"),
        ("claude-sonnet-4-5-20250929", "Claude Sonnet 4.5", "2025-09-29T00:00:00Z"),
    ]
]
MODEL_LIST = {"data": MODELS, "has_more": False, "first_id": MODELS[0]["id"], "last_id": MODELS[-1]["id"]}
_message_ids = itertools.count(1)  # process-wide so ids never repeat across emulators


@dataclass
class Received:
    """One request exactly as it arrived, so tests can assert what the gateway forwarded."""

    method: str
    path: str  # e.g. "/v1/messages" (no query)
    query: str  # raw query string, e.g. "beta=true"
    headers: dict[str, str]  # lower-cased names -> value (last occurrence wins)
    body: bytes  # exact bytes received

    @property
    def json(self) -> Any:
        """The body parsed as JSON, or None when it is empty (raises on malformed JSON)."""
        return orjson.loads(self.body) if self.body else None


@dataclass
class JSONReply:
    """A scripted non-streaming reply. ``body`` may be a dict (serialised compactly with orjson),
    raw bytes (sent verbatim, e.g. malformed JSON) or None (an empty body)."""

    status: int = 200
    body: Any = None
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering, to emulate a slow upstream


@dataclass
class SSEReply:
    """A scripted streaming reply: each chunk is written verbatim and drained on its own, so tests
    control exact bytes and split points (e.g. an event cut across two TCP writes) and timing."""

    chunks: list[bytes]
    delay: float = 0.0  # seconds to sleep before each chunk after the first
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    # After this many chunks, reset the connection (TCP RST, SO_LINGER 0) instead of going on.
    reset_after: int | None = None


def _reset(request: web.Request) -> None:
    """Abort the connection with a TCP RST, as a crashed upstream or a middlebox does mid-stream."""
    transport = request.transport
    assert transport is not None
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    transport.abort()


def sse_event(event: dict) -> bytes:
    """Frame one Anthropic SSE event exactly as Anthropic does: the ``event:`` name equals the JSON
    ``type`` (the Python SDK dispatches on the name, the TS SDK on ``type``), compact JSON data."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def error_body(error_type: str, message: str, request_id: str | None = None) -> dict:
    """Anthropic's error envelope; ``request_id`` is included when given, as Anthropic does."""
    body: dict[str, Any] = {"type": "error", "error": {"type": error_type, "message": message}}
    if request_id is not None:
        body["request_id"] = request_id
    return body


def _usage(input_tokens: int, output_tokens: int) -> dict:
    """Usage as real responses carry it, cache fields included (Claude Code breaks without them)."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "cache_creation": {"ephemeral_5m_input_tokens": 0, "ephemeral_1h_input_tokens": 0},
        "service_tier": "standard",
    }


def default_message(
    model: str, text: str = "Hello from the emulator.", input_tokens: int = 12, output_tokens: int = 6
) -> dict:
    """A complete non-streaming Message object; ids are ``msg_emu_000001``, ``msg_emu_000002``, ..."""
    return {
        "id": f"msg_emu_{next(_message_ids):06d}",
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": _usage(input_tokens, output_tokens),
    }


def default_stream_events(
    model: str, text: str = "Hello from the emulator.", input_tokens: int = 12, output_tokens: int = 6
) -> list[dict]:
    """The event sequence Anthropic streams for a one-text-block answer. ``text`` is split at word
    starts into several text_delta pieces whose concatenation is exactly ``text``."""
    start = default_message(model, text, input_tokens, 1)
    start.update(content=[], stop_reason=None)
    pieces = [p for p in re.split(r"(?<=\s)(?=\S)", text) if p]
    return [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        *(
            {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}
            for p in pieces
        ),
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        },
        {"type": "message_stop"},
    ]


def count_input_tokens(body: dict) -> int:
    """Deterministic stand-in for Anthropic's tokenizer: a quarter of the byte length of the compact
    JSON of ``[system, tools, messages]`` (so system and tools count, as they do upstream), min 1."""
    payload = [body.get("system"), body.get("tools"), body.get("messages")]
    return max(1, len(orjson.dumps(payload)) // 4)


class AnthropicEmulator(LoopbackServer):
    """Anthropic's API on 127.0.0.1 (free port). Default behaviour, in order, for every request:
    record it; 401 unless ``x-api-key`` (or ``Authorization: Bearer``, which anthropic-python 2.x
    sends for ``api_key=``) equals the key; 400 if ``anthropic-version`` is missing; then route.
    A queued scripted reply replaces the default answer of the next POST /v1/messages or
    /v1/messages/count_tokens request (no body validation then)."""

    thread_name = "anthropic-emulator"

    def __init__(self, api_key: str = API_KEY_DEFAULT) -> None:
        super().__init__()
        self.api_key = api_key
        self.received: list[Received] = []  # appended from the server thread under self._cond
        self.disconnects = 0  # replies cut short: client went away (write failed / handler cancelled)
        self.disconnected_at: list[float] = []  # time.monotonic() of each cut, in order
        self._cond = threading.Condition()
        self._script: deque[JSONReply | SSEReply] = deque()
        self._request_ids = itertools.count(1)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def reset(self) -> None:
        """Forget received requests, queued replies and the disconnects."""
        with self._cond:
            self.received.clear()
            self._script.clear()
            self.disconnects = 0
            self.disconnected_at.clear()

    def script(self, *replies: JSONReply | SSEReply) -> None:
        """Queue replies, consumed in order by the next POST /v1/messages(/count_tokens) requests."""
        with self._cond:
            self._script.extend(replies)

    def wait_for(self, n: int, timeout: float = 5.0) -> None:
        """Block until at least ``n`` requests were received; TimeoutError otherwise."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= n, timeout):
                raise TimeoutError(f"expected {n} requests, got {len(self.received)}")

    def wait_for_disconnects(self, n: int, timeout: float = 5.0) -> None:
        """Block until at least ``n`` replies were cut short (detection is asynchronous)."""
        with self._cond:
            if not self._cond.wait_for(lambda: self.disconnects >= n, timeout):
                raise TimeoutError(f"expected {n} disconnects, got {self.disconnects}")

    # ----- server side (runs on the emulator's own event loop) -----
    async def _listen(self) -> None:
        app = web.Application(client_max_size=MAX_BODY_BYTES)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        # handler_cancellation: a client disconnect cancels the handler at once (counted as disconnect);
        # short shutdown_timeout so stop() does not wait for slow scripted streams.
        await self._serve_app(app, handler_cancellation=True, shutdown_timeout=0.5)

    def _record(self, rec: Received) -> None:
        with self._cond:
            self.received.append(rec)
            self._cond.notify_all()

    def _cut_short(self) -> None:
        # With handler_cancellation the handler is cancelled as soon as the connection is lost, so
        # this is when the client (the gateway) closed it, to a few milliseconds.
        at = time.monotonic()
        with self._cond:
            self.disconnects += 1
            self.disconnected_at.append(at)
            self._cond.notify_all()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        rid = f"req_emu_{next(self._request_ids)}"
        try:
            body = await request.read()
        except web.HTTPRequestEntityTooLarge:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        self._record(Received(request.method, request.path, request.query_string, headers, body or b""))

        def error(status: int, error_type: str, message: str) -> web.Response:
            return self._json(rid, JSONReply(status, error_body(error_type, message, rid)))

        if body is None:
            return error(413, "request_too_large", "Request exceeds the maximum allowed number of bytes.")
        bearer = headers.get("authorization", "")
        key = headers.get("x-api-key") or (bearer[7:] if bearer.lower().startswith("bearer ") else None)
        if key is None:
            return error(401, "authentication_error", "x-api-key header is required")
        if key != self.api_key:
            return error(401, "authentication_error", "invalid x-api-key")
        if "anthropic-version" not in headers:
            return error(400, "invalid_request_error", "anthropic-version: header is required")

        route = (request.method, request.path)
        if route == ("GET", "/v1/models"):
            return self._json(rid, JSONReply(body=MODEL_LIST))
        if route not in (("POST", "/v1/messages"), ("POST", "/v1/messages/count_tokens")):
            return error(404, "not_found_error", "Not Found")

        with self._cond:
            scripted = self._script.popleft() if self._script else None
        if isinstance(scripted, SSEReply):
            return await self._stream(request, rid, scripted)
        if scripted is not None:
            return await self._reply_later(rid, scripted)

        try:
            payload = orjson.loads(body)
        except orjson.JSONDecodeError:
            return error(400, "invalid_request_error", "There was an error parsing the body of your request.")
        if not isinstance(payload, dict):
            return error(400, "invalid_request_error", "Input should be a valid dictionary")
        required = ["model", "messages"] + (["max_tokens"] if request.path == "/v1/messages" else [])
        for name in required:
            if name not in payload:
                return error(400, "invalid_request_error", f"{name}: Field required")

        if request.path == "/v1/messages/count_tokens":
            if "max_tokens" in payload:  # Anthropic rejects it here; gateways must strip it
                return error(400, "invalid_request_error", "max_tokens: Extra inputs are not permitted")
            return self._json(rid, JSONReply(body={"input_tokens": count_input_tokens(payload)}))
        if payload.get("stream"):
            chunks = [sse_event(e) for e in default_stream_events(payload["model"])]
            return await self._stream(request, rid, SSEReply(chunks))
        return self._json(rid, JSONReply(body=default_message(payload["model"])))

    @staticmethod
    def _headers(rid: str, content_type: str, extra: dict[str, str]) -> dict[str, str]:
        """Response headers; scripted ones override ours, compared case-insensitively."""
        merged = {"content-type": content_type, "request-id": rid}
        merged.update({k.lower(): v for k, v in extra.items()})
        return merged

    def _json(self, rid: str, reply: JSONReply) -> web.Response:
        body = reply.body if isinstance(reply.body, bytes | None) else orjson.dumps(reply.body)
        headers = self._headers(rid, "application/json", reply.headers)
        return web.Response(status=reply.status, body=body or b"", headers=headers)

    async def _reply_later(self, rid: str, reply: JSONReply) -> web.Response:
        try:
            await asyncio.sleep(reply.delay)
        except asyncio.CancelledError:  # the client gave up while we were "thinking"
            self._cut_short()
            raise
        return self._json(rid, reply)

    async def _stream(self, request: web.Request, rid: str, reply: SSEReply) -> web.StreamResponse:
        """Write each chunk for real (write + drain), so clients see true timing and split points."""
        headers = self._headers(
            rid, "text/event-stream; charset=utf-8", {"cache-control": "no-cache", **reply.headers}
        )
        resp = web.StreamResponse(status=reply.status, headers=headers)
        try:
            writer = await resp.prepare(request)
            assert writer is not None
            for i, chunk in enumerate(reply.chunks):
                if i == reply.reset_after:
                    _reset(request)
                    return resp
                if i and reply.delay:
                    await asyncio.sleep(reply.delay)
                await resp.write(chunk)
                await writer.drain()  # honour back-pressure: a slow reader holds the stream up
            await resp.write_eof()
        except ConnectionError:  # ConnectionResetError/BrokenPipe: client closed the connection mid-stream
            self._cut_short()
        except asyncio.CancelledError:  # handler_cancellation on disconnect, or stop()
            self._cut_short()
            raise
        return resp

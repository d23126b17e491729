"""The HTTP server protocol `tollway serve` runs: uvicorn's httptools protocol, one write per answer.

Why: uvicorn writes a response's head when the app sends `http.response.start` and its body when
it sends `http.response.body`, two `send()` calls and, with TCP_NODELAY (which uvloop sets), two
TCP segments for every answer of the gateway. On this machine that second write cost more than
anything Tollway itself does per request: a bare Starlette app served 12.9 k req/s with it and
20.5 k without (wrk, c=64, one worker). Here every write made during one turn of the event loop
is held and sent as one at the end of the turn, so a head and a body sent back to back leave as
one segment; a stream's events, written in separate turns, still go out as each arrives.

The protocol also holds the connection-level limits (issue 17 item 9, 13), which uvicorn either
lacks or answers in plain text:

* **Header-read timeout** (`server.header_timeout`): a connection has that long from opening
  (or, kept alive, from the first byte of its next request) to send complete request headers,
  else it gets a 408 and is closed. Without it a slowloris client (headers one byte at a time),
  or a socket that never sends anything, holds a connection and a file descriptor forever:
  uvicorn's keep-alive timeout only starts once a response has been sent.
* **Connection cap** (`server.max_connections`, never more than half the process's file limit):
  a connection beyond it gets a 503 and is closed at once, so idle sockets cannot use up the
  descriptors the gateway needs for its upstreams and its database.
* **Protocol errors** (malformed HTTP, oversized headers) answer a JSON error envelope, not
  uvicorn's plain-text "Invalid HTTP request received.", so a client's SDK can read it.

These answers use Anthropic's envelope (`{"type": "error", "error": {"type", "message"}}`):
before the request line is parsed the dialect is unknown, and OpenAI's SDKs read
`error.message` from it as well.

uvicorn is pinned in pyproject.toml: this subclasses its `HttpToolsProtocol`; `http_protocol`
gives `tollway serve` the class with the limits bound (a `functools.partial`, which pickles to
worker processes).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import itertools
import logging
import os
import resource
from typing import Any

import orjson
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

log = logging.getLogger("tollway.serving")
_IDS = itertools.count(1)
_ID_PREFIX = f"req_conn{os.getpid():x}_"
# Descriptors kept for everything but client connections: upstream pools, database, spill files.
_RESERVED_FILES = 64


class OneWriteTransport:
    """A transport that sends what was written during one loop turn in a single write.

    Everything else is the wrapped transport's. Closing sends what is held first, so nothing is
    reordered or lost; aborting drops it, as an abort drops the transport's own buffer.
    """

    __slots__ = ("_held", "_loop", "_transport")

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._held: list[bytes] = []

    def write(self, data: bytes) -> None:
        if not self._held:
            self._loop.call_soon(self._send)
        self._held.append(data)

    def writelines(self, lines: Any) -> None:
        for data in lines:
            self.write(data)

    def _send(self) -> None:
        held, self._held = self._held, []
        if held and not self._transport.is_closing():
            self._transport.write(held[0] if len(held) == 1 else b"".join(held))

    def close(self) -> None:
        self._send()
        self._transport.close()

    def write_eof(self) -> None:
        self._send()
        self._transport.write_eof()

    def abort(self) -> None:
        self._held = []
        self._transport.abort()

    # Called on every request: spelled out rather than found through __getattr__.
    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def pause_reading(self) -> None:
        self._transport.pause_reading()

    def resume_reading(self) -> None:
        self._transport.resume_reading()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


def _answer(status: int, reason: str, error_type: str, message: str, extra: str = "") -> bytes:
    """A complete HTTP/1.1 answer with a JSON error envelope that closes the connection."""
    request_id = f"{_ID_PREFIX}{next(_IDS):x}"
    body = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message},
                         "request_id": request_id})
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            f"request-id: {request_id}\r\n{extra}connection: close\r\n\r\n").encode() + body


def connection_cap(configured: int) -> int:
    """`server.max_connections`, but never more than what the file limit leaves room for: each
    client connection may need an upstream connection too, so half of what is left."""
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return configured
    return max(1, min(configured, (soft - _RESERVED_FILES) // 2))


def raise_file_limit() -> None:
    """Raise this process's soft file limit to its hard limit (what the operator allowed), so
    the connection cap is what bounds connections rather than a low default soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        with contextlib.suppress(ValueError, OSError):  # not allowed here: the cap follows the soft limit
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))


def http_protocol(header_timeout: float, max_connections: int) -> Any:
    """The protocol `tollway serve` gives uvicorn, with the connection limits bound (the cap
    already lowered to fit the file limit: call after `raise_file_limit`)."""
    return functools.partial(HttpProtocol, header_timeout=header_timeout,
                             max_connections=connection_cap(max_connections))


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a `OneWriteTransport`, with a header-read
    timeout, a connection cap and JSON protocol errors (module doc)."""

    def __init__(self, *args: Any, header_timeout: float = 10.0, max_connections: int = 1024,
                 **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.header_timeout = header_timeout
        self.max_connections = max_connections
        self._header_timer: asyncio.TimerHandle | None = None

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneWriteTransport(transport, self.loop)  # type: ignore[assignment]
        if len(self.connections) > self.max_connections:
            self.transport.write(_answer(503, "Service Unavailable", "overloaded_error",
                                         "the gateway has too many open connections (server.max_connections); "
                                         "retry shortly", "retry-after: 1\r\n"))
            self.transport.close()
            return
        self._start_header_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._stop_header_timer()
        super().connection_lost(exc)

    def on_message_begin(self) -> None:
        super().on_message_begin()
        self._start_header_timer()  # a kept-alive connection's next request

    def on_headers_complete(self) -> None:
        self._stop_header_timer()
        super().on_headers_complete()

    def _start_header_timer(self) -> None:
        if self._header_timer is None:
            self._header_timer = self.loop.call_later(self.header_timeout, self._headers_too_slow)

    def _stop_header_timer(self) -> None:
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def _headers_too_slow(self) -> None:
        self._header_timer = None
        if self.transport.is_closing():
            return
        if self.cycle is None or self.cycle.response_complete:  # never inside another answer
            self.transport.write(_answer(408, "Request Timeout", "invalid_request_error",
                                         f"the request headers did not arrive within {self.header_timeout:g} s "
                                         "(server.header_timeout)"))
        self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """Malformed HTTP: the envelope instead of uvicorn's plain text."""
        self._stop_header_timer()
        self.transport.write(_answer(400, "Bad Request", "invalid_request_error",
                                     f"{msg.rstrip('.')}: the request is not valid HTTP/1.1"))
        self.transport.close()

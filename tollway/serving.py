"""The HTTP server protocol `tollway serve` runs: uvicorn's httptools protocol, one write per answer.

Why: uvicorn writes a response's head when the app sends `http.response.start` and its body when
it sends `http.response.body`, two `send()` calls and, with TCP_NODELAY (which uvloop sets), two
TCP segments for every answer of the gateway. On this machine that second write cost more than
anything Tollway itself does per request: a bare Starlette app served 12.9 k req/s with it and
20.5 k without (wrk, c=64, one worker). Here every write made during one turn of the event loop
is held and sent as one at the end of the turn, so a head and a body sent back to back leave as
one segment; a stream's events, written in separate turns, still go out as each arrives.

uvicorn is pinned in pyproject.toml: this subclasses its `HttpToolsProtocol` and changes only
which transport the protocol writes to.
"""

from __future__ import annotations

import asyncio
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol


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


class HttpProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol writing through a `OneWriteTransport`."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self.transport = OneWriteTransport(transport, self.loop)  # type: ignore[assignment]

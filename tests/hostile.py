"""A hostile upstream for the hardening tests: a raw TCP server on 127.0.0.1 that answers each
request with whatever bytes a test scripts (a redirect to elsewhere, a gigantic body, a gzip
bomb, an endless SSE line) and records every request it received, headers and body, so a test
can assert what reached it. Raw asyncio streams rather than aiohttp's server: a hostile answer
must be able to say anything, including what a well-behaved HTTP server library would refuse
to write."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from tests.loopback import LoopbackServer

# Writes the answer to one request; gets the writer and the request received.
Script = Callable[[asyncio.StreamWriter, "Received"], Awaitable[None]]


@dataclass
class Received:
    """One request as it arrived: request line, headers (lower-cased names) and body."""

    request_line: str
    headers: dict[str, str]
    body: bytes


class HostileUpstream(LoopbackServer):
    thread_name = "hostile-upstream"

    def __init__(self, script: Script) -> None:
        super().__init__()
        self.script = script
        self.received: list[Received] = []
        self._lock = threading.Lock()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        return self._port

    def requests(self) -> list[Received]:
        with self._lock:
            return list(self.received)

    async def _listen(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers: dict[str, str] = {}
                for line in lines[1:]:
                    if ":" in line:
                        name, _, value = line.partition(":")
                        headers[name.strip().lower()] = value.strip()
                body = await reader.readexactly(int(headers.get("content-length", "0")))
                got = Received(lines[0], headers, body)
                with self._lock:
                    self.received.append(got)
                await self.script(writer, got)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, asyncio.LimitOverrunError):
            pass
        finally:
            self._tasks.discard(task)
            writer.close()


def head(status: str, headers: dict[str, str]) -> bytes:
    """An HTTP/1.1 response head."""
    lines = [f"HTTP/1.1 {status}"] + [f"{k}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()

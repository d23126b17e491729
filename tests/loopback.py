"""The lifecycle the loopback test servers share: an aiohttp app served on 127.0.0.1 (a free
port) from a daemon thread with its own event loop, so a synchronous test can drive the gateway
while the server answers. Subclasses build their app in `_listen` (setting `_runner` and
`_port`, most through `_serve_app`) and may add to `_close`."""

from __future__ import annotations

import asyncio
import ssl
import threading
from types import TracebackType
from typing import Any, Self

from aiohttp import web


class LoopbackServer:
    thread_name = "loopback-server"

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._port = 0

    # ----- lifecycle (called from the test thread) -----
    def start(self) -> Self:
        """Start serving in a daemon thread; returns once the socket is listening."""
        ready = threading.Event()
        errors: list[BaseException] = []
        self._thread = threading.Thread(target=self._serve, args=(ready, errors), daemon=True, name=self.thread_name)
        self._thread.start()
        if not ready.wait(10):
            raise TimeoutError(f"{self.thread_name} did not start listening within 10 s")
        if errors:
            raise errors[0]
        return self

    def stop(self) -> None:
        """Stop the server (in-flight handlers are cancelled) and join the thread."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)
        self._loop = self._runner = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # ----- the server thread -----
    def _serve(self, ready: threading.Event, errors: list[BaseException]) -> None:
        loop = self._loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._listen())
        except BaseException as exc:  # surface bind failures to start()
            errors.append(exc)
            ready.set()
            loop.close()
            return
        ready.set()
        loop.run_forever()
        loop.close()

    async def _listen(self) -> None:
        raise NotImplementedError

    async def _serve_app(self, app: web.Application, ssl_context: ssl.SSLContext | None = None,
                         **runner: Any) -> None:
        """What every `_listen` ends with: APP served on 127.0.0.1 at a port the OS picks, without
        an access log; RUNNER are AppRunner options (handler_cancellation, shutdown_timeout)."""
        self._runner = web.AppRunner(app, access_log=None, **runner)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", 0, ssl_context=ssl_context).start()
        self._port = self._runner.addresses[0][1]

    async def _close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

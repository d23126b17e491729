"""A worker's watch on its supervisor under `tollway serve --workers N`.

Why: uvicorn's supervisor stops its workers when it is asked to (SIGTERM, SIGINT), but when it is
killed outright (SIGKILL, the OOM killer, a crashed container runtime that spares the children)
its workers are orphaned: they keep the port, keep serving and keep polling the store with
nobody to stop them, and the next `tollway serve` on that port finds it taken. A worker therefore
checks, once a second, that the process that started it is still its parent; when it is not, the
worker stops itself the graceful way (SIGTERM to itself: uvicorn drains the requests in flight and
the lifespan flushes the usage and audit queues), so no record is lost. A check is one
`getppid()` call: nothing measurable.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal

log = logging.getLogger("tollway.supervisor")


class SupervisorWatch:
    """Stops this process gracefully when PARENT (its supervisor's pid) is no longer its parent."""

    def __init__(self, parent: int, interval: float = 1.0) -> None:
        self.parent = parent
        self.interval = interval
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._watch(), name="supervisor-watch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def _watch(self) -> None:
        while os.getppid() == self.parent:
            await asyncio.sleep(self.interval)
        log.warning("the supervisor (pid %d) is gone: worker %d stops, draining its requests and records",
                    self.parent, os.getpid())
        os.kill(os.getpid(), signal.SIGTERM)

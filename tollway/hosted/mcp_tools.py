"""MCP servers' tools as hosted tools, with the official `mcp` SDK (2.x).

Each configured server gets one long-lived client session, opened by a task of its own (the
SDK's transports are anyio context managers that must be left from the task that entered them):
`stdio_client` for a `command`, `streamable_http_client` for a `url` (1.x called it
`streamablehttp_client`). The task initialises the session, lists the tools, then waits for
`stop`. Calls from request tasks share the session; the SDK multiplexes them by request id, so a
call that hangs and is cut off by the timeout does not block the others.

A tool result becomes text: text blocks joined by newlines, other blocks as their JSON, and the
structured content when there is no block. `isError` results are tool errors.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

import orjson
from mcp import ClientSession, StdioServerParameters, stdio_client
from mcp.client.streamable_http import streamable_http_client

from tollway.config import McpServerConfig
from tollway.hosted.tool import HostedTool, Outcome, tool_name

log = logging.getLogger("tollway.hosted")


def result_text(result: Any) -> str:
    parts: list[str] = []
    for block in getattr(result, "content", None) or ():
        if getattr(block, "type", None) == "text":
            parts.append(str(block.text))
        else:
            parts.append(orjson.dumps(block.model_dump(mode="json", exclude_none=True)).decode())
    structured = getattr(result, "structured_content", None)
    if not parts and structured is not None:
        parts.append(orjson.dumps(structured).decode())
    return "\n".join(parts)


class McpServer:
    def __init__(self, cfg: McpServerConfig, timeout_s: float, connect_timeout_s: float = 30.0) -> None:
        self.cfg = cfg
        self.connect_timeout_s = connect_timeout_s
        self.name = cfg.name
        self.timeout_s = timeout_s
        self.session: ClientSession | None = None
        self._task: asyncio.Task[None] | None = None
        self._stop = asyncio.Event()
        self._ready: asyncio.Future[list[HostedTool]] | None = None

    def _transport(self) -> Any:
        if self.cfg.command is not None:
            params = StdioServerParameters(command=self.cfg.command[0], args=self.cfg.command[1:],
                                           env=self.cfg.env or None, cwd=self.cfg.cwd)
            return stdio_client(params)
        assert self.cfg.url is not None
        return streamable_http_client(self.cfg.url)

    async def start(self) -> list[HostedTool]:
        """Connect and list the tools; raises when that takes more than `connect_timeout_s`."""
        self._ready = asyncio.get_running_loop().create_future()
        self._task = asyncio.create_task(self._serve(self._ready), name=f"mcp-{self.name}")
        return await asyncio.wait_for(asyncio.shield(self._ready), self.connect_timeout_s)

    async def _serve(self, ready: asyncio.Future[list[HostedTool]]) -> None:
        try:
            async with self._transport() as streams, ClientSession(streams[0], streams[1]) as session:
                await session.initialize()
                listed = await session.list_tools()
                self.session = session
                tools = [self._hosted(t) for t in listed.tools]
                if not ready.done():
                    ready.set_result(tools)
                await self._stop.wait()
        except BaseException as exc:
            if not ready.done():
                ready.set_exception(exc if isinstance(exc, Exception) else RuntimeError(repr(exc)))
            elif not isinstance(exc, asyncio.CancelledError):
                log.error("MCP server %r disconnected: %s", self.name, exc)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.session = None

    def _hosted(self, tool: Any) -> HostedTool:
        mcp_name = str(tool.name)
        schema = dict(tool.input_schema or {})
        schema.setdefault("type", "object")
        description = tool.description or f"{mcp_name} (MCP server {self.name})"

        async def run(arguments: dict[str, Any]) -> Outcome:
            session = self.session
            if session is None:
                return Outcome(f"the MCP server {self.name} is not connected", True)
            result = await session.call_tool(mcp_name, arguments, read_timeout_seconds=self.timeout_s)
            return Outcome(result_text(result), bool(result.is_error))

        return HostedTool(tool_name(self.name, mcp_name), description, schema, self.name, run)

    async def stop(self) -> None:
        self._stop.set()
        task = self._task
        if task is None:
            return
        if self.session is None:  # never connected (or lost): nothing to close politely
            task.cancel()
        try:
            await asyncio.wait_for(task, 10)
        except (TimeoutError, asyncio.CancelledError):
            task.cancel()
            with contextlib.suppress(BaseException):
                await task
        except BaseException as exc:
            log.debug("MCP server %r stopped with %s", self.name, exc)
        self._task = None

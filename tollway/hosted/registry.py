"""The hosted tools of this process: started with the app, stopped with it.

Each tool is an Anthropic tool definition (`name`, `description`, `input_schema`) plus a runner.
`Registry.run` never raises: a failure, a timeout or an unknown tool comes back as an `Outcome`
with `is_error`, which the surface hands to the model as an `is_error` tool result.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import aiohttp

from tollway.config import HostedToolsConfig
from tollway.hosted.tool import PREFIX, HostedTool, Outcome, Runner, tool_name

__all__ = ["PREFIX", "HostedTool", "Outcome", "Registry", "Runner", "tool_name"]

log = logging.getLogger("tollway.hosted")


class Registry:
    def __init__(self, cfg: HostedToolsConfig) -> None:
        self.cfg = cfg
        self.tools: dict[str, HostedTool] = {}
        self._http: aiohttp.ClientSession | None = None
        self._servers: list[Any] = []

    async def start(self) -> None:
        """Connect to every MCP server (concurrently); one that fails is logged and skipped.

        The MCP client library is imported only when a server is configured: it and what it
        pulls in are about 22 MB of a gateway's memory, for a feature most deployments leave off.
        """
        if self.cfg.web_fetch.allow_hosts:
            from tollway.hosted.web_fetch import WebFetch

            # No cookie jar: one fetch's cookies must never ride along to another (web_fetch.py doc).
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.cfg.timeout_s),
                                               cookie_jar=aiohttp.DummyCookieJar())
            self._add(WebFetch(self.cfg.web_fetch, self._http).tool())
        if not self.cfg.mcp_servers:
            self._announce()
            return
        from tollway.hosted.mcp_tools import McpServer

        servers = [McpServer(s, self.cfg.timeout_s, self.cfg.connect_timeout_s) for s in self.cfg.mcp_servers]
        results = await asyncio.gather(*(s.start() for s in servers), return_exceptions=True)
        for server, result in zip(servers, results, strict=True):
            if isinstance(result, BaseException):
                log.error("MCP server %r did not start; its tools are not offered: %s", server.name,
                          _describe(result))
                await server.stop()
                continue
            self._servers.append(server)
            for tool in result:
                self._add(tool)
        self._announce()

    def _announce(self) -> None:
        if self.tools:
            log.info("hosted tools: %s", ", ".join(sorted(self.tools)))

    def _add(self, tool: HostedTool) -> None:
        if tool.name in self.tools:
            log.error("hosted tool %s is offered twice; keeping the first", tool.name)
            return
        self.tools[tool.name] = tool

    async def close(self) -> None:
        for server in self._servers:
            await server.stop()
        self._servers.clear()
        if self._http is not None:
            await self._http.close()
            self._http = None

    async def run(self, name: str, arguments: Any) -> Outcome:
        """Run one hosted tool within `timeout_s`; every failure is an error outcome, never a raise."""
        tool = self.tools.get(name)
        if tool is None:
            return Outcome(f"unknown hosted tool {name}", True)
        if not isinstance(arguments, dict):
            return Outcome("the tool input must be a JSON object", True)
        try:
            return await asyncio.wait_for(tool.runner(arguments), self.cfg.timeout_s)
        except TimeoutError:
            return Outcome(f"the tool {name} did not answer within {self.cfg.timeout_s:g} s and was cut off", True)
        except Exception as exc:
            log.warning("hosted tool %s failed: %s", name, _describe(exc))
            return Outcome(f"the tool {name} failed: {_describe(exc)}", True)


def _describe(exc: BaseException) -> str:
    """One line for an exception, unwrapping the exception groups anyio raises."""
    while isinstance(exc, BaseExceptionGroup) and exc.exceptions:
        exc = exc.exceptions[0]
    return f"{type(exc).__name__}: {exc}"[:500]

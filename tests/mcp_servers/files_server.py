"""A stdio MCP server: `read_note` answers from a fixed dict, `sleep` hangs (for the timeout test).

Run as `python -m tests.mcp_servers.files_server` (the gateway spawns it over stdio)."""

from __future__ import annotations

import asyncio
import os

from mcp.server import MCPServer
from mcp.server.mcpserver.exceptions import ToolError

server = MCPServer("files")
NOTES = {"todo.txt": "buy milk; ship Tollway", "motd": os.environ.get("FILES_MOTD", "no motd")}


@server.tool()
def read_note(name: str) -> str:
    """Read a note by name."""
    if name not in NOTES:
        raise ToolError(f"no note named {name}")  # its message reaches the client
    return NOTES[name]


@server.tool()
async def sleep(seconds: float) -> str:
    """Sleep, then say so (used to test the gateway's timeout)."""
    await asyncio.sleep(seconds)
    return f"slept {seconds}"


if __name__ == "__main__":
    server.run()

"""A streamable-HTTP MCP server with one tool, `lookup`.

Run as `python -m tests.mcp_servers.search_server PORT`; it serves http://127.0.0.1:PORT/mcp."""

from __future__ import annotations

import sys

from mcp.server import MCPServer

server = MCPServer("search")
INDEX = {"tollway": "Tollway is a self-hosted LLM gateway.", "mcp": "The Model Context Protocol."}


@server.tool()
def lookup(term: str) -> str:
    """Look a term up in a tiny index."""
    return INDEX.get(term.lower(), f"nothing found for {term}")


if __name__ == "__main__":
    server.run("streamable-http", host="127.0.0.1", port=int(sys.argv[1]))

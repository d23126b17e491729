"""MCP servers the hosted-tools tests connect to, written with the `mcp` SDK (MCPServer, v1's FastMCP)."""

"""Hosted tools: tools Tollway runs itself for `/v1/responses` (MCP servers' tools and
`tollway_web_fetch`), offered to a request that opts in with `{"type": "tollway_tools"}` or
`{"type": "tollway_<name>"}`. `registry.Registry` owns them for the life of the process."""

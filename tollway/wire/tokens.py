"""A local, deterministic input-token count for upstreams that cannot count for us.

It is an estimate, not Claude's tokenizer: one token per started 4 characters of every text the
model would read (system, tool definitions, message text, tool inputs and results), plus a small
fixed cost per message and per image. It exists so `count_tokens` never answers a fake zero
(DECISIONS.md 12), and the mock model uses the same count, so for it the count is exact.
"""

from __future__ import annotations

from typing import Any

import orjson

PER_MESSAGE = 3
PER_IMAGE = 1600
CHARS_PER_TOKEN = 4


def text_tokens(text: str) -> int:
    return -(-len(text) // CHARS_PER_TOKEN)


def _block_tokens(block: Any) -> int:
    if isinstance(block, str):
        return text_tokens(block)
    if not isinstance(block, dict):
        return 0
    kind = block.get("type")
    if kind == "text":
        return text_tokens(str(block.get("text", "")))
    if kind == "image":
        return PER_IMAGE
    if kind == "tool_use":
        return text_tokens(str(block.get("name", ""))) + text_tokens(orjson.dumps(block.get("input")).decode())
    if kind == "tool_result":
        content = block.get("content")
        if isinstance(content, list):
            return sum(_block_tokens(b) for b in content)
        return text_tokens(str(content or ""))
    if kind == "thinking":
        return text_tokens(str(block.get("thinking", "")))
    if kind == "document":
        source = block.get("source") or {}
        if source.get("type") == "text":
            return text_tokens(str(source.get("data", "")))
        return PER_IMAGE
    return 0


def content_tokens(content: Any) -> int:
    if isinstance(content, list):
        return sum(_block_tokens(b) for b in content)
    return _block_tokens(content)


def count_input_tokens(body: dict[str, Any]) -> int:
    """Count system, tools and messages of a Messages request."""
    total = content_tokens(body.get("system"))
    for tool in body.get("tools") or ():
        total += text_tokens(orjson.dumps(tool).decode())
    for msg in body.get("messages") or ():
        if isinstance(msg, dict):
            total += PER_MESSAGE + content_tokens(msg.get("content"))
    return total

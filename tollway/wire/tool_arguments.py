"""Tool-call arguments as OpenAI sends them (a JSON string) made into the object Anthropic
needs. Shared by the translators that read OpenAI tool calls, so none imports another."""

from __future__ import annotations

from typing import Any

import orjson


def parse_arguments(raw: Any) -> dict[str, Any]:
    """Tool-call `arguments` (a JSON string) → the `input` object Anthropic requires (module doc)."""
    if isinstance(raw, dict):
        return raw
    if not isinstance(raw, str) or not raw.strip():
        return {}
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return {"_raw_arguments": raw}
    return value if isinstance(value, dict) else {"_raw_arguments": raw}

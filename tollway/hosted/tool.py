"""What a hosted tool is: its definition, its runner and the outcome of a run.

Its own module so the tool sources (web_fetch.py, mcp_tools.py) and the registry that starts
them all import it, and none of them imports another (no import cycle).
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

PREFIX = "tollway_"
_NOT_NAME = re.compile(r"[^A-Za-z0-9_-]")
MAX_NAME = 128  # Anthropic's tool-name limit


@dataclass(frozen=True, slots=True)
class Outcome:
    text: str
    is_error: bool = False


Runner = Callable[[dict[str, Any]], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class HostedTool:
    name: str
    description: str
    input_schema: dict[str, Any]
    server: str  # the MCP server's name, or "tollway" for built-ins
    runner: Runner

    def definition(self) -> dict[str, Any]:
        """The Anthropic tool the model sees."""
        return {"name": self.name, "description": self.description, "input_schema": self.input_schema}


def tool_name(server: str, tool: str) -> str:
    """`tollway_<server>_<tool>`, with characters a tool name may not hold replaced by `_`."""
    return _NOT_NAME.sub("_", f"{PREFIX}{server}_{tool}")[:MAX_NAME]

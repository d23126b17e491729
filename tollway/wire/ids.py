"""Ids and names the translators share, so none of them imports another (issue 12).

* Tool-call ids: Anthropic requires `^[a-zA-Z0-9_-]+$`; an OpenAI-compatible upstream may send
  anything. `sanitize_tool_id` makes a valid id reversibly (`twid_<base64url>`), and
  `restore_tool_id` gives the upstream its own id back on the next turn.
* Tool names: OpenAI allows 64 characters; `ToolNames` shortens longer ones for one call and
  maps them back in the answer.
* Responses item ids (`item_id`) and the prefixes that carry Anthropic thinking blocks through a
  Responses client's history (`THINKING_PREFIX`, `REDACTED_PREFIX`).
"""

from __future__ import annotations

import base64
import hashlib
import re

TOOL_NAME_LIMIT = 64
_ID_OK = re.compile(r"[A-Za-z0-9_-]+")
_ID_PREFIX = "twid_"
THINKING_PREFIX = "tollway.thinking.v1:"
REDACTED_PREFIX = "tollway.redacted.v1:"


def sanitize_tool_id(raw: str) -> str:
    """An id matching `^[a-zA-Z0-9_-]+$`: `raw` itself when it already does, else
    `twid_<base64url(raw)>`. Deterministic and reversible (see `restore_tool_id`)."""
    if _ID_OK.fullmatch(raw):
        return raw
    return _ID_PREFIX + base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def restore_tool_id(safe: str) -> str:
    """The id an upstream originally sent, given what `sanitize_tool_id` made of it.

    Only ids that decode to something that needed sanitising are decoded, so a genuine id that
    happens to start with `twid_` is left alone."""
    if not safe.startswith(_ID_PREFIX):
        return safe
    body = safe[len(_ID_PREFIX) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode()
    except (ValueError, UnicodeDecodeError):
        return safe
    return raw if raw and not _ID_OK.fullmatch(raw) and sanitize_tool_id(raw) == safe else safe


def shorten_tool_name(name: str) -> str:
    """`name` if it fits OpenAI's 64 characters, else its first 55 + `_` + 8 hex of SHA-256."""
    if len(name) <= TOOL_NAME_LIMIT:
        return name
    digest = hashlib.sha256(name.encode()).hexdigest()[:8]
    return f"{name[: TOOL_NAME_LIMIT - 9]}_{digest}"


class ToolNames:
    """The tool-name and tool-id mapping of one call through an OpenAI-compatible upstream.

    Built while translating the request (every name it shortens is remembered) and used while
    translating the answer, so the client sees its own tool names and Anthropic-valid ids.
    """

    __slots__ = ("_long",)

    def __init__(self) -> None:
        self._long: dict[str, str] = {}

    def short(self, name: str) -> str:
        """The name to send upstream; remembers it for `original`."""
        short = shorten_tool_name(name)
        if short != name:
            self._long[short] = name
        return short

    def original(self, name: str) -> str:
        """The client's name for a name the upstream used (unchanged when it was never shortened)."""
        return self._long.get(name, name)

    @staticmethod
    def tool_id(raw: str | None, fallback: str) -> str:
        """An Anthropic-valid id for an upstream tool-call id; `fallback` when it sent none."""
        return sanitize_tool_id(raw) if raw else fallback

    @staticmethod
    def upstream_id(safe: str) -> str:
        """The id to send back upstream for an id the client got from `tool_id`."""
        return restore_tool_id(safe)


def item_id(prefix: str, response_id: str, tag: str) -> str:
    """A stable item id: `prefix_` + 48 hex digits of SHA-256 over the response id and `tag`
    (the item's place, e.g. `out2` or `in0`). Unique per response and place, same every time."""
    return f"{prefix}_{hashlib.sha256(f'{response_id}/{tag}'.encode()).hexdigest()[:48]}"

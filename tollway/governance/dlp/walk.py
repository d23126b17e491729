"""The walk: every string of a request body that is forwarded, with where it sits, in content units.

The walk covers the WHOLE body, not a list of known fields: whatever a client puts in a request
(``stop_sequences``, ``tool_choice.name``, tool names and extra tool fields, a message's ``name``,
extra keys on image and document blocks, ``citations[].cited_text``, ``thinking`` and
``redacted_thinking`` blocks, ``mcp_servers[].authorization_token``, top-level fields this code
has never heard of, and the keys of every object) reaches the upstream, so it is scanned. The
only strings left out are the bytes of base64 image and document sources (``source.data`` of a
``base64`` source), which are not text; such blocks become ``binary`` findings instead.

Known places get stable, readable locations (``messages[3].content[0].input``,
``tools[2].input_schema``, ``system[1]``: a JSON value such as a tool input is reported at one
location); every other string is reported at its own path (``stop_sequences[0]``,
``mcp_servers[0].authorization_token``, ``messages[5].content[0].citations[0].cited_text``).

A content unit is what the verdict cache keys on (see ``cache``): one tool definition, one system
block, one message (a client appends messages and never edits old ones, except for moving a
``cache_control`` marker, which costs a rescan of the message it leaves and the one it reaches), or
one other top-level field. Claude Code re-sends the same units turn after turn, so they are
scanned once.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import repeat
from typing import Any

Group = tuple[int, Callable[[Any, int], None], Any]  # first unit, walk(container, index), container
Slot = tuple[Any, Any, str, bool]  # parent container, key or index, where, is a dict key
Binary = tuple[int, list[Any], int, Any, str]  # text index at the time, parent list, index, source, where

#: Field names of the Messages API that are six characters or longer: as object keys they are structure,
#: not data, and are not scanned (an unknown key is).
KNOWN_FIELDS = frozenset((
    "messages", "system", "max_tokens", "metadata", "stop_sequences", "stream", "temperature", "top_k", "top_p",
    "tools", "tool_choice", "thinking", "budget_tokens", "service_tier", "container", "mcp_servers",
    "context_management", "content", "tool_use_id", "is_error", "cache_control", "input_schema", "description",
    "citations", "cited_text", "document_index", "document_title", "start_char_index", "end_char_index",
    "start_page_number", "end_page_number", "start_block_index", "end_block_index", "signature", "source",
    "media_type", "file_id", "context", "title", "user_id", "authorization_token", "tool_configuration",
    "allowed_tools", "enabled", "disable_parallel_tool_use", "max_uses", "allowed_domains", "blocked_domains",
    "user_location", "timezone", "country", "region", "display_width_px", "display_height_px",
    "display_number", "encrypted_index", "search_result_index", "properties", "required", "additionalProperties",
))


class Walk:
    """Collects ``texts`` (the strings), ``slots`` (where each sits) and ``binaries``, unit by unit (``plan``)."""

    __slots__ = ("binaries", "groups", "slots", "texts")

    def __init__(self) -> None:
        self.texts: list[str] = []
        self.slots: list[Slot] = []
        self.binaries: list[Binary] = []
        self.groups: list[Group] = []

    def body(self, body: dict[str, Any]) -> None:
        """Walk all of ``body`` (every unit)."""
        for k in range(len(self.plan(body)[1])):
            self.unit(k)

    def plan(self, body: dict[str, Any]) -> tuple[list[bytes], list[Any]]:
        """The content units of ``body``, in walk order: their tags and their values. ``unit(k)`` then appends the
        strings of unit ``k``.

        The tag names the walk a unit takes (the same value walked as a tool or as a block yields its
        strings in another order), so the cache keys on tag and value together. Nothing is made per unit here
        (a late Claude Code turn has a hundred and more, and most are only looked up in the cache): a run of
        tools, system blocks or messages is one ``extend`` of each list and one group, which ``unit`` walks.
        """
        tags: list[bytes] = []
        values: list[Any] = []
        groups = self.groups = []
        for key, value in body.items():
            first = len(values)
            if key == "tools" and isinstance(value, list):
                tags.extend(repeat(b"tool", len(value)))
                groups.append((first, self.tool, value))
            elif key == "system" and isinstance(value, list):
                tags.extend(repeat(b"block", len(value)))
                groups.append((first, self.system_block, value))
            elif key == "messages" and isinstance(value, list):
                tags.extend(repeat(b"message", len(value)))
                groups.append((first, self.message, value))
            else:
                tags.append(b"field:" + key.encode("utf-8", "surrogatepass"))
                groups.append((first, self.field, (body, key)))
                values.append(value)
                continue
            values.extend(value)
        return tags, values

    def unit(self, k: int) -> None:
        """Append the strings of unit ``k`` of the last ``plan``."""
        for first, walk, container in reversed(self.groups):  # an empty run shares its first with the next group
            if k >= first:
                walk(container, k - first)
                return
        raise IndexError(k)

    def system_block(self, system: list[Any], j: int) -> None:
        self.block_at(system, j, "system")

    def field(self, where: tuple[dict[str, Any], str], _index: int) -> None:
        body, key = where
        self.any(body, key, key)

    def message(self, messages: list[Any], i: int) -> None:
        message = messages[i]
        w = f"messages[{i}]"
        if not isinstance(message, dict):
            self.any(messages, i, w)
            return
        self.message_fields(message, w)
        content = message.get("content")
        if isinstance(content, str):
            self.text(message, "content", f"{w}.content")
        elif isinstance(content, list):
            self.blocks(content, f"{w}.content")
        elif content is not None:
            self.any(message, "content", f"{w}.content")

    def message_fields(self, message: dict[str, Any], w: str) -> None:
        for k in message:
            if k != "content":
                self.key(message, k, w)
                self.any(message, k, f"{w}.{k}")

    def tool(self, tools: list[Any], i: int) -> None:
        tool = tools[i]
        w = f"tools[{i}]"
        if not isinstance(tool, dict):
            self.any(tools, i, w)
            return
        for k in tool:
            self.key(tool, k, w)
            if k == "input_schema":
                self.json(tool, k, f"{w}.input_schema")
            else:
                self.any(tool, k, f"{w}.{k}")

    def blocks(self, blocks: list[Any], where: str) -> None:
        for j in range(len(blocks)):
            self.block_at(blocks, j, where)

    def block_at(self, blocks: list[Any], j: int, where: str) -> None:
        block = blocks[j]
        w = f"{where}[{j}]"
        if isinstance(block, str):
            self.text(blocks, j, w)
        elif not isinstance(block, dict):
            self.any(blocks, j, w)
        else:
            self.block(blocks, j, block, w)

    def block(self, blocks: list[Any], j: int, block: dict[str, Any], w: str) -> None:
        btype = block.get("type")
        if btype == "text":
            self.fields(block, w, "text", self.any, block, "text", w)
        elif btype == "tool_result":
            c = block.get("content")
            if isinstance(c, list):
                self.fields(block, w, "content", self.blocks, c, f"{w}.content")
            else:
                self.fields(block, w, "content", self.any, block, "content", f"{w}.content")
        elif btype in ("tool_use", "server_tool_use"):
            self.fields(block, w, "input", self.json, block, "input", f"{w}.input")
        elif btype == "image":
            self.binaries.append((len(self.texts), blocks, j, block.get("source"), w))
            self.fields(block, w, "source", self.source, block, w)
        elif btype == "document":
            self.document(blocks, j, block, w)
        elif btype in ("thinking", "redacted_thinking"):
            # Scanned like the rest: they are forwarded. A redaction here breaks the block's signature
            # and the upstream refuses the request, which is the fail-closed outcome (see docs/dlp.md).
            self.fields(block, w)
        else:  # a block type this code does not know: every string in it, at one location
            self.json(blocks, j, w)

    def document(self, blocks: list[Any], j: int, block: dict[str, Any], w: str) -> None:
        source = block.get("source")
        stype = source.get("type") if isinstance(source, dict) else None
        if isinstance(source, dict) and stype == "content" and isinstance(source.get("content"), list):
            self.fields(block, w, "source", self.fields, source, f"{w}.source", "content", self.blocks,
                        source["content"], f"{w}.source.content")
            return
        if not (isinstance(source, dict) and stype in ("text", "content")):
            # base64 (PDF), URL or file: bytes this process cannot read
            self.binaries.append((len(self.texts), blocks, j, source, w))
        self.fields(block, w, "source", self.source, block, w)

    def source(self, block: dict[str, Any], w: str) -> None:
        """A media source: every string but the bytes of a base64 source (a URL can carry a key)."""
        source = block["source"]
        if not isinstance(source, dict):
            self.any(block, "source", f"{w}.source")
            return
        skip = "data" if source.get("type") == "base64" else None
        for k in source:
            self.key(source, k, f"{w}.source")
            if k != skip:
                self.any(source, k, f"{w}.source.{k}")

    def fields(self, obj: dict[str, Any], w: str, special: str | None = None,
               handler: Callable[..., None] | None = None, *args: Any) -> None:
        """Every field of ``obj`` at its own path, except ``special``, walked by ``handler(*args)``.

        The object keys and string fields are taken here, not in a call each (``key``, ``any``): a Claude Code
        request has hundreds of blocks, each with a few such fields."""
        texts, slots = self.texts, self.slots
        for k, v in obj.items():
            if isinstance(k, str) and len(k) >= 6 and k not in KNOWN_FIELDS:
                texts.append(k)
                slots.append((obj, k, w, True))
            if k == special:
                assert handler is not None
                handler(*args)
            elif isinstance(v, str):
                texts.append(v)
                slots.append((obj, k, f"{w}.{k}", False))
            else:
                self.any(obj, k, f"{w}.{k}")

    def any(self, parent: Any, key: Any, where: str) -> None:
        """Every string in a JSON value, each at its own path (object keys included)."""
        value = parent[key]
        if isinstance(value, str):
            self.texts.append(value)
            self.slots.append((parent, key, where, False))
        elif isinstance(value, dict):
            for k in value:
                self.key(value, k, where)
                self.any(value, k, f"{where}.{k}")
        elif isinstance(value, list):
            for idx in range(len(value)):
                self.any(value, idx, f"{where}[{idx}]")

    def json(self, parent: Any, key: Any, where: str) -> None:
        """Every string in a JSON value (dict keys included), reported at one location."""
        value = parent[key]
        if isinstance(value, str):
            self.texts.append(value)
            self.slots.append((parent, key, where, False))
        elif isinstance(value, dict | list):
            self._json(value, where)

    def _json(self, value: dict[Any, Any] | list[Any], where: str) -> None:
        # String members are taken here, not in a call each: tool schemas and inputs are mostly strings.
        texts, slots = self.texts, self.slots
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str):  # every key of a JSON value (tool input, schema) is data
                    texts.append(k)
                    slots.append((value, k, where, True))
                if isinstance(v, str):
                    texts.append(v)
                    slots.append((value, k, where, False))
                elif isinstance(v, dict | list):
                    self._json(v, where)
        else:
            for idx, v in enumerate(value):
                if isinstance(v, str):
                    texts.append(v)
                    slots.append((value, idx, where, False))
                elif isinstance(v, dict | list):
                    self._json(v, where)

    def key(self, obj: dict[Any, Any], k: Any, where: str) -> None:
        """An object key is forwarded too, unless it is a field name of the Messages API."""
        if isinstance(k, str) and len(k) >= 6 and k not in KNOWN_FIELDS:
            self.texts.append(k)
            self.slots.append((obj, k, where, True))

    def text(self, parent: Any, key: Any, where: str) -> None:
        self.texts.append(parent[key])
        self.slots.append((parent, key, where, False))

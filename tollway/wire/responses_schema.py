"""Validation of the Responses dialect's own parameters (beside what the translator checks),
worded as OpenAI words them, with `param` the path at fault. Pure: no I/O, nothing of ours but
the dialect's refusal type.

Also the `namespace` tool type (codex sends it): flattened into the model's functions on the
way in, and each call of one of them gets its `namespace` back on the way out.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from tollway.wire.responses_items import ResponsesInvalid

MAX_METADATA = 16


def kind_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    return "an array" if isinstance(value, list) else "an object"


def bad_type(param: str, expected: str, value: Any) -> ResponsesInvalid:
    return ResponsesInvalid(f"Invalid type for '{param}': expected {expected}, but got {kind_of(value)} instead.",
                            param)


def metadata(value: Any) -> dict[str, str]:
    """OpenAI's metadata: up to 16 string pairs, keys ≤ 64 and values ≤ 512 characters."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise bad_type("metadata", "an object", value)
    if len(value) > MAX_METADATA:
        raise ResponsesInvalid(f"Invalid 'metadata': too many keys ({len(value)}); at most {MAX_METADATA}.",
                               "metadata")
    for key, item in value.items():
        if len(key) > 64:
            raise ResponsesInvalid(f"Invalid 'metadata': key '{key[:64]}…' is longer than 64 characters.",
                                   "metadata")
        if not isinstance(item, str):
            raise bad_type(f"metadata.{key}", "a string", item)
        if len(item) > 512:
            raise ResponsesInvalid(f"Invalid 'metadata.{key}': longer than 512 characters.", f"metadata.{key}")
    return value


def optional_bool(body: dict[str, Any], name: str) -> bool | None:
    value = body.get(name)
    if value is not None and not isinstance(value, bool):
        raise bad_type(name, "a boolean", value)
    return value


def conversation_id(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, dict):
        inner = value.get("id")
        if not isinstance(inner, str) or not inner:
            raise ResponsesInvalid("Invalid 'conversation.id': expected a non-empty string.", "conversation.id")
        return inner
    if not isinstance(value, str) or not value:
        raise bad_type("conversation", "a string or an object with 'id'", value)
    return value


def namespace_tools(tools: Any) -> tuple[list[dict[str, Any]], dict[str, str]]:
    """(Anthropic tools for the functions inside `namespace` tools, function name → namespace).

    The translator has already checked `tools` is a list of objects. Names must stay unique
    once flattened, among themselves and with the top-level functions."""
    if not isinstance(tools, list):
        return [], {}
    taken = {t.get("name") for t in tools if isinstance(t, dict) and t.get("type") == "function"}
    out: list[dict[str, Any]] = []
    names: dict[str, str] = {}
    for i, tool in enumerate(tools):
        if not isinstance(tool, dict) or tool.get("type") != "namespace":
            continue
        path = f"tools[{i}]"
        space = tool.get("name")
        if not isinstance(space, str) or not space:
            raise ResponsesInvalid(f"Invalid '{path}.name': expected a non-empty string.", f"{path}.name")
        members = tool.get("tools")
        if not isinstance(members, list):
            raise bad_type(f"{path}.tools", "an array", members)
        for j, member in enumerate(members):
            where = f"{path}.tools[{j}]"
            if not isinstance(member, dict):
                raise bad_type(where, "an object", member)
            if member.get("type") != "function":
                raise ResponsesInvalid(f"Tool type '{member.get('type')}' is not supported inside a namespace on "
                                       "this gateway; only 'function' tools are.", f"{where}.type",
                                       "unsupported_tool_type")
            name = member.get("name")
            if not isinstance(name, str) or not name:
                raise ResponsesInvalid(f"Invalid '{where}.name': expected a non-empty string.", f"{where}.name")
            if name in taken:
                raise ResponsesInvalid(f"Invalid '{where}.name': the function name '{name}' is used twice; "
                                       "function names must be unique across namespaces.", f"{where}.name")
            taken.add(name)
            names[name] = space
            schema = member.get("parameters")
            schema = dict(schema) if isinstance(schema, dict) else {"type": "object", "properties": {}}
            schema.setdefault("type", "object")
            converted: dict[str, Any] = {"name": name, "input_schema": schema}
            if isinstance(member.get("description"), str) and member["description"]:
                converted["description"] = member["description"]
            if isinstance(member.get("strict"), bool):
                converted["strict"] = member["strict"]
            out.append(converted)
    return out, names


def _tag(item: Any, names: dict[str, str]) -> None:
    if isinstance(item, dict) and item.get("type") == "function_call" and item.get("name") in names:
        item["namespace"] = names[item["name"]]


def tag_namespaces(data: dict[str, Any], names: dict[str, str]) -> dict[str, Any]:
    """Put `namespace` back on the function calls of a Response or stream event (module doc)."""
    if names:
        _tag(data.get("item"), names)
        response = data["response"] if isinstance(data.get("response"), dict) else data
        for item in response.get("output") or ():
            _tag(item, names)
    return data


def list_params(q: Mapping[str, str]) -> tuple[int, str, str | None]:
    """limit (1-100, default 20), order (asc|desc, default desc), after (an item id)."""
    raw_limit = q.get("limit", "20")
    try:
        limit = int(raw_limit)
    except ValueError:
        limit = 0
    if not 1 <= limit <= 100:
        raise ResponsesInvalid(f"Invalid 'limit': expected an integer between 1 and 100, got '{raw_limit[:20]}'.",
                               "limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise ResponsesInvalid(f"Invalid 'order': expected 'asc' or 'desc', got '{order[:20]}'.", "order")
    after = q.get("after") or None
    return limit, order, after

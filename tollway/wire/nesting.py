"""How deep a request's JSON may nest (issue 17 item 9). Pure.

A client body nested 1,000 levels deep (in a tool's input or its schema) parses, but then fails
far inside the gateway: orjson refuses to serialise past 254 levels and a recursive scan (DLP)
runs out of stack, and the client got a 500, which SDKs retry, over and over, for a request that
can never succeed. The body is refused up front instead, with a 400 in the client's dialect.
`MAX_DEPTH` leaves room under orjson's 254 for the few levels a translation adds, and is far
beyond anything real: JSON Schemas and tool inputs nest tens of levels at most.
"""

from __future__ import annotations

from typing import Any

import orjson

MAX_DEPTH = 128
# orjson's serialiser refuses containers nested more than this many levels ("Recursion limit
# reached", documented in its README); `too_deep` leans on it to measure depth at C speed.
ORJSON_DEPTH = 254
_RECURSION = "Recursion limit reached"


def too_deep(raw: bytes, value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when VALUE (parsed from RAW) nests objects and arrays more than LIMIT levels deep.

    Why not a walk: Claude Code re-sends its whole history every turn, and a Python walk of every
    container cost about 10 µs per KB (2.3 ms at 224 KB, three times the parse), as did even a
    byte count of the brackets (`bytes.count` is a byte-by-byte loop). Instead VALUE goes through
    orjson's serialiser inside `ORJSON_DEPTH - limit` extra lists, so orjson's own recursion limit
    fires exactly when VALUE is deeper than LIMIT: one C pass, about 0.4 µs per KB. A body shorter
    than LIMIT bytes cannot be that deep; any other serialisation error falls back to the walk."""
    if len(raw) <= limit:
        return False
    if limit >= ORJSON_DEPTH:
        return _walk(value, limit)
    wrapped = value
    for _ in range(ORJSON_DEPTH - limit):
        wrapped = [wrapped]
    try:
        orjson.dumps(wrapped)
    except orjson.JSONEncodeError as exc:
        if str(exc) == _RECURSION:
            return True
        return _walk(value, limit)
    return False


def serialised_within(value: Any, limit: int = MAX_DEPTH) -> bytes | None:
    """VALUE serialised compactly by orjson, or None when it nests more than LIMIT levels deep.

    For a body the gateway must serialise anyway (the Messages surface after stripping
    `metadata`, which Claude Code sends on every turn), the depth check and the bytes to forward
    come from the same C pass, instead of one pass each."""
    if limit >= ORJSON_DEPTH:
        return None if _walk(value, limit) else orjson.dumps(value)
    pad = ORJSON_DEPTH - limit
    wrapped = value
    for _ in range(pad):
        wrapped = [wrapped]
    try:
        out = orjson.dumps(wrapped)
    except orjson.JSONEncodeError as exc:
        if str(exc) == _RECURSION:
            return None
        raise
    return out[pad:-pad]


def _walk(value: Any, limit: int) -> bool:
    """The depth check by hand (only containers are visited, iteratively): the fallback."""
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False

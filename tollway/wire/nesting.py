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

MAX_DEPTH = 128


def too_deep(raw: bytes, value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when VALUE (parsed from RAW) nests objects and arrays more than LIMIT levels deep.

    A body with fewer than LIMIT brackets in all cannot be that deep, which a byte count (C
    speed) tells without walking; otherwise only containers are walked, iteratively."""
    if raw.count(b"{") + raw.count(b"[") <= limit:
        return False
    stack: list[tuple[Any, int]] = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        children = item.values() if isinstance(item, dict) else item
        stack.extend((c, depth + 1) for c in children if isinstance(c, dict | list))
    return False

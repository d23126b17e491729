"""How deep a request's JSON may nest (issue 17 item 9). Pure.

A client body nested 1,000 levels deep (in a tool's input or its schema) parses, but then fails
far inside the gateway: orjson refuses to serialise past 254 levels and a recursive scan (DLP)
runs out of stack, and the client got a 500, which SDKs retry, over and over, for a request that
can never succeed. The body is refused up front instead, with a 400 in the client's dialect.
`MAX_DEPTH` leaves room under orjson's 254 for the few levels a translation adds, and is far
beyond anything real: JSON Schemas and tool inputs nest tens of levels at most.
"""

from __future__ import annotations

import threading
from typing import Any

import orjson

MAX_DEPTH = 128
# orjson's serialiser refuses containers nested more than this many levels ("Recursion limit
# reached", documented in its README); `too_deep` leans on it to measure depth at C speed.
ORJSON_DEPTH = 254
_RECURSION = "Recursion limit reached"


def _padded(value: Any, pad: int) -> tuple[list[Any], list[Any]]:
    """(VALUE inside PAD nested lists, the innermost list). The chain for the usual PAD is built
    once and reused (the innermost list holds VALUE only during one `orjson.dumps`): building 126
    lists per request cost more than serialising a small body. One chain per thread."""
    chains: dict[int, tuple[list[Any], list[Any]]] = _local.__dict__.setdefault("chains", {})
    chain = chains.get(pad)
    if chain is None or chain[1]:  # not built yet, or in use (never, but then a fresh one)
        holder: list[Any] = []
        outer = holder
        for _ in range(pad - 1):
            outer = [outer]
        chain = (outer, holder)
        chains.setdefault(pad, chain)
    chain[1].append(value)
    return chain


_local = threading.local()


def _dumps_padded(value: Any, pad: int) -> bytes | None:
    """orjson's serialisation of VALUE inside PAD lists; None when that passes orjson's depth limit."""
    outer, holder = _padded(value, pad)
    try:
        return orjson.dumps(outer)
    except orjson.JSONEncodeError as exc:
        if str(exc) == _RECURSION:
            return None
        raise
    finally:
        holder.clear()


def too_deep(raw: bytes, value: Any, limit: int = MAX_DEPTH) -> bool:
    """True when VALUE (parsed from RAW) nests objects and arrays more than LIMIT levels deep.

    Why not a walk: Claude Code re-sends its whole history every turn, and a Python walk of every
    container cost about 10 µs per KB (2.3 ms at 224 KB, three times the parse), as did even a
    byte count of the brackets (`bytes.count` is a byte-by-byte loop). Instead VALUE goes through
    orjson's serialiser inside `ORJSON_DEPTH - limit` extra lists, so orjson's own recursion limit
    fires exactly when VALUE is deeper than LIMIT: one C pass, about 0.4 µs per KB. A body shorter
    than LIMIT bytes cannot be that deep; any other serialisation error falls back to the walk."""
    if _shallow(raw, limit):
        return False
    if limit >= ORJSON_DEPTH:
        return _walk(value, limit)
    try:
        return _dumps_padded(value, ORJSON_DEPTH - limit) is None
    except orjson.JSONEncodeError:
        return _walk(value, limit)


def _shallow(raw: bytes, limit: int) -> bool:
    """True when RAW is certainly no deeper than LIMIT: fewer bytes, or (a small body, where the
    count is cheaper than the padded serialisation) fewer brackets than LIMIT."""
    return len(raw) <= limit or (len(raw) <= SMALL_BODY and raw.count(b"{") + raw.count(b"[") <= limit)


# Up to this size a bracket count (a byte-by-byte loop) is cheaper than the padded serialisation.
SMALL_BODY = 4096


def serialised_within(value: Any, limit: int = MAX_DEPTH, raw: bytes = b"") -> bytes | None:
    """VALUE serialised compactly by orjson, or None when it nests more than LIMIT levels deep.

    For a body the gateway must serialise anyway (the Messages surface after stripping
    `metadata`, which Claude Code sends on every turn), the depth check and the bytes to forward
    come from the same C pass, instead of one pass each. RAW, the bytes VALUE was parsed from,
    lets a small body skip the padding."""
    if raw and _shallow(raw, limit):
        return orjson.dumps(value)
    if limit >= ORJSON_DEPTH:
        return None if _walk(value, limit) else orjson.dumps(value)
    pad = ORJSON_DEPTH - limit
    out = _dumps_padded(value, pad)
    return None if out is None else out[pad:-pad]


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

"""Report the model id the client asked for when the gateway sent another one upstream.

Used only when an alias or a catalogue entry maps the requested id to a different upstream id;
otherwise the upstream's bytes pass untouched.
"""

from __future__ import annotations

import orjson


def rename_message(body: bytes, model: str) -> bytes:
    """A Messages response body with `model` replaced; anything unparsable passes unchanged."""
    try:
        message = orjson.loads(body)
    except orjson.JSONDecodeError:
        return body
    if not isinstance(message, dict) or "model" not in message:
        return body
    message["model"] = model
    return orjson.dumps(message)


def rename_stream_start(data: bytes, model: str) -> bytes:
    """Given stream bytes that begin with a complete `message_start` event, rename its model."""
    end = data.find(b"\n\n")
    head = data[:end]
    pos = head.find(b"\ndata:")
    if end < 0 or pos < 0 or not head.startswith(b"event: message_start"):
        return data
    try:
        event = orjson.loads(head[pos + 6 :])
        event["message"]["model"] = model
    except (orjson.JSONDecodeError, KeyError, TypeError):
        return data
    return head[:pos] + b"\ndata: " + orjson.dumps(event) + data[end:]

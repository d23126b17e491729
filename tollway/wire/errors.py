"""Error envelopes per dialect. Pure functions: no I/O, nothing of ours imported.

Stock SDKs map the HTTP status to an exception class and read the envelope's `type` and
`message`; getting these exactly right is what makes an SDK raise the class a user expects.
"""

from __future__ import annotations

import orjson

# Anthropic's error type for each status we originate.
ANTHROPIC_TYPES: dict[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    405: "invalid_request_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "overloaded_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def anthropic_type_for(status: int) -> str:
    return ANTHROPIC_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")


def anthropic_error(error_type: str, message: str, request_id: str) -> bytes:
    """`{"type":"error","error":{...},"request_id":...}` — Anthropic's envelope, byte for byte."""
    return orjson.dumps(
        {"type": "error", "error": {"type": error_type, "message": message}, "request_id": request_id}
    )


def anthropic_error_event(error_type: str, message: str) -> bytes:
    """The SSE frame that ends a stream that has already started (status stays 200)."""
    data = orjson.dumps({"type": "error", "error": {"type": error_type, "message": message}})
    return b"event: error\ndata: " + data + b"\n\n"


def is_anthropic_envelope(body: bytes) -> bool:
    """True when an upstream error body is already in our envelope, so it can pass unchanged."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        return False
    return (
        isinstance(parsed, dict)
        and parsed.get("type") == "error"
        and isinstance(parsed.get("error"), dict)
        and isinstance(parsed["error"].get("type"), str)
    )

"""What the cloud adapters (bedrock.py, vertex.py, foundry.py) share: turning a cloud's error
answer into the Anthropic envelope, the rule for a cloud that refuses Tollway's own credentials,
the memo that keeps a broken credential source from being asked again on every request, and
the upstream's request id on the reply.

A 401 or 403 from a cloud is about Tollway's credentials or IAM permissions, never the caller's:
the caller gets a 502 that names the upstream and says the operator must act, with
`x-should-retry: false` so SDKs do not retry it; the pipeline may still fail over to another
deployment (another cloud), and the deployment's breaker counts it.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import orjson

from tollway.upstream.base import UpstreamFailure, UpstreamReply
from tollway.wire.errors import anthropic_type_for, is_anthropic_envelope

log = logging.getLogger("tollway.upstream")
JSON = "application/json"

# Seconds a failed credential resolution is remembered: requests in that window fail at once
# instead of asking the credential source again (no retry storm against STS or a token endpoint).
CREDENTIAL_RETRY_S = 5.0


def set_request_id(reply: UpstreamReply, header: str, value: str | None) -> UpstreamReply:
    """The upstream's request id under the upstream's own header name, and in `reply.request_id`
    where UpstreamReply has that field."""
    if value:
        reply.headers[header] = value
        if hasattr(reply, "request_id"):
            setattr(reply, "request_id", value)  # noqa: B010 - the field is newer than this module
    return reply


def _parsed(body: bytes) -> Any:
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError:
        return None


def _message_of(parsed: Any) -> str | None:
    if not isinstance(parsed, dict):
        return None
    error = parsed.get("error")
    if isinstance(error, dict) and isinstance(error.get("message"), str):
        return str(error["message"])  # Google's {"error": {"code", "message", "status"}}
    for name in ("message", "Message"):  # AWS rest-json errors
        if isinstance(parsed.get(name), str):
            return str(parsed[name])
    return None


def error_reply(label: str, status: int, body: bytes, headers: dict[str, str],
                code: str | None = None) -> UpstreamReply:
    """A cloud's HTTP error as an Anthropic envelope, its status kept (module doc for 401/403).
    An Anthropic envelope (the model's own error, relayed by the cloud) passes unchanged."""
    if status in (401, 403):
        detail = _message_of(_parsed(body))
        what = f"{code}: {detail}" if code and detail else (detail or code or f"HTTP {status}")
        log.error("a cloud upstream refused Tollway's credentials", extra={"upstream": label, "status": status,
                                                                           "reason": what})
        refused = (f"the upstream {label} refused the gateway's credentials ({what}); the gateway's operator "
                   "must fix its cloud credentials or permissions")
        envelope = {"type": "error", "error": {"type": "api_error", "message": refused}}
        return UpstreamReply(502, JSON, body=orjson.dumps(envelope), headers={**headers, "x-should-retry": "false"})
    if is_anthropic_envelope(body):
        return UpstreamReply(status, JSON, body=body, headers=headers)
    message = _message_of(_parsed(body))
    text = f"{label}: {code + ': ' if code else ''}{message or f'the upstream answered HTTP {status}'}"
    envelope = {"type": "error", "error": {"type": anthropic_type_for(status), "message": text}}
    return UpstreamReply(status, JSON, body=orjson.dumps(envelope), headers=headers)


class FailureMemo:
    """Remembers a credential failure for CREDENTIAL_RETRY_S (an injectable clock for tests)."""

    __slots__ = ("_clock", "_failure", "_until")

    def __init__(self, clock: Any = time.monotonic) -> None:
        self._clock = clock
        self._failure: UpstreamFailure | None = None
        self._until = 0.0

    def check(self) -> None:
        if self._failure is not None and self._clock() < self._until:
            raise self._failure

    def remember(self, label: str, what: str) -> UpstreamFailure:
        log.error("a cloud upstream's credentials could not be obtained", extra={"upstream": label, "reason": what})
        self._failure = UpstreamFailure(502, "api_error", f"the upstream {label} is unavailable: the gateway could "
                                        f"not obtain its credentials ({what})")
        self._until = self._clock() + CREDENTIAL_RETRY_S
        return self._failure

    def clear(self) -> None:
        self._failure = None

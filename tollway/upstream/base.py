"""The contract between the pipeline and an upstream adapter.

Every adapter answers in the canonical dialect (Anthropic Messages) as bytes: a JSON body, or a
stream read chunk by chunk. Bytes, not parsed objects, so native passthrough never re-encodes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from tollway.wire.refusal import Refusal


class UpstreamFailure(Refusal):
    """The upstream could not be reached or broke off; becomes 502/504 (or an SSE error event)."""

    error_type: str
    # Bytes still relayed before the error frame: whole events a stream tap took in before its
    # cut-off (governance.estimate.StreamCut); none for any other failure.
    relay: bytes = b""

    def __init__(self, status: int, error_type: str, message: str) -> None:
        super().__init__(status, message, error_type)


@dataclass(slots=True)
class UpstreamRequest:
    """What the pipeline asks an adapter to send."""

    body: dict[str, Any]
    # The body's bytes: the client's exact bytes while nothing had to change in the body (else the
    # surface's one serialisation of it, e.g. after stripping `metadata`); None once governance
    # or a model rename changed it.
    raw: bytes | None
    # Client headers that may be forwarded (anthropic-version, anthropic-beta, session id).
    headers: Mapping[str, str]
    stream: bool
    query: str = ""
    # The client's own body in the upstream's native dialect (an OpenAI chat body for an OpenAI
    # deployment), when the surface had one and no governance step changed the request since.
    # An adapter of that dialect may send it instead of translating `body` (upstream/openai.py).
    native: dict[str, Any] | None = None


async def _no_chunk() -> bytes:
    return b""


def _nothing() -> None:
    return None


@dataclass(slots=True)
class UpstreamReply:
    """An upstream's answer. For a 200 stream, `read` yields chunks until it returns b""."""

    status: int
    content_type: str
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    read: Callable[[], Awaitable[bytes]] = _no_chunk
    close: Callable[[], None] = _nothing
    streaming: bool = False
    # The upstream's own id for this request (Anthropic `request-id`, OpenAI `x-request-id`),
    # recorded in usage and audit and returned to the client as `upstream-request-id`.
    request_id: str | None = None


class Upstream(Protocol):
    """One provider endpoint with its own pooled connections."""

    async def start(self) -> None: ...

    async def close(self) -> None: ...

    async def messages(self, req: UpstreamRequest) -> UpstreamReply: ...

    async def count_tokens(self, req: UpstreamRequest) -> UpstreamReply: ...

"""`Call`: one data-plane request on its way through the pipeline, in canonical form.

Its own module so that what reads a call (tracing, the answer's stream, the surfaces) need not
import the pipeline that drives it: the pipeline imports them, never the other way round.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

from tollway.governance.identity import Principal
from tollway.governance.limits import Ticket
from tollway.observability import server_timing

if TYPE_CHECKING:
    from tollway.upstream.base import UpstreamReply, UpstreamRequest
    from tollway.upstream.router import Deployment, Route
    from tollway.wire.sse import Usage


class CallTrace(Protocol):
    """What the pipeline asks of a call's spans (tollway/tracing.py implements it)."""

    async def attempt(self, call: Call, deployment: Deployment, req: UpstreamRequest,
                      send: Callable[[UpstreamRequest], Awaitable[UpstreamReply]]) -> UpstreamReply: ...

    def end(self, call: Call, status: int, usage: Usage, cost_micros: int, error_type: str | None) -> None: ...


@dataclass(slots=True)
class Call:
    """One data-plane request on its way through the pipeline, in canonical form."""

    request_id: str
    route_name: str
    headers: Mapping[str, str]
    client: dict[str, Any]
    principal: Principal | None = None
    body: dict[str, Any] = field(default_factory=dict)
    raw: bytes | None = None
    # The client's own body in an upstream's native dialect (OpenAI passthrough), or None.
    # Dropped by any governance step that changes `body`, so it can never bypass one.
    native: dict[str, Any] | None = None
    # The client's body size in bytes when it bounds the canonical body's (the budget estimate
    # uses it instead of serialising a rebuilt body: governance/estimate.py); 0 when unknown.
    size: int = 0
    query: str = ""
    stream: bool = False
    route: Route | None = field(default=None)
    # The id the client asked for, and the one the answering deployment was sent (they differ
    # for aliases and catalogue entries that name another upstream id).
    requested_model: str = ""
    upstream_model: str = ""
    group_id: str | None = None
    ticket: Ticket = field(default_factory=Ticket)
    started: float = field(default_factory=time.perf_counter)
    finished: bool = False
    dlp: list[dict[str, Any]] = field(default_factory=list)
    # Which deployment answered, and every failed attempt before it (for usage and audit).
    deployment: str | None = None
    attempts: list[dict[str, Any]] = field(default_factory=list)
    # The upstream's own id for the request that answered (or last failed).
    upstream_request_id: str | None = None
    # The answer's bytes, kept only when the paying group has payload capture on.
    captured: bytes | bytearray | None = None
    # Seconds the upstream took to answer (to its headers), and when the answer started here.
    upstream_s: float | None = None
    answered: float | None = None
    # The call's spans when tracing is on (tollway/tracing.py); None costs the hot path one test.
    trace: CallTrace | None = None

    def timing(self) -> str:
        """The Server-Timing value for a response starting now."""
        gateway = time.perf_counter() - self.started - (self.upstream_s or 0.0)
        return server_timing(gateway, self.upstream_s)

    @property
    def renamed(self) -> bool:
        return bool(self.requested_model) and self.requested_model != self.upstream_model

"""The request runner: the one sequence every data-plane route goes through.

    begin -> authenticate -> (read and parse the JSON body) -> dialect.to_canonical
      -> dialect.respond (the pipeline, then dialect.render / dialect.reframe)
      -> on a refusal: dialect.render_error; on anything unexpected: a 500 in the dialect's envelope

A surface is a `Dialect` object and a route (`endpoint(dialect)`); it never writes this
sequence again, so every route books its refusals, its cancellations (499) and its own bugs
(500, traceback logged server-side only, never sent) in exactly one `finish`, with an audit
record, a ledger row where metered, and a closed trace span.

Adding a surface (docs/architecture.md, "Adding a surface"): subclass `Dialect` (or
`ForwardingDialect` for one that calls a model), give it a `route_name`, `to_canonical` (the
client's body to the canonical Messages request on `ex.call`, raising `Refusal`s), `render`
(a JSON answer back to the client's dialect), `reframe` (the canonical event stream to the
client's framing) and `render_error`, and mount `endpoint(YourDialect())` in app.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from tollway.answer import Answer
from tollway.call import Call
from tollway.pipeline import INTERNAL_ERROR
from tollway.surfaces.common import (
    SSE_HEADERS,
    RelayResponse,
    client_info,
    client_left,
    header_map,
    new_request_id,
    parse_json,
    read_body,
    while_connected,
)
from tollway.surfaces.state import Gateway, gateway_of
from tollway.wire.credentials import ambiguous_credentials, json_content_type
from tollway.wire.refusal import Refusal

log = logging.getLogger("tollway")


@dataclass(slots=True)
class Exchange:
    """One request through the runner: what a dialect reads and writes on its way."""

    request: Request
    gw: Gateway
    call: Call
    request_id: str
    # The client's body as it came, and parsed (None for routes without a body).
    raw: bytes = b""
    body: Any = None
    # Whatever the dialect keeps between `to_canonical` and `render` (a Turn, the chat body…).
    state: dict[str, Any] = field(default_factory=dict)

    @property
    def ping_interval(self) -> float:
        return self.gw.settings.server.ping_interval


class Dialect:
    """A surface: how one API's requests become canonical calls and its answers go back."""

    route_name: str = ""
    # Whether the route reads a JSON body before `to_canonical` (POST routes do).
    reads_body: bool = True
    # Whether an empty body is acceptable (it then parses as None).
    empty_body_ok: bool = False
    # Whether `to_canonical` checks the body's nesting itself (`common.wire_bytes`), so the runner
    # need not: the check is one C pass over the body, better made with the serialisation.
    checks_depth: bool = False

    def admit_headers(self, headers: dict[str, str]) -> dict[str, str]:
        """The headers the call authenticates with: a surface whose clients send something that
        is not a Tollway credential (Bedrock's SigV4 `Authorization`) drops it here."""
        return headers

    async def to_canonical(self, ex: Exchange) -> None:
        """Fill `ex.call` (body, raw, stream, native) from `ex.body`; raise a Refusal to refuse."""

    async def respond(self, ex: Exchange) -> Response:
        """The answer. Routes the gateway answers itself override this and end with `done`."""
        raise NotImplementedError

    def render_error(self, refusal: Refusal, ex: Exchange) -> Response:
        raise NotImplementedError


class ForwardingDialect(Dialect):
    """A surface that calls a model: the pipeline forwards, then the answer is rendered."""

    count_tokens: bool = False

    async def respond(self, ex: Exchange) -> Response:
        pipeline = ex.gw.pipeline
        work = pipeline.count_tokens(ex.call) if self.count_tokens else pipeline.messages(ex.call)
        answer = await while_connected(ex.request, work, ex.call)
        if answer is None:
            return client_left(ex.request_id)
        return await self.answered(ex, answer)

    async def answered(self, ex: Exchange, answer: Answer) -> Response:
        if not answer.streaming:
            return await self.render(ex, answer)
        return RelayResponse(self.reframe(ex, answer.events(ex.ping_interval)), 200,
                             headers=self.stream_headers(ex, answer), media_type=self.stream_type(answer))

    async def render(self, ex: Exchange, answer: Answer) -> Response:
        raise NotImplementedError

    def reframe(self, ex: Exchange, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The canonical (Anthropic SSE) bytes in the client's framing; the identity by default."""
        return events

    def stream_headers(self, ex: Exchange, answer: Answer) -> dict[str, str]:
        return {**SSE_HEADERS, **answer.headers, "request-id": ex.request_id}

    def stream_type(self, answer: Answer) -> str:
        return "text/event-stream"


async def run(request: Request, dialect: Dialect) -> Response:
    """Serve one request through DIALECT (module doc)."""
    gw = gateway_of(request)
    request_id = new_request_id()
    headers = dialect.admit_headers(header_map(request))
    call = gw.pipeline.begin(request_id, dialect.route_name, headers, client_info(request, headers))
    ex = Exchange(request, gw, call, request_id)
    try:
        duplicated = ambiguous_credentials(request.scope["headers"])
        if duplicated:
            raise Refusal(401, f"ambiguous credentials: the {duplicated} header was sent more than once")
        await gw.pipeline.admit(call)
        if dialect.reads_body:
            kind = headers.get("content-type")
            if kind is not None and not json_content_type(kind):
                raise Refusal(415, f"content-type must be application/json, got '{kind[:100]}'",
                              "invalid_request_error")
            ex.raw = await read_body(request, gw.settings.server.max_body_bytes)
            # `isspace` stops at the first byte that is not blank; `strip` would copy the body.
            empty = dialect.empty_body_ok and (not ex.raw or ex.raw.isspace())
            ex.body = None if empty else parse_json(ex.raw, not dialect.checks_depth)
        await dialect.to_canonical(ex)
        return await dialect.respond(ex)
    except Refusal as exc:
        await gw.pipeline.refused(call, exc)
        return dialect.render_error(exc, ex)
    except asyncio.CancelledError:
        await gw.pipeline.refused(call, asyncio.CancelledError())
        raise
    except Exception as exc:  # a bug of ours: logged with its traceback, never shown to the client
        log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc,
                  extra={"request_id": request_id})
        await gw.pipeline.refused(call, exc)
        return dialect.render_error(Refusal(500, INTERNAL_ERROR, "api_error"), ex)


def endpoint(dialect: Dialect) -> Callable[[Request], Awaitable[Response]]:
    """The Starlette endpoint serving DIALECT."""

    async def serve(request: Request) -> Response:
        return await run(request, dialect)

    serve.__name__ = f"serve_{dialect.route_name}"
    return serve

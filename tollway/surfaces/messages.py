"""Anthropic Messages: `POST /v1/messages` (JSON and SSE) and `POST /v1/messages/count_tokens`."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tollway.pipeline import GatewayError
from tollway.surfaces.common import (
    JSON,
    SSE_HEADERS,
    RelayResponse,
    client_info,
    client_left,
    error_headers,
    error_response,
    header_map,
    new_request_id,
    parse_json,
    query_string,
    read_body,
    refusal,
    relay,
    while_connected,
)
from tollway.surfaces.state import gateway_of
from tollway.upstream.base import UpstreamFailure, UpstreamReply
from tollway.wire.errors import is_anthropic_envelope
from tollway.wire.messages_schema import RequestInvalid, strip_ingress, validate_count_tokens, validate_create
from tollway.wire.rename import rename_message

_REFUSALS = (GatewayError, RequestInvalid, UpstreamFailure)


def _render(reply: UpstreamReply, request_id: str, rename_to: str | None = None) -> Response:
    """A finished (non-streaming) upstream answer, passed through when it is already ours."""
    if reply.status < 400:
        body = rename_message(reply.body, rename_to) if rename_to else reply.body
        return Response(body, reply.status, headers={**reply.headers, "request-id": request_id}, media_type=JSON)
    if is_anthropic_envelope(reply.body):
        headers = error_headers(reply.status, request_id, reply.headers)
        return Response(reply.body, reply.status, headers=headers, media_type=JSON)
    return error_response(
        reply.status if reply.status >= 400 else 502,
        f"the upstream answered HTTP {reply.status} without an Anthropic error body",
        request_id,
        headers=reply.headers,
    )


async def create_message(request: Request) -> Response:
    gw = gateway_of(request)
    request_id = new_request_id()
    headers = header_map(request)
    call = gw.pipeline.begin(request_id, "messages", headers, client_info(request, headers))
    try:
        await gw.pipeline.admit(call)
        raw = await read_body(request, gw.settings.server.max_body_bytes)
        body = validate_create(parse_json(raw))
        changed = strip_ingress(body)
        call.body, call.raw, call.query = body, None if changed else raw, query_string(request)
        call.stream = bool(body.get("stream"))
        reply = await while_connected(request, gw.pipeline.messages(call), call)
    except _REFUSALS as exc:
        await gw.pipeline.refused(call, exc)
        return refusal(exc, request_id, call)
    if reply is None:
        return client_left(request_id)
    rename_to = call.requested_model if call.renamed else None
    if not reply.streaming:
        return _render(reply, request_id, rename_to)
    return RelayResponse(
        relay(reply, gw.settings.server.ping_interval, rename_to),
        200,
        headers={**SSE_HEADERS, **reply.headers, "request-id": request_id},
        media_type=reply.content_type,
    )


async def count_tokens(request: Request) -> Response:
    gw = gateway_of(request)
    request_id = new_request_id()
    headers = header_map(request)
    call = gw.pipeline.begin(request_id, "count_tokens", headers, client_info(request, headers))
    try:
        await gw.pipeline.admit(call)
        raw = await read_body(request, gw.settings.server.max_body_bytes)
        body = validate_count_tokens(parse_json(raw))
        # Anthropic refuses max_tokens and stream here (DECISIONS.md 12); clients send them anyway.
        changed = strip_ingress(body, ("max_tokens", "stream"))
        call.body, call.raw, call.query = body, None if changed else raw, query_string(request)
        reply = await while_connected(request, gw.pipeline.count_tokens(call), call)
    except _REFUSALS as exc:
        await gw.pipeline.refused(call, exc)
        return refusal(exc, request_id, call)
    if reply is None:
        return client_left(request_id)
    return _render(reply, request_id)

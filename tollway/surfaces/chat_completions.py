"""OpenAI Chat Completions: `POST /v1/chat/completions` (JSON and SSE).

The request goes through the same pipeline as `/v1/messages` (authenticate, authorize the model,
limits and budget, forward, meter, audit): it is validated (`openai_schema.validate_chat`),
translated to the canonical Messages request (`chat_request_to_messages`), and the canonical
answer is rendered back (`message_to_chat_response`, `MessagesStreamToChat`). Decisions:

* **Errors** are OpenAI envelopes `{"error": {"message", "type", "code", "param"}}` with
  `request-id` and `x-request-id` headers, 401 included (DECISIONS.md 14); statuses are the
  `/v1/messages` ones (unknown model 404 `model_not_found`, a model the key may not use 403,
  limits 429 with `retry-after`). Types and codes: `surfaces.common.OPENAI_ERRORS`. An upstream
  error keeps its status and message, and the upstream's OpenAI `code`/`param` when it had them.
* **Streams** are unnamed `data: {chunk}` lines ending with `data: [DONE]`; with
  `stream_options.include_usage` a last chunk carries the usage (`choices: []`). During upstream
  silence a `: ping` comment goes out (openai-python skips comments). A failure after the stream
  began is a `data: {"error": {…, "code": "stream_error"}}` line, then `data: [DONE]`; the status
  stays 200 (wire-contract §1.5).
* **`model`** in every answer is the id the client asked for, also when an alias or a catalogue
  entry sent another id upstream.
* The **`tollway` extension block** is refused with 400 (DECISIONS.md 16), by `validate_chat`.
* A request with **no user or assistant message** (only system/developer ones) is a 400: the
  canonical form needs a turn to answer.
* **OpenAI upstreams** get the client's own body (upstream/openai.py, "passthrough"), registered
  for the call when the model or one of its fallbacks has an OpenAI deployment, and used only
  while no governance step changed the request; other deployments get the canonical form.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import AbstractContextManager, nullcontext
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.pipeline import GatewayError
from tollway.surfaces.common import (
    JSON,
    SSE_HEADERS,
    RelayResponse,
    client_info,
    client_left,
    header_map,
    new_request_id,
    openai_error_response,
    openai_headers,
    openai_refusal,
    openai_upstream_error,
    parse_json,
    read_body,
    relay,
    while_connected,
)
from tollway.surfaces.state import Gateway, gateway_of
from tollway.upstream.base import UpstreamFailure, UpstreamReply
from tollway.upstream.openai import passthrough, passthrough_body
from tollway.wire.anthropic_to_openai import MessagesStreamToChat, StreamFailed, message_to_chat_response
from tollway.wire.messages_schema import RequestInvalid
from tollway.wire.openai_schema import ChatInvalid, validate_chat
from tollway.wire.openai_to_anthropic import chat_request_to_messages
from tollway.wire.sse_decode import SSEDecoder

log = logging.getLogger("tollway")
_REFUSALS = (GatewayError, RequestInvalid, ChatInvalid, UpstreamFailure)
DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": ping\n\n"
# Codes for upstream errors that carried none of their own.
def _data(chunk: dict[str, Any]) -> bytes:
    return b"data: " + orjson.dumps(chunk) + b"\n\n"


def _has_openai_deployment(gw: Gateway, requested: str) -> bool:
    """Whether an OpenAI upstream may answer for `requested` (a deployment of its own or of a
    fallback): only then is the client's body worth keeping for passthrough."""
    model = gw.pipeline.catalogue.resolve(requested)
    if model is None:
        return False
    router = gw.pipeline.router
    routes = [router.get(model.id)] + [router.get(f) for f in model.fallbacks]
    return any(d.provider == "openai" for r in routes if r is not None for d in r.deployments)


def _canonical(gw: Gateway, chat: dict[str, Any]) -> tuple[dict[str, Any], AbstractContextManager[None]]:
    """The canonical request, and what to hold while the pipeline forwards it (passthrough)."""
    body = chat_request_to_messages(chat)
    if not body["messages"]:
        raise ChatInvalid("Invalid 'messages': at least one user or assistant message is required.", "messages")
    native = passthrough_body(chat) if _has_openai_deployment(gw, chat["model"]) else None
    return body, passthrough(body, native) if native is not None else nullcontext()


def _render(reply: UpstreamReply, request_id: str, model: str) -> Response:
    if reply.status >= 400:
        return openai_upstream_error(reply, request_id)
    try:
        message = orjson.loads(reply.body)
    except orjson.JSONDecodeError:
        message = None
    if not isinstance(message, dict) or message.get("type") != "message":
        return openai_error_response(502, "the upstream answered with something that is not a message",
                                     request_id, headers=reply.headers)
    body = orjson.dumps(message_to_chat_response(message, model))
    return Response(body, reply.status, headers=openai_headers(request_id, reply.headers), media_type=JSON)


async def _chunks(reply: UpstreamReply, ping_interval: float, model: str, include_usage: bool) -> AsyncIterator[bytes]:
    """The canonical event stream as chat.completion.chunk lines.

    `relay` does the relaying proper (pings while the upstream is silent, its failures as an
    `error` event, the metering tap, closing the reply); this only re-frames its events."""
    convert = MessagesStreamToChat(model, include_usage)
    decoder = SSEDecoder()
    source: AsyncGenerator[bytes, None] = relay(reply, ping_interval)  # type: ignore[assignment]
    try:
        async for data in source:
            out: list[bytes] = []
            for event in decoder.feed(data):
                if event.event == "ping":
                    out.append(KEEPALIVE)
                    continue
                try:
                    parsed = orjson.loads(event.data)
                except orjson.JSONDecodeError:
                    continue
                try:
                    out.extend(_data(c) for c in convert.feed(parsed))
                except StreamFailed as failed:
                    yield b"".join(out) + _data(failed.payload()) + DONE
                    return
            if out:
                yield b"".join(out)
        yield DONE
    finally:
        await source.aclose()


async def create_chat_completion(request: Request) -> Response:
    gw = gateway_of(request)
    request_id = new_request_id()
    headers = header_map(request)
    call = gw.pipeline.begin(request_id, "chat_completions", headers, client_info(request, headers))
    try:
        await gw.pipeline.admit(call)
        raw = await read_body(request, gw.settings.server.max_body_bytes)
        chat = validate_chat(parse_json(raw))
        body, native = _canonical(gw, chat)
        call.body, call.raw, call.query = body, None, ""
        call.stream = bool(chat.get("stream"))
        with native:
            reply = await while_connected(request, gw.pipeline.messages(call), call)
    except _REFUSALS as exc:
        # The pipeline accounts a body refusal as what it is, a 400 invalid_request_error.
        counted = GatewayError(400, exc.message, "invalid_request_error") if isinstance(exc, ChatInvalid) else exc
        await gw.pipeline.refused(call, counted)
        return openai_refusal(exc, request_id, call)
    except Exception as exc:  # a bug of ours: the client still gets its dialect's envelope
        log.error("unhandled error on POST /v1/chat/completions", exc_info=exc)
        await gw.pipeline.refused(call, GatewayError(500, "internal error in the gateway"))
        return openai_error_response(500, "internal error in the gateway", request_id)
    if reply is None:
        return client_left(request_id)
    model = call.requested_model or str(chat["model"])
    if not reply.streaming:
        return _render(reply, request_id, model)
    options = chat.get("stream_options")
    include_usage = isinstance(options, dict) and options.get("include_usage") is True
    return RelayResponse(
        _chunks(reply, gw.settings.server.ping_interval, model, include_usage),
        200,
        headers=openai_headers(request_id, {**SSE_HEADERS, **reply.headers}),
        media_type="text/event-stream",
    )

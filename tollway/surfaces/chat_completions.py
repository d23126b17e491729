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
* **OpenAI upstreams** get the client's own body (upstream/openai.py, "passthrough"), carried on
  the call as its `native` body when the model or one of its fallbacks has an OpenAI
  deployment, and handed on only while no governance step changed the request; other
  deployments get the canonical form.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response

from tollway.answer import Answer
from tollway.surfaces.common import JSON, SSE_HEADERS
from tollway.surfaces.envelopes import openai_error_response, openai_headers, openai_refusal, openai_upstream_error
from tollway.surfaces.handler import Exchange, ForwardingDialect
from tollway.surfaces.state import Gateway
from tollway.upstream.openai import passthrough_body
from tollway.wire.anthropic_to_openai import MessagesStreamToChat, StreamFailed, message_to_chat_response
from tollway.wire.chat_turns import chat_request_to_messages
from tollway.wire.openai_schema import ChatInvalid, validate_chat
from tollway.wire.refusal import Refusal
from tollway.wire.sse_decode import SSEDecoder

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": ping\n\n"


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


class OpenAIDialect(ForwardingDialect):
    """What the OpenAI surfaces share: the OpenAI envelope and `x-request-id`."""

    def render_error(self, refusal: Refusal, ex: Exchange) -> Response:
        return openai_refusal(refusal, ex.request_id, {"server-timing": ex.call.timing()})

    def stream_headers(self, ex: Exchange, answer: Answer) -> dict[str, str]:
        return openai_headers(ex.request_id, {**SSE_HEADERS, **answer.headers})

    def model(self, ex: Exchange) -> str:
        """The id every answer reports: the one the client asked for."""
        return ex.call.requested_model or str(ex.body["model"])


class ChatCompletionsDialect(OpenAIDialect):
    route_name = "chat_completions"

    async def to_canonical(self, ex: Exchange) -> None:
        chat = validate_chat(ex.body)
        body = chat_request_to_messages(chat)
        if not body["messages"]:
            raise ChatInvalid("Invalid 'messages': at least one user or assistant message is required.", "messages")
        call = ex.call
        call.body, call.raw, call.query = body, None, ""
        # The canonical body carries the same text as the client's with lighter framing, so the
        # client's byte count bounds it for the estimate (no serialisation of the rebuilt body).
        call.size = len(ex.raw)
        call.stream = bool(chat.get("stream"))
        call.native = passthrough_body(chat) if _has_openai_deployment(ex.gw, chat["model"]) else None
        ex.body = chat

    async def render(self, ex: Exchange, answer: Answer) -> Response:
        if answer.status >= 400:
            return openai_upstream_error(answer.reply, ex.request_id)
        try:
            message = orjson.loads(answer.body)
        except orjson.JSONDecodeError:
            message = None
        if not isinstance(message, dict) or message.get("type") != "message":
            return openai_error_response(502, "the upstream answered with something that is not a message",
                                         ex.request_id, headers=answer.headers)
        body = orjson.dumps(message_to_chat_response(message, self.model(ex)))
        return Response(body, answer.status, headers=openai_headers(ex.request_id, answer.headers), media_type=JSON)

    async def reframe(self, ex: Exchange, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The canonical event stream as chat.completion.chunk lines (pings as comments, a failure
        as an error line, then `[DONE]`); closing this closes the answer's stream, which ends the call."""
        options = ex.body.get("stream_options")
        include_usage = isinstance(options, dict) and options.get("include_usage") is True
        convert = MessagesStreamToChat(self.model(ex), include_usage)
        decoder = SSEDecoder()
        source: Any = events
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

"""Anthropic Messages, the canonical dialect: `POST /v1/messages` (JSON and SSE) and
`POST /v1/messages/count_tokens`.

The client's body is the canonical request: it is validated (`wire.messages_schema`), the ingress
fields DECISIONS.md 2 lists are stripped, and the client's exact bytes are forwarded while
nothing had to change. Answers pass through unchanged but for the model id, which an alias
renames back to the one the client asked for (the pipeline's answer does it for streams).
"""

from __future__ import annotations

from starlette.responses import Response

from tollway.answer import Answer
from tollway.surfaces.common import JSON, query_string, wire_bytes
from tollway.surfaces.envelopes import anthropic_refusal, anthropic_upstream_error
from tollway.surfaces.handler import Exchange, ForwardingDialect
from tollway.wire.messages_schema import strip_ingress, validate_count_tokens, validate_create
from tollway.wire.refusal import Refusal
from tollway.wire.rename import rename_message


class AnthropicDialect(ForwardingDialect):
    """What both Messages routes share: the Anthropic envelope and pass-through rendering."""

    def render_error(self, refusal: Refusal, ex: Exchange) -> Response:
        return anthropic_refusal(refusal, ex.request_id, {"server-timing": ex.call.timing()})

    async def render(self, ex: Exchange, answer: Answer) -> Response:
        call = ex.call
        if answer.status >= 400:
            return anthropic_upstream_error(answer.reply, ex.request_id)
        body = rename_message(answer.body, call.requested_model) if call.renamed and not self.count_tokens \
            else answer.body
        return Response(body, answer.status, headers={**answer.headers, "request-id": ex.request_id},
                        media_type=JSON)

    def stream_type(self, answer: Answer) -> str:
        return answer.content_type


class MessagesDialect(AnthropicDialect):
    route_name = "messages"
    checks_depth = True

    async def to_canonical(self, ex: Exchange) -> None:
        body = validate_create(ex.body)
        # Claude Code sends `metadata` on every turn: the stripped body is serialised here, once,
        # and the same pass checks its nesting (the client's bytes are checked when forwarded).
        changed = strip_ingress(body)
        call = ex.call
        call.body, call.raw, call.query = body, wire_bytes(ex.raw, body, changed), query_string(ex.request)
        call.size = len(ex.raw)  # bounds the body's size after stripping: the estimate needs no dumps
        call.stream = bool(body.get("stream"))


class CountTokensDialect(AnthropicDialect):
    route_name = "count_tokens"
    count_tokens = True
    checks_depth = True

    async def to_canonical(self, ex: Exchange) -> None:
        body = validate_count_tokens(ex.body)
        # Anthropic refuses max_tokens and stream here (DECISIONS.md 12); clients send them anyway.
        changed = strip_ingress(body, ("max_tokens", "stream"))
        call = ex.call
        call.body, call.raw, call.query = body, wire_bytes(ex.raw, body, changed), query_string(ex.request)

"""Bedrock ingress (issue 13, items 6 and 8): Tollway answering `AnthropicBedrock` and Claude Code
in Bedrock mode as the Bedrock runtime would, for any upstream the catalogue routes to.

Routes: `POST /model/{model}/invoke` (JSON), `POST /model/{model}/invoke-with-response-stream`
(AWS event-stream) and `POST /model/{model}/count-tokens`. The pure pieces (paths, bodies, frame
encoding, error bodies, model-id candidates) are in wire/cloud_ingress.py; this module puts them
on the request runner (surfaces/handler.py), so identity, access, limits, DLP, metering and audit
are exactly those of `/v1/messages`, recorded under the route names `bedrock_invoke`,
`bedrock_invoke_stream` and `bedrock_count_tokens`.

Decisions (docs/providers.md, "Claude Code in Bedrock and Vertex mode"):

* **Credentials**: a Tollway key as `Authorization: Bearer` (what `AnthropicBedrock(api_key=…)`
  and `AWS_BEARER_TOKEN_BEDROCK` send) or `x-api-key`. A SigV4 `Authorization` header
  (`AWS4-HMAC-SHA256 …`, from a client that only signs) is not a Tollway credential: it is
  dropped, never checked, and the key must then come in `x-api-key`.
* **Body**: `anthropic_version` is dropped (each upstream gets its own); `anthropic_beta` (a list)
  becomes the canonical request's `anthropic-beta` header, after any the client sent as a header.
* **Errors**: Bedrock's rest-json shape — the status, `x-amzn-errortype`, `{"message"}` — for
  the gateway's refusals and for upstream errors alike; a failure after a stream began is the
  exception frame Bedrock sends (`throttlingException`, `internalServerException`…).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import orjson
from starlette.responses import Response

from tollway.answer import Answer
from tollway.surfaces.common import JSON
from tollway.surfaces.handler import Exchange, ForwardingDialect
from tollway.wire.cloud_ingress import (
    BedrockCall,
    SseToEventStream,
    bedrock_count_request,
    bedrock_error,
    bedrock_request,
    model_candidates,
)
from tollway.wire.messages_schema import RequestInvalid, strip_ingress, validate_count_tokens, validate_create
from tollway.wire.refusal import Refusal
from tollway.wire.rename import rename_message

EVENT_STREAM = "application/vnd.amazon.eventstream"


def catalogue_model(ex: Exchange, model: str) -> str:
    """The first of the path model's candidates the catalogue knows (cloud_ingress.model_candidates),
    or the id as sent (the pipeline then refuses it with 404)."""
    catalogue = ex.gw.pipeline.catalogue
    for candidate in model_candidates(model):
        if catalogue.resolve(candidate) is not None:
            return candidate
    return model


def upstream_message(body: bytes, status: int) -> str:
    """The message of an upstream's error body (Anthropic envelope or not)."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError:
        parsed = None
    if isinstance(parsed, dict):
        error = parsed.get("error")
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            return str(error["message"])
        if isinstance(parsed.get("message"), str):
            return str(parsed["message"])
    return f"the upstream answered HTTP {status}"


def with_betas(headers: dict[str, str], betas: str | None) -> dict[str, str]:
    """HEADERS with the body's betas appended to any `anthropic-beta` the client sent."""
    if not betas:
        return headers
    sent = headers.get("anthropic-beta")
    names = [b.strip() for b in (sent or "").split(",") if b.strip()]
    names += [b for b in betas.split(",") if b not in names]
    return {**headers, "anthropic-beta": ",".join(names)}


class BedrockDialect(ForwardingDialect):
    """What the Bedrock routes share: path parsing, credentials, the rest-json error shape."""

    action = ""

    def admit_headers(self, headers: dict[str, str]) -> dict[str, str]:
        auth = headers.get("authorization")
        if auth is not None and auth.lstrip().upper().startswith("AWS4-"):
            return {k: v for k, v in headers.items() if k != "authorization"}
        return headers

    def path_call(self, ex: Exchange) -> BedrockCall:
        model = ex.request.path_params["model"]
        if not isinstance(model, str) or not model:
            raise RequestInvalid("the path names no model")
        return BedrockCall(catalogue_model(ex, model), self.action)

    def render_error(self, refusal: Refusal, ex: Exchange) -> Response:
        status, headers, body = bedrock_error(refusal.status, refusal.message)
        return Response(body, status, headers={**refusal.headers, **headers, **self._ids(ex)}, media_type=JSON)

    def _ids(self, ex: Exchange) -> dict[str, str]:
        return {"x-amzn-requestid": ex.request_id, "request-id": ex.request_id, "server-timing": ex.call.timing()}

    def upstream_error(self, ex: Exchange, answer: Answer) -> Response:
        status, headers, body = bedrock_error(answer.status, upstream_message(answer.body, answer.status))
        retry = answer.headers.get("retry-after")
        extra = {"retry-after": retry} if retry else {}
        return Response(body, status, headers={**headers, **extra, **self._ids(ex)}, media_type=JSON)


class BedrockInvokeDialect(BedrockDialect):
    """`/model/{model}/invoke` (JSON) and, with `action` set so, its streaming twin."""

    route_name = "bedrock_invoke"
    action = "invoke"

    async def to_canonical(self, ex: Exchange) -> None:
        if not isinstance(ex.body, dict):
            raise RequestInvalid("request body must be a JSON object")
        body, betas = bedrock_request(self.path_call(ex), ex.body)
        body = validate_create(body)
        strip_ingress(body)
        call = ex.call
        call.body, call.raw, call.query = body, None, ""
        call.stream = bool(body.get("stream"))
        call.headers = with_betas(dict(call.headers), betas)

    async def render(self, ex: Exchange, answer: Answer) -> Response:
        if answer.status >= 400:
            return self.upstream_error(ex, answer)
        body = answer.body
        if ex.call.renamed:
            body = rename_message(body, ex.call.requested_model)
        return Response(body, answer.status, headers=self._ids(ex), media_type=JSON)

    def stream_headers(self, ex: Exchange, answer: Answer) -> dict[str, str]:
        return {"x-amzn-bedrock-content-type": JSON, **self._ids(ex)}

    def stream_type(self, answer: Answer) -> str:
        return EVENT_STREAM

    async def reframe(self, ex: Exchange, events: AsyncIterator[bytes]) -> AsyncIterator[bytes]:
        """The canonical SSE as event-stream frames; closing this closes the answer (ends the call)."""
        encoder = SseToEventStream()
        source: Any = events
        try:
            async for data in source:
                frames = encoder.feed(data)
                if frames:
                    yield frames
        finally:
            await source.aclose()


class BedrockStreamDialect(BedrockInvokeDialect):
    route_name = "bedrock_invoke_stream"
    action = "invoke-with-response-stream"


class BedrockCountTokensDialect(BedrockDialect):
    """`/model/{model}/count-tokens`: Bedrock's CountTokens, answered `{"inputTokens": n}`."""

    route_name = "bedrock_count_tokens"
    action = "count-tokens"
    count_tokens = True

    async def to_canonical(self, ex: Exchange) -> None:
        inner = bedrock_count_request(ex.body)
        if inner is None:
            raise RequestInvalid("expected {\"input\": {\"invokeModel\": {\"body\": <an InvokeModel body>}}}")
        body, betas = bedrock_request(self.path_call(ex), inner)
        body = validate_count_tokens(body)
        strip_ingress(body, ("max_tokens", "stream"))
        call = ex.call
        call.body, call.raw, call.query = body, None, ""
        call.headers = with_betas(dict(call.headers), betas)

    async def render(self, ex: Exchange, answer: Answer) -> Response:
        if answer.status >= 400:
            return self.upstream_error(ex, answer)
        try:
            tokens = orjson.loads(answer.body).get("input_tokens")
        except (orjson.JSONDecodeError, AttributeError):
            tokens = None
        if not isinstance(tokens, int):
            status, headers, body = bedrock_error(502, "the upstream's token count is not readable")
            return Response(body, status, headers={**headers, **self._ids(ex)}, media_type=JSON)
        return Response(orjson.dumps({"inputTokens": tokens}), 200, headers=self._ids(ex), media_type=JSON)

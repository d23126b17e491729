"""Vertex AI ingress (issue 13, items 7 and 8): Tollway answering `AnthropicVertex` and Claude Code
in Vertex mode as Vertex AI's Anthropic publisher endpoints would, for any upstream.

Routes (`{model}` and the verb are one path segment, `m:rawPredict`, which Starlette cannot split,
so one route takes `{target}` and the dialect parses it with wire/cloud_ingress.py):

* `POST /v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict` → JSON,
* `…/models/{m}:streamRawPredict` → plain Anthropic SSE (Vertex relays the model's stream as is),
* `…/models/count-tokens:rawPredict` → `{"input_tokens": n}` (the body names its model; this is
  the path the SDK's `AnthropicVertex.messages.count_tokens` and Claude Code call).

Route names in usage and audit: `vertex_raw_predict`, `vertex_stream_raw_predict`,
`vertex_count_tokens`. Credentials: a Tollway key as `Authorization: Bearer` (what
`AnthropicVertex(access_token=…)` sends) or `x-api-key` (Claude Code with
`CLAUDE_CODE_SKIP_VERTEX_AUTH=1` and `ANTHROPIC_CUSTOM_HEADERS`). Errors: the gateway's own
refusals in Google's envelope (`{"error": {"code", "message", "status"}}`), as Vertex answers
before a model runs; a model's (upstream's) errors pass through in Anthropic's envelope, as
Vertex relays them; a failure mid-stream is Anthropic's `event: error`.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from tollway.surfaces.bedrock import catalogue_model
from tollway.surfaces.common import JSON
from tollway.surfaces.handler import Exchange, run
from tollway.surfaces.messages import AnthropicDialect
from tollway.wire.cloud_ingress import VertexCall, parse_vertex_path, vertex_error, vertex_request
from tollway.wire.messages_schema import RequestInvalid, strip_ingress, validate_count_tokens, validate_create
from tollway.wire.refusal import Refusal


class VertexDialect(AnthropicDialect):
    """One Vertex verb; `verb` and `count_tokens` say which. The path is checked in `to_canonical`.
    Answers are the Anthropic dialect's (Vertex relays the model's body and stream as they are);
    only the gateway's own refusals take Google's envelope."""

    def __init__(self, route_name: str, verb: str, count_tokens: bool = False) -> None:
        self.route_name = route_name
        self.verb = verb
        self.count_tokens = count_tokens

    def path_call(self, ex: Exchange) -> VertexCall:
        path = ex.request.scope.get("raw_path") or ex.request.url.path.encode()
        call = parse_vertex_path(path.decode("latin-1").split("?", 1)[0])
        if call is None or call.verb != self.verb or call.count_tokens != self.count_tokens:
            raise Refusal(404, f"no route for POST {ex.request.url.path}", "not_found_error")
        return call

    async def to_canonical(self, ex: Exchange) -> None:
        target = self.path_call(ex)
        if not isinstance(ex.body, dict):
            raise RequestInvalid("request body must be a JSON object")
        body = vertex_request(target, ex.body)
        model = body.get("model")
        if isinstance(model, str) and model:
            body["model"] = catalogue_model(ex, model)
        call = ex.call
        if self.count_tokens:
            body = validate_count_tokens(body)
            strip_ingress(body, ("max_tokens", "stream"))
        else:
            body = validate_create(body)
            strip_ingress(body)
            call.stream = bool(body.get("stream"))
            if call.stream != (self.verb == "streamRawPredict"):
                raise RequestInvalid(f"{self.verb} needs \"stream\": {str(self.verb == 'streamRawPredict').lower()}")
        call.body, call.raw, call.query = body, None, ""

    def render_error(self, refusal: Refusal, ex: Exchange) -> Response:
        status, headers, body = vertex_error(refusal.status, refusal.message)
        return Response(body, status, headers={**refusal.headers, **headers, "request-id": ex.request_id,
                                               "server-timing": ex.call.timing()}, media_type=JSON)


RAW_PREDICT = VertexDialect("vertex_raw_predict", "rawPredict")
STREAM_RAW_PREDICT = VertexDialect("vertex_stream_raw_predict", "streamRawPredict")
COUNT_TOKENS = VertexDialect("vertex_count_tokens", "rawPredict", count_tokens=True)


async def serve(request: Request) -> Response:
    """`…/publishers/anthropic/models/{target}`: the verb after the `:` picks the dialect (an
    unknown one is refused, after authentication, as Google's 404)."""
    target = str(request.path_params.get("target", ""))
    if target == "count-tokens:rawPredict":
        dialect = COUNT_TOKENS
    elif target.endswith(":streamRawPredict"):
        dialect = STREAM_RAW_PREDICT
    else:
        dialect = RAW_PREDICT
    return await run(request, dialect)

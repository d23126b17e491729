"""`GET /v1/models` and `GET /v1/models/{id}` in one shape both SDK families parse (DECISIONS.md 13)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import Response

from tollway.config import ModelConfig
from tollway.surfaces.common import JSON
from tollway.surfaces.envelopes import anthropic_refusal
from tollway.surfaces.handler import Dialect, Exchange
from tollway.wire.refusal import Refusal

DEFAULT_LIMIT = 20
MAX_LIMIT = 1000


def model_item(model: ModelConfig) -> dict[str, Any]:
    created = model.created_at
    return {
        "type": "model",
        "id": model.id,
        "display_name": model.display_name or model.id,
        "created_at": created.isoformat().replace("+00:00", "Z"),
        "object": "model",
        "created": int(created.timestamp()),
        "owned_by": "tollway" if model.primary.provider == "mock" else model.primary.provider,
    }


def _page(ids: list[str], params: Any) -> tuple[int, int]:
    """Start and end indices of the requested page; bad paging parameters are a 400."""
    raw_limit = params.get("limit")
    try:
        limit = DEFAULT_LIMIT if raw_limit is None else int(raw_limit)
    except ValueError:
        raise Refusal(400, "limit: Input should be a valid integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise Refusal(400, f"limit: Input should be between 1 and {MAX_LIMIT}")
    after, before = params.get("after_id"), params.get("before_id")
    if after is not None and before is not None:
        raise Refusal(400, "after_id and before_id cannot be used together")
    for name, value in (("after_id", after), ("before_id", before)):
        if value is not None and value not in ids:
            raise Refusal(400, f"{name}: unknown model id {value!r}")
    if before is not None:
        end = ids.index(before)
        return max(0, end - limit), end
    start = ids.index(after) + 1 if after is not None else 0
    return start, min(len(ids), start + limit)


class _ModelsDialect(Dialect):
    """The model list, answered by the gateway itself in the Anthropic envelope."""

    reads_body = False

    def render_error(self, refusal: Refusal, ex: Exchange) -> Response:
        return anthropic_refusal(refusal, ex.request_id, {"server-timing": ex.call.timing()})

    async def _ok(self, ex: Exchange, body: Any) -> Response:
        await ex.gw.pipeline.done(ex.call)
        return Response(orjson.dumps(body), headers={"request-id": ex.request_id, "server-timing": ex.call.timing()},
                        media_type=JSON)


class ListModels(_ModelsDialect):
    route_name = "models"

    async def respond(self, ex: Exchange) -> Response:
        assert ex.call.principal is not None
        models = ex.gw.pipeline.visible_models(ex.call.principal)
        params = ex.request.query_params
        start, end = _page([m.id for m in models], params)
        data = [model_item(m) for m in models[start:end]]
        return await self._ok(ex, {
            "object": "list",
            "data": data,
            "has_more": end < len(models) if "before_id" not in params else start > 0,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
        })


class GetModel(_ModelsDialect):
    route_name = "models.get"

    async def respond(self, ex: Exchange) -> Response:
        assert ex.call.principal is not None
        ex.call.requested_model = ex.request.path_params["model_id"]
        model = ex.gw.pipeline.authorize(ex.call.principal, ex.call.requested_model)
        return await self._ok(ex, model_item(model))

"""`GET /v1/models` and `GET /v1/models/{id}` in one shape both SDK families parse (DECISIONS.md 13)."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.config import ModelConfig
from tollway.pipeline import GatewayError
from tollway.surfaces.common import JSON, client_info, header_map, new_request_id, refusal
from tollway.surfaces.state import gateway_of

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
        raise GatewayError(400, "limit: Input should be a valid integer") from None
    if not 1 <= limit <= MAX_LIMIT:
        raise GatewayError(400, f"limit: Input should be between 1 and {MAX_LIMIT}")
    after, before = params.get("after_id"), params.get("before_id")
    if after is not None and before is not None:
        raise GatewayError(400, "after_id and before_id cannot be used together")
    for name, value in (("after_id", after), ("before_id", before)):
        if value is not None and value not in ids:
            raise GatewayError(400, f"{name}: unknown model id {value!r}")
    if before is not None:
        end = ids.index(before)
        return max(0, end - limit), end
    start = ids.index(after) + 1 if after is not None else 0
    return start, min(len(ids), start + limit)


async def list_models(request: Request) -> Response:
    gw = gateway_of(request)
    request_id = new_request_id()
    headers = header_map(request)
    call = gw.pipeline.begin(request_id, "models", headers, client_info(request, headers))
    try:
        principal = await gw.pipeline.admit(call)
        models = gw.pipeline.visible_models(principal)
        start, end = _page([m.id for m in models], request.query_params)
    except GatewayError as exc:
        await gw.pipeline.refused(call, exc)
        return refusal(exc, request_id, call)
    await gw.pipeline.done(call)
    data = [model_item(m) for m in models[start:end]]
    body = {
        "object": "list",
        "data": data,
        "has_more": end < len(models) if "before_id" not in request.query_params else start > 0,
        "first_id": data[0]["id"] if data else None,
        "last_id": data[-1]["id"] if data else None,
    }
    return Response(orjson.dumps(body), headers={"request-id": request_id, "server-timing": call.timing()},
                    media_type=JSON)


async def get_model(request: Request) -> Response:
    gw = gateway_of(request)
    request_id = new_request_id()
    headers = header_map(request)
    call = gw.pipeline.begin(request_id, "models.get", headers, client_info(request, headers))
    try:
        principal = await gw.pipeline.admit(call)
        call.requested_model = request.path_params["model_id"]
        model = gw.pipeline.authorize(principal, call.requested_model)
    except GatewayError as exc:
        await gw.pipeline.refused(call, exc)
        return refusal(exc, request_id, call)
    await gw.pipeline.done(call)
    return Response(orjson.dumps(model_item(model)), headers={"request-id": request_id, "server-timing": call.timing()},
                    media_type=JSON)

"""Liveness, readiness, and the probes Claude Code sends (DECISIONS.md 11)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tollway.governance.identity import CredentialError, extract_credential
from tollway.store.writebehind import failing_writers
from tollway.surfaces.common import new_request_id
from tollway.surfaces.envelopes import error_response
from tollway.surfaces.state import gateway_of


async def root(request: Request) -> Response:
    return JSONResponse({"name": "tollway", "status": "ok"})


async def hello(request: Request) -> Response:
    return JSONResponse({"message": "hello"})


async def event_logging(request: Request) -> Response:
    """Claude Code's telemetry batch: accepted and dropped, so the client logs no error."""
    return Response(status_code=204)


async def health(request: Request) -> Response:
    return JSONResponse({"status": "alive"})


async def ready(request: Request) -> Response:
    gw = gateway_of(request)
    store_ok = gw.ready and not failing_writers() and await gw.pipeline.store_reachable()
    status = {"status": "ready" if store_ok else "not ready", "config": "loaded", "store": store_ok}
    return JSONResponse(status, status_code=200 if store_ok else 503)


async def metrics(request: Request) -> Response:
    """Prometheus exposition of this process's metrics; behind a key when `server.metrics_auth`
    says so (Prometheus sends one with `authorization: {credentials_file: ...}`)."""
    gw = gateway_of(request)
    if gw.settings.server.metrics_auth != "none":
        refused = await _metrics_refusal(request, gw.settings.server.metrics_auth == "admin")
        if refused is not None:
            return refused
    body = gw.pipeline.metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")


async def _metrics_refusal(request: Request, admin: bool) -> Response | None:
    """A 401 envelope unless the request carries an active key (an admin key when ADMIN)."""
    request_id = new_request_id()
    try:
        secret = extract_credential(request.headers)
    except CredentialError as exc:
        return error_response(401, str(exc), request_id)
    principal = await gateway_of(request).pipeline.keys.authenticate(secret)
    if principal is None:
        return error_response(401, "invalid API key", request_id)
    if admin and principal.kind != "admin":
        return error_response(401, "/metrics needs an admin key (server.metrics_auth: admin)", request_id)
    return None

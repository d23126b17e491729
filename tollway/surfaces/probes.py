"""Liveness, readiness, and the probes Claude Code sends (DECISIONS.md 11)."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from tollway.store.writebehind import failing_writers
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
    """Prometheus exposition of this process's metrics."""
    body = gateway_of(request).pipeline.metrics.render()
    return Response(body, media_type="text/plain; version=0.0.4; charset=utf-8")

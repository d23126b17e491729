"""The app factory: routes, start-up and shutdown. The only module that imports `surfaces` and
mounts the control plane (`admin`) beside the data plane."""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tollway import tracing
from tollway.config import Settings, load_settings
from tollway.governance.access import Catalogue
from tollway.governance.audit import AuditLog, new_writer_id
from tollway.governance.dlp import DlpEngine
from tollway.governance.identity import KeyCache
from tollway.governance.limits import Limiter, MemoryBackend, RedisBackend
from tollway.governance.metering import Meter
from tollway.hosted.registry import Registry
from tollway.observability import Metrics
from tollway.pipeline import Pipeline
from tollway.store.audit import write_batch as write_audit
from tollway.store.db import Database
from tollway.store.usage import spent_micros, write_batch
from tollway.store.writebehind import WriteBehind
from tollway.surfaces import chat_completions, messages, models, probes, responses
from tollway.surfaces.common import error_response, new_request_id, openai_error_response
from tollway.surfaces.state import Gateway
from tollway.upstream.router import Router

log = logging.getLogger("tollway")


OPENAI_PATHS = ("/v1/chat/completions", "/v1/responses", "/v1/conversations")


async def _http_error(request: Request, exc: Exception) -> Response:
    """Unknown routes and wrong methods answer in the route's envelope, never as HTML or text."""
    assert isinstance(exc, HTTPException)
    request_id = new_request_id()
    if request.url.path.startswith(OPENAI_PATHS):
        message = (f"method {request.method} is not allowed on {request.url.path}" if exc.status_code == 405
                   else f"no route for {request.method} {request.url.path}")
        return openai_error_response(exc.status_code, message, request_id, headers=dict(exc.headers or {}))
    if exc.status_code == 404:
        return error_response(404, f"no route for {request.method} {request.url.path}", request_id)
    if exc.status_code == 405:
        headers = dict(exc.headers or {})
        return error_response(405, f"method {request.method} is not allowed on {request.url.path}",
                              request_id, headers=headers)
    return error_response(exc.status_code, str(exc.detail), request_id)


async def _crash(request: Request, exc: Exception) -> Response:
    """Last resort: log the traceback server-side, show the client only an envelope."""
    log.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return error_response(500, "internal error in the gateway", new_request_id())


class OnFirstRequest:
    """An ASGI app built when its first request arrives.

    Why: the admin API is FastAPI, and FastAPI with what it imports is about 12 MB of a gateway's
    memory. A data-plane process that never sees an admin request never pays for it. The first
    admin request pays for it once (importing about 190 ms, building the app about 170 ms), in
    a worker thread, so the event loop keeps serving meanwhile instead of standing still for
    the whole time. (BUILD must not touch the event loop; FastAPI's app construction does not.)
    """

    def __init__(self, build: Callable[[], ASGIApp]) -> None:
        self._build = build
        self._app: ASGIApp | None = None
        self._lock = asyncio.Lock()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if self._app is None:
            async with self._lock:  # concurrent first requests build it once
                if self._app is None:
                    self._app = await asyncio.to_thread(self._build)
        await self._app(scope, receive, send)


def _admin_app(settings: Settings, keys: KeyCache, audit: AuditLog) -> ASGIApp:
    from tollway.admin.api import create_admin_app

    return create_admin_app(settings, keys, audit)


def create_app(settings: Settings) -> Starlette:
    db = Database(settings.store.url)
    keys = KeyCache(db, settings.server.key_refresh_interval)
    router = Router(settings)
    usage_writer = WriteBehind("usage", lambda batch: write_batch(db, batch), Path(settings.store.spill_dir))

    async def load_spent(scope: str, scope_id: str, since: date) -> int:
        return await spent_micros(db, scope, scope_id, since)

    backend: MemoryBackend | RedisBackend
    if settings.limits.backend == "redis":
        assert settings.limits.redis_url is not None
        backend = RedisBackend(settings.limits.redis_url, load_spent)
    else:
        backend = MemoryBackend(load_spent)
    limiter = Limiter(settings.limits, backend)
    audit_writer = WriteBehind("audit", lambda batch: write_audit(db, batch), Path(settings.store.spill_dir))
    audit = AuditLog(audit_writer.put, new_writer_id("gateway"), enabled=settings.audit.enabled)
    metrics = Metrics()
    metrics.watch_queue("usage", lambda: usage_writer.depth)
    metrics.watch_queue("audit", lambda: audit_writer.depth)
    dlp = DlpEngine(settings.dlp) if settings.dlp.enabled else None
    meter = Meter(usage_writer, settings.metering.enabled)
    pipeline = Pipeline(keys, Catalogue(settings), router, limiter, meter, audit, metrics, dlp,
                        settings.server.access_log, frozenset(settings.audit.payload_groups),
                        settings.audit.payload_max_bytes)
    pipeline.tracer = tracing.start(settings.tracing)  # None when off: the SDK is never imported
    gateway = Gateway(settings, pipeline)
    hosted = Registry(settings.hosted_tools)

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.migrate()
        await keys.start()
        await router.start()
        await usage_writer.start()
        await audit_writer.start()
        await hosted.start()  # a server that fails is logged and skipped
        # Everything loaded so far lives as long as the process: move it out of the cyclic GC's
        # reach, or every full collection rescans it (measured: ~100 ms pauses under load).
        gc.collect()
        gc.freeze()
        for what, on in (("audit", settings.audit.enabled), ("metering", settings.metering.enabled)):
            if not on:
                log.warning("%s.enabled is false: this gateway keeps no %s records", what,
                            "audit" if what == "audit" else "usage")
        gateway.ready = True
        try:
            yield
        finally:
            gateway.ready = False
            await hosted.close()
            await router.close()
            await usage_writer.stop()
            await audit_writer.stop()
            if pipeline.tracer is not None:  # export the spans still queued (bounded: FLUSH_SECONDS)
                await pipeline.tracer.shutdown()
            await limiter.close()
            await keys.stop()
            await db.close()

    routes = [
        Route("/v1/messages", messages.create_message, methods=["POST"]),
        Route("/v1/messages/count_tokens", messages.count_tokens, methods=["POST"]),
        Route("/v1/chat/completions", chat_completions.create_chat_completion, methods=["POST"]),
        Route("/v1/responses", responses.create_response, methods=["POST"]),
        Route("/v1/responses/{response_id}", responses.get_response, methods=["GET"]),
        Route("/v1/responses/{response_id}", responses.delete_response, methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", responses.list_input_items, methods=["GET"]),
        Route("/v1/conversations", responses.create_conversation, methods=["POST"]),
        Route("/v1/conversations/{conversation_id}", responses.get_conversation, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}", responses.delete_conversation, methods=["DELETE"]),
        Route("/v1/conversations/{conversation_id}/items", responses.list_conversation_items, methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/items/{item_id}", responses.get_conversation_item,
              methods=["GET"]),
        Route("/v1/models", models.list_models, methods=["GET"]),
        Route("/v1/models/{model_id:path}", models.get_model, methods=["GET"]),
        Route("/", probes.root, methods=["GET", "HEAD"]),
        Route("/api/hello", probes.hello, methods=["GET", "HEAD"]),
        Route("/api/event_logging/batch", probes.event_logging, methods=["POST"]),
        Route("/health", probes.health, methods=["GET", "HEAD"]),
        Route("/ready", probes.ready, methods=["GET", "HEAD"]),
        Route("/metrics", probes.metrics, methods=["GET"]),
        Mount("/admin/v1", OnFirstRequest(lambda: _admin_app(settings, keys, audit))),
    ]
    # --- developer sign-in (tollway/signin, docs/sign-in.md): OAuth device flow + OIDC -----------
    if settings.signin.enabled:
        from tollway.signin.routes import signin_routes

        routes[:0] = signin_routes(settings.signin, keys)
    # --------------------------------------------------------------------------------------------
    app = Starlette(
        routes=routes,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
    app.state.gateway = gateway
    app.state.hosted = hosted
    return app


def app_from_env() -> Starlette:
    """The factory each worker process calls under `tollway serve --workers N`."""
    return create_app(load_settings())

"""The app factory: routes, start-up and shutdown. The only module that imports `surfaces` and
mounts the control plane (`admin`) beside the data plane."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import inspect
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from datetime import date
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from tollway import tracing
from tollway.config import Settings, load_settings
from tollway.console.routes import console_routes
from tollway.governance.access import Catalogue
from tollway.governance.alerts import AlertRunner
from tollway.governance.audit import AuditLog, new_writer_id
from tollway.governance.dlp import DlpEngine
from tollway.governance.dlp.metrics import DlpMetrics
from tollway.governance.identity import KeyCache
from tollway.governance.limit_backends import MemoryBackend, RedisBackend
from tollway.governance.limits import Limiter
from tollway.governance.metering import Meter
from tollway.hosted.registry import Registry
from tollway.observability import Metrics
from tollway.pipeline import Pipeline
from tollway.store.audit import write_batch as write_audit
from tollway.store.audit_checkpoints import audit_checkpointer
from tollway.store.db import Database
from tollway.store.usage import spent_micros, write_batch
from tollway.store.writebehind import WriteBehind, WriterMetrics
from tollway.supervisor import SupervisorWatch
from tollway.surfaces import conversations as state
from tollway.surfaces import probes, vertex
from tollway.surfaces.bedrock import BedrockCountTokensDialect, BedrockInvokeDialect, BedrockStreamDialect
from tollway.surfaces.chat_completions import ChatCompletionsDialect
from tollway.surfaces.common import new_request_id
from tollway.surfaces.envelopes import error_response, openai_error_response
from tollway.surfaces.handler import endpoint
from tollway.surfaces.messages import CountTokensDialect, MessagesDialect
from tollway.surfaces.models import GetModel, ListModels
from tollway.surfaces.responses import ResponsesDialect
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


Endpoint = Callable[[Request], Awaitable[Response]]


class GatewayApp(Starlette):
    """Starlette, with the data plane's fixed paths served without its middleware and router.

    Why: before a request reaches its endpoint, Starlette passes it through its error middleware,
    its exception middleware, the router (a regular expression per route tried in order) and two
    exception-handling wrappers: about twenty Python calls per request for nothing the data plane
    uses, since `surfaces/handler.run` answers every refusal and error in the route's envelope
    itself. A request whose method and exact path belong to one of the DIRECT routes (the data
    plane's and the probes', with a plain endpoint: `/v1/messages`, `/v1/chat/completions`,
    `/health`…) goes straight to it; everything else (paths with parameters, the admin API, the
    console, sign-in, unknown paths) takes Starlette's way as before. An
    error escaping an endpoint is answered by the app's handler for `Exception` and re-raised, as
    Starlette's error middleware does.
    """

    def __init__(self, *, routes: list[BaseRoute], direct: list[Route],
                 crash: Callable[[Request, Exception], Awaitable[Response]], **kwargs: Any) -> None:
        super().__init__(routes=routes, **kwargs)
        self._crash = crash
        self._direct: dict[tuple[str, str], Endpoint] = {}
        for index, route in enumerate(routes):
            if not (route in direct and isinstance(route, Route) and not route.param_convertors and route.methods
                    and (inspect.isfunction(route.endpoint) or inspect.ismethod(route.endpoint))):
                continue
            for method in route.methods:
                probe = {"type": "http", "path": route.path, "root_path": "", "method": method}
                # Only where Starlette would pick this route too: no earlier route matches the path.
                if all(r.matches(probe)[0] == Match.NONE for r in routes[:index]):
                    self._direct.setdefault((method, route.path), route.endpoint)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("root_path"):
            endpoint = self._direct.get((scope["method"], scope["path"]))
            if endpoint is not None:
                scope["app"] = self
                request = Request(scope, receive, send)
                try:
                    response = await endpoint(request)
                    await response(scope, receive, send)
                except Exception as exc:
                    answer = await self._crash(request, exc)
                    with contextlib.suppress(RuntimeError):  # the response had already started
                        await answer(scope, receive, send)
                    raise
                return
        await super().__call__(scope, receive, send)


def _admin_app(settings: Settings, keys: KeyCache, audit: AuditLog) -> ASGIApp:
    from tollway.admin.api import create_admin_app

    return create_admin_app(settings, keys, audit)


def create_app(settings: Settings, supervisor: int | None = None) -> Starlette:
    """The gateway's ASGI app. SUPERVISOR: the pid of the `--workers N` supervisor that started
    this worker; the worker stops itself gracefully if that process dies (tollway/supervisor.py)."""
    db = Database(settings.store.url, settings.store.connect_timeout)
    keys = KeyCache(db, settings.server.key_refresh_interval)
    metrics = Metrics()
    router = Router(settings, on_breaker=lambda name, state: metrics.child(metrics.breaker, name).set(
        0 if state == "closed" else 1))
    store = settings.store
    usage_writer = WriteBehind("usage", lambda batch: write_batch(db, batch), Path(store.spill_dir),
                               interval=store.flush_interval, flush_timeout=store.flush_timeout,
                               max_queue=store.max_queue,
                               on_loss=settings.metering.on_record_loss)

    async def load_spent(scope: str, scope_id: str, since: date) -> int:
        return await spent_micros(db, scope, scope_id, since)

    backend: MemoryBackend | RedisBackend
    if settings.limits.backend == "redis":
        assert settings.limits.redis_url is not None
        backend = RedisBackend(settings.limits.redis_url, load_spent)
    else:
        backend = MemoryBackend(load_spent)
    limiter = Limiter(settings.limits, backend)
    audit_writer = WriteBehind("audit", lambda batch: write_audit(db, batch), Path(store.spill_dir),
                               interval=store.flush_interval, flush_timeout=store.flush_timeout,
                               max_queue=store.max_queue,
                               on_loss=settings.audit.on_record_loss)
    audit = AuditLog(audit_writer.put, new_writer_id("gateway"), enabled=settings.audit.enabled)
    metrics.watch_queue("usage", lambda: usage_writer.depth)
    metrics.watch_queue("audit", lambda: audit_writer.depth)
    metrics.registry.register(WriterMetrics([usage_writer, audit_writer]))
    checkpointer = audit_checkpointer(db, settings.audit)
    dlp = DlpEngine(settings.dlp) if settings.dlp.enabled else None
    if dlp is not None:
        metrics.registry.register(DlpMetrics(dlp))
    meter = Meter(usage_writer, settings.metering.enabled)
    pipeline = Pipeline(keys, Catalogue(settings), router, limiter, meter, audit, metrics, dlp,
                        settings.server.access_log, frozenset(settings.audit.payload_groups),
                        settings.audit.payload_max_bytes)
    pipeline.tracer = tracing.start(settings.tracing)  # None when off: the SDK is never imported
    gateway = Gateway(settings, pipeline)
    hosted = Registry(settings.hosted_tools)
    alerts = AlertRunner(db, settings) if settings.alerts.enabled else None  # docs/alerts.md

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        await db.migrate()
        await keys.start()
        await router.start()
        await usage_writer.start()
        await audit_writer.start()
        if checkpointer is not None:
            await checkpointer.start()
        await hosted.start()  # a server that fails is logged and skipped
        if alerts is not None:
            await alerts.start()
        # Everything loaded so far lives as long as the process: move it out of the cyclic GC's
        # reach, or every full collection rescans it (measured: ~100 ms pauses under load).
        gc.collect()
        gc.freeze()
        for what, on in (("audit", settings.audit.enabled), ("metering", settings.metering.enabled)):
            if not on:
                log.warning("%s.enabled is false: this gateway keeps no %s records", what,
                            "audit" if what == "audit" else "usage")
        watch = SupervisorWatch(supervisor) if supervisor is not None else None
        if watch is not None:
            watch.start()
        gateway.ready = True
        try:
            yield
        finally:
            gateway.ready = False
            if watch is not None:
                await watch.stop()
            if alerts is not None:
                await alerts.stop()
            await hosted.close()
            await router.close()
            await usage_writer.stop()
            audit.close()  # the chain's last record: its end is anchored in the writer registry
            await audit_writer.stop()
            if checkpointer is not None:  # a last checkpoint, after the last records are written
                await checkpointer.stop()
            if pipeline.tracer is not None:  # export the spans still queued (bounded: FLUSH_SECONDS)
                await pipeline.tracer.shutdown()
            await limiter.close()
            if dlp is not None:
                await dlp.aclose()
            await keys.stop()
            await db.close()

    data_plane = [
        Route("/v1/messages", endpoint(MessagesDialect()), methods=["POST"]),
        Route("/v1/messages/count_tokens", endpoint(CountTokensDialect()), methods=["POST"]),
        Route("/v1/chat/completions", endpoint(ChatCompletionsDialect()), methods=["POST"]),
        Route("/v1/responses", endpoint(ResponsesDialect()), methods=["POST"]),
        Route("/v1/responses/{response_id}", endpoint(state.GET_RESPONSE), methods=["GET"]),
        Route("/v1/responses/{response_id}", endpoint(state.DELETE_RESPONSE), methods=["DELETE"]),
        Route("/v1/responses/{response_id}/input_items", endpoint(state.INPUT_ITEMS), methods=["GET"]),
        Route("/v1/conversations", endpoint(state.CREATE_CONVERSATION), methods=["POST"]),
        Route("/v1/conversations/{conversation_id}", endpoint(state.GET_CONVERSATION), methods=["GET"]),
        Route("/v1/conversations/{conversation_id}", endpoint(state.DELETE_CONVERSATION), methods=["DELETE"]),
        Route("/v1/conversations/{conversation_id}/items", endpoint(state.CONVERSATION_ITEMS), methods=["GET"]),
        Route("/v1/conversations/{conversation_id}/items/{item_id}", endpoint(state.CONVERSATION_ITEM),
              methods=["GET"]),
        Route("/model/{model:path}/invoke", endpoint(BedrockInvokeDialect()), methods=["POST"]),
        Route("/model/{model:path}/invoke-with-response-stream", endpoint(BedrockStreamDialect()), methods=["POST"]),
        Route("/model/{model:path}/count-tokens", endpoint(BedrockCountTokensDialect()), methods=["POST"]),
        Route("/v1/projects/{project}/locations/{region}/publishers/anthropic/models/{target}", vertex.serve,
              methods=["POST"]),
        Route("/v1/models", endpoint(ListModels()), methods=["GET"]),
        Route("/v1/models/{model_id:path}", endpoint(GetModel()), methods=["GET"]),
        Route("/", probes.root, methods=["GET", "HEAD"]),
        Route("/api/hello", probes.hello, methods=["GET", "HEAD"]),
        Route("/api/event_logging/batch", probes.event_logging, methods=["POST"]),
        Route("/health", probes.health, methods=["GET", "HEAD"]),
        Route("/ready", probes.ready, methods=["GET", "HEAD"]),
        Route("/metrics", probes.metrics, methods=["GET"]),
    ]
    routes: list[BaseRoute] = [
        *data_plane,
        Mount("/admin/v1", OnFirstRequest(lambda: _admin_app(settings, keys, audit))),
        *console_routes(settings, keys, audit),  # the web console (tollway/console, docs/console.md)
    ]
    # --- developer sign-in (tollway/signin, docs/sign-in.md): OAuth device flow + OIDC -----------
    if settings.signin.enabled:
        from tollway.signin.routes import signin_routes

        routes[:0] = signin_routes(settings.signin, keys, audit)
    # --------------------------------------------------------------------------------------------
    app = GatewayApp(
        routes=routes,
        direct=data_plane,
        crash=_crash,
        lifespan=lifespan,
        exception_handlers={HTTPException: _http_error, Exception: _crash},
    )
    app.state.gateway = gateway
    app.state.hosted = hosted
    return app


def app_from_env() -> Starlette:
    """The factory each worker process calls under `tollway serve --workers N` (its parent is the
    supervisor, which it watches)."""
    return create_app(load_settings(), supervisor=os.getppid())

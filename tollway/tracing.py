"""Optional OpenTelemetry traces: one SERVER span per data-plane request, one CLIENT span per
upstream attempt, exported over OTLP/HTTP. This module is the only one that touches OpenTelemetry.

Why it is shaped this way:

* **Off costs nothing.** `start` returns None when `tracing.enabled` is false, and the SDK is
  imported only inside `Tracing.__init__`, so a gateway without tracing never loads it. The
  pipeline's hooks are each one `is None` test (`Pipeline.tracer`, `Call.trace`).
* **Continue the caller's trace.** The SERVER span is a child of the client's W3C `traceparent`
  (with its `tracestate`) when one came, so the gateway shows up inside the caller's trace.
* **Join the upstream's trace.** Each upstream attempt (a retry, another deployment, a fallback)
  is a CLIENT span, and the upstream request carries a `traceparent` naming that span, replacing
  whatever the client sent. Without tracing the client's own headers pass through unchanged
  (the adapters forward them), as W3C Trace Context allows a non-participating intermediary.
* **Nothing slow on the request path.** Spans go to a `BatchSpanProcessor`, whose thread
  exports them; the app's shutdown flushes what is left, for at most `FLUSH_SECONDS` (a
  collector that is down must not hold up a SIGTERM). The provider is not registered as the
  global one, so libraries in the process that happen to use the OpenTelemetry API (the MCP
  client, FastAPI) stay silent.
* **Nothing secret.** Attributes are ids, model names, counts, statuses and cost: never a key,
  a prompt, an answer or a header value.

Attributes follow the OpenTelemetry GenAI semantic conventions where they fit
(`gen_ai.operation.name`, `gen_ai.request.model`, `gen_ai.response.model`,
`gen_ai.request.max_tokens`, `gen_ai.usage.*`, `gen_ai.provider.name`), the HTTP ones for the
status (`http.response.status_code`, `error.type`), and `tollway.*` for the rest.
`gen_ai.usage.input_tokens` counts every input token, cached ones included, as the conventions
ask (Anthropic's own `input_tokens` leaves cache reads and writes out); the cache parts are
`gen_ai.usage.cache_read.input_tokens` and `gen_ai.usage.cache_creation.input_tokens`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from tollway.config import TracingConfig
from tollway.upstream.http import TRACE_HEADERS

if TYPE_CHECKING:
    from opentelemetry.context import Context
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Span, Tracer

    from tollway.call import Call
    from tollway.upstream.base import UpstreamReply, UpstreamRequest
    from tollway.upstream.router import Deployment
    from tollway.wire.sse import Usage

# route name -> (gen_ai.operation.name, the route's path): the data-plane routes that get a span.
ROUTES = {
    "messages": ("chat", "/v1/messages"),
    "count_tokens": ("count_tokens", "/v1/messages/count_tokens"),
    "chat_completions": ("chat", "/v1/chat/completions"),
    "responses": ("chat", "/v1/responses"),
    "bedrock_invoke": ("chat", "/model/{model}/invoke"),
    "bedrock_invoke_stream": ("chat", "/model/{model}/invoke-with-response-stream"),
    "bedrock_count_tokens": ("count_tokens", "/model/{model}/count-tokens"),
    "vertex_raw_predict": ("chat", "/v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:rawPredict"),
    "vertex_stream_raw_predict": ("chat",
                                  "/v1/projects/{p}/locations/{r}/publishers/anthropic/models/{m}:streamRawPredict"),
    "vertex_count_tokens": ("count_tokens",
                            "/v1/projects/{p}/locations/{r}/publishers/anthropic/models/count-tokens:rawPredict"),
}
_OTEL_ENDPOINT_VARS = ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "OTEL_EXPORTER_OTLP_ENDPOINT")
# How long shutdown waits for the last spans to be exported (the SDK alone would wait 30 s).
FLUSH_SECONDS = 5.0

log = logging.getLogger("tollway.tracing")


def start(cfg: TracingConfig) -> Tracing | None:
    """The gateway's tracer, or None when tracing is off (the SDK is then never imported)."""
    return Tracing(cfg) if cfg.enabled else None


def _endpoint(cfg: TracingConfig) -> str | None:
    """The config's endpoint; None (the SDK reads `OTEL_EXPORTER_OTLP_*`) when the config leaves
    it out and one of those variables is set, so the standard variables work but never beat an
    explicit setting."""
    if "endpoint" not in cfg.model_fields_set and any(os.environ.get(v) for v in _OTEL_ENDPOINT_VARS):
        return None
    return cfg.endpoint


class Tracing:
    """The tracer provider and its exporter, for one gateway process."""

    def __init__(self, cfg: TracingConfig) -> None:
        # Imported here, not at module level: only a gateway with tracing on pays for the SDK.
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
        from opentelemetry.sdk.trace.sampling import ParentBased, TraceIdRatioBased
        from opentelemetry.trace import SpanKind, StatusCode, set_span_in_context
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        from tollway import __version__

        resource: dict[str, Any] = {"service.version": __version__}
        # Explicit config wins; otherwise OTEL_SERVICE_NAME (read by Resource.create) may name it.
        if "service_name" in cfg.model_fields_set or not os.environ.get("OTEL_SERVICE_NAME"):
            resource["service.name"] = cfg.service_name
        exporter = OTLPSpanExporter(endpoint=_endpoint(cfg), headers=dict(cfg.headers) or None)
        # shutdown_on_exit=False: the app's lifespan flushes, with a bound; the SDK's own atexit
        # hook would wait up to 30 s more on a collector that is down.
        self.provider: TracerProvider = TracerProvider(
            resource=Resource.create(resource), sampler=ParentBased(TraceIdRatioBased(cfg.sample_ratio)),
            shutdown_on_exit=False)
        self.provider.add_span_processor(BatchSpanProcessor(exporter))
        self.tracer: Tracer = self.provider.get_tracer("tollway", __version__)
        self._propagator = TraceContextTextMapPropagator()
        self._set_span_in_context = set_span_in_context
        self._server, self._client = SpanKind.SERVER, SpanKind.CLIENT
        self._error = StatusCode.ERROR

    # -- the hooks the pipeline calls ------------------------------------------------------------

    def begin(self, call: Call) -> None:
        """Open the call's SERVER span (data-plane routes only), continuing the client's trace."""
        route = ROUTES.get(call.route_name)
        if route is None:
            return
        operation, path = route
        parent = self._propagator.extract(call.headers) if "traceparent" in call.headers else None
        span = self.tracer.start_span(
            f"POST {path}", context=parent, kind=self._server,
            attributes={"http.request.method": "POST", "http.route": path, "gen_ai.operation.name": operation,
                        "tollway.request_id": call.request_id})
        call.trace = CallTrace(self, span, call.route_name)

    async def shutdown(self, timeout: float = FLUSH_SECONDS) -> None:
        """Export what is still queued and stop the exporter, waiting at most `timeout` seconds.

        The SDK's shutdown blocks (up to 30 s while it retries a collector that is down), so it
        runs in a daemon thread of its own: past the timeout the process goes on exiting and the
        unexported spans are lost, which is better than holding up a SIGTERM."""
        loop = asyncio.get_running_loop()
        done: asyncio.Future[None] = loop.create_future()

        def finished() -> None:
            if not done.done():
                done.set_result(None)

        def run() -> None:
            try:
                self.provider.shutdown()
            finally:
                with contextlib.suppress(RuntimeError):  # the loop is already closed
                    loop.call_soon_threadsafe(finished)

        threading.Thread(target=run, name="tollway-trace-flush", daemon=True).start()
        try:
            await asyncio.wait_for(asyncio.shield(done), timeout)
        except TimeoutError:
            log.warning("spans still unexported after %.0f s at shutdown (is the collector reachable?); "
                        "giving up on them", timeout)

    # -- used by CallTrace -------------------------------------------------------------------------

    def _context(self, span: Span) -> Context:
        return self._set_span_in_context(span)


class CallTrace:
    """The spans of one call: its SERVER span and the CLIENT span of the attempt that answered,
    kept open until the call finishes so a stream's span covers the whole stream."""

    __slots__ = ("_answering", "_route", "_tracing", "span")

    def __init__(self, tracing: Tracing, span: Span, route: str) -> None:
        self._tracing = tracing
        self.span = span
        self._route = route
        self._answering: Span | None = None

    async def attempt(self, call: Call, deployment: Deployment, req: UpstreamRequest,
                      send: Callable[[UpstreamRequest], Awaitable[UpstreamReply]]) -> UpstreamReply:
        """Send one upstream attempt inside its own CLIENT span, with that span's `traceparent`.

        A failed attempt's span ends here, with its status; a successful one stays open until
        `end`, so it gets the usage and, for a stream, lasts as long as the stream."""
        t = self._tracing
        operation = ROUTES[call.route_name][0]
        model = deployment.upstream_model
        span = t.tracer.start_span(
            f"{operation} {model}", context=t._context(self.span), kind=t._client,
            attributes={"gen_ai.operation.name": operation, "gen_ai.request.model": model,
                        "gen_ai.provider.name": deployment.provider, "tollway.deployment": deployment.name})
        # The client's trace headers are replaced, never mixed with ours (a client tracestate next
        # to our traceparent would describe another span).
        headers = dict(req.headers)
        for name in TRACE_HEADERS:
            headers.pop(name, None)
        t._propagator.inject(headers, context=t._context(span))
        req.headers = headers
        try:
            reply = await send(req)
        except BaseException as exc:
            status = getattr(exc, "status", None)
            if isinstance(status, int):
                span.set_attribute("http.response.status_code", status)
            span.set_attribute("error.type", getattr(exc, "error_type", None) or type(exc).__name__)
            span.set_status(t._error)
            span.end()
            raise
        span.set_attribute("http.response.status_code", reply.status)
        if reply.status >= 400:
            span.set_attribute("error.type", str(reply.status))
            span.set_status(t._error)
            span.end()
        else:
            if self._answering is not None:  # cannot happen (success ends the attempts); never leak one
                self._answering.end()
            self._answering = span
        return reply

    def end(self, call: Call, status: int, usage: Usage, cost_micros: int, error_type: str | None) -> None:
        """Close the answering attempt's span and the SERVER span with the call's outcome."""
        span = self.span
        answering, self._answering = self._answering, None
        usage_attrs: dict[str, Any] = {}
        if not call.route_name.endswith("count_tokens"):
            usage_attrs = {
                "gen_ai.usage.input_tokens": usage.input_tokens + usage.cache_creation_input_tokens
                + usage.cache_read_input_tokens,
                "gen_ai.usage.output_tokens": usage.output_tokens,
                "gen_ai.usage.cache_read.input_tokens": usage.cache_read_input_tokens,
                "gen_ai.usage.cache_creation.input_tokens": usage.cache_creation_input_tokens,
            }
        failed = status >= 500 or (status < 400 and error_type is not None)
        if answering is not None:
            answering.set_attributes(usage_attrs)
            if call.upstream_model:
                answering.set_attribute("gen_ai.response.model", call.upstream_model)
            if failed:  # a stream that broke off after its 200
                answering.set_attribute("error.type", error_type or str(status))
                answering.set_status(self._tracing._error)
            answering.end()
        if not span.is_recording():
            span.end()
            return
        if call.route_name != self._route and call.route_name in ROUTES:
            # Pipeline.count_tokens names the route after the span was opened.
            operation, path = ROUTES[call.route_name]
            span.update_name(f"POST {path}")
            span.set_attributes({"http.route": path, "gen_ai.operation.name": operation})
        attrs: dict[str, Any] = {"http.response.status_code": status, "tollway.attempts": max(1, len(call.attempts)),
                                 **usage_attrs}
        if call.requested_model:
            attrs["gen_ai.request.model"] = call.requested_model
        if call.upstream_model:
            attrs["gen_ai.response.model"] = call.upstream_model
        max_tokens = call.body.get("max_tokens") if call.body else None
        if isinstance(max_tokens, int) and not isinstance(max_tokens, bool):
            attrs["gen_ai.request.max_tokens"] = max_tokens
        if call.principal is not None:
            attrs["tollway.key_id"] = call.principal.key_id
        if call.deployment is not None:
            attrs["tollway.deployment"] = call.deployment
        if cost_micros:
            attrs["tollway.cost_usd"] = cost_micros / 1_000_000
        if error_type is not None:
            attrs["error.type"] = error_type
        span.set_attributes(attrs)
        if failed:
            span.set_status(self._tracing._error)
        span.end()

"""A minimal OpenTelemetry collector on loopback: OTLP/HTTP traces in, decoded spans recorded.

It accepts `POST /v1/traces` with a protobuf `ExportTraceServiceRequest` (gzip or not), answers
an empty `ExportTraceServiceResponse` as a collector does, and keeps every span as a `SpanRecord`
(ids in lower-case hex, attributes as plain Python values), so tests can check what a real
exporter sent. It also counts TCP connections, so a test can show that nothing tried to export.

Like the upstream emulator it serves from a daemon thread with its own event loop::

    with OtlpReceiver() as otlp:
        ...  # tracing.endpoint = otlp.endpoint
        spans = otlp.wait_for(lambda spans: any(s.name == "POST /v1/messages" for s in spans))
"""

from __future__ import annotations

import asyncio
import gzip
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from tests.loopback import LoopbackServer

KINDS = {Span.SPAN_KIND_INTERNAL: "INTERNAL", Span.SPAN_KIND_SERVER: "SERVER", Span.SPAN_KIND_CLIENT: "CLIENT",
         Span.SPAN_KIND_PRODUCER: "PRODUCER", Span.SPAN_KIND_CONSUMER: "CONSUMER"}
STATUSES = {Status.STATUS_CODE_UNSET: "UNSET", Status.STATUS_CODE_OK: "OK", Status.STATUS_CODE_ERROR: "ERROR"}


@dataclass
class SpanRecord:
    """One received span, decoded."""

    name: str
    kind: str  # "SERVER", "CLIENT", …
    trace_id: str  # 32 hex digits
    span_id: str  # 16 hex digits
    parent_span_id: str  # "" for a root span
    attributes: dict[str, Any]
    status: str  # "UNSET", "OK", "ERROR"
    start_ns: int
    end_ns: int
    resource: dict[str, Any] = field(default_factory=dict)
    scope: str = ""

    @property
    def duration(self) -> float:
        return (self.end_ns - self.start_ns) / 1e9


def _value(v: AnyValue) -> Any:
    kind = v.WhichOneof("value")
    if kind is None:
        return None
    if kind == "array_value":
        return [_value(x) for x in v.array_value.values]
    if kind == "kvlist_value":
        return {kv.key: _value(kv.value) for kv in v.kvlist_value.values}
    return getattr(v, kind)


def _attributes(kvs: Any) -> dict[str, Any]:
    return {kv.key: _value(kv.value) for kv in kvs}


class OtlpReceiver(LoopbackServer):
    """An OTLP/HTTP traces endpoint on 127.0.0.1 (free port)."""

    thread_name = "otlp-receiver"

    def __init__(self) -> None:
        super().__init__()
        self.spans: list[SpanRecord] = []
        self.exports: list[dict[str, str]] = []  # the headers of each export request
        self.connections = 0
        self._cond = threading.Condition()
        self._server: asyncio.Server | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self._port}/v1/traces"

    def reset(self) -> None:
        with self._cond:
            self.spans.clear()
            self.exports.clear()
            self.connections = 0

    def wait_for(self, done: Callable[[list[SpanRecord]], bool], timeout: float = 10.0) -> list[SpanRecord]:
        """Block until `done(spans)` holds for the spans received so far; returns a copy of them."""
        with self._cond:
            if not self._cond.wait_for(lambda: done(list(self.spans)), timeout):
                names = [(s.name, s.kind, s.trace_id) for s in self.spans]
                raise TimeoutError(f"the expected spans did not arrive in {timeout} s; got {names}")
            return list(self.spans)

    def trace(self, trace_id: str, n: int, timeout: float = 10.0) -> list[SpanRecord]:
        """The spans of one trace, once at least `n` arrived."""
        spans = self.wait_for(lambda spans: sum(s.trace_id == trace_id for s in spans) >= n, timeout)
        return [s for s in spans if s.trace_id == trace_id]

    # ----- server side (the receiver's own loop) -----
    async def _listen(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_post("/v1/traces", self._export)
        self._runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.5)
        await self._runner.setup()
        factory = self._runner.server
        assert factory is not None

        def counted() -> asyncio.BaseProtocol:
            with self._cond:
                self.connections += 1
            return factory()

        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(counted, "127.0.0.1", 0)
        self._port = self._server.sockets[0].getsockname()[1]

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        await super()._close()

    async def _export(self, request: web.Request) -> web.Response:
        data = await request.read()
        encoding = request.headers.get("content-encoding", "").lower()
        if encoding == "gzip":
            data = gzip.decompress(data)
        elif encoding == "deflate":
            data = zlib.decompress(data)
        if not request.content_type.startswith("application/x-protobuf"):
            return web.Response(status=415, text="only application/x-protobuf is accepted")
        export = ExportTraceServiceRequest()
        export.ParseFromString(data)
        records: list[SpanRecord] = []
        for rs in export.resource_spans:
            resource = _attributes(rs.resource.attributes)
            for ss in rs.scope_spans:
                for s in ss.spans:
                    records.append(SpanRecord(
                        name=s.name, kind=KINDS.get(s.kind, str(s.kind)), trace_id=s.trace_id.hex(),
                        span_id=s.span_id.hex(), parent_span_id=s.parent_span_id.hex(),
                        attributes=_attributes(s.attributes), status=STATUSES.get(s.status.code, str(s.status.code)),
                        start_ns=s.start_time_unix_nano, end_ns=s.end_time_unix_nano, resource=resource,
                        scope=ss.scope.name,
                    ))
        with self._cond:
            self.exports.append({k.lower(): v for k, v in request.headers.items()})
            self.spans.extend(records)
            self._cond.notify_all()
        return web.Response(body=ExportTraceServiceResponse().SerializeToString(),
                            content_type="application/x-protobuf")

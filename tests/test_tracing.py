"""OpenTelemetry traces, end to end: a real gateway exporting over OTLP/HTTP to a real receiver
(tests/otlp_receiver.py), the upstream emulators recording the `traceparent` they were sent, and
the stock `anthropic` SDK (once with its own OpenTelemetry tracing) as the client."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import anthropic
import httpx
import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.conftest import UPSTREAM_KEY, Gateway, free_port, start_gateway
from tests.emulator import AnthropicEmulator, JSONReply, SSEReply, default_stream_events, sse_event
from tests.openai_emulator import OpenAIEmulator
from tests.otlp_receiver import OtlpReceiver, SpanRecord
from tollway.config import ConfigError, parse_settings
from tollway.tracing import FLUSH_SECONDS

MODEL = "claude-sonnet-4-5-20250929"
OPENAI_KEY = "sk-openai-upstream-test"
OTLP_TOKEN = "otlp-secret-token"
PROMPT = "tell nobody about the zebra 7731"
OVERLOADED = {"type": "error", "error": {"type": "overloaded_error", "message": "busy"}}
ENV = {"TEST_UPSTREAM_KEY": UPSTREAM_KEY, "TEST_OPENAI_KEY": OPENAI_KEY, "OTLP_TOKEN": OTLP_TOKEN,
       # The SDK's own variable: export every 50 ms instead of every 5 s, so tests wait little.
       "OTEL_BSP_SCHEDULE_DELAY": "50"}


def traceparent(sampled: bool = True) -> tuple[str, str, str]:
    """(header value, trace id, parent span id) of a fresh W3C trace context."""
    trace_id, span_id = os.urandom(16).hex(), os.urandom(8).hex()
    return f"00-{trace_id}-{span_id}-{'01' if sampled else '00'}", trace_id, span_id


def config(anthropic_url: str, openai_url: str, tracing: dict[str, Any]) -> dict[str, Any]:
    def claude(url: str) -> dict[str, Any]:
        return {"provider": "anthropic", "base_url": url, "api_key": "${TEST_UPSTREAM_KEY}", "connect_timeout": 1}

    return {
        "server": {"ping_interval": 5},
        "retries": {"max_attempts": 2, "base_delay": 0.01, "max_delay": 0.05, "breaker_failures": 1000},
        "tracing": tracing,
        "models": [
            {"id": MODEL, "upstream": claude(anthropic_url), "pricing": {"input": 3.0, "output": 15.0}},
            {"id": "gpt-test", "upstream": {"provider": "openai", "base_url": openai_url + "/v1",
                                            "api_key": "${TEST_OPENAI_KEY}", "model": "gpt-4o-mini"}},
            {"id": "dead", "upstream": claude(f"http://127.0.0.1:{free_port()}")},
            {"id": "tollway-mock", "upstream": {"provider": "mock"}},
        ],
    }


@pytest.fixture(scope="module")
def otlp() -> Iterator[OtlpReceiver]:
    with OtlpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="module")
def openai_upstream() -> Iterator[OpenAIEmulator]:
    with OpenAIEmulator(api_key=OPENAI_KEY) as emu:
        yield emu


@pytest.fixture
def oai(openai_upstream: OpenAIEmulator) -> OpenAIEmulator:
    openai_upstream.reset()
    return openai_upstream


@pytest.fixture
def emu(emulator: AnthropicEmulator) -> AnthropicEmulator:
    emulator.reset()
    return emulator


@pytest.fixture(scope="module")
def traced(emulator: AnthropicEmulator, openai_upstream: OpenAIEmulator, otlp: OtlpReceiver,
           tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    tracing = {"enabled": True, "endpoint": otlp.endpoint, "headers": {"authorization": "Bearer ${OTLP_TOKEN}"}}
    gw = start_gateway(tmp_path_factory.mktemp("traced"), config(emulator.base_url, openai_upstream.base_url,
                                                                 tracing), env=ENV)
    yield gw
    gw.stop()


def client(gw: Gateway, **options: Any) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0, **options)


def server_and_clients(spans: list[SpanRecord]) -> tuple[SpanRecord, list[SpanRecord]]:
    servers = [s for s in spans if s.kind == "SERVER"]
    assert len(servers) == 1, [(s.name, s.kind) for s in spans]
    return servers[0], sorted((s for s in spans if s.kind == "CLIENT"), key=lambda s: s.start_ns)


def names(header: str, span: SpanRecord) -> bool:
    """Whether the `traceparent` an upstream received names the CLIENT span `span`, sampled. (The
    flags may also carry W3C level 2's "random trace id" bit, 0x02, on traces the gateway began.)"""
    version, trace_id, span_id, flags = header.split("-")
    return (version, trace_id, span_id) == ("00", span.trace_id, span.span_id) and int(flags, 16) & 1 == 1


def assert_no_secrets(gw: Gateway, spans: list[SpanRecord]) -> None:
    text = repr([(s.name, s.attributes, s.resource) for s in spans])
    for secret in (gw.key, UPSTREAM_KEY, OPENAI_KEY, OTLP_TOKEN, PROMPT):
        assert secret not in text


def test_spans_continue_the_incoming_trace_and_the_upstream_joins_it(
        traced: Gateway, emu: AnthropicEmulator, otlp: OtlpReceiver) -> None:
    header, trace_id, parent_id = traceparent()
    resp = client(traced).messages.with_raw_response.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": PROMPT}],
        extra_headers={"traceparent": header, "tracestate": "vendor=abc"})
    assert resp.http_response.status_code == 200
    server, clients = server_and_clients(otlp.trace(trace_id, 2))

    assert server.name == "POST /v1/messages" and server.kind == "SERVER" and server.parent_span_id == parent_id
    assert server.status == "UNSET"
    assert server.attributes == {
        "http.request.method": "POST", "http.route": "/v1/messages", "gen_ai.operation.name": "chat",
        "tollway.request_id": resp.http_response.headers["request-id"], "tollway.key_id": traced.key_id,
        "http.response.status_code": 200, "tollway.attempts": 1, "tollway.deployment": MODEL,
        "gen_ai.request.model": MODEL, "gen_ai.response.model": MODEL, "gen_ai.request.max_tokens": 16,
        "gen_ai.usage.input_tokens": 12, "gen_ai.usage.output_tokens": 6,
        "gen_ai.usage.cache_read.input_tokens": 0, "gen_ai.usage.cache_creation.input_tokens": 0,
        "tollway.cost_usd": pytest.approx((12 * 3.0 + 6 * 15.0) / 1e6),
    }
    (attempt,) = clients
    assert attempt.name == f"chat {MODEL}" and attempt.parent_span_id == server.span_id
    assert attempt.attributes["gen_ai.provider.name"] == "anthropic"
    assert attempt.attributes["tollway.deployment"] == MODEL
    assert attempt.attributes["http.response.status_code"] == 200
    assert attempt.attributes["gen_ai.usage.output_tokens"] == 6
    assert server.start_ns <= attempt.start_ns <= attempt.end_ns <= server.end_ns

    # The upstream's own trace joins ours: the traceparent names the CLIENT span, the client's
    # tracestate travels along.
    (received,) = emu.received
    assert names(received.headers["traceparent"], attempt)
    assert received.headers["tracestate"] == "vendor=abc"

    assert server.resource["service.name"] == "tollway" and server.scope == "tollway"
    assert all(e["authorization"] == f"Bearer {OTLP_TOKEN}" for e in otlp.exports)  # ${VAR} expanded
    assert all(e["content-type"] == "application/x-protobuf" for e in otlp.exports)
    assert_no_secrets(traced, otlp.spans)


def test_a_retried_request_has_one_client_span_per_attempt(traced: Gateway, emu: AnthropicEmulator,
                                                           otlp: OtlpReceiver) -> None:
    emu.script(JSONReply(529, OVERLOADED))
    resp = client(traced).messages.with_raw_response.create(
        model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    assert resp.http_response.status_code == 200
    rid = resp.http_response.headers["request-id"]
    spans = otlp.wait_for(lambda spans: any(s.attributes.get("tollway.request_id") == rid and s.end_ns
                                            for s in spans))
    trace_id = next(s.trace_id for s in spans if s.attributes.get("tollway.request_id") == rid)
    server, clients = server_and_clients(otlp.trace(trace_id, 3))

    assert server.parent_span_id == ""  # no incoming traceparent: the gateway starts the trace
    assert server.attributes["tollway.attempts"] == 2 and server.status == "UNSET"
    assert [c.attributes["http.response.status_code"] for c in clients] == [529, 200]
    assert [c.status for c in clients] == ["ERROR", "UNSET"]
    assert clients[0].attributes["error.type"] == "529"
    assert all(c.parent_span_id == server.span_id for c in clients)
    assert clients[0].end_ns <= clients[1].start_ns
    # Each attempt told the upstream its own span.
    assert len(emu.received) == 2
    assert all(names(r.headers["traceparent"], c) for r, c in zip(emu.received, clients, strict=True))


def test_a_stream_span_ends_with_the_stream_and_carries_its_usage(traced: Gateway, emu: AnthropicEmulator,
                                                                   otlp: OtlpReceiver) -> None:
    events = default_stream_events(MODEL, input_tokens=40, output_tokens=9)
    emu.script(SSEReply([sse_event(e) for e in events], delay=0.05))
    header, trace_id, _ = traceparent()
    with client(traced).messages.stream(model=MODEL, max_tokens=50, messages=[{"role": "user", "content": "hi"}],
                                        extra_headers={"traceparent": header}) as stream:
        final = stream.get_final_message()
    assert final.usage.output_tokens == 9
    server, (attempt,) = server_and_clients(otlp.trace(trace_id, 2))

    streamed = 0.05 * (len(events) - 1)
    assert server.duration >= streamed * 0.9 and attempt.duration >= streamed * 0.9
    assert attempt.end_ns <= server.end_ns
    for span in (server, attempt):
        assert span.attributes["gen_ai.usage.input_tokens"] == 40
        assert span.attributes["gen_ai.usage.output_tokens"] == 9
    assert server.attributes["http.response.status_code"] == 200 and server.status == "UNSET"
    assert server.attributes["gen_ai.request.max_tokens"] == 50


def test_an_upstream_failure_marks_the_spans_as_errors(traced: Gateway, otlp: OtlpReceiver) -> None:
    header, trace_id, _ = traceparent()
    with pytest.raises(anthropic.APIStatusError) as exc:
        client(traced).messages.create(model="dead", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                       extra_headers={"traceparent": header})
    assert exc.value.status_code == 502
    server, clients = server_and_clients(otlp.trace(trace_id, 3))
    assert server.status == "ERROR" and server.attributes["http.response.status_code"] == 502
    assert server.attributes["error.type"] == "api_error" and server.attributes["tollway.attempts"] == 2
    assert len(clients) == 2 and all(c.status == "ERROR" and c.attributes["error.type"] == "api_error"
                                     and c.attributes["http.response.status_code"] == 502 for c in clients)


def test_count_tokens_and_the_openai_routes_have_spans(traced: Gateway, emu: AnthropicEmulator,
                                                       oai: OpenAIEmulator, otlp: OtlpReceiver) -> None:
    header, trace_id, _ = traceparent()
    count = client(traced).messages.count_tokens(model=MODEL, messages=[{"role": "user", "content": "hi"}],
                                                 extra_headers={"traceparent": header})
    assert count.input_tokens > 0
    server, (attempt,) = server_and_clients(otlp.trace(trace_id, 2))
    assert server.name == "POST /v1/messages/count_tokens"
    assert server.attributes["gen_ai.operation.name"] == "count_tokens"
    assert "gen_ai.usage.input_tokens" not in server.attributes
    assert attempt.name == f"count_tokens {MODEL}"
    assert names(emu.received[0].headers["traceparent"], attempt)

    header, trace_id, parent_id = traceparent()
    chat = httpx.post(traced.base_url + "/v1/chat/completions", timeout=10,
                      headers={"authorization": f"Bearer {traced.key}", "traceparent": header},
                      json={"model": "gpt-test", "messages": [{"role": "user", "content": PROMPT}]})
    assert chat.status_code == 200
    server, (attempt,) = server_and_clients(otlp.trace(trace_id, 2))
    assert server.name == "POST /v1/chat/completions" and server.parent_span_id == parent_id
    assert server.attributes["gen_ai.request.model"] == "gpt-test"
    assert server.attributes["gen_ai.response.model"] == "gpt-4o-mini"
    assert attempt.name == "chat gpt-4o-mini" and attempt.attributes["gen_ai.provider.name"] == "openai"
    assert names(oai.received[0].headers["traceparent"], attempt)

    header, trace_id, _ = traceparent()
    responses = httpx.post(traced.base_url + "/v1/responses", timeout=10,
                           headers={"authorization": f"Bearer {traced.key}", "traceparent": header},
                           json={"model": "tollway-mock", "input": "hi", "store": False})
    assert responses.status_code == 200
    server, (attempt,) = server_and_clients(otlp.trace(trace_id, 2))
    assert server.name == "POST /v1/responses" and attempt.attributes["gen_ai.provider.name"] == "mock"
    assert server.attributes["gen_ai.usage.output_tokens"] > 0
    assert_no_secrets(traced, otlp.spans)


def test_the_sdk_own_trace_continues_through_the_gateway(traced: Gateway, emu: AnthropicEmulator,
                                                         otlp: OtlpReceiver) -> None:
    """The anthropic SDK traces its calls itself and propagates its span: the gateway's SERVER span
    becomes that span's child, in the application's trace."""
    memory = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(memory))
    sdk = client(traced, open_telemetry={"tracer_provider": provider})
    sdk.messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
    (call_span,) = memory.get_finished_spans()
    ctx = call_span.get_span_context()
    assert ctx is not None
    trace_id, span_id = f"{ctx.trace_id:032x}", f"{ctx.span_id:016x}"
    server, (attempt,) = server_and_clients(otlp.trace(trace_id, 2))
    assert server.parent_span_id == span_id
    assert names(emu.received[0].headers["traceparent"], attempt)


def test_parent_based_sampling(emulator: AnthropicEmulator, openai_upstream: OpenAIEmulator,
                               tmp_path: Path) -> None:
    """sample_ratio 0 keeps no new trace, but a caller's sampled trace is still followed; an
    unsampled trace still tells the upstream its (unsampled) context."""
    emulator.reset()
    with OtlpReceiver() as receiver:
        tracing = {"enabled": True, "endpoint": receiver.endpoint, "sample_ratio": 0}
        gw = start_gateway(tmp_path / "sampled", config(emulator.base_url, openai_upstream.base_url, tracing),
                           env=ENV)
        try:
            body: dict[str, Any] = {"model": MODEL, "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]}
            client(gw).messages.create(**body)
            header, trace_id, _ = traceparent()
            client(gw).messages.create(**body, extra_headers={"traceparent": header})
            spans = receiver.trace(trace_id, 2)
            assert {s.kind for s in spans} == {"SERVER", "CLIENT"}
            version, _, _, flags = emulator.received[0].headers["traceparent"].split("-")
            assert version == "00" and int(flags, 16) & 1 == 0
            assert emulator.received[1].headers["traceparent"].startswith(f"00-{trace_id}-")
        finally:
            gw.stop()
        assert {s.trace_id for s in receiver.spans} == {trace_id}  # the unsampled call exported nothing


def test_disabled_tracing_forwards_the_client_trace_context_and_exports_nothing(
        emulator: AnthropicEmulator, openai_upstream: OpenAIEmulator, tmp_path: Path) -> None:
    emulator.reset()
    openai_upstream.reset()
    with OtlpReceiver() as receiver:
        tracing = {"enabled": False, "endpoint": receiver.endpoint}
        gw = start_gateway(tmp_path / "off", config(emulator.base_url, openai_upstream.base_url, tracing), env=ENV)
        try:
            header, _, _ = traceparent()
            extra = {"traceparent": header, "tracestate": "congo=t61rcWkgMzE,rojo=00f067aa0ba902b7"}
            client(gw).messages.create(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                       extra_headers=extra)
            with client(gw).messages.stream(model=MODEL, max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                            extra_headers=extra) as stream:
                stream.get_final_message()
            client(gw).messages.create(model="gpt-test", max_tokens=5, messages=[{"role": "user", "content": "hi"}],
                                       extra_headers=extra)
            client(gw).messages.create(model=MODEL, max_tokens=16, messages=[{"role": "user", "content": "hi"}])
        finally:
            gw.stop()  # the shutdown path too must not export
        for received in (emulator.received[0], emulator.received[1], openai_upstream.received[0]):
            assert received.headers["traceparent"] == extra["traceparent"]
            assert received.headers["tracestate"] == extra["tracestate"]
        assert "traceparent" not in emulator.received[2].headers  # nothing is invented
    assert receiver.connections == 0 and receiver.spans == []


def test_a_collector_that_is_down_neither_fails_requests_nor_holds_up_shutdown(tmp_path: Path) -> None:
    tracing = {"enabled": True, "endpoint": f"http://127.0.0.1:{free_port()}/v1/traces"}
    gw = start_gateway(tmp_path / "down", {"tracing": tracing}, env=ENV)
    try:
        for _ in range(3):
            resp = httpx.post(gw.base_url + "/v1/messages", headers={"x-api-key": gw.key}, timeout=10, json={
                "model": "tollway-mock", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]})
            assert resp.status_code == 200
        time.sleep(0.3)  # the exporter is now retrying the collector
    finally:
        started = time.monotonic()
        output = gw.stop()
    assert time.monotonic() - started < FLUSH_SECONDS + 3
    assert "spans still unexported" in output


def test_disabled_tracing_never_imports_the_sdk(tmp_path: Path) -> None:
    code = ("import sys\n"
            "from tollway.app import create_app\n"
            "from tollway.config import parse_settings\n"
            "create_app(parse_settings({}))\n"
            "print(sorted(m for m in sys.modules if m.startswith(('opentelemetry.sdk', 'opentelemetry.exporter'))))\n")
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                         check=True)
    assert out.stdout.strip() == "[]"


def test_tracing_config_is_validated() -> None:
    default = parse_settings({}).tracing
    assert not default.enabled and default.endpoint == "http://127.0.0.1:4318/v1/traces"
    assert default.service_name == "tollway" and default.sample_ratio == 1.0 and default.headers == {}
    with pytest.raises(ConfigError, match=r"tracing\.endpoint"):
        parse_settings({"tracing": {"endpoint": "127.0.0.1:4318"}})
    with pytest.raises(ConfigError, match=r"tracing\.sample_ratio"):
        parse_settings({"tracing": {"sample_ratio": 1.5}})
    with pytest.raises(ConfigError, match=r"tracing\.exporter"):
        parse_settings({"tracing": {"exporter": "grpc"}})
    with pytest.raises(ConfigError, match=r"tracing\.headers\.x-token: environment variable TOLLWAY_NO_SUCH_VAR"):
        parse_settings({"tracing": {"headers": {"x-token": "${TOLLWAY_NO_SUCH_VAR}"}}})

"""Native passthrough to an Anthropic upstream: what the upstream sees is what the client sent
(minus the credential and the stripped fields), and what the client sees is what the upstream
answered, byte for byte, with only keep-alive pings added between events."""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest

from tests.conftest import NO_RETRIES, UPSTREAM_KEY, Gateway, free_port, start_gateway
from tests.emulator import (
    AnthropicEmulator,
    JSONReply,
    SSEReply,
    count_input_tokens,
    default_message,
    default_stream_events,
    error_body,
    sse_event,
)

MODEL = "claude-sonnet-4-5-20250929"
BY_NAME = "upstream-by-name"
RENAMED = "claude-renamed"
RENAMED_UPSTREAM = "claude-haiku-4-5-20251001"
USER_HI = [{"role": "user", "content": "hi"}]


def _headers(gateway: Gateway, **extra: str) -> dict[str, str]:
    """What a raw client sends: its Tollway key, a version, JSON."""
    return {"x-api-key": gateway.key, "anthropic-version": "2023-06-01",
            "content-type": "application/json", **extra}


def _post(gateway: Gateway, path: str, body: dict[str, Any] | bytes, **headers: str) -> httpx.Response:
    content = body if isinstance(body, bytes) else orjson.dumps(body)
    return httpx.post(gateway.base_url + path, content=content, headers=_headers(gateway, **headers), timeout=10)


def _stream_raw(gateway: Gateway, body: dict[str, Any]) -> tuple[httpx.Response, bytes]:
    """POST a streaming request and return the response and every byte of its body, unparsed."""
    with httpx.stream("POST", gateway.base_url + "/v1/messages", content=orjson.dumps(body),
                      headers=_headers(gateway), timeout=10) as resp:
        data = b"".join(resp.iter_raw())
    return resp, data


def _frames(data: bytes) -> list[bytes]:
    """Split an SSE byte stream into frames, each keeping its blank-line terminator."""
    assert data.endswith(b"\n\n"), data[-200:]
    return [f + b"\n\n" for f in data[:-2].split(b"\n\n")]


def _is_ping(frame: bytes) -> bool:
    return frame.startswith(b"event: ping\n")


def _text_events(text: str) -> list[bytes]:
    """A realistic stream with no upstream ping, one frame per event."""
    return [sse_event(e) for e in default_stream_events(MODEL, text) if e["type"] != "ping"]


# ----- request side: headers -----

def test_anthropic_headers_reach_upstream_unchanged(client: Any, upstream: AnthropicEmulator) -> None:
    """DECISIONS.md 3: version, beta and session id are forwarded as they came, even unusual ones."""
    sent = {
        "anthropic-version": "2026-10-21",
        "anthropic-beta": "context-management-2025-06-27,made-up-beta-2031-01-01",
        "x-claude-code-session-id": "0f3c9a2e-ODD_session.42",
    }
    client.messages.create(model=MODEL, max_tokens=10, messages=USER_HI, extra_headers=sent)
    got = upstream.received[0].headers
    assert {name: got.get(name) for name in sent} == sent


def test_missing_anthropic_version_gets_default(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """A client that sends no anthropic-version still works: the upstream requires one."""
    headers = _headers(gateway)
    del headers["anthropic-version"]
    resp = httpx.post(gateway.base_url + "/v1/messages", headers=headers, timeout=10,
                      content=orjson.dumps({"model": MODEL, "max_tokens": 10, "messages": USER_HI}))
    assert resp.status_code == 200, resp.text
    assert upstream.received[0].headers["anthropic-version"] == "2023-06-01"


@pytest.mark.parametrize("style", ["bearer", "x-api-key"])
def test_upstream_gets_config_key_never_client_key(gateway: Gateway, upstream: AnthropicEmulator,
                                                   style: str) -> None:
    """The provider key replaces the client's credential, whichever header carried it."""
    headers = _headers(gateway)
    if style == "bearer":
        del headers["x-api-key"]
        headers["authorization"] = f"Bearer {gateway.key}"
    resp = httpx.post(gateway.base_url + "/v1/messages", headers=headers, timeout=10,
                      content=orjson.dumps({"model": MODEL, "max_tokens": 10, "messages": USER_HI}))
    assert resp.status_code == 200, resp.text
    got = upstream.received[0].headers
    assert got["x-api-key"] == UPSTREAM_KEY
    assert "authorization" not in got
    assert [k for k, v in got.items() if gateway.key in v] == []


# ----- request side: body -----

def test_ingress_fields_are_stripped(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """DECISIONS.md 2: metadata, litellm_metadata and proxy_server_request never reach an upstream;
    everything else in the body survives the re-serialisation."""
    kept = {"model": MODEL, "max_tokens": 10, "messages": USER_HI, "temperature": 0.5}
    body = {**kept, "metadata": {"user_id": "u-1"}, "litellm_metadata": {"tags": ["x"]},
            "proxy_server_request": {"url": "http://elsewhere"}}
    resp = _post(gateway, "/v1/messages", body)
    assert resp.status_code == 200, resp.text
    assert upstream.received[0].json == kept


@pytest.mark.parametrize("with_stripped_field", [False, True], ids=["raw-bytes", "reserialised"])
def test_unknown_fields_and_cache_control_arrive_verbatim(gateway: Gateway, upstream: AnthropicEmulator,
                                                          with_stripped_field: bool) -> None:
    """DECISIONS.md 1 and 4: fields the gateway does not know, and cache_control at both levels,
    are forwarded as they came, also when the body had to be re-serialised."""
    body: dict[str, Any] = {
        "model": MODEL,
        "max_tokens": 64,
        "cache_control": {"type": "ephemeral", "ttl": "1h"},
        "system": [{"type": "text", "text": "be brief", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": [
            {"type": "text", "text": "hi", "cache_control": {"type": "ephemeral", "ttl": "5m"}}]}],
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "context_management": {"edits": [{"type": "clear_tool_uses_20250919"}]},
        "future_field": {"nested": [1, 2.5, None, True, "ü"]},
    }
    sent = {**body, "metadata": {"user_id": "u-1"}} if with_stripped_field else body
    resp = _post(gateway, "/v1/messages", sent)
    assert resp.status_code == 200, resp.text
    assert upstream.received[0].json == body


def test_exact_client_bytes_forwarded_when_nothing_stripped(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """No re-encoding on the hot path: odd spacing, key order and escapes reach the upstream as sent."""
    sent = (b'{ "messages" : [ {"content":"caf\\u00e9 \\ud83d\\ude00",   "role":"user"} ],\n'
            b'  "temperature": 1.0000, "max_tokens" :10,"model":"claude-sonnet-4-5-20250929" ,'
            b' "future_field" : { } }  ')
    resp = _post(gateway, "/v1/messages", sent)
    assert resp.status_code == 200, resp.text
    assert upstream.received[0].body == sent


def test_renamed_model_reaches_upstream_under_its_upstream_id(client: Any, upstream: AnthropicEmulator) -> None:
    """A catalogue id mapped to another provider id is rewritten before forwarding."""
    client.messages.create(model=RENAMED, max_tokens=10, messages=USER_HI, system="be brief")
    assert upstream.received[0].json == {"model": RENAMED_UPSTREAM, "max_tokens": 10,
                                         "messages": USER_HI, "system": "be brief"}


# ----- streaming -----

def test_stream_bytes_relayed_exactly_across_odd_chunk_boundaries(gateway: Gateway,
                                                                   upstream: AnthropicEmulator) -> None:
    """The relay is byte-transparent: events split across writes or packed together arrive as sent."""
    events = [sse_event(e) for e in default_stream_events(MODEL, "One two three four five.")]
    assert len(events) >= 8
    whole = b"".join(events)
    cut1 = len(events[0]) - 7  # inside message_start's JSON
    cut2 = len(events[0]) + len(events[1]) + len(events[2])  # two events packed in one chunk
    cut3 = cut2 + len(events[3]) - 1  # between the two newlines that end an event
    chunks = [whole[:cut1], whole[cut1:cut2], whole[cut2:cut3], whole[cut3:cut3 + 5], whole[cut3 + 5:]]
    assert b"".join(chunks) == whole
    upstream.script(SSEReply(chunks))
    resp, data = _stream_raw(gateway, {"model": MODEL, "max_tokens": 50, "messages": USER_HI, "stream": True})
    assert resp.status_code == 200
    assert resp.headers["content-type"].startswith("text/event-stream")
    assert resp.headers["request-id"].startswith("req_")
    assert data == whole


def test_pings_inserted_only_between_events_while_upstream_is_silent(gateway: Gateway,
                                                                      upstream: AnthropicEmulator) -> None:
    """DECISIONS.md 10: silence gets `event: ping` frames, but never inside an event that the
    upstream split across a pause (that would corrupt it)."""
    events = _text_events("Slow answer here.")
    start, rest = events[0], b"".join(events[1:])
    mid = len(events[1]) + 12  # inside the first content_block_delta
    chunks = [start, rest[:mid], rest[mid:]]
    upstream.script(SSEReply(chunks, delay=0.8))
    resp, data = _stream_raw(gateway, {"model": MODEL, "max_tokens": 50, "messages": USER_HI, "stream": True})
    assert resp.status_code == 200
    frames = _frames(data)
    pings = [f for f in frames if _is_ping(f)]
    assert pings, "no ping during 0.8 s of upstream silence with a 0.3 s ping interval"
    assert all(f.startswith(b"event: ping\ndata: ") for f in pings)
    assert b"".join(f for f in frames if not _is_ping(f)) == b"".join(chunks)
    # the silence after message_start (a boundary) is where a ping belongs
    assert _is_ping(frames[1])


def test_stream_with_pings_parses_with_sdk(client: Any, upstream: AnthropicEmulator) -> None:
    """A slow stream interleaved with pings is still a valid stream to the stock SDK."""
    events = _text_events("Patience pays off.")
    upstream.script(SSEReply([events[0], b"".join(events[1:3]), b"".join(events[3:])], delay=0.8))
    with client.messages.stream(model=MODEL, max_tokens=50, messages=USER_HI) as stream:
        final = stream.get_final_message()
    assert final.content[0].text == "Patience pays off."
    assert final.stop_reason == "end_turn"


def test_midstream_error_frame_relayed_unchanged(gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """DECISIONS.md 8: an upstream `event: error` after the stream started reaches the client as sent."""
    chunks = [sse_event(default_stream_events(MODEL)[0]),
              sse_event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})]
    upstream.script(SSEReply(chunks))
    resp, data = _stream_raw(gateway, {"model": MODEL, "max_tokens": 50, "messages": USER_HI, "stream": True})
    assert resp.status_code == 200
    assert data == b"".join(chunks)


def test_midstream_error_frame_raises_in_sdk(client: Any, upstream: AnthropicEmulator) -> None:
    """The stock SDK turns the relayed error frame into an APIStatusError carrying its type."""
    upstream.script(SSEReply([
        sse_event(default_stream_events(MODEL)[0]),
        sse_event({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}),
    ]))
    with client.messages.stream(model=MODEL, max_tokens=50, messages=USER_HI) as stream:
        assert stream.response.status_code == 200
        with pytest.raises(anthropic.APIStatusError) as info:
            for _ in stream:
                pass
    assert info.value.body == {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}


# ----- Claude Code's ?beta=true -----

@pytest.mark.parametrize("path", ["/v1/messages", "/v1/messages/count_tokens"])
def test_beta_query_accepted_and_forwarded(gateway: Gateway, upstream: AnthropicEmulator, path: str) -> None:
    """DECISIONS.md 11: Claude Code calls both routes with ?beta=true; the upstream sees it too."""
    body: dict[str, Any] = {"model": MODEL, "messages": USER_HI}
    if path == "/v1/messages":
        body["max_tokens"] = 10
    resp = _post(gateway, path + "?beta=true", body)
    assert resp.status_code == 200, resp.text
    assert (upstream.received[0].path, upstream.received[0].query) == (path, "beta=true")


# ----- count_tokens -----

def test_count_tokens_returns_upstream_number(client: Any, upstream: AnthropicEmulator) -> None:
    """DECISIONS.md 12: for an Anthropic upstream the count is the upstream's exact answer."""
    system = "You count things."
    messages = [{"role": "user", "content": "How many tokens is this sentence, roughly?"}]
    result = client.messages.count_tokens(model=MODEL, system=system, messages=messages)
    expected = count_input_tokens({"system": system, "messages": messages})
    assert expected > 1
    assert result.input_tokens == expected
    assert upstream.received[0].path == "/v1/messages/count_tokens"


def test_count_tokens_drops_max_tokens_before_forwarding(client: Any, upstream: AnthropicEmulator) -> None:
    """Anthropic rejects max_tokens on count_tokens, and clients send it anyway: it is removed."""
    result = client.messages.count_tokens(model=MODEL, messages=USER_HI, extra_body={"max_tokens": 1000})
    assert result.input_tokens == count_input_tokens({"messages": USER_HI})
    assert upstream.received[0].json == {"model": MODEL, "messages": USER_HI}


def test_count_tokens_renamed_model_uses_upstream_id(client: Any, upstream: AnthropicEmulator) -> None:
    """The model rename applies to count_tokens as well."""
    client.messages.count_tokens(model=RENAMED, messages=USER_HI)
    assert upstream.received[0].json["model"] == RENAMED_UPSTREAM


# ----- upstream errors -----

UPSTREAM_ERRORS = [
    (400, "invalid_request_error", "messages.0.content: field required upstream", anthropic.BadRequestError),
    (401, "authentication_error", "invalid x-api-key", anthropic.AuthenticationError),
    (403, "permission_error", "Your API key does not have permission", anthropic.PermissionDeniedError),
    (404, "not_found_error", "model: claude-sonnet-4-5-20250929", anthropic.NotFoundError),
    (413, "request_too_large", "Request exceeds the maximum size", anthropic.RequestTooLargeError),
    (429, "rate_limit_error", "Number of request tokens has exceeded your rate limit", anthropic.RateLimitError),
    (500, "api_error", "Internal server error", anthropic.InternalServerError),
    (529, "overloaded_error", "Overloaded", anthropic.OverloadedError),
]


@pytest.mark.parametrize(("status", "error_type", "message", "exc_class"), UPSTREAM_ERRORS,
                         ids=[str(e[0]) for e in UPSTREAM_ERRORS])
def test_upstream_error_envelope_passes_through(client: Any, upstream: AnthropicEmulator, status: int,
                                                error_type: str, message: str,
                                                exc_class: type[anthropic.APIStatusError]) -> None:
    """DECISIONS.md 8: an upstream Anthropic envelope keeps its status, type and message, so the
    stock SDK raises the class it would against Anthropic itself."""
    headers = {"retry-after": "17"} if status in (429, 529) else {}
    upstream.script(JSONReply(status, error_body(error_type, message, "req_upstream_1"), headers))
    with pytest.raises(exc_class) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HI)
    err = info.value
    assert err.status_code == status
    assert isinstance(err.body, dict)
    assert err.body["type"] == "error"
    assert err.body["error"] == {"type": error_type, "message": message}
    assert err.request_id and err.request_id.startswith("req_")
    if status in (429, 529):
        assert err.response.headers["retry-after"] == "17"


def test_upstream_529_without_retry_after_gets_one(client: Any, upstream: AnthropicEmulator) -> None:
    """DECISIONS.md 8: 429/529 always carry retry-after, even when the upstream left it out."""
    upstream.script(JSONReply(529, error_body("overloaded_error", "Overloaded", "req_upstream_2")))
    with pytest.raises(anthropic.OverloadedError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HI)
    assert info.value.response.headers.get("retry-after")


def test_stream_request_refused_upstream_is_json_error(client: Any, upstream: AnthropicEmulator) -> None:
    """An upstream refusing a streaming request before any event: the client gets the status and
    envelope (not a 200 stream), so the SDK raises the right class when opening the stream."""
    upstream.script(JSONReply(529, error_body("overloaded_error", "Overloaded", "req_upstream_3"),
                              {"retry-after": "3"}))
    with pytest.raises(anthropic.OverloadedError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HI, stream=True)
    assert info.value.body["error"] == {"type": "overloaded_error", "message": "Overloaded"}
    assert info.value.response.headers["retry-after"] == "3"


def test_upstream_html_502_becomes_envelope(client: Any, upstream: AnthropicEmulator) -> None:
    """A proxy's HTML error page is never shown to the client: it gets an api_error envelope."""
    html = b"<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>"
    upstream.script(JSONReply(502, html, {"content-type": "text/html"}))
    with pytest.raises(anthropic.InternalServerError) as info:
        client.messages.create(model=MODEL, max_tokens=10, messages=USER_HI)
    err = info.value
    assert err.status_code == 502
    assert "<html" not in err.response.text
    assert isinstance(err.body, dict)
    assert err.body["type"] == "error"
    assert err.body["error"]["type"] == "api_error"
    assert err.request_id and err.body["request_id"] == err.request_id


# ----- upstream unreachable or stalled: a second gateway -----

DEAD = "claude-dead"  # on a port nobody listens on


@pytest.fixture(scope="module")
def second_gateway(emulator: AnthropicEmulator, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    """A gateway whose DEAD model points at a port nobody listens on, and whose MODEL reaches the
    emulator with a 0.5 s read timeout."""
    dead = f"http://127.0.0.1:{free_port()}"
    config = {
        "server": {"ping_interval": 0.2, "max_body_bytes": 1024 * 1024},
        "retries": NO_RETRIES,
        "models": [
            {"id": DEAD, "upstream": {"provider": "anthropic", "base_url": dead,
                                      "api_key": "${TEST_UPSTREAM_KEY}", "connect_timeout": 2}},
            {"id": MODEL, "upstream": {"provider": "anthropic", "base_url": emulator.base_url,
                                       "api_key": "${TEST_UPSTREAM_KEY}", "read_timeout": 0.5}},
            # By host name: HTTP clients keep no cookies from bare IP addresses, so only a named
            # upstream shows whether its cookies are kept.
            {"id": BY_NAME, "upstream": {"provider": "anthropic", "api_key": "${TEST_UPSTREAM_KEY}",
                                         "base_url": emulator.base_url.replace("127.0.0.1", "localhost"),
                                         "model": MODEL}},
        ],
    }
    gw = start_gateway(tmp_path_factory.mktemp("second"), config, env={"TEST_UPSTREAM_KEY": UPSTREAM_KEY})
    yield gw
    gw.stop()


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_unreachable_upstream_is_502_envelope(second_gateway: Gateway, stream: bool) -> None:
    """Connection refused before any byte: a 502 api_error envelope, streaming requests included."""
    body = {"model": DEAD, "max_tokens": 10, "messages": USER_HI, "stream": stream}
    resp = _post(second_gateway, "/v1/messages", body)
    assert resp.status_code == 502
    assert resp.headers["content-type"].startswith("application/json")
    payload = resp.json()
    assert payload["type"] == "error"
    assert payload["error"]["type"] == "api_error"
    assert payload["request_id"] == resp.headers["request-id"]


def test_unreachable_upstream_raises_internal_server_error_in_sdk(second_gateway: Gateway) -> None:
    """The stock SDK sees the 502 as an InternalServerError, not a connection error."""
    sdk = anthropic.Anthropic(base_url=second_gateway.base_url, api_key=second_gateway.key, max_retries=0)
    with pytest.raises(anthropic.InternalServerError) as info:
        sdk.messages.create(model=DEAD, max_tokens=10, messages=USER_HI)
    assert info.value.status_code == 502


def test_silent_upstream_is_504_timeout_envelope(second_gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """An upstream that does not answer within read_timeout: 504 timeout_error in the envelope."""
    upstream.script(JSONReply(200, {"never": "seen"}, delay=1.5))
    resp = _post(second_gateway, "/v1/messages", {"model": MODEL, "max_tokens": 10, "messages": USER_HI})
    assert resp.status_code == 504
    payload = resp.json()
    assert payload["error"]["type"] == "timeout_error"
    assert payload["request_id"] == resp.headers["request-id"]
    upstream.wait_for_disconnects(1)  # the gateway hung up on the upstream; nothing lingers


def test_stalled_stream_ends_with_error_frame(second_gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """DECISIONS.md 8: once the stream has started, an upstream failure (here: silence past the read
    timeout, at an event boundary) is one `event: error` frame, after which the stream ends."""
    events = _text_events("Never finished.")
    upstream.script(SSEReply([events[0], b"".join(events[1:])], delay=1.5))
    resp, data = _stream_raw(second_gateway, {"model": MODEL, "max_tokens": 50, "messages": USER_HI, "stream": True})
    assert resp.status_code == 200
    frames = [f for f in _frames(data) if not _is_ping(f)]
    assert frames[0] == events[0]
    assert len(frames) == 2
    assert frames[1].startswith(b"event: error\ndata: ")
    error = orjson.loads(frames[1][len(b"event: error\ndata: "):])
    assert error["type"] == "error"
    assert error["error"]["type"] == "timeout_error"
    upstream.wait_for_disconnects(1)  # the gateway hung up on the upstream; nothing lingers


def test_upstream_reset_mid_stream_ends_with_error_frame_and_is_recorded(
        second_gateway: Gateway, upstream: AnthropicEmulator) -> None:
    """An upstream connection reset (TCP RST) after the stream started: the client gets the events
    relayed so far, then one `event: error` (api_error), and the stream ends; the ledger has the
    request once, as an error. The SDK surfaces the error frame as an APIStatusError."""
    events = _text_events("Cut off in the middle of a sentence.")
    upstream.script(SSEReply(events, reset_after=3))
    resp, data = _stream_raw(second_gateway, {"model": MODEL, "max_tokens": 50, "messages": USER_HI, "stream": True})
    assert resp.status_code == 200
    frames = [f for f in _frames(data) if not _is_ping(f)]
    assert frames[:3] == events[:3]
    assert len(frames) == 4
    assert frames[3].startswith(b"event: error\ndata: ")
    error = orjson.loads(frames[3][len(b"event: error\ndata: "):])
    assert error["error"]["type"] == "api_error"
    request_id = resp.headers["request-id"]

    upstream.script(SSEReply(events, reset_after=3))
    sdk = anthropic.Anthropic(base_url=second_gateway.base_url, api_key=second_gateway.key, max_retries=0)
    with pytest.raises(anthropic.APIStatusError), sdk.messages.stream(
            model=MODEL, max_tokens=50, messages=USER_HI) as stream:
        for _ in stream:
            pass

    deadline = time.monotonic() + 10
    rows: list[tuple[int, str | None]] = []
    while time.monotonic() < deadline and not rows:
        time.sleep(0.2)  # the ledger is written behind the request path
        with sqlite3.connect(second_gateway.workdir / "tollway.db") as db:
            rows = db.execute("SELECT status, error_type FROM usage WHERE request_id = ?", (request_id,)).fetchall()
    assert rows == [(200, "api_error")]


def test_an_upstream_cookie_never_reaches_another_request(second_gateway: Gateway,
                                                          upstream: AnthropicEmulator) -> None:
    """The upstream session is shared by every caller: a cookie one answer sets must not ride
    along on the next request (someone else's, possibly)."""
    upstream.script(JSONReply(200, default_message(MODEL), headers={"set-cookie": "lb=node-7; Path=/"}))
    body = orjson.dumps({"model": BY_NAME, "max_tokens": 10, "messages": USER_HI})
    for _ in range(2):
        resp = httpx.post(second_gateway.base_url + "/v1/messages", headers=_headers(second_gateway),
                          content=body, timeout=10)
        assert resp.status_code == 200, resp.text
        assert "set-cookie" not in resp.headers
    assert len(upstream.received) == 2
    assert [r.headers.get("cookie") for r in upstream.received] == [None, None]

"""Issue 17 item 9, the upstream side: what a hostile upstream sends is bounded. A gigantic
non-streaming body, a gzip bomb, a stream that never ends its event or its line: each becomes a
clear 502 (or an `error` event on a stream already started) within seconds, and the gateway's
memory does not grow with what the upstream sends. The limits are lowered in the test config
(`max_response_bytes`, `max_event_bytes`: 1 MiB) so the tests run fast; the upstreams send
hundreds of MiB, so without the bounds they would fail on time or memory."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import anthropic
import httpx
import openai
import orjson
import pytest

from tests.conftest import NO_RETRIES, Gateway, start_gateway
from tests.hostile import HostileUpstream, Received, head
from tollway.wire.sse import StreamTap

MIB = 1024 * 1024
LIMIT = MIB  # max_response_bytes and max_event_bytes in this file's config
SENT = 384 * MIB  # what the hostile upstream sends (or inflates to)
PIECE = b"x" * MIB


@cache
def gzip_bomb() -> bytes:
    """SENT bytes of zeros, gzipped: about 380 KB on the wire."""
    z = zlib.compressobj(9, zlib.DEFLATED, 31)
    zeros = bytes(MIB)
    return b"".join([*(z.compress(zeros) for _ in range(SENT // MIB)), z.flush()])


async def _send_forever(writer: asyncio.StreamWriter, first: bytes, piece: bytes) -> None:
    """`first`, then `piece` over and over (up to SENT bytes) until the reader hangs up."""
    writer.write(first)
    sent = 0
    while sent < SENT:
        writer.write(piece)
        sent += len(piece)
        await writer.drain()


def _chunked(piece: bytes) -> bytes:
    return f"{len(piece):x}\r\n".encode() + piece + b"\r\n"


async def script(writer: asyncio.StreamWriter, got: Received) -> None:
    path = got.request_line.split()[1]
    stream = b'"stream":true' in got.body.replace(b" ", b"")
    kind = path.split("/")[1]  # each model's base_url starts with the name of its attack
    if kind == "huge-declared":
        writer.write(head("200 OK", {"content-type": "application/json", "content-length": str(2 * 1024 * MIB)}))
        writer.write(b'{"id": "' + PIECE)
        await writer.drain()
        await asyncio.sleep(15)  # then hang up, the body unfinished
        writer.close()
    elif kind == "huge-chunked":
        start = head("200 OK", {"content-type": "application/json", "transfer-encoding": "chunked"})
        await _send_forever(writer, start + _chunked(b'{"id": "'), _chunked(PIECE))
    elif kind == "gzip-bomb":
        bomb = gzip_bomb()
        writer.write(head("200 OK", {"content-type": "application/json", "content-encoding": "gzip",
                                     "content-length": str(len(bomb))}) + bomb)
    elif kind == "sse-no-blank-lines" and stream:
        start = head("200 OK", {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
        message = {"type": "message_start", "message": {"id": "msg_1", "type": "message", "role": "assistant",
                   "model": "m", "content": [], "stop_reason": None, "stop_sequence": None,
                   "usage": {"input_tokens": 1, "output_tokens": 1}}}
        first = b"event: message_start\ndata: " + orjson.dumps(message) + b"\n\n"
        line = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n'
        await _send_forever(writer, start + _chunked(first), _chunked(line * (64 * 1024 // len(line))))
    elif kind == "sse-endless-first-event" and stream:  # message_start never ends
        start = head("200 OK", {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
        line = b'data: {"type":"message_start"}\n'
        await _send_forever(writer, start + _chunked(b"event: message_start\n"),
                            _chunked(line * (16 * 1024 // len(line))))
    elif kind == "sse-endless-line" and stream:
        start = head("200 OK", {"content-type": "text/event-stream", "transfer-encoding": "chunked"})
        await _send_forever(writer, start + _chunked(b'data: {"id": "'), _chunked(PIECE))
    else:
        raise AssertionError(f"unexpected request {got.request_line}")


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileUpstream]:
    with HostileUpstream(script) as server:
        yield server


def _model(name: str, provider: str, base: str) -> dict[str, Any]:
    url = f"{base}/{name}" + ("/v1" if provider == "openai" else "")
    upstream = {"provider": provider, "base_url": url, "api_key": "sk-hostile-test",
                "max_response_bytes": LIMIT, "max_event_bytes": LIMIT}
    return {"id": f"{provider}-{name}", "upstream": upstream}


@pytest.fixture(scope="module")
def gw(hostile: HostileUpstream, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    names = ("huge-declared", "huge-chunked", "gzip-bomb", "sse-no-blank-lines", "sse-endless-line")
    models = [_model(n, p, hostile.base_url) for n in names for p in ("anthropic", "openai")]
    # Served under another upstream id: the gateway holds the first event back to rename it.
    renamed = _model("sse-endless-first-event", "anthropic", hostile.base_url)
    models.append({"id": "renamed-sse-endless-first-event", "upstream": {**renamed["upstream"], "model": "other"}})
    gateway = start_gateway(Path(tmp_path_factory.mktemp("hostile")), {"retries": NO_RETRIES, "models": models})
    yield gateway
    gateway.stop()


def _peak_rss(gw: Gateway) -> int:
    """The gateway process's peak resident memory so far (VmHWM), in bytes."""
    for line in Path(f"/proc/{gw.proc.pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) * 1024
    raise AssertionError("no VmHWM")


@pytest.mark.parametrize("attack", ["huge-declared", "huge-chunked", "gzip-bomb"])
@pytest.mark.parametrize("provider", ["anthropic", "openai"])
def test_oversized_non_streaming_answer_is_a_502(gw: Gateway, provider: str, attack: str) -> None:
    gzip_bomb()  # built before the clock starts
    peak = _peak_rss(gw)
    started = time.monotonic()
    if provider == "anthropic":
        client = anthropic.Anthropic(base_url=gw.base_url, api_key=gw.key, max_retries=0, timeout=60)
        with pytest.raises(anthropic.APIStatusError) as caught:
            client.messages.create(model=f"anthropic-{attack}", max_tokens=16,
                                   messages=[{"role": "user", "content": "hi"}])
        assert caught.value.status_code == 502
        body: Any = caught.value.body
        message = body["error"]["message"]
    else:
        oai = openai.OpenAI(base_url=gw.base_url + "/v1", api_key=gw.key, max_retries=0, timeout=60)
        with pytest.raises(openai.APIStatusError) as caught_oai:
            oai.chat.completions.create(model=f"openai-{attack}", messages=[{"role": "user", "content": "hi"}])
        assert caught_oai.value.status_code == 502
        body = caught_oai.value.body
        message = body["message"]
    assert f"larger than {LIMIT} bytes" in message and "max_response_bytes" in message
    assert time.monotonic() - started < 10
    assert _peak_rss(gw) - peak < 64 * MIB  # the upstream sent (or inflated to) 384 MiB


@pytest.mark.parametrize(("provider", "attack"), [
    *((p, a) for a in ("sse-no-blank-lines", "sse-endless-line") for p in ("anthropic", "openai")),
    ("renamed", "sse-endless-first-event"),
])
def test_stream_event_without_end_is_cut_off(gw: Gateway, provider: str, attack: str) -> None:
    peak = _peak_rss(gw)
    started = time.monotonic()
    body = {"model": f"{provider}-{attack}", "max_tokens": 16, "stream": True,
            "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": gw.key, "anthropic-version": "2023-06-01"}
    received = bytearray()
    with httpx.stream("POST", gw.base_url + "/v1/messages", json=body, headers=headers, timeout=60) as resp:
        for chunk in resp.iter_bytes():
            received += chunk
            assert len(received) < 8 * LIMIT, "the gateway kept relaying an event that never ends"
    assert time.monotonic() - started < 10
    if resp.status_code == 200:  # the stream had started: it ends with an error event
        last = bytes(received).rstrip(b"\n").rsplit(b"\n\n", 1)[-1]
        assert last.startswith(b"event: error\ndata: "), last[:200]
        error = orjson.loads(last.split(b"data: ", 1)[1])["error"]
    else:
        assert resp.status_code == 502
        error = orjson.loads(received)["error"]
    assert error["type"] == "api_error"
    assert f"longer than {LIMIT} bytes" in error["message"], error
    assert _peak_rss(gw) - peak < 64 * MIB


# ---------------------------------------------------------------------------------------------
# The pure parts: linear time on input without blank lines or line ends.


def test_stream_tap_is_linear_without_blank_lines() -> None:
    tap = StreamTap()
    line = b'event: content_block_delta\ndata: {"type":"content_block_delta"}\n'
    chunk = line * (16 * 1024 // len(line))
    started = time.monotonic()
    for _ in range(32 * MIB // len(chunk)):  # 32 MiB in 16 KiB pieces, never a blank line
        tap.feed(chunk)
    assert time.monotonic() - started < 2  # quadratic re-joining took minutes
    # Still reads the events that follow once the stream has a boundary again.
    tap.feed(b'\nevent: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"end_turn"},'
             b'"usage":{"output_tokens":7}}\n\n')
    assert tap.stop_reason == "end_turn" and tap.usage.output_tokens == 7 and tap.at_boundary


def test_stream_tap_reads_a_boundary_split_across_chunks() -> None:
    tap = StreamTap()
    event = (b'event: message_delta\ndata: {"type":"message_delta","delta":{"stop_reason":"max_tokens"},'
             b'"usage":{"output_tokens":3}}\n\n')
    for i in range(len(event)):  # every split point, byte by byte afterwards
        tap = StreamTap()
        tap.feed(event[:i])
        for b in event[i:]:
            tap.feed(bytes([b]))
        assert tap.stop_reason == "max_tokens" and tap.usage.output_tokens == 3 and tap.at_boundary, i


def test_sse_decoder_bounds_lines_and_events() -> None:
    from tollway.wire.sse_decode import SSEDecoder, SSETooLong

    decoder = SSEDecoder(max_event_bytes=LIMIT)
    with pytest.raises(SSETooLong):
        for _ in range(2 * LIMIT // 4096 + 1):
            decoder.feed(b"x" * 4096)  # one line that never ends
    decoder = SSEDecoder(max_event_bytes=LIMIT)
    with pytest.raises(SSETooLong):
        for _ in range(2 * LIMIT // 4096 + 1):
            decoder.feed(b"data: " + b"y" * 4090 + b"\n")  # lines that never make an event
    decoder = SSEDecoder(max_event_bytes=LIMIT)
    events = decoder.feed(b"data: " + b"z" * (LIMIT - 100) + b"\n\n")  # just under: fine
    assert len(events) == 1

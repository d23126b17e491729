"""A minimal, fast Anthropic-compatible upstream for the benchmark.

It answers `POST /v1/messages` with one fixed small Message, or, when the request body has
`"stream": true`, with a realistic SSE event sequence framed exactly as Anthropic frames it.
Every answer is pre-encoded at start-up so the upstream costs as little CPU as possible: on a
2-core machine it shares the cores with the load generator and the gateway, and every cycle it
spends is a cycle the gateway does not get. It runs in its own process (aiohttp on uvloop) so it
never shares an event loop with the code being measured.

    .venv/bin/python bench/upstream.py --port 9100 [--delay-ms 0] [--chunk-interval-ms 0]

`--chunk-interval-ms N` pauses N ms between streamed events (default 0: written back to back), so
a stream lasts about 8 x N ms; bench/compare.py uses it to hold hundreds of streams open at once.
"""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

import orjson
import uvloop
from aiohttp import web

MODEL = "bench-model"
TEXT_PIECES = ["Hello! ", "Tollway is relaying ", "this benchmark ", "answer."]

MESSAGE: dict[str, Any] = {
    "id": "msg_01BenchFixedReply000000",
    "type": "message",
    "role": "assistant",
    "model": MODEL,
    "content": [{"type": "text", "text": "".join(TEXT_PIECES)}],
    "stop_reason": "end_turn",
    "stop_sequence": None,
    "usage": {
        "input_tokens": 52,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 12,
    },
}


def _frame(event: dict[str, Any]) -> bytes:
    """Anthropic's SSE framing: `event: <type>`, compact JSON data, blank line."""
    kind: str = event["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


def _stream_events() -> list[bytes]:
    """The event sequence of a short text answer, one frame per TCP write, as a real stream comes."""
    start = {**MESSAGE, "content": [], "stop_reason": None,
             "usage": {**MESSAGE["usage"], "output_tokens": 1}}
    events: list[dict[str, Any]] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        *({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": piece}}
          for piece in TEXT_PIECES),
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None},
         "usage": {"output_tokens": MESSAGE["usage"]["output_tokens"]}},
        {"type": "message_stop"},
    ]
    return [_frame(e) for e in events]


MESSAGE_BYTES = orjson.dumps(MESSAGE)
STREAM_EVENTS = _stream_events()
BAD_REQUEST = orjson.dumps({
    "type": "error",
    "error": {"type": "invalid_request_error", "message": "request body is not valid JSON"},
})


def make_app(delay_ms: float, chunk_interval_ms: float = 0.0) -> web.Application:
    """The app; `delay_ms` emulates model latency before the first byte of every answer, and
    `chunk_interval_ms` a model that trickles its stream out (the pause between two events)."""
    delay = delay_ms / 1000.0
    interval = chunk_interval_ms / 1000.0

    async def messages(request: web.Request) -> web.StreamResponse:
        try:
            body = orjson.loads(await request.read())
        except orjson.JSONDecodeError:
            return web.Response(body=BAD_REQUEST, status=400, content_type="application/json")
        if delay:
            await asyncio.sleep(delay)
        if not (isinstance(body, dict) and body.get("stream") is True):
            return web.Response(body=MESSAGE_BYTES, content_type="application/json")
        resp = web.StreamResponse(headers={"content-type": "text/event-stream", "cache-control": "no-cache"})
        await resp.prepare(request)
        for i, event in enumerate(STREAM_EVENTS):
            if interval and i:
                await asyncio.sleep(interval)
            await resp.write(event)
        await resp.write_eof()
        return resp

    app = web.Application()
    app.router.add_post("/v1/messages", messages)
    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-ms", type=float, default=0.0, help="pause before answering each request")
    parser.add_argument("--chunk-interval-ms", type=float, default=0.0,
                        help="pause between two events of a streamed answer (default 0: none)")
    parser.add_argument("--backlog", type=int, default=128,
                        help="listen backlog (default 128); raise it when hundreds of clients connect at once")
    args = parser.parse_args()
    # No access log and no banner: both cost CPU per request that the gateway would then lack.
    web.run_app(make_app(args.delay_ms, args.chunk_interval_ms), host=args.host, port=args.port,
                access_log=None, print=None, backlog=args.backlog, loop=uvloop.new_event_loop())


if __name__ == "__main__":
    main()

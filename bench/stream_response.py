"""What a streamed answer costs the gateway before and around its chunks: Starlette's
`StreamingResponse` (under uvicorn's ASGI 2.3, an anyio task group with a disconnect listener)
against Tollway's `RelayResponse` (one asyncio watcher task; tollway/surfaces/common.py).

In-process, no sockets: each answer relays 9 SSE events from a generator to a `send` that does
nothing, with a `receive` that never reports a disconnect. The two take turns, round after round,
and the medians are printed.

    .venv/bin/python bench/stream_response.py
    .venv/bin/python bench/stream_response.py --rounds 7 -n 5000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import time
from collections.abc import AsyncIterator

import uvloop
from starlette.responses import StreamingResponse
from starlette.types import Message

from tollway.surfaces.common import RelayResponse

EVENT = b'event: content_block_delta\ndata: {"type":"content_block_delta","index":0}\n\n'
SCOPE = {"type": "http", "asgi": {"version": "3.0", "spec_version": "2.3"}, "method": "POST", "headers": []}


async def events() -> AsyncIterator[bytes]:
    for _ in range(9):
        yield EVENT


async def per_answer_us(kind: type[StreamingResponse], n: int) -> float:
    never = asyncio.Event()

    async def receive() -> Message:
        await never.wait()
        return {"type": "http.disconnect"}

    async def send(message: Message) -> None:
        return None

    started = time.perf_counter()
    for _ in range(n):
        await kind(events(), media_type="text/event-stream")(SCOPE, receive, send)
    return (time.perf_counter() - started) / n * 1e6


async def main(rounds: int, n: int) -> None:
    results: dict[str, list[float]] = {"StreamingResponse": [], "RelayResponse": []}
    for kind in (StreamingResponse, RelayResponse):
        await per_answer_us(kind, 200)  # warm-up
    for round_no in range(1, rounds + 1):
        for kind in (StreamingResponse, RelayResponse):
            us = await per_answer_us(kind, n)
            results[kind.__name__].append(us)
            print(f"round {round_no}  {kind.__name__:<18} {us:6.1f} µs per answer", flush=True)
    print("\n| response class (9 events, in-process) | µs per answer (median) |\n|---|--:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.1f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("-n", type=int, default=3000, help="answers per measurement (default 3000)")
    args = parser.parse_args()
    uvloop.run(main(args.rounds, args.n))

"""The framework floor for `instructions.py`: the smallest app on Tollway's stack.

`static` answers every POST with a fixed JSON body (Starlette on uvicorn, uvloop, httptools, as
Tollway runs); `proxy` forwards the body once to the upstream with one pooled aiohttp session,
as Tollway does, and relays the answer. Nothing else: no parsing, no governance. What Tollway
counts above `proxy` is Tollway's own work.

    .venv/bin/python bench/floor_app.py PORT static|proxy UPSTREAM_PORT [httptools|one-write]

The last argument picks the server protocol: uvicorn's own (the default) or Tollway's, which
writes each answer's head and body together (tollway/serving.py; compared by one_write.py).
"""

from __future__ import annotations

import sys

import aiohttp
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

FIXED = b'{"id":"msg_floor","type":"message","role":"assistant","content":[]}'


def make_app(mode: str, upstream_port: int) -> Starlette:
    session: list[aiohttp.ClientSession] = []
    url = f"http://127.0.0.1:{upstream_port}/v1/messages"
    headers = {"content-type": "application/json", "x-api-key": "floor", "anthropic-version": "2023-06-01"}

    async def messages(request: Request) -> Response:
        body = await request.body()
        if mode == "static":
            return Response(FIXED, media_type="application/json")
        if not session:
            session.append(aiohttp.ClientSession(skip_auto_headers=("User-Agent",)))
        async with session[0].post(url, data=body, headers=headers) as resp:
            data = await resp.read()
        return Response(data, resp.status, media_type="application/json")

    async def ready(request: Request) -> Response:
        return Response(b"ok")

    return Starlette(routes=[Route("/v1/messages", messages, methods=["POST"]), Route("/ready", ready)])


if __name__ == "__main__":
    port, mode, upstream = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
    protocol = sys.argv[4] if len(sys.argv) > 4 else "httptools"
    http = "tollway.serving:HttpProtocol" if protocol == "one-write" else "httptools"
    uvicorn.run(make_app(mode, upstream), host="127.0.0.1", port=port, loop="uvloop", http=http,
                access_log=False, log_level="warning", server_header=False)

"""What every surface shares: request ids, the header map, bounded body reading, JSON parsing,
and the watch on the client while the gateway waits (`while_connected`, `RelayResponse`).
Error envelopes are in surfaces/envelopes.py, the request runner in surfaces/handler.py."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import Awaitable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tollway.call import Call
from tollway.wire.messages_schema import RequestInvalid
from tollway.wire.nesting import MAX_DEPTH, serialised_within, too_deep
from tollway.wire.refusal import Refusal

JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}


_ID_PREFIX = "req_" + os.urandom(6).hex()
_ID_COUNTER = itertools.count(1)


def new_request_id() -> str:
    """Unique without a syscall per request: a random per-process prefix and a counter."""
    return f"{_ID_PREFIX}{next(_ID_COUNTER):012x}"


def header_map(request: Request) -> dict[str, str]:
    """The request headers as a plain dict, built once: Starlette's Headers scans its list on
    every lookup and raises a KeyError for each absent header, which showed in profiles."""
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in request.scope["headers"]}


def query_string(request: Request) -> str:
    """The raw query string, without building a URL object (measurable on the hot path)."""
    raw: bytes = request.scope.get("query_string", b"")
    return raw.decode("latin-1")


def client_info(request: Request, headers: Mapping[str, str]) -> dict[str, Any]:
    """Who is on the other end, for the audit record: never credentials, bounded in size."""
    return {
        "user_agent": (headers.get("user-agent") or "")[:200] or None,
        "session_id": (headers.get("x-claude-code-session-id") or "")[:100] or None,
        "remote_addr": request.client.host if request.client else None,
    }


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refusing with 413 past `limit` before reading it all when we can.

    A client that disconnects mid-body is a refusal like any other (499 client_closed_request),
    so the admitted call is recorded once and no traceback is logged; the response goes nowhere.
    """
    declared = request.headers.get("content-length")
    try:
        if declared is not None:
            try:
                too_big = int(declared) > limit
            except ValueError:
                raise Refusal(400, "content-length: not a number") from None
            if too_big:
                raise Refusal(413, f"request body is larger than the {limit} byte limit")
            return await request.body()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise Refusal(413, f"request body is larger than the {limit} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)
    except ClientDisconnect:
        raise Refusal(499, "the client closed the connection before sending its whole request",
                           "client_closed_request") from None


def parse_json(raw: bytes, check_depth: bool = True) -> Any:
    """The body parsed once. CHECK_DEPTH False: the dialect checks the nesting itself, with the
    serialisation it makes anyway (`wire_bytes`)."""
    if not raw:
        raise RequestInvalid("request body is empty; expected a JSON object")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestInvalid(f"request body is not valid JSON: {exc}") from None
    if check_depth and isinstance(parsed, dict | list) and too_deep(raw, parsed):  # issue 17 item 9
        raise too_deep_refusal()
    return parsed


def too_deep_refusal() -> RequestInvalid:
    return RequestInvalid(f"request body is nested more than {MAX_DEPTH} levels deep")


def wire_bytes(raw: bytes, body: dict[str, Any], changed: bool) -> bytes:
    """The bytes to forward for BODY, parsed from RAW, once its nesting is checked (wire/nesting.py):
    RAW itself while nothing changed, else BODY serialised once, in the same C pass as the check."""
    if not changed:
        if too_deep(raw, body):
            raise too_deep_refusal()
        return raw
    wire = serialised_within(body, raw=raw)
    if wire is None:
        raise too_deep_refusal()
    return wire


T = TypeVar("T")


async def _watch(receive: Receive, task: asyncio.Task[Any], call: Call | None) -> bool:
    """Wait for the client to disconnect, then cancel TASK (the request's handler). True if it did.

    Once the request body has been read, uvicorn's `receive()` blocks until the connection is
    lost (or the response is sent, but the watch is stopped before that), so this costs one task
    and one pending future per request, no polling. A CALL that is already settling (its
    `finish` started: the upstream has answered) is left alone: what remains is local work, and
    cancelling it midway could leave a limits reservation unsettled.
    """
    try:
        while (await receive())["type"] != "http.disconnect":
            pass
    except Exception:  # a server whose receive() fails gives nothing to watch
        return False
    if call is not None and call.finished:
        return False
    task.cancel()
    return True


def _fired(watcher: asyncio.Task[bool]) -> bool:
    return watcher.done() and not watcher.cancelled() and watcher.result()


async def while_connected(request: Request, work: Awaitable[T], call: Call | None = None) -> T | None:
    """WORK's result, or None when the client disconnected first (WORK was then cancelled).

    Why: a non-streaming request (and a streaming one before the upstream's first byte) would
    otherwise keep waiting for the upstream's whole answer after its client left, holding an
    upstream connection and paying for tokens nobody reads. A watcher task (`_watch`) cancels
    this task when the client goes; the cancellation unwinds the pipeline, whose `finish`
    records the call once as 499 `client_closed_request`, and aiohttp closes the upstream
    connection. The watcher is cancelled synchronously as soon as WORK ends, so its cancel can
    only land inside WORK's awaits, never in what the surface does afterwards. A cancellation
    that is not the watcher's (uvicorn's at the end of the shutdown grace) still propagates:
    `Task.uncancel()` tells the two apart. With None the handler returns any response: uvicorn
    drops it, the connection being gone, and logs nothing.
    """
    task = asyncio.current_task()
    assert task is not None
    watcher = asyncio.get_running_loop().create_task(_watch(request.receive, task, call))
    try:
        result = await work
    except asyncio.CancelledError:
        if _fired(watcher) and task.uncancel() == 0:
            return None
        raise
    finally:
        watcher.cancel()
    if _fired(watcher):  # WORK swallowed the cancellation; the client is gone all the same
        task.uncancel()
        return None
    return result


class RelayResponse(StreamingResponse):
    """A streamed answer that stops, and closes its source, when the client leaves.

    Why not Starlette's `StreamingResponse` as it is: under uvicorn (ASGI spec 2.3, whose `send`
    does not fail once the client is gone) it runs every stream in an anyio task group with a
    second task listening for the disconnect, about 55 µs per stream before its first byte.
    Here one plain asyncio task does the listening (`_watch`, as for `while_connected`) and
    cancels the stream when the client goes; the source generator is then closed, so the relay
    closes the upstream and records the call, exactly as before. A cancellation that is not the
    watcher's (the shutdown grace running out) still propagates.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        task = asyncio.current_task()
        assert task is not None
        watcher = asyncio.get_running_loop().create_task(_watch(receive, task, None))
        try:
            await self.stream_response(send)
        except asyncio.CancelledError:
            if not _fired(watcher) or task.uncancel() > 0:
                raise
            return  # the client left: nobody reads what would follow
        finally:
            watcher.cancel()
            # Closed here whatever happened: a stream cut while its chunk was being sent would
            # otherwise wait for the garbage collector to run the relay's clean-up.
            closer = getattr(self.body_iterator, "aclose", None)
            if closer is not None:
                await closer()
        if _fired(watcher):
            task.uncancel()  # the stream swallowed the watcher's cancellation; the client is gone all the same


def client_left(request_id: str) -> Response:
    """What a handler returns when `while_connected` gave None: nobody will read it."""
    return Response(None, 499, headers={"request-id": request_id})

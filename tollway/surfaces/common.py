"""What every Anthropic-dialect surface shares: request ids, bounded body reading, error
responses in the envelope, the SSE relay with keep-alive pings, and the watch on the client
while the gateway waits for the upstream."""

from __future__ import annotations

import asyncio
import itertools
import os
from collections.abc import AsyncIterator, Awaitable, Mapping
from typing import Any, TypeVar

import orjson
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from tollway.pipeline import Call, GatewayError
from tollway.upstream.base import UpstreamFailure, UpstreamReply
from tollway.wire.errors import anthropic_error, anthropic_error_event, anthropic_type_for
from tollway.wire.messages_schema import RequestInvalid
from tollway.wire.nesting import MAX_DEPTH, too_deep
from tollway.wire.rename import rename_stream_start
from tollway.wire.sse import PING, StreamTap

JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
DEFAULT_RETRY_AFTER = "2"


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


def error_headers(status: int, request_id: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """`request-id` on every error, and `retry-after` wherever a retry makes sense (DECISIONS.md 8),
    whether the error is ours or an upstream's passed through."""
    out = {**(headers or {}), "request-id": request_id}
    if status in (429, 503, 529) and "retry-after" not in out:
        out["retry-after"] = DEFAULT_RETRY_AFTER
    return out


def error_response(
    status: int, message: str, request_id: str, error_type: str | None = None,
    headers: dict[str, str] | None = None,
) -> Response:
    """An Anthropic envelope with the headers `error_headers` gives."""
    out = error_headers(status, request_id, headers)
    body = anthropic_error(error_type or anthropic_type_for(status), message, request_id)
    return Response(body, status, headers=out, media_type=JSON)


def refusal(exc: Exception, request_id: str, call: Call | None = None) -> Response:
    """Render any refusal raised on the way in (ours, the dialect's, or the upstream's)."""
    timing = {"server-timing": call.timing()} if call is not None else {}
    if isinstance(exc, GatewayError):
        return error_response(exc.status, exc.message, request_id, exc.error_type, {**exc.headers, **timing})
    if isinstance(exc, RequestInvalid):
        return error_response(400, str(exc), request_id, headers=timing)
    if isinstance(exc, UpstreamFailure):
        return error_response(exc.status, exc.message, request_id, exc.error_type, timing)
    raise exc


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
                raise GatewayError(400, "content-length: not a number") from None
            if too_big:
                raise GatewayError(413, f"request body is larger than the {limit} byte limit")
            return await request.body()
        chunks: list[bytes] = []
        size = 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise GatewayError(413, f"request body is larger than the {limit} byte limit")
            chunks.append(chunk)
        return b"".join(chunks)
    except ClientDisconnect:
        raise GatewayError(499, "the client closed the connection before sending its whole request",
                           "client_closed_request") from None


def parse_json(raw: bytes) -> Any:
    if not raw:
        raise RequestInvalid("request body is empty; expected a JSON object")
    try:
        parsed = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestInvalid(f"request body is not valid JSON: {exc}") from None
    if isinstance(parsed, dict | list) and too_deep(raw, parsed):  # issue 17 item 9 (wire/nesting.py)
        raise RequestInvalid(f"request body is nested more than {MAX_DEPTH} levels deep")
    return parsed


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


async def relay(reply: UpstreamReply, ping_interval: float, rename_to: str | None = None) -> AsyncIterator[bytes]:
    """Relay an upstream SSE stream unchanged, inserting pings while the upstream is silent.

    A ping goes out only between events, never inside one. An upstream failure after the
    first byte becomes an `event: error` frame and ends the stream (DECISIONS.md 8). When the
    client goes away the generator is closed and the upstream connection with it. With
    `rename_to`, the first event (`message_start`) reports that model id instead.
    """
    read = reply.read
    tap = reply.tap if reply.tap is not None else StreamTap()
    head = bytearray()
    try:
        while True:
            # A timeout scope per chunk is a timer, not a task: cheap enough for every event.
            # Cancelling a pending read is safe (no buffered byte is consumed by it).
            scope = asyncio.timeout(ping_interval)
            try:
                async with scope:
                    chunk = await read()
            except TimeoutError:
                if not scope.expired():
                    raise UpstreamFailure(504, "timeout_error", "the upstream stream stalled") from None
                if tap.at_boundary:
                    yield PING
                continue
            if rename_to is not None:
                # Hold bytes back only until the first event is complete, then rename it once.
                # Linear however the event is split: appended to a bytearray, and only the new
                # bytes (and the one before them) searched for its end (issue 17 item 9).
                seen = len(head)
                head += chunk
                if b"\n\n" not in head[max(0, seen - 1):] and chunk:
                    continue
                chunk, head, rename_to = rename_stream_start(bytes(head), rename_to), bytearray(), None
            if not chunk:
                break
            tap.feed(chunk)
            yield chunk
    except UpstreamFailure as exc:
        tap.error = exc.error_type
        yield (b"" if tap.at_boundary else b"\n\n") + anthropic_error_event(exc.error_type, exc.message)
    finally:
        reply.close()
        await reply.aclose()


# -- The OpenAI dialect (DECISIONS.md 14): `/v1/chat/completions` and `/v1/responses` -------------

# (type, code) of the OpenAI envelope for each status the gateway itself answers. openai-python
# picks its exception class by status alone (401 AuthenticationError, 403 PermissionDeniedError,
# 404 NotFoundError, 429 RateLimitError, ≥500 InternalServerError…), so the type string is for
# people and logs: ours follows DECISIONS.md 5/6 (authentication_error, permission_error), the
# codes are the ones OpenAI sends (invalid_api_key, model_not_found, rate_limit_exceeded,
# insufficient_quota) or Kindo documents (invalid_body, model_access_denied).
OPENAI_ERRORS: dict[int, tuple[str, str | None]] = {
    400: ("invalid_request_error", None),
    401: ("authentication_error", "invalid_api_key"),
    403: ("permission_error", "model_access_denied"),
    404: ("invalid_request_error", "model_not_found"),
    405: ("invalid_request_error", None),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "upstream_error"),
    503: ("server_error", "overloaded"),
    504: ("server_error", "timeout"),
    529: ("server_error", "overloaded"),
}


def openai_error_type(status: int) -> tuple[str, str | None]:
    """(type, default code) for a status in the OpenAI envelope."""
    found = OPENAI_ERRORS.get(status)
    if found is not None:
        return found
    return ("server_error", None) if status >= 500 else ("invalid_request_error", None)


def openai_headers(request_id: str, headers: dict[str, str] | None = None) -> dict[str, str]:
    """`request-id` and `x-request-id` (openai-python reads the latter into `.request_id`)."""
    return {**(headers or {}), "request-id": request_id, "x-request-id": request_id}


def openai_error_response(
    status: int, message: str, request_id: str, *, error_type: str | None = None, code: str | None = None,
    param: str | None = None, headers: dict[str, str] | None = None,
) -> Response:
    """`{"error": {"message", "type", "code", "param"}}` with the error headers of `error_headers`
    plus `x-request-id`. Without `error_type`, the type and code come from `OPENAI_ERRORS`."""
    if error_type is None:
        error_type, default_code = openai_error_type(status)
        code = code if code is not None else default_code
    body = orjson.dumps({"error": {"message": message, "type": error_type, "code": code, "param": param}})
    return Response(body, status, headers=openai_headers(request_id, error_headers(status, request_id, headers)),
                    media_type=JSON)


def openai_refusal(exc: Exception, request_id: str, call: Call | None = None) -> Response:
    """Render a refusal raised on the way in (ours, the body's, or the upstream's) in the OpenAI
    envelope. A refused budget (429 with `x-should-retry: false`) has code `insufficient_quota`,
    as OpenAI's own exhausted quota does."""
    from tollway.wire.openai_schema import ChatInvalid  # the OpenAI dialect's own validation error

    timing = {"server-timing": call.timing()} if call is not None else {}
    if isinstance(exc, ChatInvalid):
        return openai_error_response(400, exc.message, request_id, code="invalid_body", param=exc.param,
                                     headers=timing)
    if isinstance(exc, RequestInvalid):
        return openai_error_response(400, str(exc), request_id, code="invalid_body", headers=timing)
    if isinstance(exc, GatewayError):
        code = "insufficient_quota" if exc.status == 429 and exc.headers.get("x-should-retry") == "false" else None
        param = "model" if exc.status in (403, 404) else None
        return openai_error_response(exc.status, exc.message, request_id, code=code, param=param,
                                     headers={**exc.headers, **timing})
    if isinstance(exc, UpstreamFailure):
        return openai_error_response(exc.status, exc.message, request_id, headers=timing)
    raise exc


# Default `code` of an upstream's error that carries none, by status (both OpenAI routes).
UPSTREAM_CODES = {429: "rate_limit_exceeded", 500: "upstream_error", 502: "upstream_error", 503: "overloaded",
                  504: "timeout", 529: "overloaded"}


def openai_upstream_error(reply: UpstreamReply, request_id: str) -> Response:
    """An upstream's error (an Anthropic envelope from any adapter) in the OpenAI envelope."""
    error: Any = None
    try:
        parsed = orjson.loads(reply.body)
        error = parsed.get("error") if isinstance(parsed, dict) else None
    except orjson.JSONDecodeError:
        pass
    status = reply.status if reply.status >= 400 else 502
    if not isinstance(error, dict) or not isinstance(error.get("message"), str):
        return openai_error_response(status, f"the upstream answered HTTP {reply.status} without an error body",
                                     request_id, headers=reply.headers)
    code = error.get("code")
    param = error.get("param")
    return openai_error_response(
        status, error["message"], request_id,
        code=str(code) if isinstance(code, str | int) else UPSTREAM_CODES.get(status),
        param=param if isinstance(param, str) else None, headers=reply.headers,
    )

"""What every Anthropic-dialect surface shares: request ids, bounded body reading, error
responses in the envelope, and the SSE relay with keep-alive pings."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from tollway.pipeline import Call, GatewayError
from tollway.upstream.base import UpstreamFailure, UpstreamReply
from tollway.wire.errors import anthropic_error, anthropic_error_event, anthropic_type_for
from tollway.wire.messages_schema import RequestInvalid
from tollway.wire.rename import rename_stream_start
from tollway.wire.sse import PING, StreamTap

JSON = "application/json"
SSE_HEADERS = {"cache-control": "no-cache", "x-accel-buffering": "no"}
DEFAULT_RETRY_AFTER = "2"


def new_request_id() -> str:
    return "req_" + os.urandom(12).hex()


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
    """The request body, refusing with 413 past `limit` before reading it all when we can."""
    declared = request.headers.get("content-length")
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


def parse_json(raw: bytes) -> Any:
    if not raw:
        raise RequestInvalid("request body is empty; expected a JSON object")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise RequestInvalid(f"request body is not valid JSON: {exc}") from None


async def relay(reply: UpstreamReply, ping_interval: float, rename_to: str | None = None) -> AsyncIterator[bytes]:
    """Relay an upstream SSE stream unchanged, inserting pings while the upstream is silent.

    A ping goes out only between events, never inside one. An upstream failure after the
    first byte becomes an `event: error` frame and ends the stream (DECISIONS.md 8). When the
    client goes away the generator is closed and the upstream connection with it. With
    `rename_to`, the first event (`message_start`) reports that model id instead.
    """
    read = reply.read
    tap = reply.tap if reply.tap is not None else StreamTap()
    pending: asyncio.Future[bytes] | None = None
    head = b""
    try:
        while True:
            if pending is None:
                pending = asyncio.ensure_future(read())
            done, _ = await asyncio.wait((pending,), timeout=ping_interval)
            if not done:
                if tap.at_boundary:
                    yield PING
                continue
            try:
                chunk = pending.result()
            finally:
                pending = None
            if rename_to is not None:
                # Hold bytes back only until the first event is complete, then rename it once.
                head += chunk
                if b"\n\n" not in head and chunk:
                    continue
                chunk, head, rename_to = rename_stream_start(head, rename_to), b"", None
            if not chunk:
                break
            tap.feed(chunk)
            yield chunk
    except UpstreamFailure as exc:
        tap.error = exc.error_type
        yield (b"" if tap.at_boundary else b"\n\n") + anthropic_error_event(exc.error_type, exc.message)
    finally:
        if pending is not None:
            pending.cancel()
            with contextlib.suppress(BaseException):
                await pending
        reply.close()
        await reply.aclose()

"""The HTTP plumbing every network adapter shares: one pooled session per upstream, the
request with its time-to-first-byte limit, and the mapping of transport failures to
`UpstreamFailure` (502 unreachable or broken off, 504 too slow). One place, so a timeout or an
error rule cannot exist for one provider and be missing for another."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import aiohttp
from yarl import URL

from tollway.config import UpstreamConfig
from tollway.upstream.base import UpstreamFailure

# Upstream response headers worth relaying: they tell the client whether and when to retry.
RELAYED_HEADERS = ("retry-after", "x-should-retry")
# W3C Trace Context: every network adapter forwards the client's, so an external trace connects
# through the gateway; with tracing on, the pipeline replaces them with its own (tollway/tracing.py).
TRACE_HEADERS = ("traceparent", "tracestate")


def new_session(cfg: UpstreamConfig) -> aiohttp.ClientSession:
    """A keep-alive pool with the upstream's connect and between-chunks (idle) timeouts."""
    connector = aiohttp.TCPConnector(limit=cfg.max_connections, ttl_dns_cache=300)
    timeout = aiohttp.ClientTimeout(total=None, connect=cfg.connect_timeout, sock_read=cfg.read_timeout)
    # No cookie jar: the session is shared by every caller of this upstream, so a cookie one
    # answer set would ride along on everybody else's requests (and filtering the jar costs
    # time on each of them).
    return aiohttp.ClientSession(connector=connector, timeout=timeout, auto_decompress=True,
                                 skip_auto_headers=("User-Agent",), cookie_jar=aiohttp.DummyCookieJar())


async def post(session: aiohttp.ClientSession, url: str | URL, data: bytes, headers: Mapping[str, str],
               first_byte_timeout: float) -> aiohttp.ClientResponse:
    """POST and wait for the response headers, within the first-byte limit. A URL parsed once
    (a `yarl.URL`) spares aiohttp parsing the string again on every request.

    Redirects are never followed (aiohttp follows them by default): a 3xx would have the
    gateway re-send the prompt, with the provider's key in its headers, to wherever the
    `Location` points — a server the operator never configured. A provider API does not
    redirect its POST endpoints, so a 3xx is an upstream error (502), like a broken answer."""
    try:
        async with asyncio.timeout(first_byte_timeout):
            resp = await session.post(url, data=data, headers=headers, allow_redirects=False)
    except TimeoutError:
        raise UpstreamFailure(504, "timeout_error", "the upstream did not answer in time") from None
    except aiohttp.ClientError as exc:
        raise UpstreamFailure(502, "api_error", f"the upstream could not be reached ({type(exc).__name__})") \
            from None
    if 300 <= resp.status < 400:
        resp.close()  # never read, never reused: the connection is dropped
        raise UpstreamFailure(502, "api_error", f"the upstream answered with a redirect ({resp.status}); "
                                                "Tollway does not follow redirects from upstreams")
    return resp


async def read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body of a non-streaming answer, at most `limit` bytes after decompression
    (`upstream.max_response_bytes`); the connection goes back to the pool.

    Read piece by piece, never with `resp.read()`: a hostile or broken upstream answering 2 GiB
    (or a gzip bomb that inflates to it) must cost at most `limit` bytes of memory, not the
    whole body. aiohttp inflates incrementally as the body is read, so stopping here also
    stops the decompression. A larger body is a 502 and the connection is dropped."""
    declared = resp.content_length
    try:
        if declared is not None and declared > limit:
            raise _too_large(limit)
        data = bytearray()
        content = resp.content
        while chunk := await content.readany():
            data += chunk
            if len(data) > limit:
                raise _too_large(limit)
        return bytes(data)
    except UpstreamFailure:
        resp.close()  # the rest is never read: drop the connection rather than drain it
        raise
    except TimeoutError:
        raise UpstreamFailure(504, "timeout_error", "the upstream did not finish in time") from None
    except aiohttp.ClientError:
        raise UpstreamFailure(502, "api_error", "the upstream broke off its answer") from None
    finally:
        resp.release()


def _too_large(limit: int) -> UpstreamFailure:
    return UpstreamFailure(502, "api_error", f"the upstream's answer is larger than {limit} bytes "
                                             "(upstream.max_response_bytes)")


async def read_chunk(content: aiohttp.StreamReader) -> bytes:
    """The next chunk of a streamed answer (b"" at its end)."""
    try:
        return await content.readany()
    except TimeoutError:
        raise UpstreamFailure(504, "timeout_error", "the upstream stream stalled") from None
    except aiohttp.ClientError:
        raise UpstreamFailure(502, "api_error", "the upstream stream broke off") from None


def event_too_long(limit: int) -> UpstreamFailure:
    """What a stream whose event (or line) outgrows `upstream.max_event_bytes` ends with."""
    return UpstreamFailure(502, "api_error", f"the upstream sent a stream event longer than {limit} bytes "
                                             "(upstream.max_event_bytes)")


class EventBound:
    """Ends an SSE stream whose current event grows past `limit` bytes without its blank line.

    Why: a stream's bytes are relayed as they come, but the usage tap (and a renamed model's
    first event) must hold an unfinished event until its end; an upstream that never sends the
    blank line would have them hold everything. Counting needs only a scan of each chunk for
    the last event boundary, so it stays linear however the bytes are split. (A boundary split
    across two chunks is not seen: the count is then one event too long, which only matters to
    an event already near the limit.)"""

    __slots__ = ("limit", "pending")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.pending = 0

    def check(self, chunk: bytes) -> bytes:
        lf, crlf = chunk.rfind(b"\n\n"), chunk.rfind(b"\r\n\r\n")
        if lf < 0 and crlf < 0:
            self.pending += len(chunk)
        else:
            self.pending = len(chunk) - max(lf + 2, crlf + 4)
        if self.pending > self.limit:
            raise event_too_long(self.limit)
        return chunk


def relayed(resp: aiohttp.ClientResponse) -> dict[str, str]:
    return {h: resp.headers[h] for h in RELAYED_HEADERS if h in resp.headers}

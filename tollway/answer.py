"""`Answer`: what the pipeline hands a surface, and the stream that ends the call.

The pipeline owns a call from `begin` to `finish`. For a JSON answer it finishes the call before
returning. For a stream it cannot (the answer is still arriving), so it returns an `Answer` whose
`events()` iterator is the only way to read the stream: it relays the upstream's canonical
(Anthropic SSE) bytes, inserts pings while the upstream is silent, taps usage as the bytes go
by, reports the requested model id in the first event when an alias sent another one upstream,
turns an upstream failure after the first byte into an `event: error` frame, and calls `finish`
in its `finally` — when the stream ends, fails, or the client leaves (the surface closes the
iterator). No surface can forget to settle a stream's reservation or write its record, and
nothing is patched onto the upstream's reply.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

from tollway.call import Call
from tollway.upstream.base import UpstreamFailure, UpstreamReply
from tollway.wire.errors import anthropic_error_event
from tollway.wire.rename import rename_stream_start
from tollway.wire.sse import PING, StreamTap, Usage

log = logging.getLogger("tollway.upstream")

Finish = Callable[[Call, int, Usage, "str | None"], Awaitable[None]]
# How a stream the upstream ended without `message_stop` (and without an error) is recorded: an
# upstream failure, not the client's doing (499 is only for a client that left).
CUT_STATUS, CUT_TYPE = 502, "api_error"
CUT_MESSAGE = "the upstream ended the stream before the message was complete"


@dataclass(slots=True)
class Answer:
    """The upstream's answer to a call. `body` for JSON; `events()` for a stream."""

    call: Call
    reply: UpstreamReply
    finish: Finish
    tap: StreamTap = field(default_factory=StreamTap)

    @property
    def status(self) -> int:
        return self.reply.status

    @property
    def streaming(self) -> bool:
        return self.reply.streaming

    @property
    def body(self) -> bytes:
        return self.reply.body

    @property
    def headers(self) -> dict[str, str]:
        return self.reply.headers

    @property
    def content_type(self) -> str:
        return self.reply.content_type

    async def events(self, ping_interval: float) -> AsyncIterator[bytes]:
        """The stream's canonical bytes, ending the call when it ends (module doc).

        A ping goes out only between events, never inside one. When the client goes away the
        surface closes this generator, which closes the upstream connection and records 499."""
        reply, tap, call = self.reply, self.tap, self.call
        read = reply.read
        rename_to = call.requested_model if call.renamed else None
        head = bytearray()
        cut = False
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
                    cut = not tap.saw_stop and not tap.error
                    break
                tap.feed(chunk)
                yield chunk
        except UpstreamFailure as exc:
            if exc.relay:  # a tap's cut-off: the whole events before it still go out
                yield exc.relay
            tap.error = exc.error_type
            log.warning("upstream stream failed", extra={
                "request_id": call.request_id, "model": call.upstream_model, "deployment": call.deployment,
                "error_type": exc.error_type, "status": exc.status, "upstream_request_id": call.upstream_request_id})
            yield (b"" if tap.at_boundary else b"\n\n") + anthropic_error_event(exc.error_type, exc.message)
        finally:
            reply.close()
            await self._end(cut)

    async def _end(self, cut: bool) -> None:
        tap, call = self.tap, self.call
        if cut:
            log.warning("upstream stream cut", extra={
                "request_id": call.request_id, "model": call.upstream_model, "deployment": call.deployment,
                "upstream_request_id": call.upstream_request_id})
            await self.finish(call, CUT_STATUS, tap.final_usage(), CUT_TYPE)
        elif tap.saw_stop or tap.error:
            await self.finish(call, 200, tap.final_usage(), tap.error or None)
        else:  # the client left before the end: 499, with what was produced so far
            await self.finish(call, 499, tap.final_usage(), "stream_incomplete")

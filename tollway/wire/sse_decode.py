"""Incremental server-sent-events decoder for upstream streams. Pure: bytes in, events out.

Used to read OpenAI-compatible upstream streams (`data: {...}` lines ended by `data: [DONE]`),
whose bytes arrive from the socket in arbitrary pieces: an event, a line, even a multi-byte
UTF-8 character may be split across chunks. The decoder follows the WHATWG event-stream rules
that the OpenAI and Anthropic SDKs implement (their `SSEDecoder`s), so it reads whatever those
SDKs would read:

* lines end in `\\n`, `\\r\\n` or a lone `\\r` (a `\\r` at the end of a chunk is held back until
  the next chunk shows whether a `\\n` follows, so `\\r\\n` split across chunks is one ending);
* a blank line dispatches the event; an event with no `data:` line is not dispatched;
* lines starting with `:` are comments (servers use them as keep-alives) and are ignored;
* several `data:` lines in one event are joined with `\\n`;
* one optional space after the `:` of a field is removed; `event`, `data`, `id` and `retry`
  are the fields; others are ignored; a line without `:` is a field with an empty value;
* a UTF-8 byte-order mark at the very start of the stream is skipped.

Lines are decoded only once complete, so a UTF-8 character split across chunks is never cut.

Bounded (issue 17 item 9): a line, or the data of one event, longer than `max_event_bytes`
raises `SSETooLong` instead of being held: a server that never ends its line or its event
would otherwise have the decoder keep everything it sends. The check costs a length sum per
chunk, so a long line in many small pieces stays linear.
"""

from __future__ import annotations

from dataclasses import dataclass

DONE = "[DONE]"
_BOM = b"\xef\xbb\xbf"
# The ceiling `upstream.max_event_bytes` may be raised to, and the bound of decoders that read
# the gateway's own (already bounded) canonical stream.
DEFAULT_MAX_EVENT_BYTES = 64 * 1024 * 1024


class SSETooLong(ValueError):
    """A line or an event's data outgrew the decoder's `max_event_bytes`."""


@dataclass(slots=True, frozen=True)
class SSEEvent:
    """One dispatched event. `event` is None when the server sent no `event:` line (OpenAI's
    Chat Completions streams never do; Anthropic's always do)."""

    event: str | None
    data: str
    id: str | None = None  # the last `id:` seen on the stream, if any

    @property
    def is_done(self) -> bool:
        """True for OpenAI's `data: [DONE]` terminator, which is not JSON and must never be
        relayed into an Anthropic stream (wire-contract §9.5: peers that leaked it broke
        clients). openai-python stops at a data line *beginning* `[DONE]`; so do we."""
        return self.data.startswith(DONE)


class SSEDecoder:
    """Feed raw bytes as they arrive; get back the events completed by them.

    One decoder per stream. Not thread-safe (one stream is read by one task).
    """

    __slots__ = ("_data", "_data_len", "_event", "_last_id", "_pending", "_pending_len", "_started",
                 "max_event_bytes")

    def __init__(self, max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES) -> None:
        self.max_event_bytes = max_event_bytes
        # Bytes of an unfinished line, kept as pieces and joined only once a line ending
        # arrives, so a long line delivered in many small chunks costs linear time.
        self._pending: list[bytes] = []
        self._pending_len = 0
        self._data: list[str] = []
        self._data_len = 0
        self._event: str | None = None
        self._last_id: str | None = None
        self._started = False

    def _take(self, chunk: bytes) -> bytes:
        buf = b"".join((*self._pending, chunk)) if self._pending else chunk
        self._pending = []
        self._pending_len = 0
        if not self._started and buf:
            self._started = True
            if buf.startswith(_BOM):
                buf = buf[len(_BOM) :]
        return buf

    def feed(self, chunk: bytes) -> list[SSEEvent]:
        """Decode `chunk` together with any partial line held from earlier chunks."""
        if b"\n" not in chunk and b"\r" not in chunk:
            if chunk:
                self._pending.append(chunk)  # no line ends here: nothing to decode yet
                self._pending_len += len(chunk)
                if self._pending_len > self.max_event_bytes:
                    raise SSETooLong(f"a line longer than {self.max_event_bytes} bytes")
            return []
        buf = self._take(chunk)
        # A trailing \r may be the first half of \r\n: keep it for the next chunk.
        hold = buf.endswith(b"\r")
        if hold:
            buf = buf[:-1]
        if b"\r" in buf:
            buf = buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        end = buf.rfind(b"\n")
        tail = buf[end + 1 :]
        if tail:
            self._pending.append(tail)
            self._pending_len = len(tail)
            if self._pending_len > self.max_event_bytes:
                raise SSETooLong(f"a line longer than {self.max_event_bytes} bytes")
        if hold:
            self._pending.append(b"\r")
            self._pending_len += 1
        events: list[SSEEvent] = []
        if end >= 0:
            for raw in buf[:end].split(b"\n"):
                self._line(raw, events)
        return events

    def finish(self) -> list[SSEEvent]:
        """End of stream. Dispatches a last event whose blank line never came.

        The event-stream spec discards such an event; we keep it because some OpenAI-compatible
        servers close the connection right after their final `data:` line, and losing the
        trailing usage chunk would lose the bill. Returns [] for a stream that ended cleanly.
        """
        events: list[SSEEvent] = []
        buf = self._take(b"")
        if buf:
            for raw in buf.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n"):
                self._line(raw, events)
        self._line(b"", events)
        return events

    def _line(self, raw: bytes, out: list[SSEEvent]) -> None:
        if len(raw) > self.max_event_bytes:
            raise SSETooLong(f"a line longer than {self.max_event_bytes} bytes")
        if not raw:
            if self._data:
                out.append(SSEEvent(self._event, "\n".join(self._data), self._last_id))
            self._data = []
            self._data_len = 0
            self._event = None
            return
        if raw[0] == 0x3A:  # ":" — a comment / keep-alive
            return
        line = raw.decode("utf-8", errors="replace")
        name, sep, value = line.partition(":")
        if sep and value.startswith(" "):
            value = value[1:]
        if name == "data":
            self._data.append(value)
            self._data_len += len(raw)
            if self._data_len > self.max_event_bytes:
                raise SSETooLong(f"an event longer than {self.max_event_bytes} bytes")
        elif name == "event":
            self._event = value
        elif name == "id" and "\0" not in value:
            self._last_id = value  # persists across events, as the spec's last-event-id does

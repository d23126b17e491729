"""Server-sent events: framing and the usage tap for Anthropic streams. Pure, no I/O.

Passthrough streams are relayed byte for byte; the tap only watches the bytes go by to learn
usage and stop reason from `message_start` and `message_delta` (ARCHITECTURE.md §2), so a
stream is never buffered or re-serialised.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

PING = b'event: ping\ndata: {"type": "ping"}\n\n'


def frame(event: dict[str, Any]) -> bytes:
    """One Anthropic SSE event: `event: <type>` then compact JSON data, blank-line terminated."""
    return b"event: " + event["type"].encode() + b"\ndata: " + orjson.dumps(event) + b"\n\n"


@dataclass(slots=True)
class Usage:
    """Token counts as Anthropic reports them (input excludes cache reads and writes)."""

    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def update(self, usage: Any) -> None:
        if not isinstance(usage, dict):
            return
        for name in ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"):
            value = usage.get(name)
            if isinstance(value, int):
                setattr(self, name, value)


class StreamTap:
    """Watches Anthropic SSE bytes and keeps usage, stop reason and whether the stream ended well.

    Linear in the bytes fed, however they are split (issue 17 item 9): an unfinished event is
    kept as a list of pieces and joined only once its blank line arrives, and each chunk is
    searched for a boundary on its own (plus the one byte before it, for a `\\n\\n` split across
    two chunks), never the whole held tail again. An event held past `MAX_HELD` bytes is
    dropped unread (the tap only needs the small usage events; the upstream adapter ends such
    a stream well before, at `upstream.max_event_bytes`)."""

    __slots__ = ("_held", "_skipping", "_tail", "capture", "capture_limit", "delta_bytes", "error", "model",
                 "saw_delta", "saw_stop", "stop_reason", "usage")

    # Bytes of framing around a text delta's payload; what is left is roughly the text.
    _DELTA_OVERHEAD = 100
    MAX_HELD = 64 * 1024 * 1024

    def __init__(self) -> None:
        self._tail: list[bytes] = []
        self._held = 0
        self._skipping = False  # the held event outgrew MAX_HELD: drop bytes up to its end
        self.delta_bytes = 0
        self.saw_delta = False
        # Set to a bytearray to keep a copy of the stream (payload capture), up to capture_limit.
        self.capture: bytearray | None = None
        self.capture_limit = 0
        self.usage = Usage()
        self.stop_reason: str | None = None
        self.model: str | None = None
        self.saw_stop = False
        self.error: str | None = None

    @property
    def at_boundary(self) -> bool:
        """True between events, where a ping or an error frame can be inserted safely."""
        return not self._tail and not self._skipping

    def feed(self, chunk: bytes) -> None:
        if self.capture is not None and len(self.capture) < self.capture_limit:
            self.capture += chunk[: self.capture_limit - len(self.capture)]
        if not chunk:
            return
        end = chunk.rfind(b"\n\n")
        if end < 0 and chunk[0] == 0x0A and self._tail and self._tail[-1].endswith(b"\n"):
            end = -1  # the blank line straddles the two chunks: "\n" | "\n..."
            found = True
        else:
            found = end >= 0
        if not found:
            self._hold(chunk)
            return
        head = chunk[: end] if end >= 0 else b""
        rest = chunk[end + 2 :] if end >= 0 else chunk[1:]
        if end < 0:  # the held tail ends with the event's last line; drop its trailing "\n"
            self._tail[-1] = self._tail[-1][:-1]
        data = b"".join((*self._tail, head)) if self._tail else head
        skipping = self._skipping
        self._tail, self._held, self._skipping = [], 0, False
        if skipping:  # the first event here is the oversized one: not read
            cut = data.find(b"\n\n")
            data = data[cut + 2 :] if cut >= 0 else b""
        if rest:
            self._hold(rest)
        if not data:
            return
        # Only the few events that carry usage are parsed; deltas are measured, not parsed.
        for raw in data.split(b"\n\n"):
            if raw.startswith(b"event: content_block_delta"):
                self.delta_bytes += max(0, len(raw) - self._DELTA_OVERHEAD)
            elif raw.startswith(b"event: message_start") or raw.startswith(b"event: message_delta"):
                self._read(raw)
            elif raw.startswith(b"event: message_stop"):
                self.saw_stop = True
            elif raw.startswith(b"event: error"):
                self._read(raw)

    def _hold(self, piece: bytes) -> None:
        if self._skipping:
            return
        self._tail.append(piece)
        self._held += len(piece)
        if self._held > self.MAX_HELD:
            self._tail, self._held, self._skipping = [], 0, True

    def _read(self, raw: bytes) -> None:
        pos = raw.find(b"\ndata:")
        if pos < 0:
            return
        try:
            event = orjson.loads(raw[pos + 6 :])
        except orjson.JSONDecodeError:
            return
        kind = event.get("type")
        if kind == "message_start":
            message = event.get("message") or {}
            self.model = message.get("model")
            self.usage.update(message.get("usage"))
        elif kind == "message_delta":
            self.saw_delta = True
            self.usage.update(event.get("usage"))
            delta = event.get("delta") or {}
            if delta.get("stop_reason"):
                self.stop_reason = delta["stop_reason"]
        elif kind == "error":
            self.error = (event.get("error") or {}).get("type", "api_error")

    def final_usage(self) -> Usage:
        """Usage as reported; for a stream cut short before `message_delta`, output tokens are
        estimated from the delta bytes relayed (about 4 bytes per token)."""
        if not self.saw_delta:
            self.usage.output_tokens = max(self.usage.output_tokens, -(-self.delta_bytes // 4))
        return self.usage

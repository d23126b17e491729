"""The AWS event-stream framing (`application/vnd.amazon.eventstream`), both ways. Pure, no I/O.

A message is: total length and headers length (big-endian uint32), the CRC-32 of those 8 bytes,
the headers block, the payload, and the CRC-32 of everything before it. Bedrock frames its
streams so (wire/bedrock_stream.py decodes them) and Tollway's Bedrock ingress answers so
(wire/cloud_ingress.py encodes them).

Why not botocore's `EventStreamBuffer`, which Tollway used first: it is pure Python, copies its
whole buffer on every message (`self._data = self._data[n:]`) and parses the headers value by
value; at 14-26 µs per streamed event it cost more than the rest of the relay together (the plain
SSE tap takes about 2 µs). This reader does the same checks with the same limits, in the same
order, and raises botocore's own exceptions, so what a corrupt stream becomes does not change:

* the prelude CRC, then the length limits (headers at most 128 KiB, payload at most 24 MiB —
  botocore's), then the message CRC, all with `zlib.crc32` (the stdlib's C CRC-32, the
  polynomial the format and botocore use — no checksum is written by hand);
* the headers block parsed by botocore's `EventStreamHeaderParser`; a stream repeats a handful
  of blocks (every Bedrock `chunk` carries the same three headers), so the parsed dicts are
  remembered by their bytes (a small bounded memo) and shared — they are only read;
* frames split anywhere across reads: the unfinished tail is kept in a bytearray that only
  grows by what arrives (linear however the body is cut), and a read of whole frames is parsed
  in place, without being copied into a buffer first.

`tests/test_eventstream.py` holds botocore's parser to be the oracle: every frame encoded here
decodes with it to the same headers and payload, every byte split of a stream decodes here to
what botocore decodes, and a corrupt byte anywhere is refused by both.
"""

from __future__ import annotations

import struct
import zlib
from typing import Any

from botocore.eventstream import (
    ChecksumMismatch,
    EventStreamHeaderParser,
    InvalidHeadersLength,
    InvalidPayloadLength,
    ParserError,
)

PRELUDE = 12  # total length, headers length, prelude CRC
MIN_MESSAGE = PRELUDE + 4  # no headers, no payload, the message CRC
MAX_HEADERS = 128 * 1024  # botocore's limits
MAX_PAYLOAD = 24 * 1024 * 1024
_STRING = 7  # the header value type of a UTF-8 string
_PRELUDE = struct.Struct(">III")
_LENGTHS = struct.Struct(">II")
_UINT32 = struct.Struct(">I")

Headers = dict[str, Any]


class _HeaderMemo:
    """botocore's header parser, its answers remembered by the header bytes (module doc)."""

    __slots__ = ("_parser", "memo")
    LIMIT = 32

    def __init__(self) -> None:
        self._parser = EventStreamHeaderParser()
        self.memo: dict[bytes, Headers] = {}  # read directly by FrameReader's loop

    def parse(self, data: bytes) -> Headers:
        found = self.memo.get(data)
        if found is None:
            found = self._parser.parse(data)
            if len(self.memo) < self.LIMIT:
                self.memo[data] = found
        return found


_HEADERS = _HeaderMemo()  # shared by every stream: the same few header blocks everywhere


class FrameReader:
    """Feed it a body as it arrives; it returns the (headers, payload) of each complete message.

    A corrupt stream sets `error` (botocore's ParserError subclass for what failed) after the
    messages before the corrupt one were returned; from then on nothing more is read."""

    __slots__ = ("error", "tail")

    def __init__(self) -> None:
        # An unfinished message, carried to the next read. Always this one bytearray (grown and
        # cleared in place), so a user may keep a reference and test it without a call.
        self.tail = bytearray()
        self.error: ParserError | None = None

    @property
    def pending(self) -> int:
        """Bytes of an unfinished message held back (0 between messages)."""
        return len(self.tail)

    def feed(self, data: bytes) -> list[tuple[Headers, bytes]]:
        out: list[tuple[Headers, bytes]] = []
        if self.error is not None:
            return out
        try:
            self._read(data, out)
        except ParserError as exc:
            self.error = exc
            self.tail.clear()
        return out

    def _read(self, data: bytes, out: list[tuple[Headers, bytes]]) -> None:
        tail = self.tail
        if tail:
            tail += data
            # Still inside the message: nothing parsed, nothing copied. Its prelude is checked
            # as soon as it is whole, so a corrupt length is refused before it is waited for.
            if len(tail) < PRELUDE or len(tail) < _prelude(tail, 0):
                return
            buf: bytes = bytes(tail)
            tail.clear()
        else:
            buf = data
        pos, end = 0, len(buf)
        memo = _HEADERS.memo
        crc32 = zlib.crc32
        unpack = _PRELUDE.unpack_from
        while end - pos >= PRELUDE:
            total, head_len, prelude_crc = unpack(buf, pos)
            if crc32(buf[pos:pos + 8]) != prelude_crc or head_len > MAX_HEADERS \
                    or not MIN_MESSAGE <= total - head_len <= MIN_MESSAGE + MAX_PAYLOAD:
                _prelude(buf, pos)  # raises the exception botocore would
            if end - pos < total:
                break
            crc_at = pos + total - 4
            computed = crc32(buf[pos:crc_at])
            (message_crc,) = _UINT32.unpack_from(buf, crc_at)
            if computed != message_crc:
                raise ChecksumMismatch(message_crc, computed)
            payload_at = pos + PRELUDE + head_len
            block = buf[pos + PRELUDE:payload_at]
            out.append((memo.get(block) or _HEADERS.parse(block), buf[payload_at:crc_at]))
            pos += total
        if pos < end:
            tail += buf[pos:] if pos else buf


def _prelude(buf: bytes | bytearray, pos: int) -> int:
    """The total length of the message at POS, once its prelude passed botocore's checks (its
    CRC, then the headers and payload limits)."""
    total, head_len, prelude_crc = _PRELUDE.unpack_from(buf, pos)
    computed = zlib.crc32(buf[pos:pos + 8])
    if computed != prelude_crc:
        raise ChecksumMismatch(prelude_crc, computed)
    if head_len > MAX_HEADERS:
        raise InvalidHeadersLength(head_len)
    if total - head_len - MIN_MESSAGE > MAX_PAYLOAD:
        raise InvalidPayloadLength(total - head_len - MIN_MESSAGE)
    if total < MIN_MESSAGE + head_len:
        raise ParserError(f"Message length of {total} is shorter than its {head_len} header bytes allow")
    return int(total)


# ---------------------------------------------------------------------------------------------
# Encoding


def header_block(headers: list[tuple[str, str]]) -> bytes:
    """The headers block of string-valued HEADERS (name length, name, type 7, value length, value).
    Built once per distinct set: the frames of a stream share theirs."""
    out = bytearray()
    for name, value in headers:
        raw_name, raw_value = name.encode(), value.encode()
        out += bytes((len(raw_name),)) + raw_name + bytes((_STRING,)) + struct.pack(">H", len(raw_value)) + raw_value
    return bytes(out)


def encode(head: bytes, payload: bytes) -> bytes:
    """One message with the prebuilt headers block HEAD: two CRC-32 calls (the prelude's, then the
    whole message's, continuing from it over the rest, as the format defines it)."""
    prelude = _LENGTHS.pack(MIN_MESSAGE + len(head) + len(payload), len(head))
    prelude_crc = zlib.crc32(prelude)
    rest = _UINT32.pack(prelude_crc) + head + payload
    return prelude + rest + _UINT32.pack(zlib.crc32(rest, prelude_crc))


# The headers block of every `chunk` event frame, in the order Bedrock writes them: built once,
# compared (decoding) and copied (encoding) as bytes.
CHUNK_HEAD = header_block([(":event-type", "chunk"), (":content-type", "application/json"),
                           (":message-type", "event")])

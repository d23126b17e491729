"""The event-stream framing (tollway/wire/eventstream.py) against botocore's parser as the oracle:
what Tollway encodes botocore decodes to the same headers and payload, byte for byte what an
independent encoder (the Bedrock emulator's) writes; what Tollway decodes equals what botocore
decodes however the body is split; a corrupt byte anywhere is refused by both, with the same
exception; the length limits are botocore's. Also the two users: the Bedrock stream decoder
(every split of a padded stream) and the ingress encoder (every split of the SSE)."""

from __future__ import annotations

import base64
import struct
import uuid
import zlib

import orjson
import pytest
from botocore.eventstream import EventStreamBuffer, ParserError

from tests.bedrock_emulator import chunk_frame, encode_frame, exception_frame, stream_frames
from tests.test_bedrock_stream import EVENTS, sse
from tollway.wire import eventstream
from tollway.wire.bedrock_stream import BedrockStreamDecoder
from tollway.wire.cloud_ingress import SseToEventStream, chunk_message, encode_message

Decoded = list[tuple[dict, bytes]]


def botocore_decode(data: bytes) -> Decoded:
    buffer = EventStreamBuffer()
    buffer.add_data(data)
    return [(m.headers, m.payload) for m in buffer]


def botocore_error(data: bytes) -> str | None:
    """The name of the exception botocore raises on DATA (fed whole), or None."""
    try:
        botocore_decode(data)
    except ParserError as exc:
        return type(exc).__name__
    return None


def ours(pieces: list[bytes]) -> tuple[Decoded, eventstream.FrameReader]:
    reader = eventstream.FrameReader()
    out: Decoded = []
    for piece in pieces:
        out += reader.feed(piece)
    return out, reader


def typed_headers() -> bytes:
    """A headers block with every value type the format has (ours only writes strings; the
    decoder must still read any block, through botocore's header parser)."""
    def name(n: str) -> bytes:
        return bytes((len(n),)) + n.encode()
    return b"".join((
        name("t") + b"\x00", name("f") + b"\x01", name("b") + b"\x02" + struct.pack(">b", -5),
        name("s") + b"\x03" + struct.pack(">h", 300), name("i") + b"\x04" + struct.pack(">i", -70000),
        name("l") + b"\x05" + struct.pack(">q", 2**40), name("a") + b"\x06" + struct.pack(">H", 3) + b"\x00\x01\x02",
        name("str") + b"\x07" + struct.pack(">H", 2) + "é".encode(), name("ts") + b"\x08" + struct.pack(">q", 1700),
        name("u") + b"\x09" + uuid.UUID(int=7).bytes,
    ))


SMALL = b"".join([
    *stream_frames(EVENTS, pad=True),
    eventstream.encode(typed_headers(), b"payload"),
    eventstream.encode(b"", b""),  # no headers, no payload: the smallest message
])
STREAM = SMALL + eventstream.encode(eventstream.header_block([(":event-type", "big")]), bytes(range(256)) * 300) \
    + exception_frame("throttlingException", "slow down")


def test_encoded_frames_are_what_botocore_decodes_and_what_an_independent_encoder_writes() -> None:
    for headers, payload in [([(":event-type", "chunk"), (":content-type", "application/json"),
                               (":message-type", "event")], b'{"bytes":"e30="}'),
                             ([("ü-name", "välue ✓")], b""), ([], b"x" * 70_000)]:
        frame = encode_message(headers, payload)
        assert frame == encode_frame(headers, payload)
        assert botocore_decode(frame) == [(dict(headers), payload)]
    event = b'{"type":"ping"}'
    assert chunk_message(event) == encode_frame(
        [(":event-type", "chunk"), (":content-type", "application/json"), (":message-type", "event")],
        b'{"bytes":"' + base64.b64encode(event) + b'"}')


def test_decoding_equals_botocore_for_every_two_way_split() -> None:
    expected = botocore_decode(STREAM)
    assert len(expected) == len(EVENTS) + 4
    for cut in [*range(len(SMALL) + 1), len(SMALL) + 5_000, len(STREAM) - 10, len(STREAM)]:
        got, reader = ours([STREAM[:cut], STREAM[cut:]])
        assert got == expected and reader.pending == 0 and reader.error is None, cut


def test_decoding_byte_by_byte_and_in_uneven_pieces() -> None:
    expected = botocore_decode(STREAM)
    assert ours([STREAM[i:i + 1] for i in range(len(STREAM))])[0] == expected
    sizes = [1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 4096]
    pieces, pos, i = [], 0, 0
    while pos < len(STREAM):
        pieces.append(STREAM[pos:pos + sizes[i % len(sizes)]])
        pos, i = pos + sizes[i % len(sizes)], i + 1
    got, reader = ours(pieces)
    assert got == expected and reader.pending == 0


def test_an_unfinished_frame_is_held_not_returned() -> None:
    frame = chunk_frame(EVENTS[1])
    got, reader = ours([frame + frame[:-1]])
    assert len(got) == 1 and reader.pending == len(frame) - 1
    assert reader.feed(frame[-1:]) == botocore_decode(frame) and reader.pending == 0


@pytest.mark.parametrize("frame_at", [0, 1])
def test_a_corrupt_byte_anywhere_is_refused_as_botocore_refuses_it(frame_at: int) -> None:
    frames = [chunk_frame(EVENTS[0]), chunk_frame(EVENTS[2], pad="abc")]
    start = len(frames[0]) if frame_at else 0
    body = b"".join(frames)
    for offset in range(start, start + len(frames[frame_at])):
        bad = bytearray(body)
        bad[offset] ^= 0x41
        expected = botocore_error(bytes(bad))
        assert expected is not None, offset
        got, reader = ours([bytes(bad)])
        assert type(reader.error).__name__ == expected, offset
        # The frames before the corrupt one still came out, and nothing after it.
        assert got == botocore_decode(body)[:frame_at], offset
        assert reader.feed(frames[1]) == [], offset


def prelude(total: int, headers: int) -> bytes:
    lengths = struct.pack(">II", total, headers)
    return lengths + struct.pack(">I", zlib.crc32(lengths))


@pytest.mark.parametrize(("total", "headers", "error"), [
    (16 + 128 * 1024 + 1, 128 * 1024 + 1, "InvalidHeadersLength"),
    (16 + 24 * 1024 * 1024 + 1, 0, "InvalidPayloadLength"),
])
def test_length_limits_are_botocores_and_refused_from_the_prelude(total: int, headers: int, error: str) -> None:
    assert botocore_error(prelude(total, headers)) == error
    reader = eventstream.FrameReader()
    assert reader.feed(prelude(total, headers)[:5]) == [] and reader.error is None
    assert reader.feed(prelude(total, headers)[5:]) == []  # refused now, not after 24 MiB arrived
    assert type(reader.error).__name__ == error


def test_a_length_shorter_than_its_headers_is_refused() -> None:
    reader = eventstream.FrameReader()
    reader.feed(prelude(20, 10) + b"\x00" * 8)
    assert isinstance(reader.error, ParserError)


def test_decoder_gives_the_same_sse_for_every_split_of_a_padded_stream() -> None:
    body = b"".join(stream_frames(EVENTS, pad=True))
    for cut in range(len(body) + 1):
        decoder = BedrockStreamDecoder()
        out = decoder.feed(body[:cut]) + decoder.feed(body[cut:]) + decoder.finish()
        assert out == sse(EVENTS), cut


@pytest.mark.parametrize("payload", [
    b'{ "bytes" : "%s" }', b'{"p":"abc","bytes":"%s"}', b'{"bytes":"%s","p":"a-b"}', b'{"bytes":"%s","p":""}',
])
def test_decoder_reads_any_json_shape_of_a_chunk(payload: bytes) -> None:
    event = orjson.dumps(EVENTS[2])
    head = eventstream.header_block([(":event-type", "chunk"), (":content-type", "application/json"),
                                     (":message-type", "event")])
    frame = eventstream.encode(head, payload.replace(b"%s", base64.b64encode(event)))
    assert BedrockStreamDecoder().feed(frame) == b"event: content_block_delta\ndata: " + event + b"\n\n"


def test_a_good_frame_before_a_corrupt_one_in_the_same_read_still_goes_out() -> None:
    bad = bytearray(chunk_frame(EVENTS[1]))
    bad[-6] ^= 0xFF
    decoder = BedrockStreamDecoder()
    out = decoder.feed(chunk_frame(EVENTS[0]) + bytes(bad))
    assert out.startswith(sse(EVENTS[:1]) + b"event: error\n") and b"ChecksumMismatch" in out and decoder.done


def test_ingress_encoder_gives_the_same_frames_for_every_split_of_the_sse() -> None:
    body = sse([*EVENTS[:2], {"type": "ping"}, *EVENTS[2:]])
    whole = SseToEventStream().feed(body)
    assert [orjson.loads(base64.b64decode(orjson.loads(p)["bytes"])) for _, p in botocore_decode(whole)] == [
        *EVENTS[:2], {"type": "ping"}, *EVENTS[2:]]
    for cut in range(len(body) + 1):
        encoder = SseToEventStream()
        assert encoder.feed(body[:cut]) + encoder.feed(body[cut:]) == whole, cut
    encoder = SseToEventStream()
    assert b"".join(encoder.feed(body[i:i + 1]) for i in range(len(body))) == whole


def test_decoder_refuses_a_corrupt_byte_anywhere_in_a_whole_read_as_botocore_does() -> None:
    """The decoder's fused path for whole chunk frames (one per read while a model streams) gives
    way to FrameReader on any failed check: the good frames before still go out, then the error
    naming botocore's exception — for a corrupt byte in each frame, padded or not."""
    frames = [chunk_frame(EVENTS[2]), chunk_frame(EVENTS[2], pad="abc"), chunk_frame(EVENTS[1])]
    body = b"".join(frames)
    for offset in range(len(body)):
        bad = bytearray(body)
        bad[offset] ^= 0x41
        decoder = BedrockStreamDecoder()
        out = decoder.feed(bytes(bad))
        before = sum(1 for f in range(len(frames)) if sum(map(len, frames[:f + 1])) <= offset)
        expected = botocore_error(bytes(bad))
        assert expected is not None, offset
        assert out.startswith(sse([EVENTS[2], EVENTS[2], EVENTS[1]][:before])), offset
        assert out.count(b"event: error\n") == 1 and expected.encode() in out and decoder.done, offset


def test_decoder_gives_one_read_per_frame_the_sse_of_the_whole_body() -> None:
    """Frame by frame (the fused path) and the whole body at once (FrameReader for all but the
    first frames) give the same SSE, padded or not."""
    for pad in (False, True):
        frames = stream_frames(EVENTS, pad=pad)
        decoder = BedrockStreamDecoder()
        assert b"".join(decoder.feed(f) for f in frames) + decoder.finish() == sse(EVENTS)
        assert decoder.events == len(EVENTS) and decoder.saw_stop


def test_ingress_encoder_gives_each_event_alone_the_frame_of_the_general_path() -> None:
    """One whole event per feed (the relay's usual chunk: the text-delta fast path) gives the
    frames the general path gives the whole body, which botocore decodes back to the events —
    also for deltas whose data holds a newline escape, non-ASCII text, or a second data line."""
    events = [*EVENTS, {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": "a\nb"}}]
    pieces = [b"event: " + e["type"].encode() + b"\ndata: " + orjson.dumps(e) + b"\n\n" for e in events]
    pieces.append(b"event: content_block_delta\ndata: {\"a\":1}\ndata: {\"b\":2}\n\n")
    encoder = SseToEventStream()
    one_by_one = b"".join(encoder.feed(p) for p in pieces)
    assert one_by_one == SseToEventStream().feed(b"".join(pieces))
    decoded = [orjson.loads(base64.b64decode(orjson.loads(p)["bytes"])) for _, p in botocore_decode(one_by_one)]
    assert decoded == [*events, {"a": 1}]

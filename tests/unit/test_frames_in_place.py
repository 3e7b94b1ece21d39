"""Big binary frames are read in place: the parser's buffer becomes the message.

A whole (unfragmented, uncompressed) binary frame of 64 KiB or more that spans reads
is read into a bytes object at offset 0, no byte past its end, and that object is
handed over when the frame completes. Everything else takes the copying path.
"""

from __future__ import annotations

import random

import pytest
from kit.refcodec import build_frame, encode_frame

from xyra._core.frames import FrameParser

MASK = b"\x09\x08\x07\x06"


def feed_in_chunks(parser: FrameParser, data: bytes, sizes: list[int]) -> list:
    events: list = []
    pos, i = 0, 0
    while pos < len(data):
        size = sizes[i % len(sizes)]
        events += parser.feed(data[pos : pos + size])
        pos += size
        i += 1
    return events


@pytest.mark.parametrize("sizes", [[1000], [7], [65536], [100_000, 3], [300_000], [15, 1 << 20]])
def test_big_binary_frame_in_pieces_then_a_small_one(sizes: list[int]) -> None:
    parser = FrameParser(max_payload_length=4 << 20)
    payload = random.Random(len(sizes)).randbytes(200_000)
    data = build_frame(2, payload, mask=MASK) + build_frame(1, b"after", mask=MASK)
    assert feed_in_chunks(parser, data, sizes) == [("binary", payload), ("text", "after")]


def test_the_buffer_becomes_the_message() -> None:
    parser = FrameParser(max_payload_length=4 << 20)
    payload = bytes(range(256)) * 1024  # 256 KiB
    frame = build_frame(2, payload, mask=MASK)
    assert parser.feed(frame[:100_000]) == []
    assert parser.capacity > 0
    events = parser.feed(frame[100_000:])
    assert events == [("binary", payload)]
    # Handed over, not copied: the parser holds no buffer any more.
    assert parser.capacity == 0 and parser.buffered == 0
    assert type(events[0][1]) is bytes


def test_back_to_back_big_frames_in_one_feed() -> None:
    parser = FrameParser(max_payload_length=4 << 20)
    a, b = b"a" * 70_000, b"b" * 140_000
    data = build_frame(2, a, mask=MASK) + build_frame(2, b, mask=MASK)
    assert feed_in_chunks(parser, data, [50_000]) == [("binary", a), ("binary", b)]
    assert parser.feed(data) == [("binary", a), ("binary", b)]


@pytest.mark.parametrize("opcode,kind", [(1, "text"), (2, "binary")])
def test_ineligible_frames_take_the_copying_path(opcode: int, kind: str) -> None:
    parser = FrameParser(max_payload_length=4 << 20)
    payload = b"x" * 150_000
    # a big text frame, and a big message in two fragments
    whole = build_frame(opcode, payload, mask=MASK)
    fragments = build_frame(opcode, payload[:90_000], fin=False, mask=MASK) + build_frame(
        0, payload[90_000:], mask=MASK
    )
    value = payload.decode() if kind == "text" else payload
    assert feed_in_chunks(parser, whole, [40_000]) == [(kind, value)]
    assert feed_in_chunks(parser, fragments, [40_000]) == [(kind, value)]


def test_invalid_frame_after_a_big_one_still_fails() -> None:
    parser = FrameParser(max_payload_length=4 << 20)
    payload = b"z" * 80_000
    data = build_frame(2, payload, mask=MASK) + encode_frame(3, b"", mask=MASK)  # reserved
    events = feed_in_chunks(parser, data, [30_000])
    assert events[0] == ("binary", payload)
    assert events[1][:2] == ("error", 1002)


def test_memory_still_follows_what_arrived() -> None:
    parser = FrameParser(max_payload_length=16 << 20)
    frame = build_frame(2, bytes(8 << 20), mask=MASK)
    assert parser.feed(frame[:15]) == []
    assert parser.capacity < 128 * 1024
    assert parser.feed(frame[15:100_000]) == []
    assert parser.capacity <= 2 * 100_000 + 128 * 1024


def test_a_bigger_reused_buffer_is_trimmed_when_taken() -> None:
    # A split text frame leaves a big owned buffer behind for reuse; the binary frame
    # read into it next is handed over trimmed to size (a realloc that may move it: the
    # parser must then point at the new place, which FrameParser checks).
    parser = FrameParser(max_payload_length=4 << 20)
    text = "t" * 300_000
    assert feed_in_chunks(parser, build_frame(1, text.encode(), mask=MASK), [100_000]) == [
        ("text", text)
    ]
    assert parser.capacity >= 300_000
    payload = bytes(range(256)) * 400  # 100 KiB
    frame = build_frame(2, payload, mask=MASK)
    assert parser.feed(frame[:40_000]) == []
    assert parser.feed(frame[40_000:]) == [("binary", payload)]
    assert parser.capacity == 0

"""What the parser holds in memory: bounded by what the peer actually sent."""

from __future__ import annotations

from xyra._core.frames import FrameParser, build_frame

MASK = b"\x01\x02\x03\x04"


def test_a_header_announcing_a_big_frame_does_not_reserve_it() -> None:
    parser = FrameParser(max_payload_length=16 << 20)
    frame = build_frame(2, bytes(8 << 20), mask=MASK)
    assert parser.feed(frame[:15]) == []  # header + 1 payload byte
    assert parser.capacity < 128 * 1024  # not 8 MiB


def test_the_buffer_grows_with_what_arrives_and_is_released_when_idle() -> None:
    parser = FrameParser(max_payload_length=16 << 20)
    payload = bytes(range(256)) * 4096  # 1 MiB
    frame = build_frame(2, payload, mask=MASK)
    fed = 0
    for size in (15, 70_000, 200_000, 300_000):
        assert parser.feed(frame[fed : fed + size]) == []
        fed += size
        assert parser.capacity <= 2 * fed + 128 * 1024
    events = parser.feed(frame[fed:])
    assert events == [("binary", payload)]
    parser.release_input()
    assert parser.capacity == 0

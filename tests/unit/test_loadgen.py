"""The bench load client's frame handling, without sockets.

A small pure-Python encoder below is the oracle for the compiled one; the counter
is fed streams split at every byte boundary, since a read can end anywhere.
"""

from __future__ import annotations

import asyncio
import random
import struct

import pytest

loadgen = pytest.importorskip("xyra.bench._drivers.loadgen")

KEY = b"\x9a\x0b\xc3\x71"


def ref_mask(data: bytes, key: bytes) -> bytes:
    """XOR with the key repeated (as big integers: quick in pure Python)."""
    n = len(data)
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def ref_frame(payload: bytes, opcode: int, key: bytes | None = None, fin: bool = True) -> bytes:
    """RFC 6455 section 5.2, written out plainly."""
    first = (0x80 if fin else 0) | opcode
    mask_bit = 0x80 if key is not None else 0
    n = len(payload)
    if n < 126:
        head = struct.pack("!BB", first, mask_bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", first, mask_bit | 126, n)
    else:
        head = struct.pack("!BBQ", first, mask_bit | 127, n)
    if key is None:
        return head + payload
    return head + key + ref_mask(payload, key)


# Lengths at the edges of the three length forms (7-bit, 16-bit, 64-bit).
LENGTHS = [0, 1, 125, 126, 127, 65535, 65536, 70000]


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("key", [None, KEY])
def test_client_frame_matches_reference(n: int, key: bytes | None) -> None:
    payload = random.Random(n).randbytes(n)
    for opcode in (1, 2):
        assert loadgen.masked_frame(payload, opcode, key) == ref_frame(payload, opcode, key)
    assert loadgen.masked_frame(payload, 2, key, fin=False) == ref_frame(payload, 2, key, fin=False)


@pytest.mark.parametrize("n", LENGTHS)
@pytest.mark.parametrize("key", [None, KEY])
def test_parse_header_all_length_forms(n: int, key: bytes | None) -> None:
    frame = ref_frame(b"z" * n, 2, key)
    size = {0: 2, 1: 2, 125: 2, 126: 4, 127: 4, 65535: 4}.get(n, 10) + (4 if key else 0)
    assert loadgen.parse_header(frame) == (size, n, 2, True, key)
    # Every prefix shorter than the header is "need more bytes".
    for cut in range(size):
        assert loadgen.parse_header(frame[:cut]) is None


def test_parse_header_flags_and_invalid_length() -> None:
    assert loadgen.parse_header(b"\x09\x00") == (2, 0, 9, False, None)
    assert loadgen.parse_header(b"\x8a\x7e\x01\x00") == (4, 256, 10, True, None)
    with pytest.raises(ValueError):
        loadgen.parse_header(b"\x82\x7f\x80" + b"\x00" * 7)


@pytest.mark.parametrize("n", [0, 1, 3, 4, 7, 8, 9, 15, 16, 17, 31, 32, 33, 1000])
def test_prebuilt_frames_are_masked(n: int) -> None:
    payload = bytes(range(256)) * (n // 256 + 1)
    payload = payload[:n]
    frame = loadgen.masked_frame(payload, 1, KEY)
    size, length, opcode, fin, key = loadgen.parse_header(frame)
    assert (length, opcode, fin, key) == (n, 1, True, KEY)
    assert frame[size:] == ref_mask(payload, KEY)
    assert ref_mask(frame[size:], KEY) == payload
    assert loadgen.mask(loadgen.mask(payload, KEY), KEY) == payload
    assert loadgen.mask(payload, KEY) == ref_mask(payload, KEY)


def test_client_frame_rejects_bad_arguments() -> None:
    with pytest.raises(ValueError):
        loadgen.masked_frame(b"x", 16)
    with pytest.raises(ValueError):
        loadgen.masked_frame(b"x", 1, b"abc")


def stream_of(lengths: list[int], key: bytes | None = None) -> bytes:
    return b"".join(ref_frame(b"a" * n, 2, key) for n in lengths)


def count_split(data: bytes, cuts: list[int], **expect: int) -> loadgen.FrameCounter:
    counter = loadgen.FrameCounter(**expect)
    view = memoryview(data)  # slices without copies: this runs once per split point
    total = 0
    start = 0
    for cut in [*cuts, len(data)]:
        total += counter.feed(view[start:cut])
        start = cut
    assert total == counter.messages
    return counter


def test_counts_frames_split_at_every_byte_boundary() -> None:
    lengths = [0, 5, 125, 126, 300, 65535, 65536, 2]
    data = stream_of(lengths)
    for cut in range(len(data) + 1):
        counter = count_split(data, [cut])
        assert counter.messages == len(lengths)
        assert counter.payload_bytes == sum(lengths)


@pytest.mark.parametrize("key", [None, KEY])
def test_counts_frames_fed_one_byte_at_a_time(key: bytes | None) -> None:
    lengths = [0, 1, 32, 125, 126, 127, 200, 70000]
    data = stream_of(lengths, key)
    counter = count_split(data, list(range(1, len(data))))
    assert counter.messages == len(lengths)
    assert counter.frames == len(lengths)


def test_counts_frames_split_at_random_points() -> None:
    rng = random.Random(7)
    lengths = [rng.choice([0, 3, 32, 125, 126, 4000, 65536]) for _ in range(60)]
    data = stream_of(lengths)
    for _ in range(50):
        cuts = sorted(rng.sample(range(1, len(data)), 20))
        assert count_split(data, cuts).messages == len(lengths)


def test_checks_echoed_length_and_opcode() -> None:
    good = ref_frame(b"x" * 32, 1)
    data = good * 3 + ref_frame(b"x" * 31, 1) + ref_frame(b"x" * 32, 2) + good
    counter = count_split(data, [5, 40, 77], expect_length=32, expect_opcode=1)
    assert (counter.messages, counter.mismatched) == (6, 2)


def test_fragmented_message_counts_once_with_its_total_length() -> None:
    data = ref_frame(b"ab", 1, fin=False) + ref_frame(b"cd", 0, fin=False) + ref_frame(b"e", 0)
    for cut in range(len(data) + 1):
        counter = count_split(data, [cut], expect_length=5, expect_opcode=1)
        assert (counter.messages, counter.frames, counter.mismatched) == (1, 3, 0)


@pytest.mark.parametrize("key", [None, KEY])
def test_control_frames_between_data_frames(key: bytes | None) -> None:
    data = (
        ref_frame(b"x" * 10, 1, key)
        + ref_frame(b"hello", 9, key)
        + ref_frame(b"x" * 10, 1, key)
        + ref_frame(b"\x03\xe9bye", 8, key)
    )
    for cut in range(len(data) + 1):
        counter = count_split(data, [cut])
        assert counter.messages == 2
        assert counter.take_flags() == (True, True, False)
        assert counter.ping_payload == b"hello"
        assert counter.close_code == 1001
        assert counter.take_flags() == (False, False, False)


def test_oversized_control_frame_is_an_error() -> None:
    counter = loadgen.FrameCounter()
    counter.feed(b"\x89\x7e\x00\x80" + b"p" * 128)
    assert counter.take_flags()[2]


class FakeTransport:
    """Records writes; what a Connection sees of uvloop."""

    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.closed = True


def deliver(conn: loadgen.Connection, data: bytes, chunk: int) -> None:
    """Feed ``data`` the way uvloop does: get_buffer, copy in, buffer_updated."""
    for i in range(0, len(data), chunk):
        piece = data[i : i + chunk]
        buf = conn.get_buffer(-1)
        buf[: len(piece)] = piece
        conn.buffer_updated(len(piece))


@pytest.mark.parametrize("chunk", [1, 7, 4096])
def test_connection_handshake_and_pipelined_echo(chunk: int) -> None:
    loop = asyncio.new_event_loop()
    try:
        stats = loadgen.Stats()
        frame = loadgen.masked_frame(b"x" * 32, 1, KEY)
        conn = loadgen.Connection(
            loop,
            stats,
            path=b"/",
            frame=frame,
            window=4,
            mask_key=KEY,
            expect_length=32,
            expect_opcode=1,
        )
        tr = FakeTransport()
        conn.connection_made(tr)
        assert tr.writes[0].startswith(b"GET / HTTP/1.1\r\n")
        assert b"Sec-WebSocket-Key: " + loadgen.HANDSHAKE_KEY in tr.writes[0]
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: " + loadgen.HANDSHAKE_ACCEPT + b"\r\n\r\n"
        )
        reply = ref_frame(b"x" * 32, 1)
        # The first replies may arrive in the same read as the 101 response.
        deliver(conn, response + reply, chunk)
        assert conn.opened.done() and conn.is_open
        assert conn.received == 1 and stats.messages == 1
        conn.start()
        assert tr.writes[-1] == frame * 4 and conn.sent == 4
        tr.writes.clear()
        deliver(conn, reply * 3, len(reply) * 3)
        # One write for the whole read batch: three replies, three new messages.
        assert tr.writes == [frame * 3] and conn.sent == 7 and conn.received == 4
        conn.stop()
        deliver(conn, reply * 3, chunk)
        assert conn.in_flight == 0 and tr.writes == [frame * 3]
        assert conn.parser.mismatched == 0
    finally:
        loop.close()


def test_connection_rejected_upgrade_fails_opened() -> None:
    loop = asyncio.new_event_loop()
    try:
        conn = loadgen.Connection(loop, loadgen.Stats(), path=b"/nope")
        tr = FakeTransport()
        conn.connection_made(tr)
        deliver(conn, b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n", 4096)
        assert tr.closed
        with pytest.raises(ConnectionError, match="404"):
            conn.opened.result()
    finally:
        loop.close()


def test_publisher_paced_by_subscriber_deliveries() -> None:
    loop = asyncio.new_event_loop()
    try:
        stats = loadgen.Stats()
        topic = loadgen.TopicPacer(3, 2)
        frame = loadgen.masked_frame(b"m", 1, KEY)
        pub = loadgen.Connection(
            loop, stats, path=None, role=loadgen.PUBLISHER, frame=frame, window=2
        )
        ptr = FakeTransport()
        pub.connection_made(ptr)  # raw: open at once
        subs = []
        for _ in range(3):
            sub = loadgen.Connection(loop, stats, path=None, role=loadgen.SUBSCRIBER, topic=topic)
            sub.connection_made(FakeTransport())
            subs.append(sub)
        topic.set_publisher(pub)
        topic.start()
        assert topic.published == 2 and ptr.writes == [frame * 2]
        msg = ref_frame(b"m", 1)
        for sub in subs[:2]:
            deliver(sub, msg, 4096)
        assert topic.published == 2  # a message counts as delivered once all 3 have it
        deliver(subs[2], msg, 4096)
        assert topic.published == 3 and topic.in_flight == 2
        topic.stop()
        assert not topic.unstick()
    finally:
        loop.close()

"""The sans-I/O endpoint without sockets: bytes in, frames out, a fake transport and clock.

In the style of websockets' ``tests/test_protocol.py``: each test drives one
``RecordingEndpoint`` (endpoint.pyx) with the peer's masked frames, built with the
reference codec, and decodes what the endpoint wrote with the reference decoder. Time is
the outbox's manual clock: timers run when the test calls ``run_timers(now)``, so no test
waits for anything.
"""

from __future__ import annotations

import logging
from typing import Any

import pytest
from kit.fake_transport import RecordingTransport
from kit.refcodec import RefParser, encode_close_payload, encode_frame

from xyra._core.endpoint import EndpointConfig, Outbox, RecordingEndpoint
from xyra.enums import OpCode, SendStatus

RESPONSE = b"HTTP/1.1 101 Switching Protocols\r\n\r\n"
KEY = b"\x01\x02\x03\x04"


class Peer:
    """One endpoint, its transport and outbox, and helpers to speak to it."""

    def __init__(self, **limits: Any) -> None:
        self.flushes: list[Any] = []
        self.outbox = Outbox(self.flushes.append, logging.getLogger("xyra.test"), 0.0)
        self.outbox.manual_clock = True
        config = EndpointConfig()
        for name, value in limits.items():
            setattr(config, name, value)
        self.config = config
        self.transport = RecordingTransport(strict=True)
        self.ep = RecordingEndpoint(self.transport, self.outbox, config, RESPONSE)
        assert bytes(self.transport.written) == RESPONSE
        del self.transport.written[:]
        self.transport.writes = 0
        self._decoder = RefParser(require_mask=False, allow_rsv1=True, max_payload_length=1 << 30)

    def send(self, opcode: int, payload: bytes = b"", **kw: Any) -> None:
        """The peer's frame, masked as a client sends it."""
        self.ep.receive_data(encode_frame(opcode, payload, mask=KEY, **kw))

    def close_frame(self, code: int | None, reason: bytes = b"") -> None:
        self.send(0x8, encode_close_payload(code, reason))

    def frames(self) -> list[tuple[Any, ...]]:
        """What the endpoint wrote since the last call, decoded."""
        data = bytes(self.transport.written)
        del self.transport.written[:]
        return self._decoder.feed(data)

    def flush(self) -> None:
        """One event-loop iteration's flush, if one was scheduled."""
        if self.flushes:
            self.flushes.clear()
            self.outbox.flush_all()

    def at(self, now: float) -> None:
        """The server's periodic tick at time ``now``."""
        self.outbox.now = now
        self.ep.run_timers(now)

    def events(self) -> list[tuple[Any, ...]]:
        out, self.ep.events = self.ep.events, []
        return out


# -- the close handshake ---------------------------------------------------------------------


def test_server_closes_then_peer_answers() -> None:
    p = Peer()
    p.ep.close(1000, "bye")
    assert p.frames() == [("close", 1000, "bye")]
    assert p.ep.state == "closing"
    assert not p.transport.closed
    p.close_frame(1000, b"bye")
    # The handshake is over: nothing more is written, the server closes TCP first.
    assert p.frames() == []
    assert p.ep.state == "closed"
    assert p.transport.closed and not p.transport.aborted
    p.ep.connection_lost()
    assert p.events() == [("ended", 1000, "bye")]


def test_peer_closes_and_server_echoes_its_code() -> None:
    p = Peer()
    p.close_frame(1001, b"going away")
    assert p.frames() == [("close", 1001, "")]  # the code echoed, no reason
    assert p.ep.state == "closed" and p.transport.closed
    p.ep.connection_lost()
    assert p.events() == [("ended", 1001, "going away")]


def test_peer_closes_without_a_code() -> None:
    p = Peer()
    p.close_frame(None)
    assert p.frames() == [("close", 1005, "")]  # an empty close frame back
    p.ep.connection_lost()
    assert p.events() == [("ended", 1005, "")]


def test_data_after_a_close_frame_is_ignored() -> None:
    p = Peer()
    p.ep.receive_data(
        encode_frame(0x8, encode_close_payload(1000), mask=KEY)
        + encode_frame(0x1, b"late", mask=KEY)
    )
    assert p.events() == []
    assert p.frames() == [("close", 1000, "")]


def test_peer_leaves_without_a_close_frame_is_1006() -> None:
    p = Peer()
    assert p.ep.eof_received() is False
    assert p.ep.state == "closed"
    p.ep.connection_lost()
    assert p.events() == [("ended", 1006, "")]


def test_close_timeout_drops_a_peer_that_never_answers() -> None:
    p = Peer(close_timeout=5.0)
    p.at(10.0)
    p.ep.close(1000, "")
    assert p.frames() == [("close", 1000, "")]
    p.at(14.9)
    assert not p.transport.aborted
    p.at(15.0)
    assert p.transport.aborted and p.ep.state == "closed"


def test_sends_after_close_are_dropped() -> None:
    p = Peer()
    p.ep.close(1000, "")
    assert p.ep.send("late") is SendStatus.DROPPED
    p.frames()
    p.flush()
    assert p.frames() == []


# -- idle timeout and ping ---------------------------------------------------------------------


def test_idle_timeout_closes_with_1001() -> None:
    p = Peer(idle_timeout=120.0, ping_interval=0.0)
    p.at(119.9)
    assert p.frames() == []
    p.at(120.0)
    assert p.frames() == [("close", 1001, "idle timeout")]
    assert p.ep.state == "closing"


def test_ping_after_silence_and_the_pong_keeps_it_open() -> None:
    p = Peer(idle_timeout=120.0, ping_interval=60.0)
    p.at(59.0)
    assert p.frames() == []
    p.at(60.0)
    assert p.frames() == [("ping", b"")]
    p.at(61.0)
    assert p.frames() == []  # one ping outstanding at a time
    p.outbox.now = 62.0
    p.send(0xA, b"")  # the pong: the connection is alive, and the silence restarts
    assert p.events() == [("pong", b"")]
    p.at(121.0)  # 59 s after the pong: nothing yet
    assert p.frames() == []
    p.at(122.0)
    assert p.frames() == [("ping", b"")]
    p.at(182.0)  # no answer at all: the idle timeout closes it
    assert p.frames() == [("close", 1001, "idle timeout")]


def test_any_frame_resets_the_idle_clock() -> None:
    p = Peer(idle_timeout=10.0, ping_interval=0.0)
    for second in range(1, 30):
        p.outbox.now = float(second)
        p.send(0x1, b"tick")
        p.at(float(second))
    assert p.frames() == []
    assert len(p.events()) == 29


def test_peer_ping_is_answered_with_its_payload() -> None:
    p = Peer()
    p.send(0x9, b"hello")
    assert p.frames() == [("pong", b"hello")]
    assert p.events() == [("ping", b"hello")]


# -- messages, fragmentation and size limits -------------------------------------------------


def test_fragmented_message_is_delivered_whole() -> None:
    p = Peer(max_payload_length=10)
    p.send(0x1, b"hello ", fin=False)
    p.send(0x9, b"in-between")  # control frames may interleave
    p.send(0x0, b"you", fin=True)
    assert p.events() == [("ping", b"in-between"), ("message", OpCode.TEXT, "hello you")]


def test_fragments_over_max_payload_length_close_with_1009() -> None:
    p = Peer(max_payload_length=10)
    p.send(0x2, b"123456", fin=False)
    p.send(0x0, b"78901", fin=True)  # 11 bytes in all
    assert p.events() == []
    (close,) = p.frames()
    assert close[:2] == ("close", 1009)
    assert p.transport.eof_written  # half-closed, then waits for the peer's EOF


def test_unmasked_client_frame_is_a_protocol_error() -> None:
    p = Peer()
    p.ep.receive_data(encode_frame(0x1, b"plain"))
    (close,) = p.frames()
    assert close[:2] == ("close", 1002)
    p.ep.connection_lost()
    assert p.events() == [("ended", 1002, close[2])]


def test_invalid_utf8_closes_with_1007() -> None:
    p = Peer()
    p.send(0x1, b"\xff\xfe")
    assert p.frames()[0][:2] == ("close", 1007)


# -- rate limits -------------------------------------------------------------------------------


def test_message_rate_limit_closes_with_1008() -> None:
    p = Peer(max_messages_per_second=2.0)
    p.send(0x1, b"a")
    p.send(0x1, b"b")
    p.send(0x1, b"c")  # the third within the same second
    assert [e[2] for e in p.events()] == ["a", "b"]
    assert p.frames() == [("close", 1008, "message rate limit exceeded")]


def test_message_rate_limit_refills_with_time() -> None:
    p = Peer(max_messages_per_second=2.0, rate_limit_close=False)
    for _ in range(3):
        p.send(0x1, b"x")
    assert len(p.events()) == 2  # the third was dropped, the connection stays
    p.outbox.now = 0.5  # half a second refills one token
    p.send(0x1, b"y")
    p.send(0x1, b"z")
    assert [e[2] for e in p.events()] == ["y"]
    p.outbox.now = 10.0  # a long pause refills at most one second's worth (burst)
    for _ in range(5):
        p.send(0x1, b"w")
    assert len(p.events()) == 2
    assert p.frames() == []


def test_byte_rate_limit() -> None:
    p = Peer(max_bytes_per_second=10.0, rate_limit_close=False)
    p.send(0x2, b"123456")
    p.send(0x2, b"123456")  # 12 bytes in one second: dropped
    p.send(0x2, b"1234")
    assert [len(e[2]) for e in p.events()] == [6, 4]


# -- backpressure and drain --------------------------------------------------------------------


def test_backpressure_thresholds_and_drain() -> None:
    p = Peer(max_backpressure=100)
    assert p.ep.send(b"x" * 60) is SendStatus.SUCCESS
    assert p.ep.queued_bytes == 62
    assert p.ep.send(b"y" * 60) is SendStatus.BACKPRESSURE  # queued, now over the limit
    assert p.ep.is_congested
    assert p.ep.send(b"z") is SendStatus.DROPPED  # over the limit already: dropped
    assert p.ep.dropped == 1
    p.transport.buffered = 0
    p.flush()  # one write for both frames, then the queue is empty: drained
    assert p.transport.writes == 1
    assert [f[1] for f in p.frames()] == [b"x" * 60, b"y" * 60]
    assert p.events() == [("drained",)]
    assert not p.ep.is_congested
    assert p.ep.send(b"again") is SendStatus.SUCCESS


def test_drain_waits_for_the_transport_buffer() -> None:
    p = Peer(max_backpressure=100)
    p.ep.send(b"x" * 150)  # over the limit at once
    p.ep.pause_writing()  # the kernel took part of it: the transport holds the rest
    p.transport.buffered = 150
    p.flush()
    assert p.events() == []  # still 150 bytes buffered: not drained
    assert p.ep.send(b"more") is SendStatus.DROPPED
    p.transport.buffered = 0
    p.ep.resume_writing()
    assert p.events() == [("drained",)]


def test_close_on_backpressure_limit_drops_the_connection() -> None:
    p = Peer(max_backpressure=100, close_on_backpressure_limit=True)
    p.ep.send(b"x" * 150)
    assert p.ep.send(b"y") is SendStatus.DROPPED
    assert p.transport.aborted and p.ep.state == "closed"


def test_pings_from_a_peer_that_does_not_read_stop_at_the_limit() -> None:
    p = Peer(max_backpressure=100)
    p.ep.send(b"x" * 150)
    p.send(0x9, b"p")
    p.flush()
    assert [f[0] for f in p.frames()] == ["binary"]  # no pong queued past the limit


# -- the cork ----------------------------------------------------------------------------------


def test_sends_in_one_iteration_leave_in_one_write() -> None:
    p = Peer()
    for i in range(10):
        p.ep.send(f"m{i}")
    assert p.transport.writes == 0 and len(p.flushes) == 1  # one flush scheduled
    p.flush()
    assert p.transport.writes == 1
    assert [f[1] for f in p.frames()] == [f"m{i}" for i in range(10)]


def test_replies_to_a_read_batch_leave_in_one_write() -> None:
    p = Peer()
    batch = b"".join(encode_frame(0x9, bytes([i]), mask=KEY) for i in range(5))
    p.ep.receive_data(batch)
    assert p.transport.writes == 1  # the pongs, flushed at the end of the read
    assert [f[1] for f in p.frames()] == [bytes([i]) for i in range(5)]
    assert p.flushes == []


@pytest.mark.parametrize("bad", [123, 1.5, None, [104, 105], {"a": 1}, object()])
def test_only_str_and_bytes_like_are_messages(bad: object) -> None:
    p = Peer()
    with pytest.raises(TypeError, match="message must be str or bytes-like, not "):
        p.ep.send(bad)
    p.flush()
    assert p.frames() == []


@pytest.mark.parametrize("good", ["hé", b"\x00\x01", bytearray(b"ab"), memoryview(b"cd")])
def test_str_and_bytes_like_are_sent(good: Any) -> None:
    p = Peer()
    assert p.ep.send(good) is SendStatus.SUCCESS
    p.flush()
    ((kind, payload),) = p.frames()
    assert kind == ("text" if isinstance(good, str) else "binary")
    assert payload == (good if isinstance(good, str) else bytes(good))

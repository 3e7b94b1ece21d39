"""The core's live-stats counters without sockets: one endpoint, a fake transport and clock.

Each test drives a ``RecordingEndpoint`` (the sans-I/O entry point, as in test_endpoint.py)
and reads ``Outbox.counters()``, the raw counters ``App.stats()`` is built from.
"""

from __future__ import annotations

import logging
from typing import Any

from kit.fake_transport import RecordingTransport
from kit.refcodec import encode_close_payload, encode_frame

from xyra._core.endpoint import LAG_BUCKETS, EndpointConfig, Outbox, RecordingEndpoint
from xyra.enums import OpCode, SendStatus
from xyra.stats import percentile

KEY = b"\x01\x02\x03\x04"


def endpoint(outbox: Outbox | None = None, **limits: Any) -> tuple[RecordingEndpoint, Outbox]:
    outbox = outbox or Outbox(lambda cb: None, logging.getLogger("xyra.test"), 0.0)
    outbox.manual_clock = True
    config = EndpointConfig()
    for name, value in limits.items():
        setattr(config, name, value)
    return RecordingEndpoint(RecordingTransport(), outbox, config), outbox


def peer_sends(ep: RecordingEndpoint, opcode: int, payload: bytes = b"") -> None:
    ep.receive_data(encode_frame(opcode, payload, mask=KEY))


def test_a_new_outbox_counts_nothing() -> None:
    c = endpoint()[1].counters()
    assert c["messages"] == {
        "received": {"text": 0, "binary": 0},
        "sent": {"text": 0, "binary": 0},
    }
    assert set(c["closes"]) == {"1000", "1001", "1006", "1008", "1009", "1011", "other"}
    assert c["handshakes"] == {"accepted": 0, "refused": {}, "timed_out": 0}
    assert c["loop_lag"]["counts"] == [0] * (len(LAG_BUCKETS) + 1)


def test_messages_and_payload_bytes_by_kind() -> None:
    ep, outbox = endpoint()
    peer_sends(ep, 1, b"hello")
    peer_sends(ep, 2, bytes(300))  # a 16-bit length on the wire: the payload is counted
    peer_sends(ep, 9, b"ping")  # control frames are not messages
    ep.send("héllo")  # 6 bytes of UTF-8
    ep.send(b"\x00" * 70_000)
    ep.send(b"p", OpCode.PING)
    c = outbox.counters()
    assert c["messages"] == {"received": {"text": 1, "binary": 1}, "sent": {"text": 1, "binary": 1}}
    assert c["bytes"] == {
        "received": {"text": 5, "binary": 300},
        "sent": {"text": 6, "binary": 70_000},
    }


def test_drops_for_backpressure_count_messages_and_payload_bytes() -> None:
    ep, outbox = endpoint(max_backpressure=100)
    assert ep.send(bytes(90)) == SendStatus.SUCCESS
    assert ep.send(bytes(20)) == SendStatus.BACKPRESSURE
    assert ep.send(bytes(7)) == SendStatus.DROPPED
    assert ep.send("abc") == SendStatus.DROPPED
    c = outbox.counters()
    assert c["backpressure"] == {
        "dropped_messages": 2,
        "dropped_bytes": 10,
        "closed_connections": 0,
    }
    assert c["messages"]["sent"] == {"text": 0, "binary": 2}
    assert c["bytes"]["sent"]["binary"] == 110


def test_a_connection_dropped_for_backpressure_is_counted_once() -> None:
    ep, outbox = endpoint(max_backpressure=10, close_on_backpressure_limit=True)
    ep.send(bytes(20))
    assert ep.send(b"x") == SendStatus.DROPPED  # over the limit: terminated
    assert ep.send(b"y") == SendStatus.DROPPED  # closed already: not a backpressure drop
    ep.connection_lost()
    c = outbox.counters()
    assert c["backpressure"] == {"dropped_messages": 1, "dropped_bytes": 1, "closed_connections": 1}
    assert c["closes"]["1006"] == 1


def test_rate_limit_drops_and_closes() -> None:
    ep, outbox = endpoint(max_messages_per_second=2.0, rate_limit_close=False)
    for _ in range(5):
        peer_sends(ep, 1, b"m")
    outbox.now = 1.0  # a second later: two more allowed
    for _ in range(3):
        peer_sends(ep, 1, b"m")
    assert outbox.counters()["rate_limit"] == {"dropped": 4, "closed": 0}
    assert outbox.counters()["messages"]["received"]["text"] == 8

    strict, outbox = endpoint(max_messages_per_second=1.0)
    peer_sends(strict, 1, b"m")
    peer_sends(strict, 1, b"m")  # closes with 1008
    peer_sends(strict, 1, b"m")  # after the close: ignored, not counted
    strict.connection_lost()
    c = outbox.counters()
    assert c["rate_limit"] == {"dropped": 0, "closed": 1}
    assert c["messages"]["received"]["text"] == 2
    assert c["closes"]["1008"] == 1


def test_closes_by_code() -> None:
    outbox = Outbox(lambda cb: None, logging.getLogger("xyra.test"), 0.0)
    for code in (1000, 1000, 1001, 1011, 4000, 3001, None):
        ep, _ = endpoint(outbox)
        ep.receive_data(encode_frame(8, encode_close_payload(code), mask=KEY))
        ep.connection_lost()
    ep, _ = endpoint(outbox)
    ep.connection_lost()  # no close frame: 1006
    ep.connection_lost()  # reported once
    ep, _ = endpoint(outbox, max_payload_length=10)
    peer_sends(ep, 2, bytes(11))  # 1009
    ep.connection_lost()
    assert outbox.counters()["closes"] == {
        "1000": 2,
        "1001": 1,
        "1006": 1,
        "1008": 0,
        "1009": 1,
        "1011": 1,
        "other": 3,  # 4000, 3001, and 1005 (a close frame without a code)
    }


def test_loop_lag_histogram_and_window() -> None:
    outbox = Outbox(lambda cb: None, logging.getLogger("xyra.test"), 0.0)
    samples = [0.0005, 0.001, 0.002, 0.3, 7.0, -0.001]  # a timer early by jitter counts as 0
    for s in samples:
        outbox.record_lag(s)
    lag = outbox.counters()["loop_lag"]
    # le=0.001 holds 0.0005, 0.001 and the clamped 0; 0.002 <= 0.0025; 0.3 <= 0.5; 7 > 5
    expected = [3, 1, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 1]
    assert lag["counts"] == expected
    assert lag["count"] == 6 and lag["max"] == 7.0
    assert abs(lag["sum"] - (0.0005 + 0.001 + 0.002 + 0.3 + 7.0)) < 1e-9
    assert sorted(lag["recent"]) == sorted([0.0005, 0.001, 0.002, 0.3, 7.0, 0.0])
    for _ in range(1000):
        outbox.record_lag(0.01)
    lag = outbox.counters()["loop_lag"]
    assert len(lag["recent"]) == 512 and set(lag["recent"]) == {0.01}  # the window rolls
    assert lag["count"] == 1006


def test_percentile_is_nearest_rank() -> None:
    values = sorted(float(i) for i in range(1, 101))
    assert percentile(values, 0.5) == 50.0
    assert percentile(values, 0.99) == 99.0
    assert percentile([3.0], 0.99) == 3.0
    assert percentile([], 0.5) == 0.0

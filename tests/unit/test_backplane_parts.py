"""Socket-free parts of the backplanes: the envelope, the bounded queue, the backoff,
the Redis URL options."""

from __future__ import annotations

import pytest

from xyra.backplane import create
from xyra.backplane.base import Backoff, OutQueue
from xyra.backplane.envelope import COMPRESS, HEADER, MAGIC, decode, encode, item


def test_envelope_round_trip_keeps_order_opcode_and_compress_flag() -> None:
    origin = b"12345678"
    env = encode(origin, [item(1, "héllo".encode()), item(2 | COMPRESS, b"\x00\xff"), item(1, b"")])
    assert env[:4] == MAGIC and env[4:HEADER] == origin
    assert decode(env) == [(1, "héllo".encode()), (2 | COMPRESS, b"\x00\xff"), (1, b"")]


@pytest.mark.parametrize("cut", [1, 3, 5, 8])
def test_a_truncated_envelope_is_refused(cut: int) -> None:
    env = encode(b"12345678", [item(1, b"abcd")])
    with pytest.raises(ValueError, match="truncated"):
        decode(env[:-cut])


def test_the_queue_drops_the_oldest_past_its_message_bound() -> None:
    q = OutQueue(max_messages=10, max_bytes=1 << 20)
    for i in range(6):
        q.push(b"w%d" % i, 3)  # 18 messages pushed
    assert q.messages <= 10 and q.dropped == 9
    assert [q.popleft()[0] for _ in range(len(q))] == [b"w3", b"w4", b"w5"]
    assert q.messages == 0 and q.nbytes == 0


def test_the_queue_drops_the_oldest_past_its_byte_bound() -> None:
    q = OutQueue(max_messages=1000, max_bytes=100)
    for _ in range(5):
        q.push(b"x" * 40, 1, commands=2)
    assert q.nbytes == 80 and q.dropped == 3
    assert q.popleft() == (b"x" * 40, 2)


def test_backoff_grows_from_100_ms_to_5_s_with_jitter() -> None:
    b = Backoff()
    delays = [b.next() for _ in range(12)]
    assert all(0.1 <= d <= 5.0 for d in delays)
    assert delays[0] <= 0.1 + 1e-9 and max(delays[-3:]) >= 2.5
    b.reset()
    assert b.next() <= 0.1 + 1e-9


def test_redis_url_options() -> None:
    bp = create("redis://:s3cret@10.1.2.3:6380/2?prefix=chat:&ping_timeout=0.5&queue_messages=7")
    assert (bp.host, bp.port, bp.password, bp.prefix) == ("10.1.2.3", 6380, "s3cret", "chat:")
    assert bp.ping_timeout == 0.5 and bp._queue.max_messages == 7
    assert bp.name == "redis://***@10.1.2.3:6380"  # no password in logs
    assert create("rediss://user:pw@h").ssl is not None  # TLS
    assert create("redis://h", ping_interval=3).ping_interval == 3


@pytest.mark.parametrize(
    "url, error",
    [
        ("nats://h:4222", "unknown backplane"),
        ("redis://h/x", "not a database number"),
        ("redis://h?pingtimeout=1", "unknown Redis backplane option"),
        ("redis://h?prefix=", "prefix must not be empty"),
        ("redis://h?ping_timeout=0", "must be > 0"),
    ],
)
def test_bad_backplane_urls_are_refused(url: str, error: str) -> None:
    with pytest.raises(ValueError, match=error):
        create(url)

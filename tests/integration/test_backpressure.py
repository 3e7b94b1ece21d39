"""Backpressure over real sockets: buffered_amount, SendStatus, dropping, terminating, drain,
and a slow subscriber among a thousand.

A client that "never reads" is a plain socket with a small SO_RCVBUF that completed the
handshake (``raw_connect``), served with a small SO_SNDBUF (``serve(sndbuf=...)``) so the
kernel buffers fill after some KiB and the rest stays in the server's queue.
"""

from __future__ import annotations

import asyncio
import logging
import os
import resource
import struct
from typing import Any

import pytest
from kit import TIMEOUT, NamedApp, errors_logged, recv, upgrade_request
from kit.refcodec import OP_BINARY, encode_frame, wire_length

from xyra import App, SendStatus, WebSocket

KiB = 1024
MiB = 1024 * KiB
DEFAULT_MAX_BACKPRESSURE = 64 * KiB * 16  # what docs/api.md documents
SMALL_SNDBUF = 16 * KiB  # the kernel doubles it
SMALL_RCVBUF = 4 * KiB


frame_size = wire_length  # of a server frame (unmasked) with a payload of this length


def numbered(i: int, size: int) -> bytes:
    """A payload that says which message it is."""
    return struct.pack("!Q", i) + bytes([i % 251]) * (size - 8)


async def next_iteration() -> None:
    """Let the loop run one iteration: the server flushes its corked connections."""
    await asyncio.sleep(0)


def expected_status(buffered_before: int, frame: int, limit: int) -> SendStatus:
    """docs/api.md: DROPPED when the queue is already over the limit, BACKPRESSURE when it is
    over the limit after queuing, SUCCESS otherwise."""
    if buffered_before >= limit:
        return SendStatus.DROPPED
    if buffered_before + frame > limit:
        return SendStatus.BACKPRESSURE
    return SendStatus.SUCCESS


class Tracker(NamedApp):
    """The server side: connections by ``?id=``, close codes, drain calls."""

    def __init__(self, **options: Any) -> None:
        super().__init__({"message": lambda ws, m, op: None, "drain": self._drain}, **options)
        self.drains: list[str] = []
        self.drained = asyncio.Event()

    def _drain(self, ws: WebSocket) -> None:
        self.drains.append(ws.data["name"])
        self.drained.set()


# -- SendStatus and buffered_amount --------------------------------------------------------------


@pytest.mark.parametrize(
    ("limit", "size", "accepted"),
    [
        (64 * KiB, 16 * KiB, 4),  # 3 fit, the 4th goes over
        (None, 64 * KiB, 16),  # the default: 1 MiB = 64 KiB x 16
    ],
)
async def test_send_status_and_buffered_amount_in_one_corked_burst(
    serve: Any, raw_connect: Any, limit: int | None, size: int, accepted: int
) -> None:
    """Within one loop iteration nothing is written: the cork accounting alone decides."""
    options = {} if limit is None else {"max_backpressure": limit}
    t = Tracker(**options)
    server = await serve(t.app)
    raw = await raw_connect(server, "/ws?id=a")
    ws = await t.opened("a")
    limit = limit or DEFAULT_MAX_BACKPRESSURE
    frame = frame_size(size)

    assert ws.buffered_amount == 0 and ws.dropped == 0
    statuses = [ws.send(numbered(i, size)) for i in range(accepted + 2)]
    assert statuses == (
        [SendStatus.SUCCESS] * (accepted - 1)
        + [SendStatus.BACKPRESSURE, SendStatus.DROPPED, SendStatus.DROPPED]
    )
    assert ws.buffered_amount == accepted * frame
    assert ws.dropped == 2
    assert ws.send(b"x") == SendStatus.DROPPED and ws.dropped == 3
    assert ws.send("text too") == SendStatus.DROPPED and ws.dropped == 4

    # the client reads: it gets exactly the accepted messages, intact and in order
    waiter = ws.drain()
    for i in range(accepted):
        assert await raw.recv_frame() == (2, numbered(i, size))
    await asyncio.wait_for(waiter, TIMEOUT)
    assert ws.send("after") == SendStatus.SUCCESS
    assert await raw.recv_frame() == (1, b"after")
    assert ws.dropped == 4


async def test_one_message_larger_than_the_limit_is_sent_with_backpressure(
    serve: Any, raw_connect: Any
) -> None:
    t = Tracker(max_backpressure=64 * KiB)
    server = await serve(t.app)
    raw = await raw_connect(server, "/ws?id=a")
    ws = await t.opened("a")
    big = os.urandom(200 * KiB)
    assert ws.send(big) == SendStatus.BACKPRESSURE  # queued: the queue was empty
    assert ws.buffered_amount == frame_size(len(big))
    assert ws.send(b"small") == SendStatus.DROPPED
    assert await raw.recv_frame() == (2, big)
    await asyncio.wait_for(ws.drain(), TIMEOUT)
    assert ws.send(b"small") == SendStatus.SUCCESS
    assert await raw.recv_frame() == (2, b"small")


async def test_send_status_on_a_client_that_never_reads(serve: Any, raw_connect: Any) -> None:
    """SUCCESS until the queue goes over max_backpressure (BACKPRESSURE), then DROPPED.

    After every send the loop runs once, so the cork is written and the kernel and
    transport buffers fill up; ``buffered_amount`` before each send decides its status.
    """
    limit, size = 64 * KiB, 8 * KiB
    frame = frame_size(size)
    t = Tracker(max_backpressure=limit)
    server = await serve(t.app, sndbuf=SMALL_SNDBUF)
    await raw_connect(server, "/ws?id=slow", rcvbuf=SMALL_RCVBUF)
    ws = await t.opened("slow")

    log: list[tuple[int, int, SendStatus]] = []  # (i, buffered before, status)
    for i in range(2000):  # 16 MB: far more than any buffer
        before = ws.buffered_amount
        status = ws.send(numbered(i, size))
        log.append((i, before, status))
        if status == SendStatus.DROPPED:
            break
        await next_iteration()
    else:
        pytest.fail("16 MB sent to a client that never reads, and nothing was dropped")

    wrong = [
        (i, before, status.name, expected_status(before, frame, limit).name)
        for i, before, status in log
        if status != expected_status(before, frame, limit)
    ]
    assert wrong == [], (
        f"(i, buffered_amount before, status, documented status) with max_backpressure={limit},"
        f" frame={frame}: {wrong[:5]}"
    )
    statuses = [s for _, _, s in log]
    assert statuses[-2:] == [SendStatus.BACKPRESSURE, SendStatus.DROPPED]
    assert set(statuses[:-2]) == {SendStatus.SUCCESS}

    # over the limit: everything is dropped and counted, nothing more is queued
    held = ws.buffered_amount
    assert held <= limit + frame
    for i in range(10):
        assert ws.send(numbered(i, size)) == SendStatus.DROPPED
        await next_iteration()
    assert ws.dropped == 11
    assert ws.buffered_amount <= held


@pytest.mark.parametrize("limit", [16 * KiB, 64 * KiB, DEFAULT_MAX_BACKPRESSURE])
async def test_publish_to_a_subscriber_that_never_reads_stays_bounded(
    serve: Any, raw_connect: Any, limit: int
) -> None:
    """The queue held for a subscriber never grows past max_backpressure + one message."""
    size = 4 * KiB
    frame = frame_size(size)
    t = Tracker(max_backpressure=limit)
    server = await serve(t.app, sndbuf=SMALL_SNDBUF)
    await raw_connect(server, "/ws?id=slow&topics=feed", rcvbuf=SMALL_RCVBUF)
    ws = await t.opened("slow")
    over = []
    published = 0
    while ws.dropped < 50:
        assert published < 10_000, "nothing dropped after 40 MB"
        t.app.publish("feed", numbered(published, size))
        published += 1
        await next_iteration()
        if ws.buffered_amount > limit + frame:
            over.append((published, ws.buffered_amount))
    assert over == [], f"(published, buffered_amount) over {limit} + {frame}: {over[:5]}"
    assert not ws.closed


# -- close_on_backpressure_limit -------------------------------------------------------------


@pytest.mark.parametrize("via", ["send", "publish"])
async def test_close_on_backpressure_limit_terminates_the_slow_connection(
    serve: Any, raw_connect: Any, connect: Any, caplog: Any, via: str
) -> None:
    caplog.set_level(logging.INFO)
    size = 8 * KiB
    t = Tracker(max_backpressure=64 * KiB, close_on_backpressure_limit=True)
    server = await serve(t.app, sndbuf=SMALL_SNDBUF)
    slow = await raw_connect(server, "/ws?id=slow&topics=feed", rcvbuf=SMALL_RCVBUF)
    healthy = await connect(server, "/ws?id=ok&topics=feed")
    ws = await t.opened("slow")
    await t.opened("ok")

    statuses = []
    for i in range(2000):
        if ws.closed:
            break
        if via == "send":
            statuses.append(ws.send(numbered(i, size)))
            t.ws["ok"].send(numbered(i, size))
        else:
            t.app.publish("feed", numbered(i, size))
        # lockstep with the healthy client, so only the slow one falls behind
        assert await recv(healthy) == numbered(i, size)
    else:
        pytest.fail("the slow connection was never terminated")

    assert await t.closed("slow") == 1006
    await slow.wait_closed()  # TCP is gone (EOF or reset)
    if via == "send":
        assert statuses[-1] == SendStatus.DROPPED
        assert SendStatus.DROPPED not in statuses[:-1]
    assert ws.send(b"late") == SendStatus.DROPPED
    assert ws.buffered_amount == 0
    assert t.app.num_subscribers("feed") == 1

    # the healthy connection is untouched
    t.app.publish("feed", "still here")
    assert await recv(healthy) == "still here"
    assert not t.ws["ok"].closed
    assert errors_logged(caplog) == []


# -- drain -------------------------------------------------------------------------------------


@pytest.mark.parametrize("via", ["send", "publish"])
async def test_drain_handler_and_await_drain(serve: Any, raw_connect: Any, via: str) -> None:
    limit, size = 64 * KiB, 8 * KiB
    t = Tracker(max_backpressure=limit)
    server = await serve(t.app, sndbuf=SMALL_SNDBUF)
    raw = await raw_connect(server, "/ws?id=slow&topics=feed", rcvbuf=SMALL_RCVBUF)
    ws = await t.opened("slow")

    # not congested: drain() is done at once
    assert ws.drain().done()

    accepted = []
    for i in range(2000):
        if via == "send":
            if ws.send(numbered(i, size)) == SendStatus.DROPPED:
                break
        else:
            # A publish is delivered, or dropped, at the end of the loop iteration.
            dropped = ws.dropped
            t.app.publish("feed", numbered(i, size))
            await next_iteration()
            if ws.dropped > dropped:
                break
        accepted.append(i)
        await next_iteration()
    else:
        pytest.fail("nothing was dropped")

    waiter = asyncio.ensure_future(ws.drain())
    for _ in range(5):
        await next_iteration()
    assert not waiter.done(), "drain() finished while the client still reads nothing"
    assert t.drains == []

    # the client starts reading: everything accepted arrives, in order, and drain fires
    for i in accepted:
        assert await raw.recv_frame() == (2, numbered(i, size))
    await asyncio.wait_for(waiter, TIMEOUT)
    await asyncio.wait_for(t.drained.wait(), TIMEOUT)
    assert t.drains == ["slow"]
    assert ws.buffered_amount < limit
    assert ws.send("again") == SendStatus.SUCCESS
    assert await raw.recv_frame() == (1, b"again")
    assert ws.drain().done()


async def test_drain_waits_while_the_queue_is_still_over_the_limit(
    serve: Any, raw_connect: Any
) -> None:
    """Neither the drain handler nor ``drain()`` may report a drain while the client reads
    nothing and ``buffered_amount`` is over ``max_backpressure``."""
    limit = 16 * KiB
    t = Tracker(max_backpressure=limit)
    server = await serve(t.app, sndbuf=SMALL_SNDBUF)
    await raw_connect(server, "/ws?id=slow", rcvbuf=SMALL_RCVBUF)
    ws = await t.opened("slow")
    # fill the kernel buffers until bytes stay in the server's queue
    for i in range(2000):
        if ws.buffered_amount > 0 or ws.send(numbered(i, 1 * KiB)) != SendStatus.SUCCESS:
            break
        await next_iteration()
    else:
        pytest.fail("2 MB sent and nothing stays queued")
    ws.send(os.urandom(20 * KiB))  # over the limit now, whatever the status says
    waiter = asyncio.ensure_future(ws.drain())
    for _ in range(5):
        await next_iteration()
    assert ws.buffered_amount > limit
    assert t.drains == [], (
        f"drain handler ran with buffered_amount={ws.buffered_amount} > max_backpressure={limit}"
    )
    assert not waiter.done()
    waiter.cancel()


async def test_await_drain_returns_when_the_connection_is_lost(
    serve: Any, raw_connect: Any
) -> None:
    t = Tracker(max_backpressure=16 * KiB)
    server = await serve(t.app)
    raw = await raw_connect(server, "/ws?id=a")
    ws = await t.opened("a")
    assert ws.send(os.urandom(32 * KiB)) == SendStatus.BACKPRESSURE
    waiter = asyncio.ensure_future(ws.drain())
    raw.abort()
    assert await t.closed("a") == 1006
    await asyncio.wait_for(waiter, TIMEOUT)  # it does not hang on a dead connection
    assert ws.buffered_amount == 0
    assert ws.send(b"x") == SendStatus.DROPPED


async def test_async_handler_awaiting_drain_paces_itself(serve: Any, raw_connect: Any) -> None:
    """The documented pattern: send, and on BACKPRESSURE ``await ws.drain()``. Nothing is lost."""
    limit, size, count = 64 * KiB, 8 * KiB, 300
    app = App()
    done: asyncio.Future[list[SendStatus]] = asyncio.get_running_loop().create_future()

    async def producer(ws: WebSocket) -> None:
        statuses = []
        for i in range(count):
            status = ws.send(numbered(i, size))
            statuses.append(status)
            if status != SendStatus.SUCCESS:
                await ws.drain()
        done.set_result(statuses)

    app.websocket(
        "/ws", {"open": producer, "message": lambda ws, m, op: None}, max_backpressure=limit
    )
    server = await serve(app, sndbuf=SMALL_SNDBUF)
    raw = await raw_connect(server, "/ws", rcvbuf=SMALL_RCVBUF)
    for i in range(count):
        assert await raw.recv_frame() == (2, numbered(i, size))
    statuses = await asyncio.wait_for(done, TIMEOUT)
    assert SendStatus.DROPPED not in statuses


# -- a slow subscriber among a thousand --------------------------------------------------------


class StreamClient(asyncio.Protocol):
    """A light subscriber: handshake, then compare the byte stream with the expected one."""

    def __init__(self, name: str, expected: bytes, progress: Progress) -> None:
        self.request = upgrade_request(f"/ws?id={name}&topics=feed")
        self.expected = expected
        self.progress = progress
        self.head = bytearray()
        self.handshaken = asyncio.get_running_loop().create_future()
        self.offset = 0
        self.mismatch_at: int | None = None
        self.counted_for = -1
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        if not self.handshaken.done():
            self.head += data
            end = self.head.find(b"\r\n\r\n")
            if end < 0:
                return
            if not self.head.startswith(b"HTTP/1.1 101"):
                self.handshaken.set_exception(ConnectionError(bytes(self.head)))
                return
            data = bytes(self.head[end + 4 :])
            self.handshaken.set_result(None)
        if data and self.mismatch_at is None:
            if not self.expected.startswith(data, self.offset):
                self.mismatch_at = self.offset
            self.offset += len(data)
        self.progress.update(self)

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.handshaken.done():
            self.handshaken.set_exception(ConnectionError("closed during the handshake"))


class Progress:
    """Fires ``reached`` when every client got the stream up to ``target``."""

    def __init__(self, clients: int) -> None:
        self.clients = clients
        self.target = 0
        self.round = 0
        self.count = 0
        self.reached = asyncio.Event()

    def expect(self, target: int) -> None:
        self.target, self.round, self.count = target, self.round + 1, 0
        self.reached.clear()

    def update(self, client: StreamClient) -> None:
        if client.offset >= self.target and client.counted_for != self.round:
            client.counted_for = self.round
            self.count += 1
            if self.count == self.clients:
                self.reached.set()


def rss_bytes() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("no VmRSS in /proc/self/status")


def raise_fd_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft >= needed:
        return
    if hard != resource.RLIM_INFINITY and hard < needed:
        pytest.skip(f"needs {needed} file descriptors, the hard limit is {hard}")
    resource.setrlimit(resource.RLIMIT_NOFILE, (needed, hard))


async def test_slow_subscriber_among_1000(serve: Any, raw_connect: Any) -> None:
    """999 subscribers that read and one that never reads, on one topic.

    2000 x 1 KiB messages: the 999 get every byte in order, the slow one is held at
    max_backpressure (the default, 1 MiB) and the rest is dropped for it. Before that, the
    memory check: 100 x 1 MiB to another subscriber that never reads; unbounded buffering
    would grow the process by 100 MiB (checked by keeping the frames alive instead: +102
    MiB), the RSS must grow by much less.
    """
    fast_count, messages, size, batch = 999, 2000, 1 * KiB, 40
    raise_fd_limit(2 * (fast_count + 1) + 200)
    loop = asyncio.get_running_loop()
    t = Tracker()  # default max_backpressure
    server = await serve(t.app, sndbuf=SMALL_SNDBUF, backlog=1024)
    await raw_connect(server, "/ws?id=slow&topics=feed", rcvbuf=SMALL_RCVBUF)
    slow = await t.opened("slow")
    await raw_connect(server, "/ws?id=hoarder&topics=big", rcvbuf=SMALL_RCVBUF)
    hoarder = await t.opened("hoarder")

    # First (while the process is lean), another slow subscriber on its own topic: 100 x 1 MiB,
    # each publish a new frame. Unbounded buffering would keep them all (100 MiB); a bounded
    # queue keeps about 1 MiB + one message.
    big = os.urandom(1 * MiB)
    rss_before = rss_bytes()
    for _ in range(100):
        t.app.publish("big", big)
        await next_iteration()
    growth = rss_bytes() - rss_before
    assert hoarder.buffered_amount <= DEFAULT_MAX_BACKPRESSURE + frame_size(len(big))
    assert hoarder.dropped >= 98
    assert growth < 25 * MiB, f"RSS grew by {growth / MiB:.1f} MiB (unbounded: 100 MiB)"

    payloads = [numbered(i, size) for i in range(messages)]
    frame = frame_size(size)
    expected = b"".join(encode_frame(OP_BINARY, p) for p in payloads)
    assert len(expected) == messages * frame

    progress = Progress(fast_count)
    clients: list[StreamClient] = []
    gate = asyncio.Semaphore(100)

    async def open_one(n: int) -> None:
        async with gate:
            client = StreamClient(f"f{n}", expected, progress)
            clients.append(client)
            await loop.create_connection(lambda: client, "127.0.0.1", server.port)
            await asyncio.wait_for(client.handshaken, TIMEOUT)

    try:
        await asyncio.wait_for(
            asyncio.gather(*(open_one(n) for n in range(fast_count))), 3 * TIMEOUT
        )
        assert t.app.num_subscribers("feed") == fast_count + 1

        for start in range(0, messages, batch):
            end = min(start + batch, messages)
            for i in range(start, end):
                assert t.app.publish("feed", payloads[i]) is True
            progress.expect(end * frame)
            await asyncio.wait_for(progress.reached.wait(), TIMEOUT)
            assert slow.buffered_amount <= DEFAULT_MAX_BACKPRESSURE + frame

        assert [c.mismatch_at for c in clients if c.mismatch_at is not None] == []
        assert all(c.offset == len(expected) for c in clients)
        assert all(t.ws[f"f{n}"].dropped == 0 for n in range(fast_count))
        assert slow.dropped > 0, "the slow subscriber never reached max_backpressure"
        assert slow.buffered_amount <= DEFAULT_MAX_BACKPRESSURE + frame
        assert not slow.closed

    finally:
        for client in clients:
            if client.transport is not None:
                client.transport.abort()

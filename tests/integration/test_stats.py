"""Live stats end to end: known traffic over real sockets, then every counter, exactly.

One app serves a route per behaviour (echo, a slow consumer, compression, rate limits,
a refusing upgrade handler); real clients (websockets, and raw sockets where the test
must choose the bytes) drive a known amount of traffic, and ``app.stats()`` must then
equal, key by key, what that traffic adds up to. docs/observability.md is the spec.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import zlib
from typing import Any

import pytest
import websockets
from kit import TIMEOUT, RawClient, recv, upgrade_request, wait_for_condition, ws_url
from kit.refcodec import OP_CLOSE, OP_TEXT, client_frame, encode_close_payload

from xyra import App, SendStatus, WebSocket
from xyra.stats import SCHEMA

KiB = 1024
SLOW_LIMIT = 64 * KiB
DEFLATE = "Sec-WebSocket-Extensions: permessage-deflate\r\n"


def deflate(data: bytes) -> bytes:
    """A permessage-deflate payload as a client sends it (RFC 7692 7.2.1)."""
    c = zlib.compressobj(wbits=-15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def inflate(payload: bytes) -> bytes:
    """A permessage-deflate payload the server sent, decompressed."""
    return zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")


class StatsApp:
    """The app under test: one route per behaviour, and its connections by name."""

    def __init__(self) -> None:
        self.app = App(handshake_timeout=2.0)
        self.ws: dict[str, WebSocket] = {}
        self.opened: dict[str, asyncio.Event] = {}
        app = self.app
        app.websocket(
            "/echo",
            {"open": self._open, "message": self._echo},
            max_payload_length=1000,
        )
        app.websocket("/slow", {"open": self._open}, max_backpressure=SLOW_LIMIT)
        app.websocket(
            "/slowclose",
            {"open": self._open},
            max_backpressure=SLOW_LIMIT,
            close_on_backpressure_limit=True,
        )
        app.websocket(
            "/zip",
            {"open": self._open, "message": self._echo_compressed},
            compression="shared",
        )
        app.websocket(
            "/limited",
            {"open": self._open, "message": self._echo},
            max_messages_per_second=2,
            rate_limit_action="drop",
        )
        app.websocket(
            "/strict",
            {"open": self._open, "message": self._echo},
            max_messages_per_second=2,
            rate_limit_action="close",
        )
        app.websocket("/guarded", {"upgrade": lambda request: False, "message": self._echo})

    def _open(self, ws: WebSocket) -> None:
        query = dict(p.split("=", 1) for p in ws.path.partition("?")[2].split("&") if p)
        name = query.get("id", ws.path)
        for topic in filter(None, query.get("t", "").split(",")):
            ws.subscribe(topic)
        self.ws[name] = ws
        self.opened.setdefault(name, asyncio.Event()).set()

    async def wait_open(self, name: str) -> WebSocket:
        await asyncio.wait_for(self.opened.setdefault(name, asyncio.Event()).wait(), TIMEOUT)
        return self.ws[name]

    def _echo(self, ws: WebSocket, message: Any, opcode: Any) -> None:
        if message == "boom":
            raise RuntimeError("a handler error, on purpose (1011)")
        if message == "away":
            ws.close(1001, "")
            return
        ws.send(message)

    def _echo_compressed(self, ws: WebSocket, message: Any, opcode: Any) -> None:
        ws.send(message, compress=True)


def snapshot_without_clock(snap: dict[str, Any]) -> dict[str, Any]:
    """The snapshot but what depends on the clock or the process (checked on their own)."""
    out = dict(snap)
    for key in ("pid", "time", "started", "uptime_seconds", "loop_lag", "version"):
        out.pop(key)
    return out


async def refused(server: Any, request: bytes) -> int:
    raw = await RawClient.connect(server)
    try:
        await raw.send(request)
        return (await raw.recv_response()).status
    finally:
        raw.close()


async def test_every_counter_of_known_traffic(serve: Any, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.CRITICAL, logger="xyra")  # the 1011 handler error is on purpose
    t = StatsApp()
    server = await serve(t.app, sndbuf=16 * KiB)
    url = ws_url(server)

    # -- N connections, M messages of known sizes, a publish ------------------------------
    clients = [
        await websockets.connect(f"{url}echo?id=c{i}&t=news", open_timeout=TIMEOUT)
        for i in range(3)
    ]
    for c in clients:
        await c.send("hello")
        assert await recv(c) == "hello"
        await c.send(bytes(100))
        assert await recv(c) == bytes(100)
    assert t.app.publish("news", "x" * 10)
    for c in clients:
        assert await recv(c) == "x" * 10

    during = t.app.stats()
    assert during["connections"]["open"] == 3
    assert during["connections"]["routes"]["/echo"] == {"open": 3, "accepted": 3}
    assert during["pubsub"]["topics"] == 1
    assert during["pubsub"]["subscriptions"] == 3
    assert during["pubsub"]["top_topics"] == [
        {"topic": "news", "subscribers": 3, "publishes": 1, "deliveries": 3}
    ]

    # -- every close code -----------------------------------------------------------------
    c0, c1, c2 = clients
    await c0.close()  # 1000
    await c1.close(4000)  # other
    await c2.send("boom")  # the handler raises: 1011
    await asyncio.wait_for(c2.wait_closed(), TIMEOUT)
    c3 = await websockets.connect(f"{url}echo?id=c3", open_timeout=TIMEOUT)
    await c3.send(bytes(1001))  # over max_payload_length: 1009
    await asyncio.wait_for(c3.wait_closed(), TIMEOUT)
    c4 = await websockets.connect(f"{url}echo?id=c4", open_timeout=TIMEOUT)
    await c4.send("away")  # the handler closes with 1001
    await asyncio.wait_for(c4.wait_closed(), TIMEOUT)
    assert [c.close_code for c in (c0, c1, c2, c3, c4)] == [1000, 4000, 1011, 1009, 1001]

    # -- a slow consumer: a corked burst over max_backpressure drops messages -------------
    slow = await RawClient.open(server, "/slow?id=slow", rcvbuf=4 * KiB)
    ws = await t.wait_open("slow")
    statuses = [ws.send(bytes(16 * KiB)) for _ in range(6)]
    assert (
        statuses == [SendStatus.SUCCESS] * 3 + [SendStatus.BACKPRESSURE] + [SendStatus.DROPPED] * 2
    )
    slowclose = await RawClient.open(server, "/slowclose?id=slowclose", rcvbuf=4 * KiB)
    ws = await t.wait_open("slowclose")
    statuses = [ws.send(bytes(16 * KiB)) for _ in range(6)]
    assert (
        statuses == [SendStatus.SUCCESS] * 3 + [SendStatus.BACKPRESSURE] + [SendStatus.DROPPED] * 2
    )  # the first DROPPED terminates the connection; the second finds it closed
    await slowclose.wait_closed()
    slow.abort()  # 1006

    # -- compression: a compressed message in, compressed sends out -----------------------
    zip_client = await RawClient.open(server, "/zip?id=zip&t=zipped", headers=DEFLATE)
    assert b"permessage-deflate" in zip_client.head
    packed_in = deflate(b"a" * 1000)
    await zip_client.send(client_frame(OP_TEXT, packed_in, rsv1=True))
    echo = await zip_client.recv_wire_frame()
    assert echo.rsv1 and inflate(echo.payload) == b"a" * 1000
    assert t.app.publish("zipped", "b" * 500, compress=True)
    published = await zip_client.recv_wire_frame()
    assert published.rsv1
    assert inflate(published.payload) == b"b" * 500
    await zip_client.send(client_frame(OP_CLOSE, encode_close_payload(1000)))
    assert (await zip_client.recv_close())[0] == 1000
    await zip_client.wait_closed()

    # -- rate limits: 2 messages a second, then drop or close ------------------------------
    limited = await RawClient.open(server, "/limited?id=limited")
    await limited.send(b"".join(client_frame(OP_TEXT, b"r") for _ in range(5)))
    assert [await limited.recv_frame() for _ in range(2)] == [(OP_TEXT, b"r")] * 2
    await wait_for_condition(lambda: t.app.stats()["rate_limit"]["dropped"] == 3)
    await limited.send(client_frame(OP_CLOSE, encode_close_payload(1000)))
    assert (await limited.recv_close())[0] == 1000
    strict = await RawClient.open(server, "/strict?id=strict")
    await strict.send(b"".join(client_frame(OP_TEXT, b"s") for _ in range(3)))
    assert [await strict.recv_frame() for _ in range(2)] == [(OP_TEXT, b"s")] * 2
    assert (await strict.recv_close())[0] == 1008
    strict.close()

    # -- refused handshakes, and one that never completes ---------------------------------
    assert await refused(server, upgrade_request("/nope")) == 404
    assert await refused(server, upgrade_request("/nope/either?token=x")) == 404
    assert await refused(server, upgrade_request("/guarded")) == 403
    assert await refused(server, upgrade_request("/echo", version="12")) == 426
    idle = socket.create_connection(("127.0.0.1", server.port))
    try:
        await wait_for_condition(lambda: t.app.stats()["handshakes"]["timed_out"] == 1)
    finally:
        idle.close()

    def settled() -> bool:
        c = t.app.stats()["connections"]
        return c["open"] == 0 and c["handshaking"] == 0

    await wait_for_condition(settled, message=lambda: str(t.app.stats()["connections"]))
    limited.close()

    snap = t.app.stats()
    sent_compressed = len(echo.payload) + len(published.payload)
    assert snapshot_without_clock(snap) == {
        "schema": SCHEMA,
        "worker": 0,
        "connections": {
            "open": 0,
            "handshaking": 0,
            "routes": {
                "/echo": {"open": 0, "accepted": 5},
                "/slow": {"open": 0, "accepted": 1},
                "/slowclose": {"open": 0, "accepted": 1},
                "/zip": {"open": 0, "accepted": 1},
                "/limited": {"open": 0, "accepted": 1},
                "/strict": {"open": 0, "accepted": 1},
                "/guarded": {"open": 0, "accepted": 0},
            },
        },
        "handshakes": {
            "accepted": 10,
            "refused": {"403": 1, "404": 2, "426": 1},
            "timed_out": 1,
        },
        "closes": {
            "1000": 3,  # c0, zip, limited
            "1001": 1,  # c4
            "1006": 2,  # slow (reset), slowclose (dropped by the server)
            "1008": 1,  # strict
            "1009": 1,  # c3
            "1011": 1,  # c2
            "other": 1,  # c1 (4000)
        },
        "messages": {
            # hello x3, boom, away, the compressed one, 5 limited, 3 strict
            "received": {"text": 3 + 1 + 1 + 1 + 5 + 3, "binary": 3},
            # echoes x3, the publish x3, zip echo and publish, 2 limited, 2 strict;
            # 4 queued for each slow consumer
            "sent": {"text": 3 + 3 + 2 + 2 + 2, "binary": 3 + 4 + 4},
        },
        "bytes": {
            "received": {
                "text": 15 + 4 + 4 + len(packed_in) + 5 + 3,
                "binary": 300,
            },
            "sent": {
                "text": 15 + 30 + sent_compressed + 2 + 2,
                "binary": 300 + 2 * 4 * 16 * KiB,
            },
        },
        "backpressure": {
            "dropped_messages": 2 + 1,
            "dropped_bytes": 3 * 16 * KiB,
            "closed_connections": 1,
        },
        "compression": {
            "deflate_in_bytes": 1000 + 500,
            "deflate_out_bytes": sent_compressed,
            "inflate_in_bytes": len(packed_in),
            "inflate_out_bytes": 1000,
        },
        "pubsub": {
            "publishes": 2,
            "publishes_backplane": 0,
            "deliveries": 3 + 1,
            "subscriptions": 0,
            "topics": 0,
            "top_topics": [],
        },
        "rate_limit": {"dropped": 3, "closed": 1},
    }

    lag = snap["loop_lag"]
    assert lag["count"] > 0 and lag["buckets"]["+Inf"] == lag["count"]
    assert list(lag["buckets"].values()) == sorted(lag["buckets"].values())
    assert 0 <= lag["p50"] <= lag["p99"] <= lag["max"]
    assert snap["started"] > 0 and snap["uptime_seconds"] >= 0


async def test_loop_lag_sees_a_blocked_loop(serve: Any, connect: Any) -> None:
    """A handler that blocks the loop for 0.3 s makes the 0.1 s probe at least 0.2 s late."""
    app = App()
    app.websocket("/block", {"message": lambda ws, m, op: (_block(0.3), ws.send("done"))})
    server = await serve(app)
    client = await connect(server, "/block")
    await client.send("go")
    assert await recv(client) == "done"
    await wait_for_condition(lambda: app.stats()["loop_lag"]["max"] >= 0.2)
    lag = app.stats()["loop_lag"]
    assert lag["buckets"]["0.1"] < lag["count"]  # that sample is in a bucket above 0.1 s


def _block(seconds: float) -> None:
    import time

    time.sleep(seconds)  # blocks the event loop: the traffic this test measures


async def test_stats_before_start_has_the_schema() -> None:
    snap = App().stats()
    assert snap["schema"] == SCHEMA
    assert snap["connections"] == {"open": 0, "handshaking": 0, "routes": {}}
    assert snap["messages"]["received"] == {"text": 0, "binary": 0}
    assert snap["loop_lag"]["count"] == 0 and snap["loop_lag"]["p99"] == 0.0


async def test_two_servers_of_one_app_are_summed(serve: Any, connect: Any) -> None:
    app = App()
    app.websocket("/e", {"message": lambda ws, m, op: ws.send(m)})
    a, b = await serve(app), await serve(app)
    for server in (a, b):
        client = await connect(server, "/e")
        await client.send("hi")
        assert await recv(client) == "hi"
    snap = app.stats()
    assert snap["messages"]["received"]["text"] == 2
    assert snap["connections"]["open"] == 2
    assert snap["connections"]["routes"]["/e"] == {"open": 2, "accepted": 2}
    assert snap["bytes"]["sent"]["text"] == 4


async def test_publish_drops_count_the_payload_bytes(serve: Any, raw_connect: Any) -> None:
    """Drops of a publish are counted from the shared frame: its header is not payload,
    whichever of the three length forms it has."""
    t = StatsApp()
    server = await serve(t.app)
    await raw_connect(server, "/slow?id=sub&t=feed")
    await t.wait_open("sub")
    ws = t.ws["sub"]
    sizes = [SLOW_LIMIT, 100, 16 * KiB, 70_000]  # the first fills the queue to its limit
    for size in sizes:  # one corked burst: nothing is written in between
        t.app.publish("feed", bytes(size))
    # A publish is delivered (or dropped) at the end of the loop iteration.
    await wait_for_condition(lambda: ws.dropped == 3)
    snap = t.app.stats()
    assert snap["backpressure"] == {
        "dropped_messages": 3,
        "dropped_bytes": 100 + 16 * KiB + 70_000,
        "closed_connections": 0,
    }
    assert snap["pubsub"]["publishes"] == 4 and snap["pubsub"]["deliveries"] == 1
    assert snap["messages"]["sent"]["binary"] == 1
    assert snap["bytes"]["sent"]["binary"] == SLOW_LIMIT
    assert snap["pubsub"]["top_topics"] == [
        {"topic": "feed", "subscribers": 1, "publishes": 4, "deliveries": 1}
    ]

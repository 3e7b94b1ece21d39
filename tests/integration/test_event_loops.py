"""Who owns the transport after the upgrade, on uvloop and on a plain asyncio loop.

On uvloop the server hands the transport to the ``WebSocket`` (``set_protocol``) so an
open connection carries no HTTP-phase object; a plain asyncio loop keeps the HTTP
protocol, which forwards (it needs ``data_received``). Both must behave the same.
"""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websockets
from kit import TIMEOUT, RawClient, client_frame, upgrade_request, wait_for_condition, ws_url
from kit.refcodec import OP_BINARY, OP_TEXT

from xyra import App
from xyra._core import connection
from xyra._core.connection import WebSocket

UPGRADE = upgrade_request("/echo")


def echo_app(**options: Any) -> tuple[App, list[Any]]:
    app = App(**options)
    events: list[Any] = []
    app.websocket(
        "/echo",
        {
            "open": lambda ws: events.append(("open", ws)),
            "message": lambda ws, msg, op: ws.send(msg, op),
            "close": lambda ws, code, reason: events.append(("close", code)),
        },
    )
    return app, events


async def test_uvloop_hands_the_transport_to_the_websocket(serve: Any, connect: Any) -> None:
    app, events = echo_app()
    server = await serve(app)
    client = await connect(server, "/echo")
    await client.send("hello")
    assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hello"
    ws = events[0][1]
    live = list(server.context.connections)
    # The only live object of this connection is the WebSocket itself: it is the
    # transport's protocol (the HTTP-phase protocol is gone).
    assert live == [ws] and type(ws) is WebSocket
    owners = [type(r).__name__ for r in gc.get_referrers(ws)]
    assert "TCPTransport" in owners, owners
    await client.close()
    await wait_for_condition(lambda: not server.context.connections)
    assert events[-1] == ("close", 1000)


async def test_per_ip_count_follows_the_connection_after_the_upgrade(serve: Any) -> None:
    app, _ = echo_app(max_connections_per_ip=1)
    server = await serve(app)
    url = ws_url(server, "/echo")
    for _ in range(3):  # each close gives the address its slot back
        async with websockets.connect(url, open_timeout=TIMEOUT) as client:
            assert server.context.per_ip == {"127.0.0.1": 1}
            assert await handshake_status(server.port) == 503
            await client.send(b"x")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"x"
        await wait_for_condition(lambda: not server.context.per_ip)


async def handshake_status(port: int) -> int:
    raw = await RawClient.connect(port)
    try:
        await raw.send(UPGRADE)
        return (await raw.recv_response()).status
    finally:
        raw.close()


class PlainLoopServer:
    """An App served on a plain asyncio loop (not uvloop) in its own thread."""

    def __init__(self, app: App) -> None:
        self.loop = asyncio.new_event_loop()
        assert "uvloop" not in type(self.loop).__module__
        self.app = app
        self.ready = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        assert self.ready.wait(TIMEOUT)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(self.app.start(0, "127.0.0.1"))
        self.ready.set()
        self.loop.run_forever()

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(timeout=2.0), self.loop).result(TIMEOUT)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(TIMEOUT)
        self.loop.close()


@pytest.fixture
def plain() -> Iterator[Any]:
    servers: list[PlainLoopServer] = []

    def start(app: App) -> PlainLoopServer:
        servers.append(PlainLoopServer(app))
        return servers[-1]

    yield start
    for s in servers:
        s.stop()


async def test_plain_asyncio_loop_echoes_and_closes(plain: Any) -> None:
    app, events = echo_app(max_connections_per_ip=2)
    served = plain(app)
    url = f"ws://127.0.0.1:{served.server.port}/echo"
    async with websockets.connect(url, open_timeout=TIMEOUT, max_size=None) as client:
        await client.send("text é")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "text é"
        big = bytes(range(256)) * 4096  # 1 MiB: many reads, one message
        await client.send(big)
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == big
        await client.close(4000, "bye")
    await wait_for_condition(lambda: ("close", 4000) in events)
    await wait_for_condition(lambda: not served.server.context.connections)
    assert served.server.context.per_ip == {}


async def test_plain_asyncio_loop_frames_in_the_handshake_packet(plain: Any) -> None:
    app, _ = echo_app()
    served = plain(app)
    raw = await RawClient.connect(served.server.port)
    try:
        await raw.send(UPGRADE + client_frame(OP_TEXT, b"hi"))  # a frame right after the head
        assert (await raw.recv_head()).startswith(b"HTTP/1.1 101")
        assert await raw.recv_frame() == (OP_TEXT, b"hi")
    finally:
        raw.close()


def reader(ws: WebSocket) -> str:
    """Which reader the connection hands uvloop: "own" (a method bound to this connection,
    reading into its own buffer) or "shared" (the loop-wide function and buffer)."""
    get_buffer = ws.get_buffer
    if getattr(get_buffer, "__self__", None) is ws:
        return "own"
    assert get_buffer is connection._read_shared, get_buffer
    return "shared"


async def test_reader_switches_between_shared_and_own_buffers(serve: Any) -> None:
    """A connection holding part of a frame reads into its own buffer, and goes back to the
    loop-wide one as soon as it holds nothing (checked after every echo)."""
    app = App()
    opened: asyncio.Future[WebSocket] = asyncio.get_running_loop().create_future()
    # A short close_timeout makes the server's timer tick every 50 ms: the idle release
    # (after 0.5 s without input) runs during the pause below.
    app.websocket(
        "/echo",
        {"open": opened.set_result, "message": lambda ws, msg, op: ws.send(msg, op)},
        close_timeout=0.2,
    )
    server = await serve(app)
    raw = await RawClient.open(server, "/echo")
    try:
        ws = await asyncio.wait_for(opened, TIMEOUT)
        assert reader(ws) == "shared"
        # 512 KiB: the echo of big and tail together stays under max_backpressure (1 MiB).
        big = bytes(range(256)) * 2048
        first = client_frame(OP_BINARY, big)
        await raw.send(first[:300_000])  # part of a frame: own reader
        await wait_for_condition(lambda: reader(ws) == "own")
        # Idle for longer than the idle release while holding part of a frame: the release
        # must keep what is held. The pause is the scenario, not a wait for something.
        await asyncio.sleep(0.8)
        assert reader(ws) == "own"
        await raw.send(first[300_000:])
        assert await raw.recv_frame() == (OP_BINARY, big)
        assert reader(ws) == "shared"  # nothing held any more
        for size in (5, 200, 70_000):
            await raw.send_frame(OP_BINARY, b"y" * size)
            assert await raw.recv_frame() == (OP_BINARY, b"y" * size)
            assert reader(ws) == "shared"
        await raw.send(client_frame(OP_BINARY, big) + client_frame(OP_BINARY, b"tail"))
        assert await raw.recv_frame() == (OP_BINARY, big)
        assert await raw.recv_frame() == (OP_BINARY, b"tail")
        assert reader(ws) == "shared"
    finally:
        raw.close()


async def test_frames_right_behind_the_request_do_not_count_as_head(serve: Any) -> None:
    # 100 KB of frame in the same packet as the upgrade request: the head is still small.
    app, _ = echo_app()
    server = await serve(app)
    payload = b"z" * 100_000
    frame = client_frame(OP_BINARY, payload)
    raw = await RawClient.connect(server)
    try:
        await raw.send(UPGRADE + frame)
        assert (await raw.recv_head()).startswith(b"HTTP/1.1 101")
        assert await raw.recv_frame() == (OP_BINARY, payload)
    finally:
        raw.close()

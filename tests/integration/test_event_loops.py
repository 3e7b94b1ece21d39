"""Who owns the transport after the upgrade, on uvloop and on a plain asyncio loop.

On uvloop the server hands the transport to the ``WebSocket`` (``set_protocol``) so an
open connection carries no HTTP-phase object; a plain asyncio loop keeps the HTTP
protocol, which forwards (it needs ``data_received``). Both must behave the same.
"""

from __future__ import annotations

import asyncio
import gc
import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import websockets

from xyra import App
from xyra._core.connection import WebSocket

TIMEOUT = 10.0
# An upgrade request for /echo written by hand (the RFC 6455 sample key).
UPGRADE = (b"GET /echo HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
           b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")


def echo_app(**options: Any) -> tuple[App, list[Any]]:
    app = App(**options)
    events: list[Any] = []
    app.websocket("/echo", {
        "open": lambda ws: events.append(("open", ws)),
        "message": lambda ws, msg, op: ws.send(msg, op),
        "close": lambda ws, code, reason: events.append(("close", code)),
    })
    return app, events


async def wait_for(predicate: Any, timeout: float = TIMEOUT) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)
    await asyncio.wait_for(poll(), timeout)


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
    await wait_for(lambda: not server.context.connections)
    assert events[-1] == ("close", 1000)


async def test_per_ip_count_follows_the_connection_after_the_upgrade(serve: Any) -> None:
    app, _ = echo_app(max_connections_per_ip=1)
    server = await serve(app)
    url = f"ws://127.0.0.1:{server.port}/echo"
    for _ in range(3):  # each close gives the address its slot back
        async with websockets.connect(url, open_timeout=TIMEOUT) as client:
            assert server.context.per_ip == {"127.0.0.1": 1}
            assert await handshake_status(server.port) == 503
            await client.send(b"x")
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == b"x"
        await wait_for(lambda: not server.context.per_ip)


async def handshake_status(port: int) -> int:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        writer.write(UPGRADE)
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        return int(line.split()[1])
    finally:
        writer.close()


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
    await wait_for(lambda: ("close", 4000) in events)
    await wait_for(lambda: not served.server.context.connections)
    assert served.server.context.per_ip == {}


async def test_plain_asyncio_loop_frames_in_the_handshake_packet(plain: Any) -> None:
    app, _ = echo_app()
    served = plain(app)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    try:
        await loop.sock_connect(sock, ("127.0.0.1", served.server.port))
        frame = b"\x81\x82\x00\x00\x00\x00hi"  # masked (zero key) "hi" after the head
        await loop.sock_sendall(sock, UPGRADE + frame)
        data = b""
        while not data.endswith(b"\x81\x02hi"):
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
            assert chunk, data
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
    finally:
        sock.close()


async def test_reader_switches_between_shared_and_own_buffers(serve: Any) -> None:
    # A connection holding part of a frame reads into its own buffer; once idle it goes
    # back to the loop-wide one. Pauses longer than the idle release (0.5 s) are the
    # scenario here, and a short close_timeout makes the timer tick every 50 ms.
    app = App()
    app.websocket("/echo", {"message": lambda ws, msg, op: ws.send(msg, op)},
                  close_timeout=0.2)
    server = await serve(app)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    received = bytearray()

    async def expect(payload: bytes) -> None:
        want = len(payload) + (2 if len(payload) < 126 else 4 if len(payload) < 65536 else 10)
        while len(received) < want:
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), TIMEOUT)
            assert chunk, "server closed"
            received.extend(chunk)
        assert bytes(received[want - len(payload):want]) == payload
        del received[:want]

    def frame(payload: bytes) -> bytes:
        n = len(payload)
        size = bytes([0x80 | n]) if n < 126 else (
            b"\xfe" + n.to_bytes(2, "big") if n < 65536 else b"\xff" + n.to_bytes(8, "big"))
        return b"\x82" + size + b"\x00\x00\x00\x00" + payload  # zero mask key

    try:
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        await loop.sock_sendall(sock, UPGRADE)
        while b"\r\n\r\n" not in received:
            received.extend(await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT))
        del received[:received.index(b"\r\n\r\n") + 4]
        # 512 KiB: the echo of big and tail together stays under max_backpressure (1 MiB).
        big = bytes(range(256)) * 2048
        first = frame(big)
        await loop.sock_sendall(sock, first[:300_000])   # part of a frame: own reader
        await asyncio.sleep(0.8)                          # idle while holding it
        await loop.sock_sendall(sock, first[300_000:])
        await expect(big)
        await asyncio.sleep(0.8)                          # idle, nothing held: shared again
        for size in (5, 200, 70_000):
            await loop.sock_sendall(sock, frame(b"y" * size))
            await expect(b"y" * size)
        await loop.sock_sendall(sock, frame(big) + frame(b"tail"))
        await expect(big)
        await expect(b"tail")
    finally:
        sock.close()


async def test_frames_right_behind_the_request_do_not_count_as_head(serve: Any) -> None:
    # 100 KB of frame in the same packet as the upgrade request: the head is still small.
    app, _ = echo_app()
    server = await serve(app)
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    payload = b"z" * 100_000
    frame = b"\x82\xff" + len(payload).to_bytes(8, "big") + b"\x00\x00\x00\x00" + payload
    try:
        await loop.sock_connect(sock, ("127.0.0.1", server.port))
        await loop.sock_sendall(sock, UPGRADE + frame)
        data = b""
        while not data.endswith(payload):
            chunk = await asyncio.wait_for(loop.sock_recv(sock, 1 << 20), TIMEOUT)
            assert chunk, data[:200]
            data += chunk
        assert data.startswith(b"HTTP/1.1 101")
    finally:
        sock.close()

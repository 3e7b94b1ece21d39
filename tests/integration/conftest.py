"""Shared fixtures for the integration tests: real sockets on 127.0.0.1, real clients.

Fixtures
--------
``serve``        ``server = await serve(app, **start_kwargs)``: ``app.start()`` on the running
                 loop, port 0; stopped in teardown. ``sndbuf=N`` serves from a listening socket
                 whose SO_SNDBUF is N (accepted sockets inherit it), so a client that never
                 reads fills the kernel buffers after a few KiB instead of a few MiB.
``connect``      ``client = await connect(server, "/path", **websockets_kwargs)``: a
                 ``websockets`` client, closed in teardown (before the server stops).
``raw_connect``  ``raw = await raw_connect(server, "/path", rcvbuf=N)``: a ``RawWebSocket`` over
                 a plain non-blocking socket that has completed the handshake and reads only when
                 told to (``recv_frame``, ``recv_exactly``, ``read_available``); the way to build a
                 client that never reads. Closed in teardown.

The tests run on uvloop (``tests/conftest.py``). Test modules should not import this file
(``conftest`` is not a unique module name); they get everything through the fixtures.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import gc
import hashlib
import os
import socket
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import websockets

from xyra import App, Server
from xyra._core import endpoint, protocol

TIMEOUT = 10.0
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def ws_url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


# -- leak check (debug builds) -----------------------------------------------------------------
# In a debug build the core counts its live WebSockets, Extras and HTTP-phase protocols
# (the counters are compiled out of release builds). After each test, once pytest has
# dropped the test's own references (its fixtures' values), they must be back to zero;
# the tests that leave any are listed and the run fails at the end.

_leaks: list[str] = []


def _live() -> dict[str, int]:
    return {**endpoint.live_objects(), **protocol.live_objects()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    yield
    if endpoint.debug_build():
        gc.collect()
        live = _live()
        if any(live.values()):
            _leaks.append(f"{item.nodeid}: {live}")
            # Count what the next test leaves from zero again.
            endpoint.reset_live_objects()
            protocol.reset_live_objects()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _leaks:
        print("\nleak check: objects still alive after these tests:", *_leaks, sep="\n  ")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


# -- serve -------------------------------------------------------------------------------------


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    servers: list[Server] = []

    async def _serve(app: App, *, sndbuf: int | None = None, **kwargs: Any) -> Server:
        if sndbuf is None:
            server = await app.start(0, "127.0.0.1", **kwargs)
        else:
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
            sock.bind(("127.0.0.1", 0))
            sock.setblocking(False)
            # host and port must be None when the listening socket is given
            server = await app.start(None, None, sock=sock, **kwargs)  # type: ignore[arg-type]
        servers.append(server)
        return server

    yield _serve
    for server in reversed(servers):
        await server.stop(timeout=2.0)


# -- websockets client -------------------------------------------------------------------------


@pytest.fixture
async def connect(serve: Any) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    # Depends on ``serve`` so that the clients close before the servers stop.
    clients: list[Any] = []

    async def _connect(server: Server, path: str = "/", **kwargs: Any) -> Any:
        kwargs.setdefault("open_timeout", TIMEOUT)
        client = await websockets.connect(ws_url(server, path), **kwargs)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        try:
            await asyncio.wait_for(client.close(), 2.0)
        except (asyncio.TimeoutError, OSError):
            client.transport.abort()


# -- raw client --------------------------------------------------------------------------------


def client_frame(opcode: int, payload: bytes = b"", *, fin: bool = True) -> bytes:
    """A masked client frame."""
    n = len(payload)
    head = bytes([(0x80 if fin else 0) | opcode])
    if n < 126:
        head += bytes([0x80 | n])
    elif n < 65536:
        head += bytes([0x80 | 126]) + struct.pack("!H", n)
    else:
        head += bytes([0x80 | 127]) + struct.pack("!Q", n)
    key = os.urandom(4)
    mask = (key * (n // 4 + 1))[:n]
    masked = (int.from_bytes(payload, "big") ^ int.from_bytes(mask, "big")).to_bytes(n, "big")
    return head + key + masked


class RawWebSocket:
    """A WebSocket client over a plain socket: it reads only when a test asks it to."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.buf = bytearray()
        self.received = 0           # bytes read from the socket after the handshake head

    @classmethod
    async def open(cls, port: int, path: str = "/", *, rcvbuf: int | None = None,
                   headers: str = "") -> RawWebSocket:
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        self = cls(sock, loop)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
            key = base64.b64encode(os.urandom(16)).decode()
            request = (f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                       f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                       f"Sec-WebSocket-Version: 13\r\n{headers}\r\n")
            await loop.sock_sendall(sock, request.encode("latin-1"))
            while b"\r\n\r\n" not in self.buf:
                chunk = await asyncio.wait_for(loop.sock_recv(sock, 4096), TIMEOUT)
                if not chunk:
                    raise ConnectionError(f"server closed during the handshake: {self.buf!r}")
                self.buf += chunk
            end = self.buf.index(b"\r\n\r\n") + 4
            head = bytes(self.buf[:end]).decode("latin-1")
            del self.buf[:end]
            self.received = len(self.buf)
            if not head.startswith("HTTP/1.1 101"):
                raise ConnectionError(f"handshake refused: {head!r}")
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            fields = dict(line.split(":", 1) for line in head.split("\r\n")[1:] if ":" in line)
            fields = {k.strip().lower(): v.strip() for k, v in fields.items()}
            if fields.get("sec-websocket-accept") != accept:
                raise ConnectionError(f"bad Sec-WebSocket-Accept: {head!r}")
        except BaseException:
            sock.close()
            raise
        return self

    async def _fill(self, n: int, timeout: float) -> None:
        async def fill() -> None:
            while len(self.buf) < n:
                chunk = await self.loop.sock_recv(self.sock, max(65536, n - len(self.buf)))
                if not chunk:
                    raise ConnectionError("connection closed by the server")
                self.received += len(chunk)
                self.buf += chunk

        await asyncio.wait_for(fill(), timeout)

    async def recv_exactly(self, n: int, timeout: float = TIMEOUT) -> bytes:
        await self._fill(n, timeout)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def recv_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """The next frame (opcode, payload); server frames are never masked."""
        await self._fill(2, timeout)
        b0, b1 = self.buf[0], self.buf[1]
        assert not b1 & 0x80, "a server frame must not be masked"
        n, hl = b1 & 0x7F, 2
        if n == 126:
            await self._fill(4, timeout)
            (n,), hl = struct.unpack_from("!H", self.buf, 2), 4
        elif n == 127:
            await self._fill(10, timeout)
            (n,), hl = struct.unpack_from("!Q", self.buf, 2), 10
        await self._fill(hl + n, timeout)
        payload = bytes(self.buf[hl:hl + n])
        del self.buf[:hl + n]
        return b0 & 0x0F, payload

    async def read_available(self, timeout: float = TIMEOUT) -> int:
        """Read once (waits for at least one byte); returns the byte count, 0 at EOF."""
        chunk = await asyncio.wait_for(self.loop.sock_recv(self.sock, 1 << 20), timeout)
        self.received += len(chunk)
        self.buf += chunk
        return len(chunk)

    async def wait_closed(self, timeout: float = TIMEOUT) -> None:
        """Read (and keep) everything until the server ends the TCP connection."""
        async def until_eof() -> None:
            while True:
                try:
                    chunk = await self.loop.sock_recv(self.sock, 1 << 20)
                except ConnectionResetError:
                    return
                if not chunk:
                    return
                self.received += len(chunk)
                self.buf += chunk

        await asyncio.wait_for(until_eof(), timeout)

    async def send(self, data: bytes) -> None:
        await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), TIMEOUT)

    async def send_frame(self, opcode: int, payload: bytes = b"") -> None:
        await self.send(client_frame(opcode, payload))

    def abort(self) -> None:
        """Drop the connection with a TCP reset."""
        if self.sock.fileno() != -1:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()

    def close(self) -> None:
        self.sock.close()


@pytest.fixture
async def raw_connect(serve: Any) -> AsyncIterator[Callable[..., Awaitable[RawWebSocket]]]:
    clients: list[RawWebSocket] = []

    async def _raw_connect(server: Server, path: str = "/", **kwargs: Any) -> RawWebSocket:
        raw = await RawWebSocket.open(server.port, path, **kwargs)
        clients.append(raw)
        return raw

    yield _raw_connect
    for raw in clients:
        with contextlib.suppress(OSError):
            raw.abort()

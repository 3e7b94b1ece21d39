"""Small helpers for the integration tests: a served app, a raw client socket, an app whose
clients name themselves, and the errors a test logged."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import os
import struct
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from xyra import App, Server, WebSocket

TIMEOUT = 5.0


@contextlib.asynccontextmanager
async def served(app: App) -> AsyncIterator[Server]:
    server = await app.start(0, "127.0.0.1")
    try:
        yield server
    finally:
        await server.stop(timeout=0.5)


def url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def request(path: str = "/", *, key: str | None = None, version: str = "13",
            method: str = "GET", extra: str = "", connection: str = "Upgrade") -> bytes:
    key = key if key is not None else base64.b64encode(os.urandom(16)).decode()
    lines = [f"{method} {path} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             f"Connection: {connection}", f"Sec-WebSocket-Version: {version}"]
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n" + extra + "\r\n").encode("latin-1")


def frame(opcode: int, payload: bytes, *, fin: bool = True, mask: bool = True,
          rsv: int = 0, length: int | None = None) -> bytes:
    """A client frame, masked unless told otherwise; ``length`` may lie about the size."""
    n = len(payload) if length is None else length
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    mbit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mbit | n])
    elif n < 65536:
        head += bytes([mbit | 126]) + struct.pack("!H", n)
    else:
        head += bytes([mbit | 127]) + struct.pack("!Q", n)
    if not mask:
        return head + payload
    key = os.urandom(4)
    return head + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


class RawClient:
    """A client that can misbehave: it speaks raw bytes over TCP."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer

    @classmethod
    async def connect(cls, server: Server) -> RawClient:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        return cls(reader, writer)

    async def handshake(self, path: str = "/", extra: bytes = b"") -> bytes:
        self.writer.write(request(path) + extra)
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101"), head
        return head

    async def http_response(self) -> tuple[int, bytes]:
        data = await asyncio.wait_for(self.reader.read(), TIMEOUT)
        status = int(data.split(b" ", 2)[1])
        return status, data

    async def read_frame(self) -> tuple[int, bytes]:
        b0, b1 = await asyncio.wait_for(self.reader.readexactly(2), TIMEOUT)
        n = b1 & 0x7F
        if n == 126:
            (n,) = struct.unpack("!H", await self.reader.readexactly(2))
        elif n == 127:
            (n,) = struct.unpack("!Q", await self.reader.readexactly(8))
        payload = await asyncio.wait_for(self.reader.readexactly(n), TIMEOUT)
        return b0 & 0x0F, payload

    async def read_close(self) -> tuple[int, str]:
        """Skip data frames until the close frame; return its code and reason."""
        while True:
            op, payload = await self.read_frame()
            if op == 8:
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                return code, payload[2:].decode()

    async def closed_by_server(self) -> bool:
        """True once the server ends the TCP connection (EOF or reset)."""
        try:
            while await asyncio.wait_for(self.reader.read(65536), TIMEOUT):
                pass
        except ConnectionResetError:
            pass
        return True

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def close(self) -> None:
        self.writer.close()


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The records at ERROR or above, as ``logger: message``; ``[]`` reads well in a failure."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


class NamedApp:
    """An app at ``/ws`` whose clients name themselves (``/ws?id=a&topics=x,y``).

    ``ws[name]`` is the server side of a connection; ``await opened(name)`` and
    ``await closed(name)`` (the close code) wait for it, whichever comes first,
    the handler or the wait. ``handlers`` adds to (or overrides) the open and close handlers.
    """

    # Longer than TIMEOUT: these tests push bursts of thousands of messages through
    # hundreds of connections on a machine that may be busy.
    timeout = 10.0

    def __init__(self, handlers: dict[str, Callable[..., Any]], **options: Any) -> None:
        self.app = App()
        self.ws: dict[str, WebSocket] = {}
        self._opened: dict[str, asyncio.Future[WebSocket]] = {}
        self._closed: dict[str, asyncio.Future[int]] = {}
        self.app.websocket("/ws", {"open": self._open, "close": self._close, **handlers},
                           **options)

    @staticmethod
    def _future(table: dict[str, asyncio.Future[Any]], name: str) -> asyncio.Future[Any]:
        if name not in table:
            table[name] = asyncio.get_running_loop().create_future()
        return table[name]

    def _open(self, ws: WebSocket) -> None:
        query = parse_qs(urlsplit(ws.path).query)
        name = query["id"][0]
        ws.data["name"] = name
        self.ws[name] = ws
        for topic in query.get("topics", [""])[0].split(","):
            if topic:
                ws.subscribe(topic)
        self._future(self._opened, name).set_result(ws)

    def _close(self, ws: WebSocket, code: int, reason: str) -> None:
        self._future(self._closed, ws.data["name"]).set_result(code)

    async def opened(self, name: str) -> WebSocket:
        # shield: a timed-out wait must not cancel the future a later wait or handler uses
        future = self._future(self._opened, name)
        return await asyncio.wait_for(asyncio.shield(future), self.timeout)

    async def closed(self, name: str) -> int:
        future = self._future(self._closed, name)
        return await asyncio.wait_for(asyncio.shield(future), self.timeout)

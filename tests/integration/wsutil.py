"""Small helpers for the core integration tests: a served app and a raw client socket."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import os
import struct
from collections.abc import AsyncIterator

from xyra import App, Server

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

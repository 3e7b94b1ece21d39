"""A client that speaks raw bytes: hand-written requests, any frame, reads only when asked.

``RawClient`` sits on a plain non-blocking socket. Nothing is read between calls, so it is
also the client that never reads (with a small ``rcvbuf`` the kernel buffers fill after a
few KiB). Frames are built and split with ``refcodec``.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import socket
import struct
from dataclasses import dataclass
from typing import Any

from .refcodec import OP_CLOSE, Frame, client_frame, read_frame
from .waiting import TIMEOUT

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455 1.3


def new_key() -> str:
    """A fresh Sec-WebSocket-Key."""
    return base64.b64encode(os.urandom(16)).decode()


def accept_for(key: str) -> str:
    """The Sec-WebSocket-Accept a server must answer ``key`` with."""
    return base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free now (for a server started in a subprocess)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def upgrade_request(
    path: str = "/",
    *,
    key: str | None = None,
    version: str = "13",
    method: str = "GET",
    connection: str = "Upgrade",
    host: str = "127.0.0.1",
    headers: str = "",
) -> bytes:
    """An upgrade request head. ``key=""`` leaves the key out; ``headers`` are extra
    ``Name: value\\r\\n`` lines."""
    key = new_key() if key is None else key
    lines = [
        f"{method} {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        f"Connection: {connection}",
        f"Sec-WebSocket-Version: {version}",
    ]
    if key:
        lines.append(f"Sec-WebSocket-Key: {key}")
    return ("\r\n".join(lines) + "\r\n" + headers + "\r\n").encode("latin-1")


def http_request(
    path: str = "/", *, method: str = "GET", headers: str = "", body: bytes = b""
) -> bytes:
    """A plain HTTP/1.1 request (``Content-Length`` added when there is a body)."""
    if body:
        headers += f"Content-Length: {len(body)}\r\n"
    return f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}\r\n".encode() + body


@dataclass
class HTTPResponse:
    """A response as it came off the wire; ``headers`` by lower-case name (last value)."""

    status: int
    headers: dict[str, str]
    head: bytes
    body: bytes

    @classmethod
    def parse_head(cls, head: bytes) -> HTTPResponse:
        lines = head.decode("latin-1").split("\r\n")
        fields = {}
        for line in lines[1:]:
            if line:
                name, _, value = line.partition(":")
                fields[name.strip().lower()] = value.strip()
        return cls(int(lines[0].split(" ")[1]), fields, head, b"")


class RawClient:
    """A WebSocket (or HTTP) client over a plain socket; it reads only when a test asks."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.buf = bytearray()  # read from the socket, not consumed yet
        self.head = b""  # the handshake's response head

    @classmethod
    async def connect(cls, port: int | Any, *, rcvbuf: int | None = None) -> RawClient:
        """A TCP connection to ``port`` (or to a Server), nothing sent yet."""
        port = port if isinstance(port, int) else port.port
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.setblocking(False)
        try:
            await asyncio.wait_for(loop.sock_connect(sock, ("127.0.0.1", port)), TIMEOUT)
        except BaseException:
            sock.close()
            raise
        return cls(sock, loop)

    @classmethod
    async def open(
        cls, port: int | Any, path: str = "/", *, rcvbuf: int | None = None, headers: str = ""
    ) -> RawClient:
        """A connection that has completed the WebSocket handshake."""
        self = await cls.connect(port, rcvbuf=rcvbuf)
        try:
            await self.handshake(path, headers=headers)
        except BaseException:
            self.close()
            raise
        return self

    async def handshake(self, path: str = "/", *, headers: str = "", extra: bytes = b"") -> bytes:
        """Upgrade (``extra`` is sent in the same write); checks 101 and the accept key."""
        key = new_key()
        await self.send(upgrade_request(path, key=key, headers=headers) + extra)
        head = await self.recv_head()
        if not head.startswith(b"HTTP/1.1 101"):
            raise ConnectionError(f"handshake refused: {head!r}")
        accept = HTTPResponse.parse_head(head).headers.get("sec-websocket-accept")
        if accept != accept_for(key):
            raise ConnectionError(f"bad Sec-WebSocket-Accept: {head!r}")
        self.head = head
        return head

    # -- sending ----------------------------------------------------------------------------

    async def send(self, data: bytes) -> None:
        await asyncio.wait_for(self.loop.sock_sendall(self.sock, data), TIMEOUT)

    async def send_frame(self, opcode: int, payload: bytes = b"", **options: Any) -> None:
        """A masked client frame (``refcodec.client_frame`` options)."""
        await self.send(client_frame(opcode, payload, **options))

    # -- reading ----------------------------------------------------------------------------

    async def _read(self) -> int:
        """One read from the socket into ``buf``; 0 at EOF."""
        try:
            chunk = await self.loop.sock_recv(self.sock, 1 << 20)
        except ConnectionResetError:
            return 0
        self.buf += chunk
        return len(chunk)

    async def _fill(self, n: int, timeout: float) -> None:
        async def fill() -> None:
            while len(self.buf) < n:
                if not await self._read():
                    raise ConnectionError(f"closed by the server: {bytes(self.buf[:200])!r}")

        await asyncio.wait_for(fill(), timeout)

    async def recv_exactly(self, n: int, timeout: float = TIMEOUT) -> bytes:
        await self._fill(n, timeout)
        data = bytes(self.buf[:n])
        del self.buf[:n]
        return data

    async def recv_head(self, timeout: float = TIMEOUT) -> bytes:
        """An HTTP head, up to and with the blank line."""

        async def until_blank_line() -> int:
            while (end := self.buf.find(b"\r\n\r\n")) < 0:
                if not await self._read():
                    raise ConnectionError(f"closed by the server: {bytes(self.buf[:200])!r}")
            return end + 4

        return await self.recv_exactly(await asyncio.wait_for(until_blank_line(), timeout))

    async def recv_response(
        self, *, head_only: bool = False, timeout: float = TIMEOUT
    ) -> HTTPResponse:
        """The next HTTP response; its body by Content-Length (none for a HEAD request)."""
        response = HTTPResponse.parse_head(await self.recv_head(timeout))
        if not head_only:
            length = int(response.headers.get("content-length", "0"))
            response.body = await self.recv_exactly(length, timeout)
        return response

    async def recv_wire_frame(self, timeout: float = TIMEOUT) -> Frame:
        """The next frame with its header bits; server frames are never masked."""

        async def next_frame() -> Frame:
            while (frame := read_frame(self.buf)) is None:
                if not await self._read():
                    raise ConnectionError("connection closed by the server")
            del self.buf[: frame.size]
            return frame

        frame = await asyncio.wait_for(next_frame(), timeout)
        assert not frame.masked, "a server frame must not be masked"
        return frame

    async def recv_frame(self, timeout: float = TIMEOUT) -> tuple[int, bytes]:
        """The next frame's (opcode, payload)."""
        frame = await self.recv_wire_frame(timeout)
        return frame.opcode, frame.payload

    async def recv_close(self, timeout: float = TIMEOUT) -> tuple[int, str]:
        """Skip data frames up to the close frame; its code (1005 if none) and reason."""
        while True:
            opcode, payload = await self.recv_frame(timeout)
            if opcode == OP_CLOSE:
                code = struct.unpack("!H", payload[:2])[0] if payload else 1005
                return code, payload[2:].decode()

    async def wait_closed(self, timeout: float = TIMEOUT) -> None:
        """Read (and keep in ``buf``) everything until the server ends the connection."""

        async def until_eof() -> None:
            while await self._read():
                pass

        await asyncio.wait_for(until_eof(), timeout)

    async def at_eof(self, timeout: float = TIMEOUT) -> bool:
        """True if the server ended the connection with nothing more to read."""
        return not self.buf and not await asyncio.wait_for(self._read(), timeout)

    # -- ending -----------------------------------------------------------------------------

    def abort(self) -> None:
        """Drop the connection with a TCP reset."""
        if self.sock.fileno() != -1:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.sock.close()

    def close(self) -> None:
        self.sock.close()

"""The "limit" row: a plain uvloop ``asyncio.Protocol`` that writes back what it reads.

No HTTP and no WebSocket: the load client skips the upgrade and gets its own
(masked) frames back. Nothing WebSocket-shaped can beat this on the same loop, so
it shows what the event loop and the kernel cost, and that the load client is
fast enough to measure everything else.

For the ``connect`` workload it is the same kind of floor: a connection whose
first read is an HTTP request gets a constant 101 response (the load client
always sends the RFC 6455 sample key), with nothing parsed or checked, then a
close frame back for whatever it sends next, then the server closes. That is the
least a server on uvloop with a Python protocol per connection can do per
connection.
"""

from __future__ import annotations

import asyncio

from xyra.bench.servers.common import HOST, port_from_argv, use_uvloop

# The answer to the load client's upgrade request (its key is the RFC sample key).
UPGRADED = (
    b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n"
)
CLOSE_1000 = b"\x88\x02\x03\xe8"


class Echo(asyncio.Protocol):
    """Write back every read as it is."""

    def __init__(self, transport: asyncio.Transport) -> None:
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


class Upgraded(Echo):
    """After the constant 101: answer the next read (the close frame) and close."""

    def data_received(self, data: bytes) -> None:
        self.transport.write(CLOSE_1000)
        self.transport.close()


class First(asyncio.Protocol):
    """Looks at the first read only, then hands the transport to ``Echo`` or
    ``Upgraded``, so an echo read costs exactly one ``data_received`` call."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        if data.startswith(b"GET "):
            self.transport.set_protocol(Upgraded(self.transport))
            self.transport.write(UPGRADED)
        else:
            self.transport.set_protocol(Echo(self.transport))
            self.transport.write(data)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(First, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    use_uvloop()
    asyncio.run(serve(port_from_argv()))


if __name__ == "__main__":
    main()

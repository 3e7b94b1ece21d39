"""The "limit" row: a plain uvloop ``asyncio.Protocol`` that writes back what it reads.

No HTTP and no WebSocket: the load client skips the upgrade and gets its own
(masked) frames back. Nothing WebSocket-shaped can beat this on the same loop, so
it shows what the event loop and the kernel cost, and that the load client is
fast enough to measure everything else.
"""

from __future__ import annotations

import asyncio

from xyra.bench.servers.common import HOST, port_from_argv, use_uvloop


class Echo(asyncio.Protocol):
    """Write back every read as it is."""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.transport.write(data)


async def serve(port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Echo, HOST, port, backlog=4096)
    async with server:
        await server.serve_forever()


def main() -> None:
    use_uvloop()
    asyncio.run(serve(port_from_argv()))


if __name__ == "__main__":
    main()

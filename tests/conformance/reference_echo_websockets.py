"""Autobahn echo server built on the `websockets` library, not on Xyra.

It exists to prove the conformance harness itself (run_autobahn.py): a well-known, mostly
conformant implementation should score (almost) all OK. Same command line as echo_server.py:

    python tests/conformance/reference_echo_websockets.py PORT [--compression shared|dedicated|off]
"""

from __future__ import annotations

import argparse
import asyncio
import signal

from websockets.asyncio.server import ServerConnection, serve

MAX_PAYLOAD = 16 * 1024 * 1024  # the 9.* cases send messages up to 16 MiB


async def echo(ws: ServerConnection) -> None:
    async for message in ws:
        await ws.send(message)


async def main(port: int, compression: str) -> None:
    stop = asyncio.get_running_loop().create_future()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set_result, None)
    async with serve(
        echo,
        "127.0.0.1",
        port,
        max_size=MAX_PAYLOAD,
        # websockets has one permessage-deflate mode; "shared"/"dedicated" both mean "on".
        compression=None if compression == "off" else "deflate",
        # Autobahn measures the server, not keepalive pings.
        ping_interval=None,
    ):
        await stop


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--compression", choices=("shared", "dedicated", "off"), default="off")
    args = parser.parse_args()
    asyncio.run(main(args.port, args.compression))

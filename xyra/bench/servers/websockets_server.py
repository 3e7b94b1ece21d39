"""websockets (the asyncio implementation) adapter, on uvloop.

Pub/sub: a set of connections per topic and ``websockets.broadcast`` to every
member but the sender.
"""

from __future__ import annotations

import asyncio

import websockets
from websockets.asyncio.server import ServerConnection, serve

from xyra.bench.servers.common import HOST, MAX_PAYLOAD, port_from_argv, topic_of, use_uvloop

TOPICS: dict[str, set[ServerConnection]] = {}


async def handler(ws: ServerConnection) -> None:
    topic = topic_of(ws.request.path if ws.request else "/")
    if topic is None:
        async for message in ws:
            await ws.send(message)
        return
    members = TOPICS.setdefault(topic, set())
    members.add(ws)
    try:
        async for message in ws:
            websockets.broadcast([m for m in members if m is not ws], message)
    finally:
        members.discard(ws)


async def run(port: int) -> None:
    async with serve(
        handler, HOST, port, max_size=MAX_PAYLOAD, compression=None, backlog=4096
    ) as server:
        await server.serve_forever()


def main() -> None:
    use_uvloop()
    asyncio.run(run(port_from_argv()))


if __name__ == "__main__":
    main()

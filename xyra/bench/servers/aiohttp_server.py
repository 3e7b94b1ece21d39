"""aiohttp adapter, on uvloop.

Pub/sub: a set of ``WebSocketResponse`` per topic and one ``send_str``/``send_bytes``
per member but the sender.
"""

from __future__ import annotations

import asyncio

from aiohttp import WSMsgType, web

from xyra.bench.servers.common import HOST, MAX_PAYLOAD, port_from_argv, topic_of, use_uvloop

TOPICS: dict[str, set[web.WebSocketResponse]] = {}


async def handler(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse(max_msg_size=MAX_PAYLOAD, compress=False, autoping=True)
    await ws.prepare(request)
    topic = topic_of(request.path_qs)
    if topic is None:
        async for msg in ws:
            if msg.type == WSMsgType.TEXT:
                await ws.send_str(msg.data)
            elif msg.type == WSMsgType.BINARY:
                await ws.send_bytes(msg.data)
        return ws
    members = TOPICS.setdefault(topic, set())
    members.add(ws)
    try:
        async for msg in ws:
            if msg.type not in (WSMsgType.TEXT, WSMsgType.BINARY):
                continue
            for other in list(members):
                if other is ws or other.closed:
                    continue
                if msg.type == WSMsgType.TEXT:
                    await other.send_str(msg.data)
                else:
                    await other.send_bytes(msg.data)
    finally:
        members.discard(ws)
    return ws


async def run(port: int) -> None:
    app = web.Application()
    app.router.add_get("/", handler)
    app.router.add_get("/pubsub", handler)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, port, backlog=4096)
    await site.start()
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main() -> None:
    use_uvloop()
    asyncio.run(run(port_from_argv()))


if __name__ == "__main__":
    main()

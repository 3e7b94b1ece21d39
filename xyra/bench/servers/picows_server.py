"""picows adapter: frame-level listeners on uvloop.

picows has no pub/sub, so a topic is a set of transports and a publish is one
``transport.send`` per subscriber but the sender. The bench client never
fragments, so echoing frame by frame echoes whole messages.
"""

from __future__ import annotations

import asyncio

from picows import WSFrame, WSListener, WSMsgType, WSTransport, WSUpgradeRequest, ws_create_server

from xyra.bench.servers.common import HOST, MAX_PAYLOAD, port_from_argv, topic_of, use_uvloop

TOPICS: dict[str, set[WSTransport]] = {}


class Echo(WSListener):
    """Send every data frame back as it came."""

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview())


class PubSub(WSListener):
    """Subscribe on connect; every data frame goes to the topic's other transports."""

    def __init__(self, topic: str) -> None:
        self.subscribers = TOPICS.setdefault(topic, set())

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.subscribers.add(transport)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        self.subscribers.discard(transport)

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY):
            kind = frame.msg_type
            payload = frame.get_payload_as_bytes()
            for other in self.subscribers:
                if other is not transport:
                    other.send(kind, payload)


def listener_for(request: WSUpgradeRequest) -> WSListener:
    topic = topic_of(request.path)
    return Echo() if topic is None else PubSub(topic)


async def serve(port: int) -> None:
    server = await ws_create_server(
        listener_for, HOST, port, max_frame_size=MAX_PAYLOAD, enable_auto_ping=False
    )
    async with server:
        await server.serve_forever()


def main() -> None:
    use_uvloop()
    asyncio.run(serve(port_from_argv()))


if __name__ == "__main__":
    main()

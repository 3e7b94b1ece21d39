"""Batched publishes without sockets: what each subscriber's transport is handed.

Connections are opened through the server's own upgrade path on recording transports
(kit.upgrade_oracle), so the Hub, the WebSockets and the flush are the real ones; only
the event loop is a list of callbacks run when the test says.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

from kit.upgrade_oracle import Loop, Transport, upgrade_request

from xyra import App


class Recording(Transport):
    """Keeps every object written, to tell shared bytes from copies."""

    def __init__(self) -> None:
        super().__init__()
        self.objects: list[Any] = []

    def write(self, data: bytes) -> None:
        self.objects.append(data)
        super().write(data)

    def writelines(self, chunks: Any) -> None:
        self.objects.append(list(chunks))
        super().writelines(chunks)


class Server:
    def __init__(self, **options: Any) -> None:
        from xyra._core.protocol import ServerContext
        from xyra._core.pubsub import Hub

        self.loop = Loop()
        self.hub = Hub(self.loop, logging.getLogger("xyra.test"))
        self.hub.thread_id = threading.get_ident()
        app = App()
        app.websocket("/t", {"open": lambda ws: ws.subscribe("t")}, **options)
        app.websocket("/tu", {"open": lambda ws: (ws.subscribe("t"), ws.subscribe("u"))})
        self.ctx = ServerContext(self.hub, app.config())
        self.ctx.switch_protocol = True

    def connect(self, path: str = "/t") -> Recording:
        transport = Recording()
        transport.protocol = self.ctx()
        transport.protocol.connection_made(transport)
        view = transport.protocol.get_buffer(1024)
        head = upgrade_request(path)
        view[: len(head)] = head
        transport.protocol.buffer_updated(len(head))
        self.loop.run_ready()
        assert transport.objects[0].startswith(b"HTTP/1.1 101 ")
        del transport.objects[:]
        del transport.written[:]
        transport.writes = 0
        return transport


def frame(text: str) -> bytes:
    data = text.encode()
    return bytes([0x81, len(data)]) + data


def test_one_write_of_one_shared_batch_per_subscriber_and_iteration() -> None:
    server = Server()
    subscribers = [server.connect() for _ in range(50)]
    for i in range(16):
        assert server.hub.publish("t", f"m{i}") == 50
    assert all(t.objects == [] for t in subscribers)  # nothing before the flush
    server.loop.run_ready()
    batch = subscribers[0].objects[0]
    assert batch == b"".join(frame(f"m{i}") for i in range(16))
    for t in subscribers:
        assert len(t.objects) == 1 and t.objects[0] is batch  # the same object, no copy


def test_a_lone_publish_is_its_frame() -> None:
    server = Server()
    subscribers = [server.connect() for _ in range(3)]
    server.hub.publish("t", "solo")
    server.loop.run_ready()
    assert [t.objects for t in subscribers] == [[frame("solo")]] * 3


def test_a_subscriber_of_two_published_topics_gets_one_merged_order() -> None:
    server = Server()
    only_t = server.connect("/t")
    both = server.connect("/tu")
    for i in range(6):
        server.hub.publish("t" if i % 3 else "u", f"{i}")
    server.loop.run_ready()
    assert bytes(both.written) == b"".join(frame(f"{i}") for i in range(6))
    assert both.writes == 1  # its share went through its cork: still one write
    assert bytes(only_t.written) == b"".join(frame(f"{i}") for i in range(6) if i % 3)


def test_backpressure_drops_exactly_what_publishing_frame_by_frame_drops() -> None:
    """A frame is taken while less than max_backpressure waits for the connection (in
    the transport, or queued in this iteration), else dropped, as with one publish at a
    time: a subscriber over it mid-batch gets the batch's first frames only."""
    server = Server(max_backpressure=1000)
    full, nearly, fine = server.connect(), server.connect(), server.connect()
    full.buffered, nearly.buffered = 1000, 900  # bytes the kernel did not take yet
    full.protocol.pause_writing()
    nearly.protocol.pause_writing()
    for _ in range(10):
        server.hub.publish("t", "x" * 30)  # 32-byte frames
    server.loop.run_ready()
    assert full.protocol.dropped == 10 and full.written == b""
    # 900, 932, 964 and 996 bytes waiting before each of the first four: those are taken.
    assert nearly.protocol.dropped == 6 and len(nearly.written) == 4 * 32
    assert fine.protocol.dropped == 0 and len(fine.written) == 10 * 32 and fine.writes == 1
    # The limit holds within one iteration too: of 40 frames of 32 bytes published at
    # once, 32 start under 1000 queued bytes, the last 8 are dropped.
    for _ in range(40):
        server.hub.publish("t", "y" * 30)
    server.loop.run_ready()
    assert fine.protocol.dropped == 8 and len(fine.written) == 42 * 32

"""Adapter for the original xyra 0.2.7 from PyPI (uWebSockets through its own CFFI C API).

It runs with the interpreter of its own venv (see ``xyra.bench.peers``), by file
path, so ``import xyra`` finds 0.2.7 there; it must not import the bench package.

What 0.2.7's API allows, read from its source:

* handlers get ``(ws, message, opcode)`` with text already decoded to ``str``;
  ``ws.send(message, is_binary)``;
* ``ws.subscribe(topic)`` and ``ws.publish(topic, message, is_binary)`` map to uWS's
  ``ws->subscribe``/``ws->publish`` (every subscriber but the sender);
* ``open`` gets no request, but the ``upgrade`` handler does, and uWS calls ``open``
  synchronously from inside the upgrade, so the topic is handed over in a variable;
* its C API sets no ``maxPayloadLength``, so uWS's default of 16 KiB applies and the
  64 KiB and 1 MiB workloads cannot run (the bench skips them for this peer);
* ``listen`` takes no host: uWS listens on every interface. The bench only ever
  connects to 127.0.0.1.
"""

from __future__ import annotations

import sys
from urllib.parse import parse_qs, urlsplit

from xyra import App
from xyra._libxyra import ffi

TEXT, BINARY = 1, 2
# uWS socket address -> topic. The ``ws`` handed to callbacks wraps a struct that
# 0.2.7 builds on the stack per callback; its first member is the uWS socket
# pointer, the one identity that lasts for the connection.
TOPIC_OF: dict[int, str] = {}
_pending_topic: list[str] = []


def socket_id(ws) -> int:  # type: ignore[no-untyped-def]
    return int(ffi.cast("uintptr_t", ffi.cast("void **", ws._ws)[0]))


def topic_of(target: str) -> str:
    parts = urlsplit(target)
    if parts.path.startswith("/pubsub/"):
        return parts.path[len("/pubsub/") :] or "default"
    return parse_qs(parts.query).get("topic", ["default"])[0]


def echo(ws, message, opcode):  # type: ignore[no-untyped-def]
    ws.send(message, opcode == BINARY)


def upgrade(req) -> bool:  # type: ignore[no-untyped-def]
    _pending_topic.append(topic_of(req.full_path))
    return True


def subscribe(ws) -> None:  # type: ignore[no-untyped-def]
    topic = _pending_topic.pop() if _pending_topic else "default"
    TOPIC_OF[socket_id(ws)] = topic
    ws.subscribe(topic)


def publish(ws, message, opcode):  # type: ignore[no-untyped-def]
    ws.publish(TOPIC_OF.get(socket_id(ws), "default"), message, opcode == BINARY)


def forget(ws, code, message):  # type: ignore[no-untyped-def]
    TOPIC_OF.pop(socket_id(ws), None)


def main() -> None:
    port = int(sys.argv[1])
    app = App()
    app.websocket("/", {"message": echo})
    app.websocket(
        "/pubsub", {"upgrade": upgrade, "open": subscribe, "message": publish, "close": forget}
    )
    app.listen(port, logger=False)


if __name__ == "__main__":
    main()

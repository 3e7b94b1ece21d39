"""Xyra adapter: the server this benchmark exists for.

Echo is the one-liner from the docs; pub/sub uses Xyra's own topics: ``open``
subscribes to the topic named in the request's query string and ``message``
calls ``ws.publish`` (every subscriber but the sender). The compression routes
are the same two with ``compression="shared"`` (pub/sub) and ``"dedicated"``
(echo), sending with ``compress=True``.
"""

from __future__ import annotations

import os
from typing import Any

from xyra import App, Response, WebSocket
from xyra.bench.servers.common import HOST, MAX_PAYLOAD, port_from_argv, topic_of

LIMITS: dict[str, Any] = {"max_payload_length": MAX_PAYLOAD, "max_backpressure": MAX_PAYLOAD}


def subscribe(ws: WebSocket) -> None:
    topic = topic_of(ws.path) or "default"
    ws.data["topic"] = topic
    ws.subscribe(topic)


def publish(ws: WebSocket, message: str | bytes, opcode: Any) -> None:
    ws.publish(ws.data["topic"], message, opcode)


def publish_compressed(ws: WebSocket, message: str | bytes, opcode: Any) -> None:
    ws.publish(ws.data["topic"], message, opcode, compress=True)


def echo_compressed(ws: WebSocket, message: str | bytes, opcode: Any) -> None:
    ws.send(message, opcode, compress=True)


def build_app() -> App:
    app = App()
    app.websocket("/", {"message": lambda ws, m, op: ws.send(m, op)}, **LIMITS)
    app.websocket("/pubsub", {"open": subscribe, "message": publish}, **LIMITS)
    app.websocket(
        "/pubsub_deflate",
        {"open": subscribe, "message": publish_compressed},
        compression="shared",
        **LIMITS,
    )
    app.websocket("/echo_deflate", {"message": echo_compressed}, compression="dedicated", **LIMITS)
    # asgi_http_hello's reference: the same hello world on Xyra's own HTTP routes.
    app.get("/hello", lambda: Response(b"Hello, world!", content_type="text/plain"))
    return app


def main() -> None:
    # The xyra-redis peer: the same app with a Redis backplane (the runner starts Redis).
    backplane = os.environ.get("XYRA_BENCH_BACKPLANE") or None
    build_app().listen(port_from_argv(), host=HOST, backplane=backplane)


if __name__ == "__main__":
    main()

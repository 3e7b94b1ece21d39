"""socketify (uWebSockets through CFFI) adapter.

Echo is ``ws.send(message, opcode)``. Pub/sub is uWS's own: the topic comes from
the query string in the upgrade handler and rides on the socket's user data;
``open`` subscribes. socketify's ``WebSocket.publish`` goes through
``app.publish``, which also sends to the sender, so publishing calls the native
``uws_ws_publish_with_options`` (uWS ``ws->publish``: every subscriber but the
sender), as uWS users do.

For the compression workload, ``/pubsub_deflate`` is ``/pubsub`` with uWS's
``SHARED_COMPRESSOR``, publishing with compress on.
"""

from __future__ import annotations

from typing import Any

from socketify import App, AppListenOptions, CompressOptions, OpCode
from socketify.native import lib

from xyra.bench.servers.common import HOST, MAX_PAYLOAD, port_from_argv


def build_app() -> App:
    app = App()
    limits = {
        "compression": CompressOptions.DISABLED,
        "max_payload_length": MAX_PAYLOAD,
        "idle_timeout": 120,
        "max_backpressure": 16 * 1024 * 1024,
    }

    def echo(ws: Any, message: Any, opcode: OpCode) -> None:
        ws.send(message, opcode)

    app.ws("/", {**limits, "message": echo})

    def upgrade(res: Any, req: Any, context: Any) -> None:
        topic = req.get_query("topic") or "default"
        res.upgrade(
            req.get_header("sec-websocket-key"),
            req.get_header("sec-websocket-protocol"),
            req.get_header("sec-websocket-extensions"),
            context,
            topic,
        )

    def subscribe(ws: Any) -> None:
        ws.subscribe(ws.get_user_data())

    def publisher(compress: bool) -> Any:
        def publish(ws: Any, message: Any, opcode: OpCode) -> None:
            topic = ws.get_user_data().encode()
            data = message.encode() if isinstance(message, str) else message
            lib.uws_ws_publish_with_options(
                app.SSL, ws.ws, topic, len(topic), data, len(data), int(opcode), compress
            )

        return publish

    app.ws(
        "/pubsub",
        {**limits, "upgrade": upgrade, "open": subscribe, "message": publisher(False)},
    )
    app.ws(
        "/pubsub_deflate",
        {
            **limits,
            "compression": CompressOptions.SHARED_COMPRESSOR,
            "upgrade": upgrade,
            "open": subscribe,
            "message": publisher(True),
        },
    )
    return app


def main() -> None:
    port = port_from_argv()
    app = build_app()
    app.listen(AppListenOptions(port=port, host=HOST), lambda config: None)
    app.run()


if __name__ == "__main__":
    main()

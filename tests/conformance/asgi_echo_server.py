"""Autobahn TestSuite echo server through the ASGI adapter: a raw ASGI echo app on Xyra.

    python tests/conformance/asgi_echo_server.py PORT

The app echoes every ``websocket.receive`` as a ``websocket.send`` of the same kind (text or
bytes), so every frame the suite sends crosses the ASGI layer in both directions; the frames,
fragmentation, UTF-8, close handshake and limits are Xyra's engine. The payload limit is
16 MiB because the 9.* cases send messages that large. Serves 127.0.0.1 until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
from typing import Any

from xyra import App


async def echo(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] != "websocket":
        return  # no lifespan, no HTTP
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        if event.get("text") is not None:
            await send({"type": "websocket.send", "text": event["text"]})
        else:
            await send({"type": "websocket.send", "bytes": event["bytes"]})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    args = parser.parse_args()
    app = App()
    app.mount("/", echo, max_payload_length=16 * 1024 * 1024)
    app.listen(args.port)


if __name__ == "__main__":
    main()

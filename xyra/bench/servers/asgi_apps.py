"""The ASGI applications every ASGI peer serves (Xyra, uvicorn, granian): one module.

* ``/``: a raw ASGI WebSocket echo (every message back as it came);
* ``/starlette``: the same echo in the few lines of Starlette WebSocket code a user writes;
* ``/hello``: a raw ASGI HTTP hello world (``asgi_http_hello``);
* ``/starlette/hello``: the same through a Starlette route.

``app`` dispatches on the path once per connection or request, then runs the app.
Starlette is imported only if it is installed (its workloads fail without it).
"""

from __future__ import annotations

from collections.abc import MutableMapping
from typing import Any

from xyra.bench.servers.common import MAX_PAYLOAD

Scope = MutableMapping[str, Any]
HELLO = b"Hello, world!"
HELLO_HEADERS = [(b"content-type", b"text/plain"), (b"content-length", b"13")]


async def raw_echo(scope: Scope, receive: Any, send: Any) -> None:
    """The raw ASGI WebSocket echo."""
    await receive()  # websocket.connect
    await send({"type": "websocket.accept"})
    while True:
        message = await receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text = message.get("text")
            if text is not None:
                await send({"type": "websocket.send", "text": text})
            else:
                await send({"type": "websocket.send", "bytes": message.get("bytes")})
        elif kind == "websocket.disconnect":
            return


async def raw_hello(scope: Scope, receive: Any, send: Any) -> None:
    """The raw ASGI HTTP hello world."""
    await send({"type": "http.response.start", "status": 200, "headers": HELLO_HEADERS})
    await send({"type": "http.response.body", "body": HELLO})


def starlette_app() -> Any:
    """The Starlette echo and hello: what a user writes."""
    from starlette.applications import Starlette
    from starlette.responses import PlainTextResponse
    from starlette.routing import Route, WebSocketRoute
    from starlette.websockets import WebSocket, WebSocketDisconnect

    async def echo(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            while True:
                await websocket.send_text(await websocket.receive_text())
        except WebSocketDisconnect:
            pass

    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse("Hello, world!")

    return Starlette(routes=[WebSocketRoute("/starlette", echo), Route("/starlette/hello", hello)])


try:
    STARLETTE: Any = starlette_app()
except ImportError:  # pragma: no cover - the starlette workloads need it
    STARLETTE = None


async def app(scope: Scope, receive: Any, send: Any) -> None:
    """Every ASGI workload's app: dispatch once on the path."""
    kind = scope["type"]
    path = scope.get("path", "")
    if path.startswith("/starlette") and STARLETTE is not None:
        await STARLETTE(scope, receive, send)
    elif kind == "websocket":
        await raw_echo(scope, receive, send)
    elif kind == "http":
        await raw_hello(scope, receive, send)
    elif kind == "lifespan":
        message = await receive()
        await send({"type": message["type"] + ".complete"})
        message = await receive()
        await send({"type": message["type"] + ".complete"})


__all__ = ["MAX_PAYLOAD", "app"]

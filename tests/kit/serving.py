"""An app served on the test's own event loop, and an app whose clients name themselves."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
from collections.abc import AsyncIterator, Callable
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest

from xyra import App, Server, WebSocket

from .waiting import TIMEOUT

# Clients a test left open get a close frame at stop; a raw client never answers it, and
# the server then waits this long before dropping them.
STOP_TIMEOUT = 0.5


@contextlib.asynccontextmanager
async def served(app: App, *, sndbuf: int | None = None, **start: Any) -> AsyncIterator[Server]:
    """``app.start()`` on the running loop, on a free 127.0.0.1 port; stopped at the end.

    ``sndbuf=N`` serves from a listening socket whose SO_SNDBUF is N (accepted sockets
    inherit it), so a client that never reads fills the kernel buffers after a few KiB
    instead of a few MiB. Other keywords go to ``app.start``.
    """
    if sndbuf is None:
        server = await app.start(0, "127.0.0.1", **start)
    else:
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, sndbuf)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        # host and port must be None when the listening socket is given
        server = await app.start(None, None, sock=sock, **start)
    try:
        yield server
    finally:
        await server.stop(timeout=STOP_TIMEOUT)


def echo(ws: WebSocket, message: str | bytes, opcode: int) -> None:
    """The echo handler most tests serve: each message back, with its opcode."""
    ws.send(message, opcode)


def ws_url(server: Server, path: str = "/") -> str:
    return f"ws://127.0.0.1:{server.port}{path}"


def http_url(server: Server, path: str = "/") -> str:
    return f"http://127.0.0.1:{server.port}{path}"


def errors_logged(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The records at ERROR or above, as ``logger: message``; ``[]`` reads well in a failure."""
    return [f"{r.name}: {r.getMessage()}" for r in caplog.records if r.levelno >= logging.ERROR]


class NamedApp:
    """An app at ``/ws`` whose clients name themselves (``/ws?id=a&topics=x,y``).

    ``ws[name]`` is the server side of a connection; ``await opened(name)`` and
    ``await closed(name)`` (the close code) wait for it, whichever comes first,
    the handler or the wait. ``handlers`` adds to (or overrides) the open and close handlers.
    """

    def __init__(self, handlers: dict[str, Callable[..., Any]], **options: Any) -> None:
        self.app = App()
        self.ws: dict[str, WebSocket] = {}
        self._opened: dict[str, asyncio.Future[WebSocket]] = {}
        self._closed: dict[str, asyncio.Future[int]] = {}
        self.app.websocket("/ws", {"open": self._open, "close": self._close, **handlers}, **options)

    @staticmethod
    def _future(table: dict[str, asyncio.Future[Any]], name: str) -> asyncio.Future[Any]:
        if name not in table:
            table[name] = asyncio.get_running_loop().create_future()
        return table[name]

    def _open(self, ws: WebSocket) -> None:
        query = parse_qs(urlsplit(ws.path).query)
        name = query["id"][0]
        ws.data["name"] = name
        self.ws[name] = ws
        for topic in query.get("topics", [""])[0].split(","):
            if topic:
                ws.subscribe(topic)
        self._future(self._opened, name).set_result(ws)

    def _close(self, ws: WebSocket, code: int, reason: str) -> None:
        self._future(self._closed, ws.data["name"]).set_result(code)

    async def opened(self, name: str) -> WebSocket:
        # shield: a timed-out wait must not cancel the future a later wait or handler uses
        future = self._future(self._opened, name)
        return await asyncio.wait_for(asyncio.shield(future), TIMEOUT)

    async def closed(self, name: str) -> int:
        future = self._future(self._closed, name)
        return await asyncio.wait_for(asyncio.shield(future), TIMEOUT)

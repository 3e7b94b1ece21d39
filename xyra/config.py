"""What a server is built from: the frozen ``ServerConfig`` an ``App`` hands its ``Server``.

The App builds one ``ServerConfig`` per start (``App.config()``); the Server reads it and
nothing of the App. A WebSocket route added while a server runs reaches it through
``Server.add_route``, which updates everything a route needs (its handlers, limits and
compression negotiator travel together in its ``RouteConfig``).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from xyra._core.connection import RouteConfig
from xyra.backplane import Backplane, BackplaneEvent
from xyra.http import Request, Response

#: A startup or shutdown hook: a function, sync or async, called without arguments.
Hook = Callable[[], Any]
#: The app's HTTP side: a request -> a Response, an awaitable of one, or None (no route).
HTTPDispatch = Callable[[Request], "Response | Awaitable[Response] | None"]


class StreamOwner(Protocol):
    """The connection a streamed request belongs to (the core's HTTP-phase protocol)."""

    def stream_done(self, keep_alive: bool) -> None:
        """The response is complete: serve the next request (keep-alive) or close."""


class HTTPStream(Protocol):
    """A request whose body and response are streamed (the ASGI adapter's HTTP cycle).

    The core calls these on the event loop, in this order: ``feed`` for each body chunk
    as it arrives and ``end`` once the body is complete (both may come before
    ``start``, while an earlier request of the connection is answered); ``start`` when
    the request's turn comes; ``pause_writing``/``resume_writing`` from the transport;
    ``shutdown`` when the server stops (finish this response, then close); ``lost``
    when the connection is gone. The stream writes its response on the transport and
    calls ``StreamOwner.stream_done`` once it is complete.
    """

    def feed(self, chunk: bytes) -> None: ...
    def end(self) -> None: ...
    def start(self) -> None: ...
    def lost(self) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def shutdown(self) -> None: ...


#: Asked at the end of every request head (but WebSocket handshakes a route serves):
#: ``(conn, transport, scheme, method, target, headers, http_version, keep_alive)``
#: with the method and target as bytes, the headers as received (names lowercased),
#: returns an ``HTTPStream`` to stream the request, or None to answer it buffered.
HTTPStreams = Callable[
    [
        StreamOwner,
        asyncio.Transport,
        str,
        bytes,
        bytes,
        list[tuple[bytes, bytes]],
        str,
        bool,
    ],
    "HTTPStream | None",
]


@dataclass(frozen=True)
class ServerLimits:
    """Server-wide limits (see ``App``): handshake time, request head and body, connections."""

    handshake_timeout: float = 10.0
    max_head_size: int = 32768
    max_headers: int = 100
    max_body_size: int = 1 << 20
    max_connections: int = 0
    max_connections_per_ip: int = 0
    #: Seconds an idle keep-alive HTTP connection stays open (None: handshake_timeout).
    keep_alive_timeout: float | None = None

    def __post_init__(self) -> None:
        for name in ("max_head_size", "max_headers"):
            _check_int(name, getattr(self, name), 1)
        for name in ("max_body_size", "max_connections", "max_connections_per_ip"):
            _check_int(name, getattr(self, name), 0)
        for name in ("handshake_timeout", "keep_alive_timeout"):
            value = getattr(self, name)
            if value is None and name == "keep_alive_timeout":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
                raise ValueError(f"{name} must be a number of seconds > 0, got {value!r}")


def _check_int(name: str, value: object, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise TypeError(f"{name} must be an int >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")


@dataclass(frozen=True)
class ServerConfig:
    """Everything a ``Server`` needs, built once by ``App.config()``."""

    routes: tuple[RouteConfig, ...] = ()
    limits: ServerLimits = field(default_factory=ServerLimits)
    http_dispatch: HTTPDispatch | None = None
    #: Requests streamed to an ASGI app (``App.mount``), asked before ``http_dispatch``.
    http_streams: HTTPStreams | None = None
    startup: tuple[Hook, ...] = ()
    shutdown: tuple[Hook, ...] = ()
    request_class: type[Request] = Request
    response_class: type[Response] = Response
    #: Pub/sub with other workers and machines: a URL (redis://...) or a Backplane.
    backplane: str | Backplane | None = None
    #: Told when the backplane link goes down or comes back (the app's hooks).
    on_backplane: Callable[[BackplaneEvent], None] | None = None
    #: Log every handshake on the ``xyra.access`` logger (``xyra.accesslog``).
    access_log: bool = False

    @property
    def tick_interval(self) -> float:
        """Seconds between two runs of every connection's timers."""
        return tick_interval(self.limits.handshake_timeout, self.routes)

    @property
    def close_timeout(self) -> float:
        """The longest close handshake a route allows (graceful shutdown waits for it)."""
        return max((route.close_timeout for route in self.routes), default=5.0)


def tick_interval(handshake_timeout: float, routes: tuple[RouteConfig, ...]) -> float:
    """Timers are checked by one periodic tick: a quarter of the shortest timeout."""
    spans = [handshake_timeout]
    for route in routes:
        spans += [route.idle_timeout, route.ping_interval, route.close_timeout]
    shortest = min(s for s in spans if s > 0)
    return min(1.0, max(0.02, shortest / 4))

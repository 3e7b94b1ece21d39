"""Type stub for the compiled event-loop glue (``protocol.pyx``).

``ServerProtocol`` implements the ``asyncio.BufferedProtocol`` interface without
inheriting from it (it is a ``cdef class``); on uvloop it hands the transport to the
``WebSocket`` after the upgrade. ``PlainServerProtocol`` adds ``data_received`` for plain
asyncio loops and stays the transport's protocol.
"""

import asyncio
from collections.abc import Callable
from typing import Any

from xyra._core.connection import Gate, RouteConfig
from xyra._core.pubsub import Hub

def tune_malloc() -> bool:
    """Keep freed large buffers for reuse (glibc): see tune.h. True if applied."""

def live_objects() -> dict[str, int]:
    """HTTP-phase protocols alive now; always zero in a release build."""

def reset_live_objects() -> None:
    """Count from zero again (tests, after reporting a leak)."""

class ServerContext(Gate):
    """What the protocols of one listening server share, built from a ``ServerConfig``."""

    routes: dict[str, RouteConfig]
    """WebSocket routes without path parameters: path -> RouteConfig."""
    patterns: list[RouteConfig]
    """WebSocket routes with path parameters, in registration order."""
    fallbacks: list[RouteConfig]
    """ASGI mounts' WebSocket routes (a pattern marked ``fallback``): tried last."""
    hub: Hub
    switch_protocol: bool
    """Hand the transport to the WebSocket after the upgrade (uvloop)."""
    @property
    def connections(self) -> list[Any]:
        """Every live connection: HTTP-phase protocols and open WebSockets."""
    @property
    def per_ip(self) -> dict[Any, int]: ...
    max_head_size: int
    max_headers: int
    max_body_size: int
    max_connections: int
    max_connections_per_ip: int
    handshake_timeout: float
    keep_alive_timeout: float
    accepting: bool
    http_dispatch: Callable[[Any], Any] | None
    """Request -> Response, awaitable or None (HTTP routes), or None."""
    http_streams: Callable[..., Any] | None
    """Streamed requests (``xyra.config.HTTPStreams``: the ASGI adapter), or None."""
    request_class: Any
    response_class: Any
    scheme: str
    access_log: bool
    """Log each handshake to ``xyra.access`` (a flag the server refreshes every tick)."""
    fast_upgrade: bool
    """Start new connections as WebSockets that a canonical upgrade opens in place (uvloop)."""
    fast_upgrades: int
    """Connections the fast path opened."""
    def __init__(self, hub: Hub, config: Any) -> None:
        """``config``: the facade's ``xyra.config.ServerConfig``."""
    def __call__(self) -> Any:
        """The protocol of a new connection (the listener's protocol factory)."""
    def add_route(self, route: RouteConfig) -> None:
        """Serve ``route`` from now on (its handlers, limits and negotiator come with it)."""
    def tick(self, now: float) -> None:
        """Advance the shared clock and run every connection's timers."""
    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Start closing every connection (graceful shutdown)."""
    def abort_all(self) -> None: ...

class ServerProtocol:
    """uvloop protocol of one connection's HTTP phase."""

    stream_info: Any
    """The stream factory's per-connection cache (None until it sets it)."""
    def __init__(self, ctx: ServerContext) -> None: ...
    def stream_done(self, keep_alive: bool) -> None:
        """The active stream's response is complete: the next request's turn, or close."""
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def get_buffer(self, sizehint: int) -> memoryview: ...
    def buffer_updated(self, nbytes: int) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    # httptools callbacks
    def on_message_begin(self) -> None: ...
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_headers_complete(self) -> None: ...
    def on_body(self, body: bytes) -> None: ...
    def on_message_complete(self) -> None: ...
    # done-callbacks of async HTTP and upgrade handlers
    def _respond_later(self, task: asyncio.Future[Any], context: Any) -> None: ...
    def _verdict_later(self, task: asyncio.Future[Any], context: Any) -> None: ...

class PlainServerProtocol(ServerProtocol):
    """For plain asyncio loops: stays the protocol after an upgrade and forwards."""

    def data_received(self, data: bytes) -> None: ...

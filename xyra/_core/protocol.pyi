"""Type stub for the compiled event-loop glue (``protocol.pyx``).

``ServerProtocol`` implements the ``asyncio.BufferedProtocol`` interface without
inheriting from it (it is a ``cdef class``).
"""

import asyncio
from typing import Any

from xyra._core.connection import Hub, RouteConfig

class ServerContext:
    """What the protocols of one listening server share."""

    routes: dict[str, RouteConfig]
    hub: Hub
    connections: set[ServerProtocol]
    max_head_size: int
    max_headers: int
    handshake_timeout: float
    accepting: bool
    negotiators: dict[str, Any]
    def __init__(
        self,
        hub: Hub,
        routes: dict[str, RouteConfig],
        *,
        max_head_size: int = 32768,
        max_headers: int = 100,
        handshake_timeout: float = 10.0,
    ) -> None: ...
    def tick(self, now: float) -> None:
        """Advance the shared clock and run every connection's timers."""
    def close_all(self, code: int = 1001, reason: str = "server shutting down") -> None:
        """Start closing every connection (graceful shutdown)."""
    def abort_all(self) -> None: ...

class ServerProtocol:
    """asyncio/uvloop protocol of one connection: HTTP handshake, then WebSocket."""

    def __init__(self, ctx: ServerContext) -> None: ...
    def connection_made(self, transport: asyncio.BaseTransport) -> None: ...
    def get_buffer(self, sizehint: int) -> memoryview: ...
    def buffer_updated(self, nbytes: int) -> None: ...
    def data_received(self, data: bytes) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_lost(self, exc: Exception | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def on_url(self, url: bytes) -> None: ...
    def on_header(self, name: bytes, value: bytes) -> None: ...
    def on_headers_complete(self) -> None: ...

"""Type stub for the compiled connection (``connection.pyx``).

Only the Python-visible API: the per-connection protocol state, the cork buffer and
the C-level hooks are in ``connection.pxd``.
"""

import asyncio
import logging
from collections.abc import Callable
from typing import Any, TypeAlias

from xyra._core.frames import Parser
from xyra.enums import SendStatus

_Buffer: TypeAlias = bytes | bytearray | memoryview
_Handler: TypeAlias = Callable[..., Any]

class RouteConfig:
    """One route's handler set and options, built once by the facade."""

    open: _Handler | None
    message: _Handler | None
    close: _Handler | None
    drain: _Handler | None
    ping: _Handler | None
    pong: _Handler | None
    subscription: _Handler | None
    upgrade: _Handler | None
    allowed_origins: str | tuple[str, ...] | None
    """None: same-origin policy; "*": any origin; else the allowed origins."""
    max_messages_per_second: float
    max_bytes_per_second: float
    rate_limit_close: bool
    """Over a rate limit: close with 1008 (True) or drop the message (False)."""
    open_async: bool
    message_async: bool
    close_async: bool
    max_payload_length: int
    max_backpressure: int
    max_queue: int
    idle_timeout: float
    ping_interval: float
    close_timeout: float
    close_on_backpressure_limit: bool
    subprotocols: tuple[str, ...]
    path: str
    compression: int
    """0 off, 1 shared, 2 dedicated."""
    compression_threshold: int
    def __init__(self) -> None: ...

class Hub:
    """What the connections of one server share: the loop, the flush list, the clock."""

    loop: asyncio.AbstractEventLoop
    log: logging.Logger
    now: float
    thread_id: int
    handshaking: set[Any]
    """HTTP-phase protocols."""
    sockets: list[WebSocket]
    """Open WebSockets (each knows its index)."""
    per_ip: dict[Any, int]
    """Remote host -> open connections (while per-address limits are on)."""
    def __init__(self, loop: asyncio.AbstractEventLoop, log: logging.Logger) -> None: ...
    def flush_all(self) -> None:
        """Write every corked connection once: runs once per loop iteration at most."""
    def publish(
        self,
        topic: str,
        message: str | _Buffer,
        opcode: int | None = None,
        compress: bool = False,
        exclude: WebSocket | None = None,
    ) -> int:
        """Queue ``message`` for every subscriber of ``topic``; how many it was queued for."""

class Extras:
    """The per-connection state few connections need, created on first use."""

class WebSocket(Parser):
    """One WebSocket connection: the same object in every callback, hashable.

    Safe to use after the close: it reports ``closed``, sends return
    ``SendStatus.DROPPED``, and nothing raises.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Always raises ``TypeError``: WebSocket objects are created by the server."""
    # The asyncio protocol interface: after the upgrade the WebSocket is the
    # transport's protocol (uvloop). Called by the event loop, not by handlers.
    data_received: None  # buffered reads only (see get_buffer)
    @property
    def get_buffer(self) -> Callable[[int], memoryview]:
        """The reader uvloop calls: shared by every connection that holds no partial frame."""
    def _read_own(self, sizehint: int) -> memoryview: ...
    def buffer_updated(self, nbytes: int) -> None: ...
    def eof_received(self) -> bool: ...
    def connection_lost(self, exc: BaseException | None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    def send(
        self, data: str | _Buffer, opcode: int | None = None, compress: bool = False
    ) -> SendStatus:
        """Send a message: ``str`` as TEXT, bytes-like as BINARY, unless ``opcode`` says."""
    def send_text(self, text: str) -> SendStatus:
        """Send a TEXT message."""
    def send_binary(self, data: _Buffer) -> SendStatus:
        """Send a BINARY message."""
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake; the connection ends when the peer answers."""
    def terminate(self) -> None:
        """Drop the TCP connection now, without a close handshake (reported as 1006)."""
    def ping(self, data: str | _Buffer = b"") -> SendStatus:
        """Send a ping (at most 125 bytes)."""
    @property
    def closed(self) -> bool:
        """True once a close frame was sent or received, or the TCP connection is gone."""
    @property
    def remote_address(self) -> tuple[str, int]:
        """``(host, port)`` of the peer."""
    @property
    def path(self) -> str:
        """The request target the connection was opened with (path and query)."""
    @property
    def subprotocol(self) -> str | None:
        """The negotiated subprotocol, or None."""
    @property
    def data(self) -> dict[Any, Any]:
        """A dict for the application's own per-connection state."""
    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this connection and not yet written to the socket."""
    @property
    def dropped(self) -> int:
        """Messages dropped for this connection because it was over ``max_backpressure``."""
    @property
    def topics(self) -> list[str]:
        """The topics this connection is subscribed to."""
    def subscribe(self, topic: str) -> bool:
        """Subscribe to ``topic``; True if it was not subscribed yet."""
    def unsubscribe(self, topic: str) -> bool:
        """Unsubscribe from ``topic``; True if it was subscribed."""
    def is_subscribed(self, topic: str) -> bool: ...
    def publish(
        self, topic: str, message: str | _Buffer, opcode: int | None = None, compress: bool = False
    ) -> bool:
        """Send ``message`` to every subscriber of ``topic`` except this connection."""
    def drain(self) -> asyncio.Future[None]:
        """Awaitable: done when the queued bytes are under ``max_backpressure``."""
    def receive(self) -> asyncio.Future[str | bytes]:
        """Awaitable: the next message, for a simple ``async def`` handler.

        Raises ``ConnectionClosed`` once the connection is closed and no message is left.
        """
    def __aiter__(self) -> WebSocket: ...
    async def __anext__(self) -> str | bytes: ...
    def _task_done(self, task: asyncio.Future[Any]) -> None: ...

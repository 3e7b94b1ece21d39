"""Type stub for the compiled connection (``connection.pyx``).

Only the Python-visible API; the C-level parts are in ``connection.pxd`` and
``endpoint.pxd``.
"""

import asyncio
from collections.abc import Callable
from typing import Any, TypeAlias

from xyra._core.endpoint import Endpoint, EndpointConfig, Extras
from xyra.enums import SendStatus

_Buffer: TypeAlias = bytes | bytearray | memoryview
_Handler: TypeAlias = Callable[..., Any]

class RouteConfig(EndpointConfig):
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
    negotiator: Callable[[list[str]], Any] | None
    """permessage-deflate negotiation (routes with compression), or None."""
    pattern: Any
    """The path's ``{parameters}`` (a ``xyra.router.PathPattern``), or None."""
    settle: Callable[[Any], Any] | None
    """``settle(ws)`` on a protocol error: None to fail now, or an awaitable to fail once
    the messages before the bad frame are answered (the ASGI adapter)."""
    open_async: bool
    message_async: bool
    close_async: bool
    discard_warned: bool
    max_queue: int
    subprotocols: tuple[str, ...]
    path: str
    def __init__(self) -> None: ...

class WsExtras(Extras):
    """The WebSocket's lazily created per-connection state."""

class WebSocket(Endpoint):
    """One WebSocket connection: the same object in every callback, hashable.

    Safe to use after the close: it reports ``closed``, sends return
    ``SendStatus.DROPPED``, and nothing raises.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        """Always raises ``TypeError``: WebSocket objects are created by the server."""
    # The asyncio protocol interface: after the upgrade the WebSocket is the
    # transport's protocol (uvloop). Called by the event loop, not by handlers.
    data_received: None  # buffered reads only (see get_buffer)
    def connection_made(self, transport: Any) -> None:
        """Only as the transport's first protocol (the server's fast path, see ``Gate``)."""
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
    def send_text(self, text: str | _Buffer) -> SendStatus:
        """Send a TEXT message (``str``, or bytes-like holding valid UTF-8)."""
    def send_binary(self, data: str | _Buffer) -> SendStatus:
        """Send a BINARY message (bytes-like, or ``str`` sent as its UTF-8)."""
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake; the connection ends when the peer answers."""
    def _fail_settled(self, code: int, why: str, waiter: Any) -> None: ...
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
    def path_params(self) -> dict[str, Any]:
        """The values of the route's ``{name}`` path parameters (a new dict)."""
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
        """Subscribe to ``topic``; True if it was not subscribed yet.

        After the connection closed it is a no-op that returns False.
        """
    def unsubscribe(self, topic: str) -> bool:
        """Unsubscribe from ``topic``; True if it was subscribed."""
    def is_subscribed(self, topic: str) -> bool:
        """True if this connection is subscribed to ``topic``."""
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

class Gate:
    """The server side of a WebSocket that is its transport's first protocol: its
    first read decides whether the upgrade opens it in place (protocol.pyx implements
    it; this base fixes the interface)."""

"""The ASGI ``websocket`` scope on Xyra's WebSocket engine.

An ASGI mount registers one WebSocket route (``RouteConfig``, the mount's route options)
whose path is the mount's prefix, tried after every route of the App. Its handlers bridge
the core's events to the application:

* ``upgrade(request)``: the handshake checks passed (the core's own, as for any route);
  the app is started with the scope and ``websocket.connect``, and the core waits for its
  verdict (a ``Handshake`` future): ``websocket.accept`` (the app's subprotocol and
  headers go into the 101), ``websocket.close`` (403) or ``websocket.http.response.*``
  (that response). An app that fails or returns first gets a 500.
* ``open(ws)``: the core's WebSocket exists; from now on the app's ``websocket.send``
  is ``ws.send`` (corked, compressed when negotiated) and ``websocket.close`` is
  ``ws.close``.
* ``message(ws, message, opcode)``: a ``websocket.receive`` event for the app. Past the
  route's ``max_queue`` unread events the handler returns a future, which makes the
  core hold later events and then pause reading until the app catches up.
* ``close(ws, code, reason)``: ``websocket.disconnect`` with the code and reason.
* ``settle(ws)``: a protocol error from the client waits until the app has answered the
  messages that came before it (it waits in ``receive`` with nothing queued, or at most
  ``close_timeout``), so their answers precede the close frame (Autobahn's strict cases).

An exception in the app closes an open connection with 1011 (traceback logged); an app
that returns closes it with 1000. ``ws.send`` over ``max_backpressure``... is avoided:
``websocket.send`` waits for the drain once the core reports backpressure.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import TYPE_CHECKING, Any

from xyra.asgi.types import ClientDisconnected, Message, ProtocolError, Scope
from xyra.enums import SendStatus
from xyra.http import Response

if TYPE_CHECKING:
    from xyra._core.connection import WebSocket
    from xyra.app import App
    from xyra.asgi.mount import ASGIMount
    from xyra.handshake import Accepted

log = logging.getLogger("xyra")

#: Where a connection's session lives in ``ws.data``.
KEY = "xyra.asgi"

CONNECTING, ACCEPTING, OPEN, DENYING, CLOSED = range(5)
_SUCCESS = SendStatus.SUCCESS
_BACKPRESSURE = SendStatus.BACKPRESSURE
# Header names of the 101 the core writes itself.
_HANDSHAKE_HEADERS = frozenset(
    {b"upgrade", b"connection", b"sec-websocket-accept", b"sec-websocket-extensions"}
)


class Handshake(asyncio.Future[Any]):
    """The verdict the core's upgrade path waits for: None (accept), False (403) or a
    Response. Told by the core when the client leaves before it is given."""

    session: Session

    def client_left(self) -> None:
        self.session.client_left()


class Session:
    """One ASGI WebSocket connection: the app's receive/send on a core ``WebSocket``."""

    __slots__ = (
        "app",
        "compress",
        "denial",
        "disconnect",
        "end_code",
        "handshake",
        "loop",
        "low_water",
        "max_queue",
        "opened_waiter",
        "queue",
        "room",
        "scope",
        "settling",
        "state",
        "task",
        "verdict",
        "waiter",
        "ws",
        "xyra_app",
    )

    def __init__(self, mount: ASGIMount, scope: Scope, handshake: Accepted | None) -> None:
        self.app = mount.app
        self.xyra_app: App | None = mount.xyra_app
        self.loop = mount.loop
        self.scope = scope
        self.handshake = handshake
        self.compress = mount.compress
        self.max_queue = mount.route.max_queue
        self.low_water = self.max_queue // 2
        self.queue: deque[Message] = deque([{"type": "websocket.connect"}])
        self.waiter: asyncio.Future[Message] | None = None
        self.room: asyncio.Future[None] | None = None
        self.opened_waiter: asyncio.Future[None] | None = None
        self.disconnect: Message | None = None
        self.settling: asyncio.Future[None] | None = None
        self.denial: tuple[int, list[tuple[str, str]], list[bytes]] | None = None
        self.ws: WebSocket | None = None
        self.state = CONNECTING
        self.end_code = 1000
        verdict = self.verdict = Handshake(loop=self.loop)
        verdict.session = self
        self.task: asyncio.Task[None] | None = None

    @property
    def websocket(self) -> WebSocket:
        """The core's WebSocket of this connection (once accepted): subscribe, publish, ..."""
        if self.ws is None:
            raise RuntimeError(
                "the ASGI WebSocket is not open: accept it first (await websocket.accept())"
            )
        return self.ws

    # -- events from the core ------------------------------------------------------------

    def opened(self, ws: WebSocket) -> None:
        self.ws = ws
        if self.state != ACCEPTING:  # the app returned or failed meanwhile
            ws.close(self.end_code)
            return
        self.state = OPEN
        self._opened_result(None)

    def closed(self, code: int, reason: str) -> None:
        self.state = CLOSED
        self._push_disconnect(code, reason)

    def client_left(self) -> None:
        """The TCP connection ended during the handshake."""
        if self.state in (CONNECTING, ACCEPTING, DENYING):
            self.state = CLOSED
            self._push_disconnect(1006, "")
            self._opened_result(ClientDisconnected("the client left during the handshake"))

    def settle(self, timeout: float) -> asyncio.Future[None] | None:
        """A protocol error came: None if the app has answered everything before it."""
        if self.task is None or (self.waiter is not None and not self.queue):
            return None
        if self.settling is None:
            self.settling = self.loop.create_future()
            self.loop.call_later(timeout, self._settled)
        return self.settling

    def _settled(self) -> None:
        settling, self.settling = self.settling, None
        if settling is not None and not settling.done():
            settling.set_result(None)

    def _check_opened(self) -> None:
        # After the verdict: the core opened the connection, or the client had left.
        if self.ws is None and self.state == ACCEPTING:
            self.client_left()

    def _opened_result(self, exc: BaseException | None) -> None:
        waiter, self.opened_waiter = self.opened_waiter, None
        if waiter is not None and not waiter.done():
            if exc is None:
                waiter.set_result(None)
            else:
                waiter.set_exception(exc)

    def _push_disconnect(self, code: int, reason: str) -> None:
        if self.disconnect is not None:
            return
        event = self.disconnect = {"type": "websocket.disconnect", "code": code, "reason": reason}
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(event)
                return
        self.queue.append(event)

    # -- the application -----------------------------------------------------------------

    async def run(self) -> None:
        scope = self.scope
        try:
            result = await self.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._end(1011)
            raise
        except Exception as exc:
            if self.state == CLOSED or isinstance(exc, ClientDisconnected):
                log.info(
                    "xyra: ASGI app raised %s on WebSocket %s after it closed",
                    type(exc).__name__,
                    scope["path"],
                )
            else:
                log.error("xyra: ASGI app failed on WebSocket %s", scope["path"], exc_info=exc)
            self._end(1011)
        else:
            if self.state in (CONNECTING, DENYING):
                log.error(
                    "xyra: ASGI app returned without accepting or refusing WebSocket %s",
                    scope["path"],
                )
            elif result is not None:
                log.warning("xyra: an ASGI app should return None, not %r", type(result).__name__)
            self._end(1000)
        finally:
            self.task = None
            self._settled()

    def _end(self, code: int) -> None:
        """The app is done: answer a handshake still waiting, close an open connection."""
        self.end_code = code
        if not self.verdict.done():
            self.verdict.set_result(Response("Internal Server Error\n", 500))
            self.state = CLOSED
        elif self.state == ACCEPTING:
            self.state = CLOSED  # opened() closes it with end_code
        elif self.state == OPEN and self.ws is not None:
            self.state = CLOSED
            self.ws.close(code)

    async def receive(self) -> Message:
        queue = self.queue
        if queue:
            event = queue.popleft()
            room = self.room
            if room is not None and len(queue) <= self.low_water:
                self.room = None
                if not room.done():
                    room.set_result(None)
            return event
        if self.disconnect is not None:
            return self.disconnect
        if self.settling is not None:
            self._settled()  # caught up: a pending protocol failure goes ahead
        waiter: asyncio.Future[Message] = self.loop.create_future()
        self.waiter = waiter
        return await waiter

    async def send(self, message: Message) -> None:
        kind = message["type"]
        ws = self.ws
        if kind == "websocket.send":
            if self.state != OPEN or ws is None:
                if self.state in (CONNECTING, DENYING):
                    raise ProtocolError("ASGI message 'websocket.send' before 'websocket.accept'")
                if self.state == ACCEPTING:
                    await self._wait_open()
                    return await self.send(message)
                raise ClientDisconnected("the WebSocket is closed")
            data = message.get("text")
            if data is None:
                data = message.get("bytes")
                if data is None:
                    raise ProtocolError("'websocket.send' needs 'text' or 'bytes'")
            status = ws.send(data, None, self.compress)
            if status is not _SUCCESS:
                if status is _BACKPRESSURE:
                    await ws.drain()
                elif ws.closed:
                    raise ClientDisconnected("the WebSocket is closed")
        elif kind == "websocket.accept":
            await self._accept(message)
        elif kind == "websocket.close":
            self._close(message)
        elif kind == "websocket.http.response.start":
            self._deny_start(message)
        elif kind == "websocket.http.response.body":
            self._deny_body(message)
        else:
            raise ProtocolError(f"unknown ASGI WebSocket message type {kind!r}")

    async def _wait_open(self) -> None:
        if self.opened_waiter is None:
            self.opened_waiter = self.loop.create_future()
        await self.opened_waiter

    async def _accept(self, message: Message) -> None:
        if self.state != CONNECTING:
            if self.state == CLOSED:
                raise ClientDisconnected("the client left before the WebSocket was accepted")
            raise ProtocolError("ASGI message 'websocket.accept' out of place (sent twice?)")
        subprotocol = message.get("subprotocol")
        headers = message.get("headers") or ()
        handshake = self.handshake
        if handshake is not None and (subprotocol is not None or headers):
            extra = []
            if subprotocol is not None:
                if not isinstance(subprotocol, str) or not subprotocol.isprintable():
                    raise ProtocolError(f"invalid subprotocol {subprotocol!r}")
                handshake.subprotocol = subprotocol
                extra.append(b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n")
            for name, value in headers:
                name, value = bytes(name), bytes(value)
                if any(c in name + value for c in b"\r\n\0") or b":" in name:
                    raise ProtocolError(f"invalid header in 'websocket.accept': {name!r}")
                lower = name.lower()
                if lower in _HANDSHAKE_HEADERS or (
                    subprotocol is not None and lower == b"sec-websocket-protocol"
                ):
                    continue
                extra.append(name + b": " + value + b"\r\n")
            handshake.response = handshake.response[:-2] + b"".join(extra) + b"\r\n"
        self.state = ACCEPTING
        self.verdict.set_result(None)
        self.loop.call_soon(self._check_opened)
        await self._wait_open()

    def _close(self, message: Message) -> None:
        code = message.get("code") or 1000
        reason = message.get("reason") or ""
        if self.state == CONNECTING:
            # A close before accept refuses the handshake (403).
            self.state = CLOSED
            self.verdict.set_result(False)
            self._push_disconnect(1006, "")
        elif self.state == OPEN and self.ws is not None:
            try:
                self.ws.close(code, reason)
            except (ValueError, TypeError) as exc:
                raise ProtocolError(f"'websocket.close': {exc}") from None
        elif self.state in (ACCEPTING, DENYING):
            raise ProtocolError("ASGI message 'websocket.close' out of place")
        # closing a closed connection does nothing

    def _deny_start(self, message: Message) -> None:
        if self.state != CONNECTING:
            raise ProtocolError("'websocket.http.response.start' after the handshake began")
        status = message["status"]
        headers = [
            (bytes(name).decode("latin-1"), bytes(value).decode("latin-1"))
            for name, value in message.get("headers") or ()
        ]
        self.denial = (status, headers, [])
        self.state = DENYING

    def _deny_body(self, message: Message) -> None:
        if self.state != DENYING or self.denial is None:
            raise ProtocolError(
                "'websocket.http.response.body' without 'websocket.http.response.start'"
            )
        status, headers, body = self.denial
        body.append(bytes(message.get("body", b"")))
        if message.get("more_body", False):
            return
        try:
            response = Response(b"".join(body), status, headers)
        except (TypeError, ValueError) as exc:
            raise ProtocolError(f"invalid 'websocket.http.response': {exc}") from None
        self.state = CLOSED
        self.verdict.set_result(response)
        self._push_disconnect(1006, "")


def handlers(mount: ASGIMount) -> dict[str, Any]:
    """The route handlers that bridge the core's events to the mount's app."""

    def upgrade(request: Any) -> Handshake:
        scope = mount.websocket_scope(request)
        session = Session(mount, scope, getattr(request, "handshake", None))
        scope["extensions"]["xyra"]["session"] = session
        request.data[KEY] = session
        session.task = mount.loop.create_task(session.run())
        return session.verdict

    def on_open(ws: WebSocket) -> None:
        ws.data[KEY].opened(ws)

    def on_message(ws: WebSocket, message: str | bytes, opcode: Any) -> Any:
        # The message becomes the app's next websocket.receive event. Written out here,
        # not as a Session method: this runs for every message.
        session: Session = ws.data[KEY]
        event: Message
        if type(message) is str:
            event = {"type": "websocket.receive", "text": message}
        else:
            event = {"type": "websocket.receive", "bytes": message}
        waiter = session.waiter
        if waiter is not None:
            session.waiter = None
            if not waiter.done():
                waiter.set_result(event)
                return None
        queue = session.queue
        queue.append(event)
        if len(queue) >= session.max_queue and session.room is None:
            session.room = session.loop.create_future()
            return session.room
        return None

    def on_close(ws: WebSocket, code: int, reason: str) -> None:
        ws.data[KEY].closed(code, reason)

    def settle(ws: WebSocket) -> asyncio.Future[None] | None:
        session: Session = ws.data[KEY]
        return session.settle(mount.route.close_timeout)

    return {
        "upgrade": upgrade,
        "open": on_open,
        "message": on_message,
        "close": on_close,
        "settle": settle,
    }

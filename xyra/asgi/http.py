"""The ASGI ``http`` scope on Xyra's HTTP phase: one ``HTTPCycle`` per request.

The core's protocol (xyra/_core/protocol.pyx) parses the request with httptools and hands
a request an ASGI mount serves to an ``HTTPCycle`` (see ``xyra.config.HTTPStream``): the
body arrives in chunks (``feed``), the application reads them as ``http.request`` events,
and its ``http.response.*`` messages are written to the transport as they come.

* Flow control: past 64 KiB of body the app has not read, reading pauses until it reads;
  while the transport's write buffer is over its limit, ``send`` waits (SSE and other
  long responses go at the client's pace).
* The response head is held until the first body message (without a Content-Length,
  at most until the end of the loop iteration): a response of one body goes out in one
  write, given a Content-Length if it had none; a streamed one without Content-Length is
  chunked (HTTP/1.1) or ends with the connection (HTTP/1.0).
* ``http.disconnect`` comes once the response is complete or the client is gone; a
  ``send`` after the client left raises ``ClientDisconnected`` (an OSError, spec 2.4).
* Errors: an app that fails before its response head went out gets a 500 (traceback
  logged, never sent); after that the connection is closed. A message out of place
  raises ``ProtocolError`` in the app, which is then handled the same way.
"""

from __future__ import annotations

import asyncio
import logging
import re
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

from xyra.asgi.types import ClientDisconnected, Message, ProtocolError, Scope
from xyra.http import http_date

if TYPE_CHECKING:
    from xyra.asgi.mount import ASGIMount
    from xyra.config import StreamOwner

log = logging.getLogger("xyra")

#: Unread request body past which reading pauses.
HIGH_WATER = 64 * 1024

_BAD_NAME = re.compile(rb'[\x00-\x20\x7f()<>@,;:\\"/\[\]?={}]|^$')
_BAD_VALUE = re.compile(rb"[\x00-\x08\x0a-\x1f\x7f]")
_DISCONNECT: dict[str, Any] = {"type": "http.disconnect"}
_CONTINUE = b"HTTP/1.1 100 Continue\r\n\r\n"
_ERROR_500 = (
    b"HTTP/1.1 500 Internal Server Error\r\ncontent-type: text/plain; charset=utf-8\r\n"
    b"content-length: 21\r\nconnection: close\r\n\r\nInternal Server Error"
)
_SERVER = b"server: xyra\r\n"
_CLOSE = b"connection: close\r\n"
_CHUNKED = b"transfer-encoding: chunked\r\n"
_LAST_CHUNK = b"0\r\n\r\n"


def _status_line(status: int) -> bytes:
    try:
        phrase = HTTPStatus(status).phrase
    except ValueError:
        phrase = ""
    return f"HTTP/1.1 {status} {phrase}\r\n".encode("latin-1")


_STATUS = {status: _status_line(status) for status in range(100, 600)}
_date: tuple[str, bytes] = ("", b"")


def _date_line() -> bytes:
    global _date
    now = http_date()  # cached per second
    if _date[0] is not now:
        _date = (now, b"date: " + now.encode("latin-1") + b"\r\n")
    return _date[1]


class HTTPCycle:
    """One request of an ASGI ``http`` scope (see the module docstring)."""

    __slots__ = (
        "app",
        "body_less",
        "buffered",
        "chunked",
        "chunks",
        "complete",
        "conn",
        "disconnected",
        "drain",
        "end_delivered",
        "ended",
        "expect_continue",
        "flush_handle",
        "head",
        "keep_alive",
        "loop",
        "read_paused",
        "remaining",
        "scope",
        "started",
        "task",
        "transport",
        "version_10",
        "waiter",
        "write_paused",
    )

    def __init__(
        self,
        mount: ASGIMount,
        conn: StreamOwner,
        transport: asyncio.Transport,
        scope: Scope,
        keep_alive: bool,
        expect_continue: bool,
    ) -> None:
        self.app = mount.app
        self.loop = mount.loop
        self.conn = conn
        self.transport = transport
        self.scope = scope
        self.version_10 = scope["http_version"] == "1.0"
        self.keep_alive = keep_alive and not self.version_10
        self.expect_continue = expect_continue
        self.chunks: list[bytes] = []
        self.buffered = 0
        self.ended = self.end_delivered = False
        self.waiter: asyncio.Future[None] | None = None
        self.read_paused = self.write_paused = False
        self.drain: asyncio.Future[None] | None = None
        self.started = self.complete = self.disconnected = False
        self.head: list[bytes] | None = None  # the response head, until it is written
        self.flush_handle: asyncio.Handle | None = None
        self.chunked = False
        self.body_less = False
        self.remaining = -1  # bytes the Content-Length still allows (-1: none given)
        self.task: asyncio.Task[None] | None = None

    # -- from the core's protocol ------------------------------------------------------------

    def feed(self, chunk: bytes) -> None:
        if self.complete or self.disconnected:
            return  # the response is done: the rest of the body is read and dropped
        self.chunks.append(chunk)
        self.buffered += len(chunk)
        if self.buffered > HIGH_WATER and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def start(self) -> None:
        self.task = self.loop.create_task(self.run())

    def lost(self) -> None:
        self.disconnected = True
        self._wake()
        drain, self.drain = self.drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def pause_writing(self) -> None:
        self.write_paused = True

    def resume_writing(self) -> None:
        self.write_paused = False
        drain, self.drain = self.drain, None
        if drain is not None and not drain.done():
            drain.set_result(None)

    def shutdown(self) -> None:
        self.keep_alive = False

    def _wake(self) -> None:
        waiter = self.waiter
        if waiter is not None:
            self.waiter = None
            if not waiter.done():
                waiter.set_result(None)

    # -- the application ---------------------------------------------------------------------

    async def run(self) -> None:
        scope = self.scope
        try:
            result = await self.app(scope, self.receive, self.send)
        except asyncio.CancelledError:
            self._abandon()
            raise
        except Exception as exc:
            self._failed(exc)
        else:
            if not self.started:
                if not self.disconnected:
                    log.error(
                        "xyra: ASGI app returned without a response to %s %s",
                        scope["method"],
                        scope["path"],
                    )
                    self._send_500()
            elif not self.complete and not self.disconnected:
                log.error(
                    "xyra: ASGI app returned before its response to %s %s was complete; "
                    "connection closed",
                    scope["method"],
                    scope["path"],
                )
                self._abandon()
            elif result is not None:
                log.warning("xyra: an ASGI app should return None, not %r", type(result).__name__)
        finally:
            self.task = None

    def _failed(self, exc: Exception) -> None:
        scope = self.scope
        if self.disconnected:
            log.info(
                "xyra: ASGI app raised %s on %s %s after the client left",
                type(exc).__name__,
                scope["method"],
                scope["path"],
            )
            return
        log.error("xyra: ASGI app failed on %s %s", scope["method"], scope["path"], exc_info=exc)
        if self.complete:
            return
        if self.head is not None or not self.started:
            self._send_500()  # nothing of the response went out yet
        else:
            self._abandon()

    def _send_500(self) -> None:
        self._cancel_flush()
        self.head = None
        self.started = True
        if not self.transport.is_closing():
            self.transport.write(_ERROR_500)
        self.keep_alive = False
        self._complete()

    def _abandon(self) -> None:
        """A response that cannot be finished: close the connection."""
        self._cancel_flush()
        if not self.complete:
            self.complete = True
            self.keep_alive = False
            self._wake()
            self.transport.close()
            self.conn.stream_done(False)

    async def receive(self) -> Message:
        if self.expect_continue:
            self.expect_continue = False
            if not self.started and not self.disconnected:
                self.transport.write(_CONTINUE)
        while True:
            if self.disconnected or self.complete:
                return _DISCONNECT.copy()
            if self.chunks or (self.ended and not self.end_delivered):
                chunks = self.chunks
                body = chunks[0] if len(chunks) == 1 else b"".join(chunks)
                self.chunks = []
                self.buffered = 0
                if self.ended:
                    self.end_delivered = True
                if self.read_paused:
                    self.read_paused = False
                    self.transport.resume_reading()
                return {"type": "http.request", "body": body, "more_body": not self.ended}
            waiter = self.waiter = self.loop.create_future()
            await waiter

    async def send(self, message: Message) -> None:
        if self.write_paused and not self.disconnected:
            if self.drain is None:
                self.drain = self.loop.create_future()
            await self.drain
        if self.disconnected:
            raise ClientDisconnected("the client closed the connection")
        kind = message["type"]
        if kind == "http.response.body" and self.started:
            if self.complete:
                raise ProtocolError("ASGI message 'http.response.body' after the response ended")
            self._body(message.get("body", b""), message.get("more_body", False))
        elif kind == "http.response.start" and not self.started:
            self._start(message)
        elif self.started:
            raise ProtocolError(f"ASGI message {kind!r} where 'http.response.body' belongs")
        else:
            raise ProtocolError(f"ASGI message {kind!r} before 'http.response.start'")

    def _start(self, message: Message) -> None:
        status = message["status"]
        if type(status) is not int or not 200 <= status <= 999:
            raise ProtocolError(f"invalid HTTP status {status!r} in 'http.response.start'")
        line = _STATUS.get(status) or _status_line(status)
        head = [line]
        length = -1
        chunked = has_date = has_server = has_close = False
        for pair in message.get("headers", ()):
            name, value = pair
            if type(name) is not bytes or type(value) is not bytes:
                name, value = _as_bytes(name, "name"), _as_bytes(value, "value")
            if _BAD_NAME.search(name) or _BAD_VALUE.search(value):
                raise ProtocolError(f"invalid HTTP header {bytes(name)!r}: {bytes(value)!r}")
            lower = name.lower()
            if lower == b"content-length":
                try:
                    length = int(value)
                except ValueError:
                    raise ProtocolError(f"invalid Content-Length {value!r}") from None
            elif lower == b"transfer-encoding":
                chunked = b"chunked" in value.lower()
            elif lower == b"connection":
                if b"close" in value.lower():
                    has_close = True
                    self.keep_alive = False
            elif lower == b"date":
                has_date = True
            elif lower == b"server":
                has_server = True
            head.append(name + b": " + value + b"\r\n")
        if not has_date:
            head.append(_date_line())
        if not has_server:
            head.append(_SERVER)
        if not self.keep_alive and not has_close:
            head.append(_CLOSE)
        self.started = True
        self.expect_continue = False
        self.body_less = status in (204, 304) or self.scope["method"] == "HEAD"
        if chunked:
            self.chunked = True
        elif length >= 0 and not self.body_less:
            self.remaining = length
        self.head = head
        if self.remaining < 0:
            # Written with the first body (then with a Content-Length if it is the only
            # one), or at the end of this loop iteration if the app waits for something
            # first (an SSE stream's first event, ...). A head with a Content-Length waits
            # for its body: frameworks send it right behind.
            self.flush_handle = self.loop.call_soon(self._flush_head)

    def _head_bytes(self, last: bool, size: int) -> bytes:
        """The held head, framed for a body that is ``size`` bytes (and all, if ``last``)."""
        head = self.head
        assert head is not None
        self.head = None
        self._cancel_flush()
        if not (self.body_less or self.chunked or self.remaining >= 0):
            if last:
                head.append(b"content-length: %d\r\n" % size)
            elif self.version_10:
                self.keep_alive = False  # no chunks in HTTP/1.0: the end of the body is the close
                head.append(_CLOSE)
            else:
                self.chunked = True
                head.append(_CHUNKED)
        head.append(b"\r\n")
        return b"".join(head)

    def _flush_head(self) -> None:
        self.flush_handle = None
        if self.head is not None and not self.disconnected and not self.transport.is_closing():
            self.transport.write(self._head_bytes(False, 0))

    def _cancel_flush(self) -> None:
        if self.flush_handle is not None:
            self.flush_handle.cancel()
            self.flush_handle = None

    def _body(self, body: Any, more: bool) -> None:
        if type(body) is not bytes:
            body = _as_bytes(body, "body")
        data = b"" if self.head is None else self._head_bytes(not more, len(body))
        if self.body_less:
            pass  # HEAD, 1xx, 204, 304: the body is not sent
        elif self.chunked:
            if body:
                data += b"%x\r\n" % len(body) + body + b"\r\n"
            if not more:
                data += _LAST_CHUNK
        elif self.remaining >= 0:
            if len(body) > self.remaining:
                raise ProtocolError("the response body is longer than its Content-Length")
            self.remaining -= len(body)
            data += body
        else:
            data += body
        if data:
            self.transport.write(data)
        if not more:
            if self.remaining > 0:
                self._abandon()
                raise ProtocolError("the response body is shorter than its Content-Length")
            self._complete()

    def _complete(self) -> None:
        self.complete = True
        self._wake()
        if self.read_paused:  # the rest of the body is read and dropped
            self.read_paused = False
            self.transport.resume_reading()
        self.conn.stream_done(self.keep_alive)


def _as_bytes(value: Any, what: str) -> bytes:
    if isinstance(value, (bytearray, memoryview)):
        return bytes(value)
    if isinstance(value, bytes):
        return value
    raise ProtocolError(f"an HTTP response {what} must be bytes, not {type(value).__name__}")

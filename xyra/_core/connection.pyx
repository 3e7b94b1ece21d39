# cython: language_level=3
"""The WebSocket: the user's object, one per connection, on top of the sans-I/O Endpoint.

The ``Endpoint`` (endpoint.pyx) holds the protocol state, the cork and the timers; this
layer adds what touches the application and the event loop:

* handler dispatch in arrival order: a sync handler runs at once; while an async one
  runs, later events wait in ``pending`` (reading pauses past ``max_queue``);
* async handlers, ``receive()``/``async for`` and ``drain()`` futures;
* calls from other threads hop onto the loop (``send``, ``close``, ``terminate``,
  ``publish``); the other loop-only methods refuse them;
* the asyncio protocol methods (after the upgrade the WebSocket is the transport's
  protocol on uvloop) and the public API.
"""

from collections import deque
from functools import partial
from inspect import isawaitable

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE

from xyra._core.endpoint cimport (
    CLOSED, CLOSING, HANDSHAKE, OPEN, Endpoint, EndpointConfig, Extras, message_payload,
)
from xyra._core.frames cimport OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, shared_view
from xyra._core.frames cimport valid_close_code
from xyra._core.pubsub cimport Hub

from xyra.enums import SendStatus
from xyra.errors import ConnectionClosed

cdef object SUCCESS = SendStatus.SUCCESS
cdef object SendStatusType = SendStatus

cdef extern from "sendnow.h":
    long xyra_send_now(int fd, const char* data, size_t n) nogil

try:
    # The transports write_now may bypass: a plain TCP socket the loop does not wrap.
    from uvloop.loop import TCPTransport as _DirectTransport
except ImportError:  # no uvloop (Windows): write_now always goes through the transport
    _DirectTransport = None


cdef class RouteConfig(EndpointConfig):
    """One route's handler set and options, built once by the facade."""

    def __init__(self):
        EndpointConfig.__init__(self)
        self.open = self.message = self.close = None
        self.drain = self.ping = self.pong = self.subscription = self.upgrade = None
        self.allowed_origins = None
        self.negotiator = None
        self.pattern = None
        self.settle = None
        self.max_queue = 16
        self.subprotocols = ()
        self.path = ""


cdef class WsExtras(Extras):
    """The WebSocket's lazily created per-connection state (see connection.pxd)."""
    pass


cdef class Gate:
    """The server side of a WebSocket that is its transport's first protocol.

    On uvloop the server makes a ``WebSocket`` the protocol of every new connection, in
    the ``HANDSHAKE`` state: its first read is handed to the gate (``first_read``),
    which either opens it in place (a canonical upgrade request, the fast path) or hands
    the transport to an HTTP-phase protocol. protocol.pyx's ``ServerContext`` is the
    gate; this base only fixes the interface, so the WebSocket needs nothing from the
    layer above it.
    """

    cdef int arrived(self, WebSocket ws, object transport) except -1:
        raise NotImplementedError

    cdef int first_read(self, WebSocket ws, Py_ssize_t nbytes) except -1:
        raise NotImplementedError

    cdef int gone(self, WebSocket ws) except -1:
        raise NotImplementedError


def _read_shared(Py_ssize_t sizehint):
    """get_buffer of every WebSocket that holds no partial frame (see WebSocket.get_buffer)."""
    return shared_view()


cdef inline bint _maybe_awaitable(object result) except -1:
    # What sync handlers return most (ws.send's SendStatus, publish's bool) skips the
    # ABC check of inspect.isawaitable, which costs more than the rest of a small echo.
    cdef object t = type(result)
    if t is SendStatusType or t is bool or t is int:
        return False
    return isawaitable(result)


cdef class WebSocket(Endpoint):
    """One WebSocket connection: the same object in every callback, hashable.

    Safe to use after the close: it reports ``closed``, sends return
    ``SendStatus.DROPPED``, and nothing raises.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("WebSocket objects are created by the server")

    def __repr__(self):
        state = {OPEN: "open", CLOSING: "closing", CLOSED: "closed"}.get(self.state, "handshake")
        return f"<WebSocket {self.path!r} {self._peer()} {state}>"

    # -- life cycle (called by the protocol) -----------------------------------------------

    cdef int begin(self, object transport, Hub hub, RouteConfig route, str path,
                   str subprotocol, bytes response, object deflate,
                   object data, dict params) except -1:
        if data is not None:
            self.wx().data = data
        self.open_endpoint(transport, hub, route, deflate, response)
        if path is not route.path:
            self.wx().path = path
        if subprotocol is not None:
            self.wx().subprotocol = subprotocol
        if params:
            self.wx().path_params = params
        if route.message is None and route.open is not None and route.open_async:
            self.wx().recv_queue = deque()
        if route.open is not None:
            self.call(route.open, route.open_async, (self,))
        return 0

    cdef int tick(self, double now) except -1:
        # An idle connection gives its input buffer back and reads through the shared
        # function again (the Endpoint's tick releases the buffer of one that never
        # switched readers).
        if self.own_reads and not self.lost and now - self.last_rx >= 0.5:
            self.free_idle_input()
            self.reader_mode()
        return Endpoint.tick(self, now)

    cdef int ended(self) except -1:
        cdef list waiters
        cdef list left
        cdef WsExtras x = <WsExtras>self.extras
        cdef RouteConfig route = <RouteConfig>self.route
        if x is not None and x.recv_waiters:
            waiters, x.recv_waiters = x.recv_waiters, None
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(ConnectionClosed(self.report_code, self.reason()))
        self._wake_drain_waiters()
        if route.close is not None:
            self.call(route.close, route.close_async, (self, self.report_code, self.reason()))
        left = (<Hub>self.hub).unsubscribe_all(self)
        if left is not None and route.subscription is not None:
            for topic, old in left:
                self.call(route.subscription, False, (self, topic, old - 1, old))
        return 0

    # -- asyncio protocol interface ----------------------------------------------------------
    # After the upgrade the server hands the transport to the WebSocket itself
    # (transport.set_protocol), so an open connection carries no HTTP-phase object.
    # uvloop reads into get_buffer's buffer and never calls data_received, but it looks
    # the attribute up on set_protocol: None (a class attribute) costs neither a bound
    # method per connection nor an AttributeError per upgrade.
    data_received = None

    def connection_made(self, transport):
        # Called only when the server made this WebSocket the transport's first protocol
        # (HANDSHAKE state, see Gate): the server decides what happens to it.
        (<Gate>(<Hub>self.hub).gate).arrived(self, transport)

    @property
    def get_buffer(self):
        # uvloop keeps the callable this returns until the next set_protocol. A bound
        # method would cost every connection 64 bytes, so a connection that holds no
        # partial frame reads into the loop-wide buffer through one shared function;
        # one that holds part of a frame switches to its own reader (reader_mode), so
        # the rest of a big frame lands straight in its buffer, until it is idle again.
        if self.own_reads:
            return self._read_own
        return _read_shared

    def _read_own(self, Py_ssize_t sizehint):
        return self.get_buffer_view(sizehint)

    def buffer_updated(self, Py_ssize_t nbytes):
        if not self.own_reads:
            self.reading_shared = True  # the shared function handed out the shared buffer
        try:
            if self.state == HANDSHAKE:
                # The request head, in the shared buffer: the gate opens this WebSocket
                # or hands the transport to the HTTP phase.
                self.reading_shared = False
                (<Gate>(<Hub>self.hub).gate).first_read(self, nbytes)
                return
            self.data_received_into(nbytes)
            self.reader_mode()
        except Exception:
            self.hub.log.exception("xyra: internal error on %s; connection dropped",
                                   self._peer())
            self.transport.abort()

    def eof_received(self):
        if self.state != HANDSHAKE:
            self.on_eof()
        return False

    def connection_lost(self, exc):
        cdef Hub hub = <Hub>self.hub
        if self.state == HANDSHAKE:
            (<Gate>hub.gate).gone(self)
            return
        hub.remove_socket(self)
        if self.extras is not None and (<WsExtras>self.extras).ip is not None:
            hub.release_ip((<WsExtras>self.extras).ip)
            (<WsExtras>self.extras).ip = None
        self.on_lost(exc)

    def pause_writing(self):
        self.on_pause_writing()

    def resume_writing(self):
        self.on_resume_writing()

    cdef int write_now(self, bytes data) except -1:
        """One send(2) straight to the socket when the loop's transport holds nothing.

        uvloop's own write path costs more user-space time than the system call; a
        published batch goes to many connections per iteration, so it is sent here. Only
        on uvloop's plain TCP transports (not TLS), only while the transport is not
        closing (so the fd is still this connection's) and nothing waits in its buffer
        (write_now is called only then: not write_paused); whatever the kernel does not
        take, and every error, goes to transport.write, which handles them as always.
        """
        cdef Py_ssize_t n = PyBytes_GET_SIZE(data)
        cdef long sent
        if self.send_fd == 0:
            self.send_fd = -1
            if _DirectTransport is not None and type(self.transport) is _DirectTransport:
                sock = self.transport.get_extra_info("socket")
                if sock is not None:
                    self.send_fd = sock.fileno() + 1
        if self.send_fd > 0 and not self.write_paused and not self.transport.is_closing():
            sent = xyra_send_now(self.send_fd - 1, PyBytes_AS_STRING(data), <size_t>n)
            if sent == n:
                return 0
            if sent > 0:
                data = data[sent:]
        self.transport.write(data)
        return 0

    cdef int take_transport(self) except -1:
        """Become the transport's protocol (uvloop's set_protocol)."""
        self.is_protocol = True
        self.own_reads = self.end != self.start or self.in_payload
        self.transport.set_protocol(self)
        return 0

    cdef int reader_mode(self) except -1:
        """Own reader while part of a frame is held; the shared one once idle again."""
        cdef bint holds = self.end != self.start or self.in_payload
        if self.is_protocol and not self.lost and holds != self.own_reads:
            self.own_reads = holds
            self.transport.set_protocol(self)
        return 0

    # -- what the peer did (Endpoint hooks) ------------------------------------------------

    cdef int deliver(self, object message, object opcode) except -1:
        cdef RouteConfig route = <RouteConfig>self.route
        cdef object handler = route.message
        if handler is None:
            if self.extras is not None and (<WsExtras>self.extras).recv_queue is not None:
                self._enqueue_received(message)
            elif not route.discard_warned:
                route.discard_warned = True
                self.hub.log.warning(
                    "xyra: route %s has no 'message' handler and no async handler reading "
                    "with receive(): incoming messages are discarded. Register a 'message' "
                    "handler, or make the simple handler 'async def' and read with "
                    "'async for message in ws'", route.path)
            return 0
        if self.busy or route.message_async:
            return self.call(handler, route.message_async, (self, message, opcode))
        try:
            result = handler(self, message, opcode)
        except Exception as exc:
            return self.handler_failed(exc)
        if result is not None and _maybe_awaitable(result):
            self._run_task(result)
        return 0

    cdef int on_protocol_error(self, int code, str why) except -1:
        # A route whose messages are answered outside the read (the ASGI adapter: its app
        # runs on a task of its own) may ask for the failure to wait until the messages
        # that came before the bad frame are answered, so that their answers precede the
        # close frame, as a handler called during the read gets them to. Parsing stopped
        # already; route.settle(ws) returns None (fail now) or an awaitable.
        cdef RouteConfig route = <RouteConfig>self.route
        if route.settle is not None and self.state == OPEN and not self.lost:
            try:
                waiter = route.settle(self)
            except Exception as exc:
                self.hub.log.error("xyra: settle hook failed", exc_info=exc)
                waiter = None
            if waiter is not None:
                waiter.add_done_callback(partial(self._fail_settled, code, why))
                return 0
        return self.fail(code, why)

    def _fail_settled(self, int code, str why, waiter):
        if self.state == OPEN and not self.lost:
            self.fail(code, why)

    cdef int ping_received(self, bytes payload) except -1:
        cdef RouteConfig route = <RouteConfig>self.route
        if route.ping is not None:
            self.call(route.ping, False, (self, payload))
        return 0

    cdef int pong_received(self, unsigned char* data, Py_ssize_t length) except -1:
        cdef RouteConfig route = <RouteConfig>self.route
        if route.pong is not None:
            self.call(route.pong, False, (self, PyBytes_FromStringAndSize(<char*>data, length)))
        return 0

    cdef int drained(self) except -1:
        cdef RouteConfig route = <RouteConfig>self.route
        self._wake_drain_waiters()
        if route.drain is not None:
            self.call(route.drain, False, (self,))
        return 0

    cdef _wake_drain_waiters(self):
        cdef list waiters
        cdef WsExtras x = <WsExtras>self.extras
        if x is not None and x.drain_waiters:
            waiters, x.drain_waiters = x.drain_waiters, None
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    # -- calling user code -----------------------------------------------------------------

    cdef int call(self, object handler, bint is_async, tuple args) except -1:
        """Run a handler now, or after the async one in progress: arrival order holds."""
        cdef WsExtras x
        if self.busy:
            x = self.wx()
            if x.pending is None:
                x.pending = deque()
            x.pending.append((handler, args))
            if len(x.pending) >= (<RouteConfig>self.route).max_queue and not self.read_paused:
                self._pause_reading()
            return 0
        try:
            result = handler(*args)
        except Exception as exc:
            return self.handler_failed(exc)
        if result is not None and (is_async or _maybe_awaitable(result)):
            self._run_task(result)
        return 0

    cdef _run_task(self, object awaitable):
        self.busy = True
        task = (<Hub>self.hub).loop.create_task(awaitable) \
            if not hasattr(awaitable, "add_done_callback") else awaitable
        task.add_done_callback(self._task_done)

    def _task_done(self, task):
        self.busy = False
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self.handler_failed(exc)
        cdef WsExtras x = <WsExtras>self.extras
        if x is not None and x.recv_queue is not None and not self.busy \
                and (<RouteConfig>self.route).message is None:
            # The simple handler returned: later messages have nobody to read them.
            x.recv_queue = None
            if self.read_paused:
                self._resume_reading()
        self.run_pending()

    cdef int run_pending(self) except -1:
        cdef object handler
        cdef tuple args
        cdef object pending = (<WsExtras>self.extras).pending if self.extras is not None else None
        while pending and not self.busy:
            handler, args = pending.popleft()
            self.call(handler, False, args)
        if self.read_paused and (not pending
                                 or len(pending) < (<RouteConfig>self.route).max_queue // 2):
            self._resume_reading()
        return 0

    cdef int handler_failed(self, object exc) except -1:
        self.hub.log.error("xyra: handler error on %s from %s",
                           (<RouteConfig>self.route).path, self._peer(), exc_info=exc)
        if self.state == OPEN:
            self.report_code = 1011
            self.send_close(1011, "")
        return 0

    cdef _pause_reading(self):
        if not self.lost and not self.read_paused:
            self.read_paused = True
            self.transport.pause_reading()

    cdef _resume_reading(self):
        if self.read_paused:
            self.read_paused = False
            if not self.lost:
                self.transport.resume_reading()

    cdef _enqueue_received(self, object message):
        cdef WsExtras x = <WsExtras>self.extras
        while x.recv_waiters:
            fut = x.recv_waiters.pop(0)
            if not fut.done():
                fut.set_result(message)
                return
        x.recv_queue.append(message)
        if len(x.recv_queue) >= (<RouteConfig>self.route).max_queue:
            self._pause_reading()

    cdef Extras more(self):
        if self.extras is None:
            self.extras = WsExtras()
        return self.extras

    cdef WsExtras wx(self):
        return <WsExtras>self.more()

    cdef int _check_thread(self, str method) except -1:
        if not (<Hub>self.hub).on_loop_thread():
            raise RuntimeError(
                f"WebSocket.{method}() must be called on the server's event loop thread; "
                "from another thread use loop.call_soon_threadsafe (send, close, "
                "terminate and publish hop by themselves)")
        return 0

    # -- public API ------------------------------------------------------------------------

    def send(self, data, opcode=None, bint compress=False):
        """Send a message: ``str`` as TEXT, bytes-like as BINARY, unless ``opcode`` says.

        ``compress=True`` compresses it when permessage-deflate was negotiated and the
        message is at least ``compression_threshold`` bytes and shrinks.

        Returns a ``SendStatus``. From another thread the call hops onto the loop and
        returns ``SendStatus.SUCCESS`` once scheduled.
        """
        cdef const char* p
        cdef Py_ssize_t n
        cdef int op
        data = message_payload(data, opcode, &p, &n, &op)
        owner = data if type(data) is bytes else None
        if op == OP_PING or op == OP_PONG:
            compress = False
            if n > 125:
                raise ValueError("control frame payloads are limited to 125 bytes")
        elif op == OP_CLOSE:
            raise ValueError("use close() to send a close frame")
        elif op != OP_TEXT and op != OP_BINARY:
            raise ValueError(f"cannot send opcode {opcode!r}")
        if not (<Hub>self.hub).on_loop_thread():
            # Validated above, in the caller's thread; the bytes are taken now, too.
            (<Hub>self.hub).loop.call_soon_threadsafe(self.send, data, op, compress)
            return SUCCESS
        if compress:
            return self.send_message(op, <const unsigned char*>p, n, owner, True)
        return self.send_frame(op, <const unsigned char*>p, n, owner)

    def send_text(self, text):
        """Send a TEXT message (``str``, or bytes-like holding valid UTF-8)."""
        return self.send(text, OP_TEXT)

    def send_binary(self, data):
        """Send a BINARY message (bytes-like, or ``str`` sent as its UTF-8)."""
        return self.send(data, OP_BINARY)

    def close(self, int code=1000, str reason=""):
        """Start the close handshake; the connection ends when the peer answers."""
        if not (<Hub>self.hub).on_loop_thread():
            (<Hub>self.hub).loop.call_soon_threadsafe(self.close, code, reason)
            return
        if not valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("a close reason is limited to 123 bytes of UTF-8")
        self.send_close(code, reason)

    def terminate(self):
        """Drop the TCP connection now, without a close handshake (reported as 1006)."""
        if not (<Hub>self.hub).on_loop_thread():
            (<Hub>self.hub).loop.call_soon_threadsafe(self.terminate)
            return
        if not self.lost:
            self.state = CLOSED
            self.transport.abort()

    def ping(self, data=b""):
        """Send a ping (at most 125 bytes)."""
        return self.send(data, OP_PING)

    @property
    def closed(self) -> bool:
        """True once a close frame was sent or received, or the TCP connection is gone."""
        return self.state != OPEN

    @property
    def remote_address(self):
        """``(host, port)`` of the peer."""
        return self._peer()

    @property
    def path(self) -> str:
        """The request target the connection was opened with (path and query)."""
        if self.extras is not None and (<WsExtras>self.extras).path is not None:
            return (<WsExtras>self.extras).path
        if self.route is None:
            return ""  # not upgraded (yet): the server holds it for its first read
        return (<RouteConfig>self.route).path

    @property
    def path_params(self) -> dict:
        """The values of the route's ``{name}`` path parameters (a new dict)."""
        if self.extras is not None and (<WsExtras>self.extras).path_params is not None:
            return dict((<WsExtras>self.extras).path_params)
        return {}

    @property
    def subprotocol(self):
        """The negotiated subprotocol, or None."""
        return (<WsExtras>self.extras).subprotocol if self.extras is not None else None

    @property
    def data(self) -> dict:
        """A dict for the application's own per-connection state."""
        cdef WsExtras x = self.wx()
        if x.data is None:
            x.data = {}
        return x.data

    @property
    def buffered_amount(self) -> int:
        """Bytes queued for this connection and not yet written to the socket."""
        if self.lost:
            return 0
        return self.queued + self.transport.get_write_buffer_size()

    @property
    def dropped(self) -> int:
        """Messages dropped for this connection because it was over ``max_backpressure``."""
        return self.extras.dropped if self.extras is not None else 0

    @property
    def topics(self) -> list:
        """The topics this connection is subscribed to."""
        return list(self._topics) if self._topics else []

    def subscribe(self, str topic) -> bool:
        """Subscribe to ``topic``; True if it was not subscribed yet.

        After the connection closed it is a no-op that returns False.
        """
        cdef int count
        cdef RouteConfig route = <RouteConfig>self.route
        self._check_thread("subscribe")
        if self.state != OPEN:
            return False
        count = (<Hub>self.hub).subscribe(self, topic)
        if count == 0:
            return False
        if route.subscription is not None:
            self.call(route.subscription, False, (self, topic, count, count - 1))
        return True

    def unsubscribe(self, str topic) -> bool:
        """Unsubscribe from ``topic``; True if it was subscribed."""
        cdef int old
        cdef RouteConfig route = <RouteConfig>self.route
        self._check_thread("unsubscribe")
        old = (<Hub>self.hub).unsubscribe(self, topic)
        if old == 0:
            return False
        if route.subscription is not None:
            self.call(route.subscription, False, (self, topic, old - 1, old))
        return True

    def is_subscribed(self, str topic) -> bool:
        """True if this connection is subscribed to ``topic``."""
        return self._topics is not None and topic in self._topics

    def publish(self, str topic, message, opcode=None, bint compress=False) -> bool:
        """Send ``message`` to every subscriber of ``topic`` except this connection."""
        return (<Hub>self.hub).publish(topic, message, opcode, compress, self) > 0

    def drain(self):
        """Awaitable: done when the queued bytes are under ``max_backpressure``."""
        self._check_thread("drain")
        fut = (<Hub>self.hub).loop.create_future()
        if self.lost or not self.congested:
            fut.set_result(None)
        else:
            if self.wx().drain_waiters is None:
                (<WsExtras>self.extras).drain_waiters = []
            (<WsExtras>self.extras).drain_waiters.append(fut)
        return fut

    def receive(self):
        """Awaitable: the next message, for a simple ``async def`` handler.

        Raises ``ConnectionClosed`` once the connection is closed and no message is left.
        """
        cdef WsExtras x = <WsExtras>self.extras
        self._check_thread("receive")
        queue = x.recv_queue if x is not None else None
        fut = (<Hub>self.hub).loop.create_future()
        if queue:
            fut.set_result(queue.popleft())
            if self.read_paused and len(queue) < (<RouteConfig>self.route).max_queue // 2:
                self._resume_reading()
        elif self.lost or self.state != OPEN:
            fut.set_exception(ConnectionClosed(self.report_code, self.reason()))
        elif queue is None:
            raise RuntimeError("receive() is for a simple async handler while it runs; "
                               "this connection's messages go to its 'message' handler "
                               "or are discarded")
        else:
            if x.recv_waiters is None:
                x.recv_waiters = []
            x.recv_waiters.append(fut)
        return fut

    def __aiter__(self):
        return self

    async def __anext__(self):
        try:
            return await self.receive()
        except ConnectionClosed:
            raise StopAsyncIteration from None

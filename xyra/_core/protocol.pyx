# cython: language_level=3
"""Event-loop glue: one buffered protocol per TCP connection.

The HTTP head is parsed with httptools; on a valid upgrade the same connection
switches to the WebSocket phase and its reads go straight to the frame parser
(``get_buffer``/``buffer_updated``: zero-copy). Write flow control
(``pause_writing``/``resume_writing``) and the timers of every connection (handshake,
idle, ping, close) are driven from here: one periodic tick per server, not one timer
per connection.
"""

import httptools

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE

from xyra._core.connection cimport Hub, RouteConfig, WebSocket, OPEN
from xyra._core.frames cimport shared_ptr, shared_view

from xyra.handshake import Accepted, Rejection, http_response, process_request


cdef class ServerContext:
    """What the protocols of one listening server share."""

    cdef public dict routes            # path -> RouteConfig
    cdef public Hub hub
    cdef public set connections        # every ServerProtocol alive
    cdef public Py_ssize_t max_head_size
    cdef public Py_ssize_t max_headers
    cdef public double handshake_timeout
    cdef public bint accepting
    cdef public object negotiators     # path -> extension negotiator or None

    def __init__(self, Hub hub, dict routes, *, Py_ssize_t max_head_size=32768,
                 Py_ssize_t max_headers=100, double handshake_timeout=10.0):
        self.hub = hub
        self.routes = routes
        self.connections = set()
        self.max_head_size = max_head_size
        self.max_headers = max_headers
        self.handshake_timeout = handshake_timeout
        self.accepting = True
        self.negotiators = {}

    def tick(self, double now):
        """Advance the shared clock and run every connection's timers."""
        self.hub.now = now
        for proto in list(self.connections):
            try:
                (<ServerProtocol>proto).tick(now)
            except Exception:
                self.hub.log.exception("xyra: timer failed")

    def close_all(self, int code=1001, str reason="server shutting down"):
        """Start closing every connection (graceful shutdown)."""
        self.accepting = False
        for proto in list(self.connections):
            (<ServerProtocol>proto).shutdown(code, reason)

    def abort_all(self):
        for proto in list(self.connections):
            (<ServerProtocol>proto).transport.abort()


cdef class ServerProtocol:
    """asyncio/uvloop protocol of one connection: HTTP handshake, then WebSocket."""

    cdef ServerContext ctx
    cdef object transport
    cdef object http
    cdef WebSocket ws
    cdef list headers
    cdef bytes url
    cdef Py_ssize_t head_bytes
    cdef bint head_done
    cdef double deadline
    cdef object remote
    cdef bint done

    def __init__(self, ServerContext ctx):
        self.ctx = ctx

    # -- asyncio protocol interface ----------------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self.ctx.connections.add(self)
        self.deadline = self.ctx.hub.now + self.ctx.handshake_timeout
        peer = transport.get_extra_info("peername")
        self.remote = tuple(peer[:2]) if isinstance(peer, tuple) else peer
        if not self.ctx.accepting:
            self._reject(503, "server is shutting down")
            return
        self.http = httptools.HttpRequestParser(self)
        self.headers = []

    def get_buffer(self, Py_ssize_t sizehint):
        if self.ws is not None:
            return self.ws.get_buffer_view(sizehint)
        return shared_view()

    def buffer_updated(self, Py_ssize_t nbytes):
        if self.ws is not None:
            try:
                self.ws.data_received_into(nbytes)
            except Exception:
                self.ctx.hub.log.exception("xyra: internal error on %s; connection dropped",
                                           self.remote)
                self.transport.abort()
            return
        if not self.done:
            self._http_data(shared_view()[:nbytes], shared_ptr(), nbytes)

    def data_received(self, bytes data):
        # Plain asyncio loops call this instead of the buffered interface.
        if self.ws is not None:
            try:
                self.ws.feed_initial(<const unsigned char*>PyBytes_AS_STRING(data),
                                     PyBytes_GET_SIZE(data))
            except Exception:
                self.ctx.hub.log.exception("xyra: internal error on %s", self.remote)
                self.transport.abort()
            return
        if not self.done:
            self._http_data(data, <const unsigned char*>PyBytes_AS_STRING(data),
                            PyBytes_GET_SIZE(data))

    def eof_received(self):
        if self.ws is not None:
            self.ws.eof_received()
        return False

    def connection_lost(self, exc):
        self.ctx.connections.discard(self)
        self.http = None
        if self.ws is not None:
            self.ws.connection_lost(exc)

    def pause_writing(self):
        if self.ws is not None:
            self.ws.pause_writing()

    def resume_writing(self):
        if self.ws is not None:
            self.ws.resume_writing()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_url(self, bytes url):
        self.url = url if self.url is None else self.url + url

    def on_header(self, bytes name, bytes value):
        if len(self.headers) <= self.ctx.max_headers:
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

    def on_headers_complete(self):
        self.head_done = True

    # -- handshake ---------------------------------------------------------------------------

    cdef _http_data(self, object view, const unsigned char* ptr, Py_ssize_t n):
        cdef Py_ssize_t offset
        self.head_bytes += n
        try:
            self.http.feed_data(view)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
            self.head_bytes -= n - offset
            self._handshake(ptr + offset, n - offset)
            return
        except httptools.HttpParserError as exc:
            self._reject(400, f"malformed HTTP request: {exc}")
            return
        if len(self.headers) > self.ctx.max_headers:
            self._reject(431, f"more than {self.ctx.max_headers} header lines")
        elif self.head_done:
            self._handshake(NULL, 0)
        elif self.head_bytes > self.ctx.max_head_size:
            self._reject(431, f"request head over {self.ctx.max_head_size} bytes")

    cdef _reject(self, int status, str reason, list headers=None):
        self.done = True
        self.http = None
        self.headers = None
        self.ctx.hub.log.info("xyra: refused %s from %s: %d %s", self._target(), self.remote,
                              status, reason)
        self.transport.write(http_response(status, reason + "\n", headers or ()))
        self.transport.close()

    cdef str _target(self):
        return self.url.decode("latin-1") if self.url is not None else "request"

    cdef _handshake(self, const unsigned char* rest, Py_ssize_t n):
        cdef RouteConfig route
        cdef WebSocket ws
        cdef bytes leftover = (<char*>rest)[:n] if n > 0 else b""
        if self.head_bytes > self.ctx.max_head_size:
            self._reject(431, f"request head over {self.ctx.max_head_size} bytes")
            return
        if len(self.headers) > self.ctx.max_headers:
            self._reject(431, f"more than {self.ctx.max_headers} header lines")
            return
        target = self._target()
        route = self.ctx.routes.get(target.split("?", 1)[0])
        if route is None:
            self._reject(404, f"no WebSocket route at {target.split('?', 1)[0]}")
            return
        method = self.http.get_method().decode("latin-1")
        result = process_request(method, self.headers, route.subprotocols,
                                 self.ctx.negotiators.get(route.path))
        if isinstance(result, Rejection):
            self._reject((<object>result).status, (<object>result).reason,
                         (<object>result).headers)
            return
        self.done = True
        self.http = None
        self.headers = None
        self.url = None
        ws = WebSocket.__new__(WebSocket)
        try:
            ws.begin(self.transport, self.ctx.hub, route, target, self.remote,
                     result.subprotocol, result.response, result.extension)
            self.ws = ws
            ws.feed_initial(<const unsigned char*>PyBytes_AS_STRING(leftover),
                            PyBytes_GET_SIZE(leftover))
        except Exception:
            self.ctx.hub.log.exception("xyra: internal error opening %s", self.remote)
            self.transport.abort()

    # -- timers and shutdown -----------------------------------------------------------------

    cdef int tick(self, double now) except -1:
        if self.ws is not None:
            return self.ws.tick(now)
        if not self.done and now >= self.deadline:
            self.done = True
            self.http = None
            self.ctx.hub.log.info("xyra: handshake timeout for %s", self.remote)
            self.transport.close()
        return 0

    cdef shutdown(self, int code, str reason):
        if self.ws is not None:
            if self.ws.state == OPEN:
                self.ws.send_close(code, reason)
        elif not self.done:
            self.done = True
            self.transport.close()

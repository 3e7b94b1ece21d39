# cython: language_level=3
"""Event-loop glue: one buffered protocol per TCP connection.

On uvloop a new connection's protocol is a ``WebSocket`` in its ``HANDSHAKE`` state,
with the ``ServerContext`` as its ``Gate`` (connection.pyx). Its first read is scanned
in place in C (upgrade.h): a canonical upgrade request to a WebSocket route is checked,
answered with a 101 built in one buffer and opened right there, with no other object
per connection (the fast path). Anything else (an HTTP request, a partial or unusual
head, a request to refuse, a route with an ``upgrade`` handler, an origin or extension
offer the fast path cannot decide) goes to the general path: the transport is handed
to a ``ServerProtocol`` that parses with httptools and checks with xyra/handshake.py,
the reference semantics, which the fast path only ever agrees with (tests/unit/
test_upgrade_fast.py and tests/fuzz/fuzz_handshake.py compare the two).

In the HTTP phase plain requests go to the app's HTTP routes (keep-alive, answered in
order), and a valid WebSocket upgrade switches the same connection to the WebSocket
phase, whose reads then go straight to the frame parser (``get_buffer``/
``buffer_updated``: zero-copy). Write flow control and the timers of every connection
(handshake, keep-alive, idle, ping, close) are driven from here: one periodic tick per
server, not one timer per connection.
"""

from collections import deque
from inspect import isawaitable
from time import monotonic

import httptools

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.unicode cimport PyUnicode_DecodeLatin1
from libc.string cimport memcpy

from xyra._core.connection cimport Gate, RouteConfig, WebSocket
from xyra._core.debug cimport XYRA_DEBUG
from xyra._core.endpoint cimport OPEN
from xyra._core.frames cimport shared_ptr, shared_view
from xyra._core.pubsub cimport Hub
from xyra._core.stats cimport refused_slot

from xyra import accesslog
from xyra.handshake import (
    Rejection, _origin_key, check_origin, header_tokens, http_response, process_request,
)


cdef extern from "tune.h":
    int xyra_tune_malloc()


cdef extern from "upgrade.h":
    enum:
        XYRA_H_HOST
        XYRA_H_UPGRADE
        XYRA_H_CONNECTION
        XYRA_H_KEY
        XYRA_H_VERSION
        XYRA_H_PROTOCOL
        XYRA_H_EXTENSIONS
        XYRA_H_ORIGIN
        XYRA_H_COUNT
        XYRA_KEY_LEN
        XYRA_ACCEPT_LEN
    ctypedef struct xyra_head:
        size_t head_len
        size_t target
        size_t target_len
        size_t path_len
        size_t val[8]
        size_t len[8]
        unsigned char seen[8]
        int headers
    int xyra_scan_upgrade(const unsigned char* p, size_t n, size_t max_head, int max_headers,
                          xyra_head* h) nogil
    void xyra_accept(const unsigned char* key, char* out) nogil
    void xyra_sha1(const unsigned char* data, size_t n, unsigned char* out) nogil
    size_t xyra_base64(const unsigned char* data, size_t n, char* out) nogil
    size_t xyra_rtrim(const unsigned char* p, size_t n) nogil
    int xyra_same_origin(const unsigned char* origin, size_t on, const unsigned char* host,
                         size_t hn, const char* scheme, size_t sn) nogil


# The 101 up to the accept value; handshake.process_request builds the same bytes.
cdef bytes SWITCHING = (b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
                        b"Connection: Upgrade\r\nSec-WebSocket-Accept: ")


def tune_malloc() -> bool:
    """Keep freed large buffers for reuse (glibc): see tune.h. True if applied."""
    return xyra_tune_malloc() != 0


class _BodyTooLarge(Exception):
    pass


# HTTP-phase protocols alive now (debug builds only; the tests check they return to zero).
cdef Py_ssize_t _live_http = 0


def live_objects() -> dict:
    """HTTP-phase protocols alive now; always zero in a release build."""
    return {"ServerProtocol": _live_http}


def reset_live_objects() -> None:
    """Count from zero again (tests, after reporting a leak)."""
    global _live_http
    _live_http = 0


cdef bint _asks_websocket(list headers):
    """Whether raw request headers ask for a WebSocket (not h2c or another upgrade)."""
    for name, value in headers:
        if name == b"upgrade" and b"websocket" in (<bytes>value).lower():
            return True
    return False


cdef class ServerContext(Gate):
    """What the protocols of one listening server share, built from the app's ServerConfig.

    ``config`` is the facade's frozen ``ServerConfig`` (read once, here); routes added
    while the server runs come through ``add_route``. Called, it is the listener's
    protocol factory; as the ``Gate`` of the WebSockets it makes, it runs the fast path
    of the opening handshake (see the module docstring).
    """

    cdef public dict routes            # path -> RouteConfig: routes without parameters
    cdef public list patterns          # RouteConfig with a path pattern, in order
    cdef public Hub hub
    cdef public bint switch_protocol   # hand the transport to the WebSocket (uvloop)
    cdef public Py_ssize_t max_head_size
    cdef public Py_ssize_t max_headers
    cdef public Py_ssize_t max_body_size
    cdef public Py_ssize_t max_connections
    cdef public Py_ssize_t max_connections_per_ip
    cdef public double handshake_timeout
    cdef public bint accepting
    cdef public object http_dispatch   # request -> Response | awaitable | None, or None
    cdef public object http_streams    # streamed requests (the ASGI adapter), or None
    cdef public list fallbacks         # RouteConfig of ASGI mounts: tried after every other route
    cdef public double keep_alive_timeout
    cdef public object request_class
    cdef public object response_class
    cdef public str scheme
    cdef public bint access_log        # log each handshake to xyra.access (a cached flag)
    cdef public bint fast_upgrade      # new connections start as WebSockets (uvloop only)
    cdef public Py_ssize_t fast_upgrades  # connections opened by the fast path
    cdef dict _route_origins              # RouteConfig -> its allowed origins' keys
    cdef dict _arrived_at                 # access log on: WebSocket -> when it connected

    def __init__(self, Hub hub, config):
        limits = config.limits
        self.hub = hub
        hub.gate = self
        self.fast_upgrade = True
        self.routes = {}
        self.patterns = []
        self.max_head_size = limits.max_head_size
        self.max_headers = limits.max_headers
        self.max_body_size = limits.max_body_size
        self.max_connections = limits.max_connections
        self.max_connections_per_ip = limits.max_connections_per_ip
        self.handshake_timeout = limits.handshake_timeout
        self.keep_alive_timeout = limits.keep_alive_timeout or limits.handshake_timeout
        self.accepting = True
        self.http_dispatch = config.http_dispatch
        self.http_streams = config.http_streams
        self.fallbacks = []
        self.request_class = config.request_class
        self.response_class = config.response_class
        self.scheme = "http"
        self.access_log = config.access_log and accesslog.enabled()
        for route in config.routes:
            self.add_route(route)

    def __call__(self):
        """The protocol of a new connection (the listener's protocol factory).

        On uvloop (``switch_protocol``) a WebSocket in its HANDSHAKE state, which the
        upgrade then opens in place; with per-address limits (which need the peer's
        address at once), on plain asyncio loops, or with no WebSocket route, the
        HTTP-phase protocol.
        """
        cdef WebSocket ws
        if not self.switch_protocol:
            return PlainServerProtocol(self)
        if self.fast_upgrade and not self.max_connections_per_ip and (self.routes or self.patterns):
            ws = WebSocket.__new__(WebSocket)
            ws.hub = self.hub
            ws.slot = -1
            return ws
        return ServerProtocol(self)

    def add_route(self, RouteConfig route):
        """Serve ``route`` from now on (its handlers, limits and negotiator come with it)."""
        if route.pattern is None:
            self.routes[route.path] = route
        elif getattr(route.pattern, "fallback", False):
            # An ASGI mount's route (a prefix): Xyra's own routes match first, and the
            # longest prefix before a shorter one.
            self.fallbacks.append(route)
            self.fallbacks.sort(key=lambda r: -len(r.pattern.prefix))
        else:
            self.patterns.append(route)

    cdef tuple find_route(self, str path):
        """(route, path parameters or None) for a request path, or None.

        Routes without parameters are one dict lookup; a route with parameters is
        tried only when none of those has the path.
        """
        cdef RouteConfig route = self.routes.get(path)
        if route is not None:
            return route, None
        for obj in self.patterns:
            route = <RouteConfig>obj
            params = route.pattern.match_path(path)
            if params is not None:
                return route, params
        for obj in self.fallbacks:
            route = <RouteConfig>obj
            if route.pattern.match_path(path) is not None:
                return route, None
        return None

    @property
    def connections(self):
        """Every live connection (a new list): HTTP-phase protocols and open WebSockets."""
        return list(self.hub.handshaking) + self.hub.sockets

    cdef Py_ssize_t count(self):
        return len(self.hub.handshaking) + len(self.hub.sockets)

    @property
    def per_ip(self):
        return self.hub.per_ip

    def tick(self, double now):
        """Advance the shared clock and run every connection's timers."""
        self.hub.now = now
        for proto in list(self.hub.handshaking):
            try:
                if type(proto) is WebSocket:
                    self._handshake_timer(<WebSocket>proto, now)
                else:
                    (<ServerProtocol>proto).tick(now)
            except Exception:
                self.hub.log.exception("xyra: timer failed")
        for ws in list(self.hub.sockets):
            try:
                (<WebSocket>ws).tick(now)
            except Exception:
                self.hub.log.exception("xyra: timer failed")

    def close_all(self, int code=1001, str reason="server shutting down"):
        """Start closing every connection (graceful shutdown)."""
        self.accepting = False
        for proto in list(self.hub.handshaking):
            if type(proto) is WebSocket:
                self._drop_waiting(<WebSocket>proto, False)
            else:
                (<ServerProtocol>proto).shutdown(code, reason)
        for ws in list(self.hub.sockets):
            if (<WebSocket>ws).state == OPEN:
                (<WebSocket>ws).send_close(code, reason)

    def abort_all(self):
        for proto in list(self.hub.handshaking):
            if type(proto) is WebSocket:
                self._drop_waiting(<WebSocket>proto, True)
            else:
                (<ServerProtocol>proto).transport.abort()
        for ws in list(self.hub.sockets):
            ws.terminate()

    # -- the Gate: WebSockets before their upgrade (the fast path) -----------------------------

    cdef int arrived(self, WebSocket ws, object transport) except -1:
        cdef ServerProtocol proto
        ws.transport = transport
        if not self.accepting or (self.max_connections and self.count() >= self.max_connections):
            # The HTTP phase refuses it with a 503 (and logs it) as it always did.
            ws.finished = True
            proto = ServerProtocol(self)
            transport.set_protocol(proto)
            proto.connection_made(transport)
            return 0
        ws.last_rx = self.hub.now  # the handshake deadline counts from here
        self.hub.handshaking.add(ws)
        if self.access_log:  # the handshake's duration, for its access-log line
            if self._arrived_at is None:
                self._arrived_at = {}
            self._arrived_at[ws] = monotonic()
        return 0

    cdef double _arrival(self, WebSocket ws):
        """When ``ws`` connected, forgotten now (0: not recorded, the access log was off)."""
        if self._arrived_at is None:
            return 0.0
        return self._arrived_at.pop(ws, 0.0)

    cdef int gone(self, WebSocket ws) except -1:
        ws.finished = True
        ws.lost = True
        self.hub.handshaking.discard(ws)
        self._arrival(ws)
        return 0

    cdef int _drop_waiting(self, WebSocket ws, bint abort) except -1:
        """Close a connection that has sent no complete request yet (shutdown)."""
        if ws.finished or ws.lost:
            return 0
        ws.finished = True
        if abort:
            ws.transport.abort()
        else:
            ws.transport.close()
        return 0

    cdef int _handshake_timer(self, WebSocket ws, double now) except -1:
        if not ws.finished and not ws.lost and now - ws.last_rx >= self.handshake_timeout:
            ws.finished = True
            self.hub.stats.handshake_timeouts += 1  # live stats
            self.hub.log.info("xyra: closing %s: no complete request within %ss",
                              ws._peer(), self.handshake_timeout)
            ws.transport.close()
        return 0

    cdef int first_read(self, WebSocket ws, Py_ssize_t n) except -1:
        """The first bytes of a connection, at the start of the shared read buffer.

        A canonical upgrade request that the general path would accept is answered and
        opened here; everything else goes to the general path (``_to_http``), which then
        sees exactly the bytes it would have seen as the first protocol.
        """
        cdef const unsigned char* p = shared_ptr()
        cdef xyra_head h
        cdef RouteConfig route
        cdef object allowed, key
        cdef str path, target, subprotocol = None, offer
        cdef object extension = None, ext_value = None, negotiated
        cdef bytes response
        cdef tuple found
        cdef Hub hub = self.hub
        if ws.finished:
            return 0  # closed while it waited for this read (shutdown, timeout)
        if not xyra_scan_upgrade(p, n, self.max_head_size, self.max_headers, &h):
            return self._to_http(ws, n)
        if XYRA_DEBUG:
            _check_head(&h, p, n)
        path = PyUnicode_DecodeLatin1(<const char*>p + h.target, h.path_len, NULL)
        found = self.find_route(path)
        if found is None:
            return self._to_http(ws, n)  # an HTTP route, or a 404
        route = <RouteConfig>found[0]
        if route.upgrade is not None:
            return self._to_http(ws, n)  # the application decides: it needs a Request
        if h.seen[XYRA_H_ORIGIN]:
            allowed = route.allowed_origins
            if allowed is None:
                # The default policy: allowed if the Origin is the Host (exactly, in C; else
                # as check_origin compares them); refused ones go the general way.
                if not h.seen[XYRA_H_HOST]:
                    return self._to_http(ws, n)
                if not xyra_same_origin(p + h.val[XYRA_H_ORIGIN], h.len[XYRA_H_ORIGIN],
                                        p + h.val[XYRA_H_HOST], h.len[XYRA_H_HOST],
                                        PyUnicode_AsUTF8(self.scheme), len(self.scheme)):
                    key = _origin_key(_value(p, &h, XYRA_H_ORIGIN))
                    if key is None or key != _origin_key(
                            self.scheme + "://" + _value(p, &h, XYRA_H_HOST)):
                        return self._to_http(ws, n)
            elif not (type(allowed) is str and allowed == "*"):
                # An allowed_origins list: check_origin's comparison, the list's keys made once.
                key = _origin_key(_value(p, &h, XYRA_H_ORIGIN))
                if key is None or key not in self._origin_keys(route):
                    return self._to_http(ws, n)
        if h.seen[XYRA_H_PROTOCOL] and route.subprotocols:
            subprotocol = _choose_subprotocol(p + h.val[XYRA_H_PROTOCOL],
                                              h.len[XYRA_H_PROTOCOL], route.subprotocols)
        if h.seen[XYRA_H_EXTENSIONS] and route.negotiator is not None:
            offer = PyUnicode_DecodeLatin1(<const char*>p + h.val[XYRA_H_EXTENSIONS],
                                           h.len[XYRA_H_EXTENSIONS], NULL)
            try:
                negotiated = route.negotiator([offer])
            except ValueError:
                return self._to_http(ws, n)  # answered with a 400 there
            if negotiated is not None:
                ext_value, extension = negotiated
        response = _response_101(p + h.val[XYRA_H_KEY], subprotocol, ext_value)
        if h.target_len == h.path_len:
            target = route.path if path == route.path else path
        else:
            target = PyUnicode_DecodeLatin1(<const char*>p + h.target, h.target_len, NULL)
        self.fast_upgrades += 1
        ws.begin(ws.transport, hub, route, target, subprotocol, response, extension, None,
                 <dict>found[1])
        hub.handshaking.discard(ws)
        hub.add_socket(ws)
        if self.access_log:
            accesslog.handshake(ws._peer(), target, 101, subprotocol, response,
                                self._arrival(ws))
        # Frames sent right behind the head (bounds: head_len <= n, checked by the scan).
        ws.feed_initial(p + h.head_len, n - <Py_ssize_t>h.head_len)
        ws.is_protocol = True
        ws.reader_mode()  # its own reader if those frames left part of one behind
        return 0

    cdef frozenset _origin_keys(self, RouteConfig route):
        """A route's allowed_origins as check_origin compares them (made once per route)."""
        cdef frozenset keys
        if self._route_origins is None:
            self._route_origins = {}
        keys = self._route_origins.get(route)
        if keys is None:
            keys = frozenset(_origin_key(o) for o in route.allowed_origins)
            self._route_origins[route] = keys
        return keys

    cdef int _to_http(self, WebSocket ws, Py_ssize_t n) except -1:
        """Hand the connection to an HTTP-phase protocol, with its first read."""
        cdef ServerProtocol proto = ServerProtocol(self)
        cdef object transport = ws.transport
        ws.finished = True
        # What connection_made does for a connection it admits (the gate admitted this one).
        proto.transport = transport
        proto.deadline = ws.last_rx + self.handshake_timeout
        proto.started = self._arrival(ws)
        self.hub.handshaking.discard(ws)
        self.hub.handshaking.add(proto)
        proto._start_http()
        transport.set_protocol(proto)
        proto._http_data(shared_view()[:n], shared_ptr(), n)
        return 0


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8(object unicode) except NULL


cdef bytes _response_101(const unsigned char* key, str subprotocol, object ext_value):
    """The 101 for a validated key: the bytes handshake.process_request builds."""
    cdef Py_ssize_t base = PyBytes_GET_SIZE(SWITCHING)
    cdef bytes out
    cdef char* q
    cdef char accept[XYRA_ACCEPT_LEN]
    if subprotocol is None and ext_value is None:
        out = PyBytes_FromStringAndSize(NULL, base + XYRA_ACCEPT_LEN + 4)
        q = PyBytes_AS_STRING(out)
        memcpy(q, PyBytes_AS_STRING(SWITCHING), base)
        xyra_accept(key, q + base)
        memcpy(q + base + XYRA_ACCEPT_LEN, b"\r\n\r\n", 4)
        return out
    xyra_accept(key, accept)
    return (SWITCHING + accept[:XYRA_ACCEPT_LEN] + b"\r\n"
            + (b"" if subprotocol is None
               else b"Sec-WebSocket-Protocol: " + subprotocol.encode("latin-1") + b"\r\n")
            + (b"" if ext_value is None
               else b"Sec-WebSocket-Extensions: " + ext_value.encode("latin-1") + b"\r\n")
            + b"\r\n")


cdef inline str _value(const unsigned char* p, xyra_head* h, int k):
    """A header's value as httptools gives it (leading blanks skipped, trailing kept)."""
    return PyUnicode_DecodeLatin1(<const char*>p + h.val[k], h.len[k], NULL)


cdef str _choose_subprotocol(const unsigned char* p, size_t n, tuple supported):
    """handshake.choose_subprotocol on one header value: the first offered token
    (comma-separated, spaces and tabs trimmed) that the route supports."""
    cdef size_t i = 0, start, end
    cdef str name
    while i < n:
        while i < n and (p[i] == 32 or p[i] == 9):
            i += 1
        start = i
        while i < n and p[i] != 44:  # ','
            i += 1
        end = start + xyra_rtrim(p + start, i - start)
        if end > start:
            name = PyUnicode_DecodeLatin1(<const char*>p + start, end - start, NULL)
            if name in supported:
                return name
        i += 1
    return None


cdef int _check_head(xyra_head* h, const unsigned char* p, Py_ssize_t n) except -1:
    """Debug builds: what the scanner reports lies inside the head it scanned."""
    cdef int k
    if not (0 < h.head_len <= <size_t>n and h.target == 4
            and h.target + h.target_len < h.head_len and h.path_len <= h.target_len
            and p[h.target] == 47 and h.headers >= 4):
        raise AssertionError(f"upgrade scan broken: head {h.head_len} of {n}, target "
                             f"{h.target}+{h.target_len} (path {h.path_len}), "
                             f"{h.headers} headers")
    if p[h.head_len - 4] != 13 or p[h.head_len - 1] != 10:
        raise AssertionError("upgrade scan broken: the head does not end with a blank line")
    for k in range(XYRA_H_COUNT):
        if h.seen[k] and not (h.target + h.target_len < h.val[k]
                              and h.val[k] + h.len[k] + 2 < h.head_len + 1):
            raise AssertionError(f"upgrade scan broken: header {k} at {h.val[k]}+{h.len[k]} "
                                 f"outside the head ({h.head_len})")
    if not (h.seen[XYRA_H_UPGRADE] and h.seen[XYRA_H_CONNECTION] and h.seen[XYRA_H_KEY]
            and h.seen[XYRA_H_VERSION] and h.len[XYRA_H_KEY] >= XYRA_KEY_LEN):
        raise AssertionError("upgrade scan broken: accepted without the handshake's headers")
    return 0


_HEADER_NAMES = ("host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
                 "sec-websocket-protocol", "sec-websocket-extensions", "origin")


def _scan(const unsigned char[:] data, Py_ssize_t max_head=32768, int max_headers=100):
    """The fast path's scanner on ``data`` (tests): None where it hands the request to
    the general path, else the head's length, target and the values it kept."""
    cdef xyra_head h
    cdef const unsigned char* p = &data[0] if data.shape[0] else NULL
    cdef int k
    if p == NULL or not xyra_scan_upgrade(p, data.shape[0], max_head, max_headers, &h):
        return None
    _check_head(&h, p, data.shape[0])
    out = {"head_len": h.head_len, "headers": h.headers,
           "target": bytes(data[h.target:h.target + h.target_len]),
           "path": bytes(data[h.target:h.target + h.path_len])}
    for k in range(XYRA_H_COUNT):
        if h.seen[k]:
            out[_HEADER_NAMES[k]] = bytes(data[h.val[k]:h.val[k] + h.len[k]])
    return out


def _sha1(const unsigned char[:] data):
    """upgrade.h's SHA-1 of ``data`` (tests check it against hashlib)."""
    cdef unsigned char digest[20]
    xyra_sha1(&data[0] if data.shape[0] else <const unsigned char*>b"", data.shape[0], digest)
    return <bytes>digest[:20]


def _accept_value(bytes key):
    """upgrade.h's Sec-WebSocket-Accept for a valid 24-byte key (tests)."""
    cdef char out[XYRA_ACCEPT_LEN]
    if len(key) != XYRA_KEY_LEN:
        raise ValueError("a key is 24 bytes")
    xyra_accept(<const unsigned char*>PyBytes_AS_STRING(key), out)
    return out[:XYRA_ACCEPT_LEN].decode("ascii")


cdef class ServerProtocol:
    """uvloop protocol of one connection's HTTP phase.

    A WebSocket upgrade hands the transport to the new ``WebSocket``
    (``set_protocol``) when ``ctx.switch_protocol``; otherwise (``PlainServerProtocol``
    on a plain asyncio loop) this object stays and forwards to it.
    """

    cdef ServerContext ctx
    cdef object transport
    cdef object http
    cdef WebSocket ws
    # the request being parsed
    cdef bytes url
    cdef list headers
    cdef list body
    cdef Py_ssize_t body_size
    cdef Py_ssize_t head_bytes
    cdef bint in_head
    cdef bint too_many_headers
    # requests parsed and waiting for their answer, answered in order
    cdef object queue
    cdef bint busy
    cdef bint done                     # the HTTP phase is over: upgraded, or closing
    cdef double deadline
    cdef object ip                     # set only while per-address limits are on
    # streamed requests (ASGI): see ServerConfig.http_streams
    cdef list raw_headers              # the request's headers as received (names lowercased)
    cdef object stream                 # the streamed request being parsed: its body goes there
    cdef object active                 # the streamed request being answered
    cdef object waiting                # what _wait waits for
    cdef bint pipeline_paused          # reading paused: a request waits behind a streamed one
    cdef bint plain_upgrade            # an Upgrade no WebSocket route has: plain HTTP, then close
    cdef public object stream_info     # the stream factory's per-connection cache
    cdef double started                # when the connection came (only for the access log)

    def __cinit__(self):
        global _live_http
        if XYRA_DEBUG:
            _live_http += 1

    def __dealloc__(self):
        global _live_http
        if XYRA_DEBUG:
            _live_http -= 1

    def __init__(self, ServerContext ctx):
        self.ctx = ctx

    # -- asyncio protocol interface ----------------------------------------------------------

    def connection_made(self, transport):
        cdef ServerContext ctx = self.ctx
        cdef Hub hub = ctx.hub
        self.transport = transport
        hub.handshaking.add(self)
        if ctx.access_log:
            self.started = monotonic()
        if ctx.max_connections_per_ip:
            peer = self._peer()
            self.ip = peer[0] if isinstance(peer, tuple) else peer
            hub.per_ip[self.ip] = hub.per_ip.get(self.ip, 0) + 1
        self.deadline = hub.now + ctx.handshake_timeout
        if not ctx.accepting:
            self._reject(503, "server is shutting down")
        elif ctx.max_connections and ctx.count() > ctx.max_connections:
            self._reject(503, f"over max_connections ({ctx.max_connections})")
        elif self.ip is not None and hub.per_ip[self.ip] > ctx.max_connections_per_ip:
            self._reject(503, f"over max_connections_per_ip ({ctx.max_connections_per_ip})")
        else:
            self._start_http()

    cdef _start_http(self):
        """The HTTP phase begins (here, or when the fast path hands a connection over)."""
        self.http = httptools.HttpRequestParser(self)

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
                                           self._peer())
                self.transport.abort()
            return
        if not self.done:
            self._http_data(shared_view()[:nbytes], shared_ptr(), nbytes)

    def eof_received(self):
        if self.ws is not None:
            self.ws.on_eof()
        return False

    def connection_lost(self, exc):
        self.http = None
        self.queue = None
        self.stream = None
        if self.active is not None:
            active, self.active = self.active, None
            active.lost()
        elif self.waiting is not None and not self.waiting.done():
            # An ASGI WebSocket handshake waiting on its app hears that the client left.
            client_left = getattr(self.waiting, "client_left", None)
            if client_left is not None:
                client_left()
        self.waiting = None
        if self.ws is not None:
            self.ws.connection_lost(exc)  # the WebSocket took over the bookkeeping
            return
        self.ctx.hub.handshaking.discard(self)
        if self.ip is not None:
            self.ctx.hub.release_ip(self.ip)

    def pause_writing(self):
        if self.ws is not None:
            self.ws.on_pause_writing()
        elif self.active is not None:
            self.active.pause_writing()

    def resume_writing(self):
        if self.ws is not None:
            self.ws.on_resume_writing()
        elif self.active is not None:
            self.active.resume_writing()

    # -- httptools callbacks -----------------------------------------------------------------

    def on_message_begin(self):
        self.in_head = True
        self.url = None
        self.headers = []
        self.body = None
        self.body_size = 0
        if self.ctx.http_streams is not None:
            self.raw_headers = []

    def on_url(self, bytes url):
        self.url = url if self.url is None else self.url + url

    def on_header(self, bytes name, bytes value):
        if len(self.headers) < self.ctx.max_headers:
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))
            if self.raw_headers is not None:
                self.raw_headers.append((name.lower(), value))
        else:
            self.too_many_headers = True

    def on_headers_complete(self):
        self.in_head = False
        if self.ctx.http_streams is not None and self._stream_request():
            return
        length = expect = None
        for name, value in self.headers:
            if name == "content-length":
                length = value
            elif name == "expect":
                expect = value
        if length is not None and length.strip().isdigit() \
                and int(length) > self.ctx.max_body_size:
            raise _BodyTooLarge()  # answered before the client sends the body
        if expect is not None and expect.strip().lower() == "100-continue":
            self.transport.write(b"HTTP/1.1 100 Continue\r\n\r\n")

    def on_body(self, bytes body):
        if self.stream is not None:
            self.stream.feed(body)
            return
        self.body_size += len(body)
        if self.body_size > self.ctx.max_body_size:
            raise _BodyTooLarge()
        if self.body is None:
            self.body = []
        self.body.append(body)

    def on_message_complete(self):
        cdef bint upgrade = self.http.should_upgrade()
        if self.stream is not None:
            stream, self.stream = self.stream, None
            self.plain_upgrade = upgrade
            stream.end()
            return
        target = self._target()
        if upgrade and self.ctx.find_route(target.split("?", 1)[0]) is not None:
            return  # HttpParserUpgrade follows: the WebSocket handshake takes over
        # An Upgrade no WebSocket route serves (h2c, ...) is answered as plain HTTP, then
        # the connection closes: the parser reads nothing after it.
        self.plain_upgrade = upgrade
        if self.queue is None:
            self.queue = deque()
        self.queue.append((
            self.http.get_method().decode("latin-1"),
            target,
            self.headers,
            b"".join(self.body) if self.body else b"",
            self.http.should_keep_alive() and not upgrade,
        ))

    # -- the HTTP phase ----------------------------------------------------------------------

    cdef _http_data(self, object view, const unsigned char* ptr, Py_ssize_t n):
        cdef Py_ssize_t offset = -1
        cdef int status = 0
        cdef str why = None
        if self.in_head or not self.headers:
            self.head_bytes += n
        # The parser's exceptions only set what to do: handlers run after the except
        # blocks, so a traceback they log does not begin with httptools' exception.
        try:
            self.http.feed_data(view)
        except httptools.HttpParserUpgrade as exc:
            offset = exc.args[0]
        except httptools.HttpParserCallbackError as exc:
            if isinstance(exc.__context__, _BodyTooLarge):
                status, why = 413, f"request body over {self.ctx.max_body_size} bytes"
            else:
                self.ctx.hub.log.error("xyra: HTTP callback failed", exc_info=exc)
                status, why = 500, "internal error"
        except httptools.HttpParserError as exc:
            status, why = 400, f"malformed HTTP request: {exc}"
        if status:
            self._reject(status, why)
            return
        if offset >= 0:
            # Frames sent right behind the head are not part of it.
            self.head_bytes = max(0, self.head_bytes - (n - offset))
            self._process_queue()
            if not self.done:
                self._upgrade((<char*>ptr + offset)[:n - offset] if n > offset else b"")
            return
        if self.too_many_headers:
            self._reject(431, f"more than {self.ctx.max_headers} header lines")
        elif self.in_head and self.head_bytes > self.ctx.max_head_size:
            self._reject(431, f"request head over {self.ctx.max_head_size} bytes")
        else:
            if not self.in_head:
                self.head_bytes = 0
            self._process_queue()

    cdef _process_queue(self):
        while self.queue and not self.busy and not self.done:
            item = self.queue.popleft()
            if type(item) is tuple:
                self._answer(item)
            else:
                self._start_stream(item)
        if self.queue and self.active is not None and not self.pipeline_paused:
            # A request parsed behind a streamed one waits its turn: read no more meanwhile.
            self.pipeline_paused = True
            self.transport.pause_reading()

    # -- streamed requests (the ASGI adapter) ------------------------------------------------
    # ServerConfig.http_streams(conn, transport, scheme, method, target, headers,
    # http_version, keep_alive) is asked at the end of every request head; a request it
    # takes gets an HTTPStream (xyra/config.py) instead of the buffered answer: the body
    # chunks go to stream.feed() as they arrive, stream.end() ends the body, and
    # stream.start() runs it when its turn comes (requests are answered in order); the
    # stream writes its response on the transport itself and calls conn.stream_done().

    cdef bint _stream_request(self) except -1:
        """Hand the request whose head just ended to a stream, if the app streams it."""
        cdef bint upgrade = self.http.should_upgrade()
        if self.too_many_headers or self.raw_headers is None:
            return False  # refused (431) by the buffered path
        target = self._target()
        if upgrade and _asks_websocket(self.raw_headers) \
                and self.ctx.find_route(target.split("?", 1)[0]) is not None:
            return False  # a WebSocket handshake: the upgrade path serves it
        stream = self.ctx.http_streams(
            self, self.transport, self.ctx.scheme, self.http.get_method(), self.url or b"/",
            self.raw_headers, self.http.get_http_version(),
            self.http.should_keep_alive() and not upgrade)
        self.raw_headers = None
        if stream is None:
            return False
        self.stream = stream
        if self.queue is None:
            self.queue = deque()
        self.queue.append(stream)
        return True

    cdef _start_stream(self, object stream):
        self.busy = True
        self.active = stream
        try:
            stream.start()
        except Exception as exc:
            self.active = None
            self.ctx.hub.log.error("xyra: starting a streamed request failed", exc_info=exc)
            self._reject(500, "internal error")

    def stream_done(self, bint keep_alive):
        """The active stream's response is complete: the next request's turn, or close."""
        self.active = None
        self.busy = False
        if self.done or self.transport.is_closing():
            return
        if not (keep_alive and self.ctx.accepting):
            self._finish_http()
            self.transport.close()
            return
        self.deadline = self.ctx.hub.now + self.ctx.keep_alive_timeout
        if self.pipeline_paused:
            self.pipeline_paused = False
            self.transport.resume_reading()
        self._process_queue()

    cdef _answer(self, tuple req):
        method, target, headers, body, keep_alive = req
        path = target.split("?", 1)[0]
        result = None
        if self.ctx.http_dispatch is not None:
            request = self.ctx.request_class(method, target, headers, body, self._peer(),
                                             self.ctx.scheme)
            try:
                result = self.ctx.http_dispatch(request)
            except Exception as exc:
                self.ctx.hub.log.error("xyra: HTTP dispatch failed", exc_info=exc)
                self._reject(500, "internal error")
                return
        if result is None:
            if self.ctx.find_route(path) is not None:
                rejection = process_request(method, headers)
                self._reject(rejection.status, rejection.reason, rejection.headers)
            elif "websocket" in header_tokens(headers, "upgrade"):
                self._reject(404, f"no WebSocket route at {path}")
            else:
                self._respond(self.ctx.response_class(f"nothing at {path}\n", 404),
                              method, keep_alive)
            return
        if isawaitable(result):
            self._wait(result, (method, keep_alive), self._respond_later)
            return
        self._respond(result, method, keep_alive)

    cdef _wait(self, object awaitable, object context, object callback):
        """Run an async handler; the connection reads nothing more until it is done."""
        self.busy = True
        self.transport.pause_reading()
        task = self.ctx.hub.loop.create_task(awaitable) \
            if not hasattr(awaitable, "add_done_callback") else awaitable
        self.waiting = task
        task.add_done_callback(lambda t: callback(t, context))

    def _respond_later(self, task, context):
        self.busy = False
        if self.done or self.transport.is_closing():
            return
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                self.ctx.hub.log.error("xyra: HTTP handler failed", exc_info=task.exception())
            self._reject(500, "internal error")
            return
        self._respond(task.result(), context[0], context[1])
        if not self.done:
            self.transport.resume_reading()
            self._process_queue()

    cdef _respond(self, object response, str method, bint keep_alive):
        keep_alive = keep_alive and self.ctx.accepting
        self.transport.write(response.encode(head=(method == "HEAD"), keep_alive=keep_alive))
        self.deadline = self.ctx.hub.now + self.ctx.keep_alive_timeout
        if not keep_alive:
            self._finish_http()
            self.transport.close()

    cdef _finish_http(self):
        self.done = True
        self.http = None
        self.headers = None
        self.body = None
        self.queue = None

    cdef _reject(self, int status, str reason, list headers=None):
        self._finish_http()
        self._refused(status)
        self.ctx.hub.log.info("xyra: refused %s from %s: %d %s", self._logged_path(),
                              self._peer(), status, reason)
        self.transport.write(http_response(status, reason + "\n", headers or ()))
        self.transport.close()

    cdef _refused(self, int status):
        """Live stats and the access log of a refused handshake."""
        self.ctx.hub.stats.handshakes_refused[refused_slot(status)] += 1
        if self.ctx.access_log:
            accesslog.handshake(self._peer(), self.url, status, None, None, self.started)

    cdef object _peer(self):
        peer = self.transport.get_extra_info("peername")
        return tuple(peer[:2]) if isinstance(peer, tuple) else peer

    cdef str _target(self):
        return self.url.decode("latin-1") if self.url is not None else "request"

    cdef str _logged_path(self):
        # Log lines carry the path only: query strings hold tokens (?token=...).
        return self._target().split("?", 1)[0]

    # -- the WebSocket handshake ---------------------------------------------------------------

    cdef _upgrade(self, bytes leftover):
        cdef RouteConfig route
        if self.plain_upgrade:  # no WebSocket route has it: being answered as plain HTTP
            return
        if self.head_bytes > self.ctx.max_head_size:
            self._reject(431, f"request head over {self.ctx.max_head_size} bytes")
            return
        if self.too_many_headers:
            self._reject(431, f"more than {self.ctx.max_headers} header lines")
            return
        target = self._target()
        route, params = self.ctx.find_route(target.split("?", 1)[0])
        method = self.http.get_method().decode("latin-1")
        headers = self.headers
        result = process_request(method, headers, route.subprotocols, route.negotiator)
        if isinstance(result, Rejection):
            self._reject(result.status, result.reason, result.headers)
            return
        refused = check_origin(headers, route.allowed_origins, self.ctx.scheme)
        if refused is not None:
            self._reject(refused.status, refused.reason, refused.headers)
            return
        self._finish_http()
        if route.upgrade is None:
            self._accept(route, target, result, leftover, None, params)
            return
        request = self.ctx.request_class(method, target, headers, b"", self._peer(),
                                         self.ctx.scheme)
        request.path_params = params or {}
        # The ASGI adapter's upgrade handler writes the app's subprotocol and headers
        # into the 101 and reads the server's address (xyra/asgi/); others ignore them.
        request.handshake = result
        request.transport = self.transport
        try:
            verdict = route.upgrade(request)
        except Exception as exc:
            self.ctx.hub.log.error("xyra: upgrade handler failed", exc_info=exc)
            self._send_and_close(http_response(500, "internal error\n"))
            return
        if isawaitable(verdict):
            # Bytes the client sent after its request stay in `leftover` until the verdict.
            self._wait(verdict, (route, target, result, leftover, request, params),
                       self._verdict_later)
            return
        self._verdict(verdict, route, target, result, leftover, request, params)

    def _verdict_later(self, task, context):
        self.busy = False
        if self.transport.is_closing():
            return
        if task.cancelled() or task.exception() is not None:
            if not task.cancelled():
                self.ctx.hub.log.error("xyra: upgrade handler failed", exc_info=task.exception())
            self._send_and_close(http_response(500, "internal error\n"))
            return
        self.transport.resume_reading()
        route, target, result, leftover, request, params = context
        self._verdict(task.result(), route, target, result, leftover, request, params)

    cdef _verdict(self, object verdict, RouteConfig route, str target, object result,
                  bytes leftover, object request, dict params):
        if verdict is False:
            self.ctx.hub.log.info("xyra: upgrade handler refused %s from %s",
                                  self._logged_path(), self._peer())
            self._send_and_close(http_response(403, "forbidden\n"))
        elif hasattr(verdict, "encode") and hasattr(verdict, "status"):
            self.ctx.hub.log.info("xyra: upgrade handler refused %s from %s with %s",
                                  self._logged_path(), self._peer(), verdict.status)
            self._send_and_close(verdict.encode(head=False, keep_alive=False))
        else:
            self._accept(route, target, result, leftover, request.data or None, params)

    cdef _send_and_close(self, bytes data):
        self._finish_http()
        # An upgrade handler's refusal: the status is in the response's first line.
        self._refused(int(data[9:12]) if data[9:12].isdigit() else 0)
        self.transport.write(data)
        self.transport.close()

    cdef _accept(self, RouteConfig route, str target, object result, bytes leftover,
                 object data, dict params):
        cdef WebSocket ws = WebSocket.__new__(WebSocket)
        cdef Hub hub = self.ctx.hub
        if target == route.path:
            target = route.path  # one shared string for every connection of the route
        try:
            ws.begin(self.transport, hub, route, target,
                     result.subprotocol, result.response, result.extension, data, params)
            self.ws = ws
            hub.handshaking.discard(self)
            hub.add_socket(ws)
            if self.ctx.access_log:
                accesslog.handshake(self._peer(), target, 101, result.subprotocol,
                                    result.response, self.started)
            if self.ip is not None:
                ws.wx().ip, self.ip = self.ip, None
            ws.feed_initial(<const unsigned char*>PyBytes_AS_STRING(leftover),
                            PyBytes_GET_SIZE(leftover))
            if self.ctx.switch_protocol:
                ws.take_transport()
        except Exception:
            self.ctx.hub.log.exception("xyra: internal error opening %s", self._peer())
            self.transport.abort()

    # -- timers and shutdown -----------------------------------------------------------------

    cdef int tick(self, double now) except -1:
        if self.ws is not None:
            return self.ws.tick(now)
        if not self.done and not self.busy and now >= self.deadline:
            self._finish_http()
            self.ctx.hub.stats.handshake_timeouts += 1  # live stats
            self.ctx.hub.log.info("xyra: closing %s: no complete request within %ss",
                                  self._peer(), self.ctx.handshake_timeout)
            self.transport.close()
        return 0

    cdef shutdown(self, int code, str reason):
        if self.ws is not None:
            if self.ws.state == OPEN:
                self.ws.send_close(code, reason)
        elif self.active is not None:
            self.active.shutdown()  # the connection closes once this response is done
        elif not self.done and not self.busy:
            self._finish_http()
            self.transport.close()


cdef class PlainServerProtocol(ServerProtocol):
    """For plain asyncio loops, which call ``data_received`` on protocols that do not
    inherit from ``asyncio.BufferedProtocol``: this one stays the transport's protocol
    after an upgrade and forwards to the WebSocket."""

    def data_received(self, bytes data):
        if self.ws is not None:
            try:
                self.ws.feed_initial(<const unsigned char*>PyBytes_AS_STRING(data),
                                     PyBytes_GET_SIZE(data))
            except Exception:
                self.ctx.hub.log.exception("xyra: internal error on %s", self._peer())
                self.transport.abort()
            return
        if not self.done:
            self._http_data(data, <const unsigned char*>PyBytes_AS_STRING(data),
                            PyBytes_GET_SIZE(data))

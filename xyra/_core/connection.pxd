# The WebSocket: the user's object, on top of the sans-I/O Endpoint (endpoint.pxd).
from xyra._core.endpoint cimport Endpoint, EndpointConfig, Extras
from xyra._core.pubsub cimport Hub


cdef class RouteConfig(EndpointConfig):
    # One route: its handlers and what the handshake checks, on top of the limits.
    cdef public object open, message, close, drain, ping, pong, subscription, upgrade
    cdef public object allowed_origins       # None (same-origin policy), "*", or a tuple
    cdef public object negotiator            # permessage-deflate negotiation, or None
    cdef public object pattern               # the path's {parameters} (a PathPattern), or None
    cdef public object settle                # ws -> None or an awaitable (see on_protocol_error)
    cdef public bint open_async, message_async, close_async
    cdef public bint discard_warned          # "messages discarded" was logged once
    cdef public Py_ssize_t max_queue
    cdef public tuple subprotocols
    cdef public str path


cdef class WsExtras(Extras):
    # The WebSocket's share of the lazily created per-connection state.
    cdef:
        object pending            # handlers waiting behind a running async one, in order
        object recv_queue
        list recv_waiters
        list drain_waiters
        dict data
        dict path_params          # None: no parameters in the route's path
        str path                  # None: the route's path (no query string)
        str subprotocol
        object ip                 # counted in hub.per_ip (only while per-address limits are on)


cdef class WebSocket(Endpoint):
    cdef:
        unsigned char busy        # an async handler is running
        unsigned char read_paused
        unsigned char is_protocol  # the transport's protocol (uvloop), not behind a forwarder
        unsigned char own_reads   # uvloop holds our bound reader (see get_buffer)
        # The socket's fd + 1 for write_now's direct send, 0 not looked up yet, -1 none
        # (not a plain uvloop TCP transport). An int fits the struct's last 4 bytes.
        int send_fd

    cdef int begin(self, object transport, Hub hub, RouteConfig route, str path,
                   str subprotocol, bytes response, object deflate,
                   object data, dict params) except -1
    cdef int write_now(self, bytes data) except -1
    cdef int take_transport(self) except -1
    cdef int reader_mode(self) except -1
    cdef int call(self, object handler, bint is_async, tuple args) except -1
    cdef int run_pending(self) except -1
    cdef int handler_failed(self, object exc) except -1
    cdef int on_protocol_error(self, int code, str why) except -1
    cdef WsExtras wx(self)
    cdef int _check_thread(self, str method) except -1
    cdef _wake_drain_waiters(self)
    cdef _run_task(self, object awaitable)
    cdef _pause_reading(self)
    cdef _resume_reading(self)
    cdef _enqueue_received(self, object message)


cdef class Gate:
    # What a WebSocket that is its transport's first protocol (the server's fast path for
    # upgrade requests) asks its server until it is open: protocol.pyx implements it.
    cdef int arrived(self, WebSocket ws, object transport) except -1
    cdef int first_read(self, WebSocket ws, Py_ssize_t nbytes) except -1
    cdef int gone(self, WebSocket ws) except -1

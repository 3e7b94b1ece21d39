# The per-connection WebSocket state machine (sans-I/O: it writes through `transport`,
# anything with write/writelines/close/abort/write_eof/get_write_buffer_size).
from xyra._core.frames cimport Parser
from xyra._core.deflate cimport Deflater, Inflater

cdef enum ConnState:
    OPEN = 1
    CLOSING = 2     # we sent a close frame and wait for the peer's (or its EOF)
    CLOSED = 3      # the close handshake is over or TCP is gone: nothing more is sent

cdef class RouteConfig:
    cdef public object open, message, close, drain, ping, pong, subscription, upgrade
    cdef public object allowed_origins       # None (same-origin policy), "*", or a tuple
    cdef public double max_messages_per_second, max_bytes_per_second
    cdef public bint rate_limit_close        # close with 1008, else drop the message
    cdef public bint open_async, message_async, close_async
    cdef public Py_ssize_t max_payload_length, max_backpressure, max_queue
    cdef public double idle_timeout, ping_interval, close_timeout
    cdef public bint close_on_backpressure_limit
    cdef public tuple subprotocols
    cdef public str path
    cdef public int compression              # 0 off, 1 shared, 2 dedicated
    cdef public Py_ssize_t compression_threshold

cdef class Hub:
    # what every connection of one server shares: the loop, the cork list, the clock
    cdef public object loop
    cdef public object log
    cdef public double now
    cdef public long thread_id
    cdef public set handshaking      # HTTP-phase protocols (few, short-lived)
    cdef public list sockets         # open WebSockets; each knows its slot (no set per conn)
    cdef public dict per_ip          # remote host -> open connections (when limited)
    cdef list dirty
    cdef bint flush_scheduled
    cdef object _flush_cb
    cdef dict _shared_deflaters      # window bits -> no-context Deflater
    cdef Deflater shared_deflater(self, int window_bits)
    cdef int schedule_flush(self, WebSocket ws) except -1
    cdef int release_ip(self, object ip) except -1
    cdef int add_socket(self, WebSocket ws) except -1
    cdef int remove_socket(self, WebSocket ws) except -1
    cdef int subscribe(self, WebSocket ws, str topic) except -1
    cdef int unsubscribe(self, WebSocket ws, str topic) except -1
    cdef int unsubscribe_all(self, WebSocket ws) except -1
    cpdef int publish(self, str topic, object message, object opcode=*, bint compress=*,
                      WebSocket exclude=*) except -1

cdef class Extras:
    # What few connections use, allocated on a connection's first need, so an idle
    # plain connection does not carry it: async handler queues, compression state,
    # rate-limit buckets, close bookkeeping, the user's dict.
    cdef:
        object pending            # handlers waiting behind a running async one, in order
        object recv_queue
        list recv_waiters
        list drain_waiters
        Deflater deflater         # permessage-deflate, dedicated mode
        Inflater inflater
        dict data
        str path                  # None: the route's path (no query string)
        str subprotocol
        str report_reason         # what the close handler is told (None: "")
        object ip                 # counted in hub.per_ip (only while per-address limits are on)
        Py_ssize_t dropped
        double close_deadline
        # rate limiting: token buckets refilled from the monotonic clock
        double msg_tokens
        double byte_tokens
        double bucket_time

cdef class WebSocket(Parser):
    # Fields are grouped by size (objects, then 8-, 4- and 1-byte ones) so the struct
    # has no padding holes: every idle connection carries this object.
    cdef:
        object transport
        Hub hub
        RouteConfig route
        list chunks               # queued by reference: the 101 response, big payloads
        dict _topics
        Extras extras             # None until needed
        # output: small frames are copied into `out` (the cork), freed after each flush
        unsigned char* out
        Py_ssize_t out_len
        Py_ssize_t out_cap
        Py_ssize_t queued         # bytes in out + chunks
        Py_ssize_t transport_pending
        double last_rx
        int report_code           # what the close handler is told
        int slot                  # index in hub.sockets
        unsigned char state
        unsigned char close_received
        unsigned char write_paused
        unsigned char read_paused
        unsigned char in_read
        unsigned char dirty
        unsigned char congested
        unsigned char ping_outstanding
        unsigned char busy        # an async handler is running
        unsigned char lost        # the transport is gone
        unsigned char deflate_mode  # 0 none, 1 shared, 2 dedicated (per-connection window)
        unsigned char deflate_bits  # the server window negotiated (shared mode)
        unsigned char is_protocol # the transport's protocol (uvloop), not behind a forwarder
        unsigned char own_reads   # uvloop holds our bound reader (see get_buffer)

    cdef int begin(self, object transport, Hub hub, RouteConfig route, str path,
                   str subprotocol, bytes response, object deflate,
                   object data) except -1
    cdef int data_received_into(self, Py_ssize_t nbytes) except -1
    cdef int feed_initial(self, const unsigned char* data, Py_ssize_t n) except -1
    cdef int take_transport(self) except -1
    cdef int reader_mode(self) except -1
    cdef int flush(self) except -1
    cdef int queue_frame(self, const unsigned char* frame, Py_ssize_t length, object owner) except -1
    cdef object send_frame(self, int opcode, const unsigned char* data, Py_ssize_t length,
                           object owner, bint rsv1=*)
    cdef object send_message(self, int opcode, const unsigned char* data, Py_ssize_t length,
                             object owner, bint compress)
    cdef Deflater compressor(self)
    cdef int send_close(self, int code, str reason) except -1
    cdef int fail(self, int code, str why) except -1
    cdef int on_lost(self, object exc) except -1
    cdef int on_pause_writing(self) except -1
    cdef int on_resume_writing(self) except -1
    cdef int on_eof(self) except -1
    cdef int tick(self, double now) except -1
    cdef int call(self, object handler, bint is_async, tuple args) except -1
    cdef int run_pending(self) except -1
    cdef int handler_failed(self, object exc) except -1
    cdef int deliver(self, object message, object opcode) except -1
    cdef bint over_rate(self, Py_ssize_t length) except -1
    cdef int check_drain(self) except -1
    cdef dict topic_map(self)
    cdef Extras more(self)
    cdef str reason(self)
    cdef object _peer(self)
    cdef int _reserve_out(self, Py_ssize_t need) except -1
    cdef int _append_out(self, const unsigned char* data, Py_ssize_t n) except -1
    cdef int _seal(self) except -1
    cdef int _control(self, int opcode, bytes payload) except -1
    cdef object _over_limit(self)
    cdef _wake_drain_waiters(self)
    cdef _run_task(self, object awaitable)
    cdef _pause_reading(self)
    cdef _resume_reading(self)
    cdef _enqueue_received(self, object message)

cdef object message_payload(object message, object opcode, const char** p, Py_ssize_t* n,
                            int* op)

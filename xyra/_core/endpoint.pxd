# The sans-I/O endpoint: one WebSocket connection's protocol state. It writes through
# `transport` (anything with write/writelines/close/abort/can_write_eof/write_eof/
# get_write_buffer_size/get_extra_info) and asks its Outbox to flush it once per loop
# iteration. It never touches an event loop: time comes from Outbox.now / clock().
from xyra._core.frames cimport Parser
from xyra._core.deflate cimport Deflater, Inflater
from xyra._core.debug cimport XYRA_DEBUG
from xyra._core.stats cimport XyraStats

cdef enum ConnState:
    HANDSHAKE = 0   # the transport's first protocol, before the upgrade (protocol.pyx)
    OPEN = 1
    CLOSING = 2     # we sent a close frame and wait for the peer's (or its EOF)
    CLOSED = 3      # the close handshake is over or TCP is gone: nothing more is sent

cdef enum:
    # Payloads at least this big are queued by reference (the caller's immutable bytes)
    # instead of being copied into the cork buffer.
    LARGE = 65536
    # Published frames at least this big are queued by reference; smaller ones are
    # cheaper to copy into the cork than to track one by one.
    SHARE_FRAME = 512


cdef class EndpointConfig:
    # The limits an endpoint enforces (one per route; RouteConfig adds the handlers).
    cdef public double max_messages_per_second, max_bytes_per_second
    cdef public bint rate_limit_close        # close with 1008, else drop the message
    cdef public Py_ssize_t max_payload_length, max_backpressure
    cdef public double idle_timeout, ping_interval, close_timeout
    cdef public bint close_on_backpressure_limit
    cdef public int compression              # 0 off, 1 shared, 2 dedicated
    cdef public Py_ssize_t compression_threshold
    # live stats of the route (docs/observability.md), kept by the Hub: open now, and ever
    cdef readonly Py_ssize_t connections
    cdef readonly unsigned long long accepted


cdef class Endpoint


cdef class Outbox:
    # What the endpoints of one server share: the clock, the log, the flush list.
    cdef public double now           # advanced by the owner (the server's tick)
    cdef public object log
    cdef public bint manual_clock    # clock() is `now` (tests), not CLOCK_MONOTONIC
    cdef list dirty
    cdef bint flush_scheduled
    cdef bint pending                # publishes wait for this iteration's flush (the Hub)
    cdef object call_soon            # schedules the one flush of an iteration
    cdef object _flush_cb
    cdef dict _shared_deflaters      # window bits -> no-context Deflater
    cdef XyraStats stats             # the server's counters (stats.pxd): plain C adds
    cdef double clock(self) noexcept
    cdef Deflater shared_deflater(self, int window_bits)
    cdef int schedule_flush(self, Endpoint ep) except -1
    cdef int schedule(self) except -1
    # The Hub's batched publishes (no-ops here): deliver them all, or one endpoint's share
    # before something else is queued for it.
    cdef int deliver_topics(self) except -1
    cdef int drain_for(self, Endpoint ep) except -1


cdef class Extras:
    # What few connections use, allocated on a connection's first need, so an idle
    # plain connection does not carry it. WebSocket subclasses it (see more()).
    cdef:
        Deflater deflater         # permessage-deflate, dedicated mode
        Inflater inflater
        str report_reason         # what the close handler is told (None: "")
        Py_ssize_t dropped
        double close_deadline
        # rate limiting: token buckets refilled from the outbox's clock
        double msg_tokens
        double byte_tokens
        double bucket_time


cdef class Endpoint(Parser):
    # Fields are grouped by size (objects, then 8-, 4- and 1-byte ones) so the struct
    # has no padding holes: every idle connection carries this object.
    cdef:
        object transport
        Outbox hub
        EndpointConfig route      # a RouteConfig for the WebSocket
        list chunks               # queued by reference: the 101 response, big payloads
        dict _topics              # topic -> Topic, kept by the pub/sub Hub
        Extras extras             # None until needed
        # output: small frames are copied into `out` (the cork), freed after each flush
        unsigned char* out
        Py_ssize_t out_len
        Py_ssize_t out_cap
        Py_ssize_t queued         # bytes in out + chunks
        Py_ssize_t transport_pending
        double last_rx
        int slot                  # index in the hub's list of open connections
        unsigned short report_code  # what the close handler is told (a close code)
        unsigned char state
        unsigned char close_received
        unsigned char write_paused
        unsigned char in_read
        unsigned char dirty
        unsigned char congested
        unsigned char ping_outstanding
        unsigned char lost        # the transport is gone
        unsigned char deflate_mode  # 0 none, 1 shared, 2 dedicated (per-connection window)
        unsigned char deflate_bits  # the server window negotiated (shared mode)

    cdef int open_endpoint(self, object transport, Outbox hub, EndpointConfig route,
                           object deflate, bytes response) except -1
    cdef int data_received_into(self, Py_ssize_t nbytes) except -1
    cdef int feed_initial(self, const unsigned char* data, Py_ssize_t n) except -1
    cdef int flush(self) except -1
    cdef int queue_frame(self, const unsigned char* frame, Py_ssize_t length,
                         object owner) except -1
    cdef int queue_published(self, const unsigned char* frame, Py_ssize_t length,
                             object owner) except -1
    cdef int take_batch(self, object batch, Py_ssize_t length, Py_ssize_t last) except -1
    cdef int write_now(self, bytes data) except -1
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
    cdef object _over_limit(self, Py_ssize_t nbytes)
    cdef int _check_cork(self) except -1

    # hooks for the layer above (the WebSocket): what the peer did, and when
    cdef int deliver(self, object message, object opcode) except -1
    cdef int ping_received(self, bytes payload) except -1
    cdef int pong_received(self, unsigned char* data, Py_ssize_t length) except -1
    cdef int drained(self) except -1
    cdef int ended(self) except -1


cdef object message_payload(object message, object opcode, const char** p, Py_ssize_t* n,
                            int* op)
cdef object coerce_message(object message)

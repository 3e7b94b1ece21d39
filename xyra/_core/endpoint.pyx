# cython: language_level=3
"""The sans-I/O endpoint: one WebSocket connection's protocol state below the user API.

An ``Endpoint`` is fed bytes (``feed_initial``, or reads into the parser's buffers and
``data_received_into``), and writes frames through a transport-like object. It holds
the connection state and the close handshake, fails the connection with a close code
(``fail``: the one place a bad input becomes a close), corks its output and accounts
for backpressure, keeps the rate-limit buckets, and runs its timers when ``tick(now)``
is called. It never touches an event loop: an ``Outbox`` (shared by the endpoints of
one server) gives it the time and flushes it once per loop iteration through the
``call_soon`` it was built with. ``tests/unit/test_endpoint.py`` drives it with a fake
transport and a fake clock.

What the peer did is reported to the layer above through the hooks ``deliver``,
``ping_received``, ``pong_received``, ``drained`` and ``ended``, which the
``WebSocket`` (connection.pyx) overrides.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from xyra._core.frames cimport (
    OP_BINARY, OP_CLOSE, OP_PING, OP_PONG, OP_TEXT, XYRA_UTF8_ACCEPT, write_header,
    xyra_utf8_feed,
)
from xyra._core.stats cimport (
    CLOSE_SLOTS, LAG_BOUNDS, LAG_WINDOW, REFUSED_MIN, REFUSED_SLOTS, XyraStats, close_slot,
    frame_payload, u64,
)

from xyra.enums import OpCode, SendStatus

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

cdef tuple OPCODES = tuple(OpCode(i) if i in (0, 1, 2, 8, 9, 10) else None for i in range(11))
cdef object SUCCESS = SendStatus.SUCCESS
cdef object BACKPRESSURE = SendStatus.BACKPRESSURE
cdef object DROPPED = SendStatus.DROPPED
# The answer to the usual close frame (1000), made once.
cdef bytes CLOSE_1000 = b"\x88\x02\x03\xe8"

# The loop-lag histogram's upper bounds in seconds (Prometheus `le`), LAG_BOUNDS of them.
LAG_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
cdef double LAG_BOUNDS_S[LAG_BOUNDS]
for _i, _b in enumerate(LAG_BUCKETS):
    LAG_BOUNDS_S[_i] = _b
CLOSE_CODES = ("1000", "1001", "1006", "1008", "1009", "1011", "other")

# Live objects (debug builds only; the tests check they return to zero).
cdef Py_ssize_t _live_endpoints = 0
cdef Py_ssize_t _live_extras = 0


def live_objects() -> dict:
    """Endpoints (WebSockets) and Extras alive now; always zeros in a release build."""
    return {"Endpoint": _live_endpoints, "Extras": _live_extras}


def reset_live_objects() -> None:
    """Count from zero again (tests, after reporting a leak)."""
    global _live_endpoints, _live_extras
    _live_endpoints = _live_extras = 0


def debug_build() -> bool:
    """True if the core was built with XYRA_DEBUG (invariant checks compiled in)."""
    return XYRA_DEBUG != 0


cdef inline double _monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef object coerce_message(object message):
    """``message`` as ``str`` or ``bytes``; TypeError for anything else.

    Exactly ``str`` and the bytes-like types (``bytes``, ``bytearray``, ``memoryview``)
    are messages: an int would otherwise be taken as a buffer size by ``bytes()``, and
    a list of ints as its contents. Bytes-like objects are copied now, so a buffer the
    caller reuses after the call (or from another thread) is not read later.
    """
    cdef object t = type(message)
    if t is str or t is bytes:
        return message
    if isinstance(message, str):
        return str(message)
    if isinstance(message, (bytes, bytearray, memoryview)):
        return bytes(message)
    raise TypeError(f"message must be str or bytes-like, not {t.__name__}")


def check_message(message):
    """``message`` as ``str`` or ``bytes`` (a copy of a mutable buffer); TypeError otherwise."""
    return coerce_message(message)


cdef object message_payload(object message, object opcode, const char** p, Py_ssize_t* n,
                            int* op):
    """A message as (holder, pointer, length, opcode): ``str`` is TEXT, bytes-like BINARY.

    An explicit TEXT opcode on bytes requires valid UTF-8. The returned holder keeps
    ``p`` alive.
    """
    message = coerce_message(message)
    if type(message) is str:
        p[0] = PyUnicode_AsUTF8AndSize(message, n)
        op[0] = OP_TEXT
    else:
        p[0] = PyBytes_AS_STRING(message)
        n[0] = PyBytes_GET_SIZE(message)
        op[0] = OP_BINARY
    if opcode is not None:
        op[0] = opcode
        if op[0] == OP_TEXT and type(message) is bytes and n[0] and xyra_utf8_feed(
                XYRA_UTF8_ACCEPT, <const unsigned char*>p[0], n[0]) != XYRA_UTF8_ACCEPT:
            raise ValueError("a TEXT message must be valid UTF-8")
    return message


cdef class EndpointConfig:
    """The limits an endpoint enforces: one per route, built once by the facade."""

    def __init__(self):
        self.max_messages_per_second = 0
        self.max_bytes_per_second = 0
        self.rate_limit_close = True
        self.max_payload_length = 1 << 20
        self.max_backpressure = 1 << 20
        self.idle_timeout = 120.0
        self.ping_interval = 60.0
        self.close_timeout = 5.0
        self.close_on_backpressure_limit = False
        self.compression = 0
        self.compression_threshold = 64


cdef class Outbox:
    """What the endpoints of one server share: the clock, the log, the flush list.

    ``call_soon(callback)`` is asked once per burst of output to run ``flush_all``
    later (the event loop's ``call_soon`` in a server; a list in a test).
    """

    def __init__(self, call_soon, log, double now=0.0):
        self.call_soon = call_soon
        self.log = log
        self.now = now
        self.dirty = []
        self.flush_scheduled = False
        self._flush_cb = self.flush_all

    cdef double clock(self) noexcept:
        """Seconds for rate limiting: monotonic, or ``now`` under a manual clock."""
        if self.manual_clock:
            return self.now
        return _monotonic()

    cdef Deflater shared_deflater(self, int window_bits):
        """A no-context compressor: its frames fit every peer with this window."""
        cdef Deflater d
        if self._shared_deflaters is None:
            self._shared_deflaters = {}
        d = self._shared_deflaters.get(window_bits)
        if d is None:
            d = Deflater(window_bits, True)
            self._shared_deflaters[window_bits] = d
        return d

    cdef int schedule_flush(self, Endpoint ep) except -1:
        ep.dirty = True
        self.dirty.append(ep)
        if not self.flush_scheduled:
            self.schedule()
        return 0

    cdef int schedule(self) except -1:
        """Make sure flush_all runs at the end of this iteration."""
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.call_soon(self._flush_cb)
        return 0

    cdef int deliver_topics(self) except -1:
        return 0

    cdef int drain_for(self, Endpoint ep) except -1:
        return 0

    def flush_all(self):
        """Write every corked connection once: runs once per loop iteration at most.

        The iteration's batched publishes go first (the Hub's ``deliver_topics``): most
        subscribers get theirs in one write of a batch shared by all of them, the others
        in their cork, which the loop below then writes.
        """
        cdef list batch
        cdef Endpoint ep
        if self.pending:
            try:
                self.deliver_topics()
            except Exception:
                self.log.exception("xyra: delivering publishes failed")
        batch = self.dirty
        self.dirty = []
        self.flush_scheduled = False
        for obj in batch:
            ep = <Endpoint>obj
            ep.dirty = False
            try:
                ep.flush()
            except Exception:
                self.log.exception("xyra: flushing a connection failed")
                ep.transport.abort()

    # -- live stats (stats.pxd; the schema is built by xyra/stats.py) -----------------------

    def record_lag(self, double seconds):
        """One sample of the event loop's lag: how late a periodic timer fired."""
        cdef XyraStats* s = &self.stats
        cdef int i = 0
        if seconds < 0:
            seconds = 0
        while i < LAG_BOUNDS and seconds > LAG_BOUNDS_S[i]:
            i += 1
        s.lag_counts[i] += 1
        s.lag_window[s.lag_count % LAG_WINDOW] = seconds
        s.lag_count += 1
        s.lag_sum += seconds
        if seconds > s.lag_max:
            s.lag_max = seconds

    def counters(self) -> dict:
        """The counters as plain Python values (a new dict; see xyra/stats.py)."""
        cdef XyraStats* s = &self.stats
        cdef Py_ssize_t i
        refused = {}
        for i in range(REFUSED_SLOTS - 1):
            if s.handshakes_refused[i]:
                refused[str(REFUSED_MIN + i)] = s.handshakes_refused[i]
        if s.handshakes_refused[REFUSED_SLOTS - 1]:
            refused["other"] = s.handshakes_refused[REFUSED_SLOTS - 1]
        closes = {}
        for i in range(CLOSE_SLOTS):
            closes[CLOSE_CODES[i]] = s.closes[i]
        cdef Py_ssize_t kept = <Py_ssize_t>min(s.lag_count, <u64>LAG_WINDOW)
        recent = []
        for i in range(kept):
            recent.append(s.lag_window[i])
        return {
            "handshakes": {
                "accepted": s.handshakes_accepted,
                "refused": refused,
                "timed_out": s.handshake_timeouts,
            },
            "closes": closes,
            "messages": {
                "received": {"text": s.messages_in[OP_TEXT], "binary": s.messages_in[OP_BINARY]},
                "sent": {"text": s.messages_out[OP_TEXT], "binary": s.messages_out[OP_BINARY]},
            },
            "bytes": {
                "received": {"text": s.bytes_in[OP_TEXT], "binary": s.bytes_in[OP_BINARY]},
                "sent": {"text": s.bytes_out[OP_TEXT], "binary": s.bytes_out[OP_BINARY]},
            },
            "backpressure": {
                "dropped_messages": s.dropped_messages,
                "dropped_bytes": s.dropped_bytes,
                "closed_connections": s.backpressure_closed,
            },
            "compression": {
                "deflate_in_bytes": s.deflate_in,
                "deflate_out_bytes": s.deflate_out,
                "inflate_in_bytes": s.inflate_in,
                "inflate_out_bytes": s.inflate_out,
            },
            "pubsub": {
                "publishes": s.publishes,
                "publishes_backplane": s.publishes_remote,
                "deliveries": s.deliveries,
                "subscriptions": s.subscriptions,
            },
            "rate_limit": {"dropped": s.rate_dropped, "closed": s.rate_closed},
            "loop_lag": {
                "counts": [s.lag_counts[i] for i in range(LAG_BOUNDS + 1)],
                "count": s.lag_count,
                "sum": s.lag_sum,
                "max": s.lag_max,
                "recent": recent,
            },
        }


cdef class Extras:
    """The per-connection state few connections need (see endpoint.pxd)."""

    def __cinit__(self):
        global _live_extras
        if XYRA_DEBUG:
            _live_extras += 1

    def __dealloc__(self):
        global _live_extras
        if XYRA_DEBUG:
            _live_extras -= 1


cdef inline int _published_first(Endpoint ep) except -1:
    """Give ``ep`` its share of this iteration's batched publishes (the Hub's) before
    something else is queued for it, so that it arrives in the order it was made."""
    if ep._topics is not None and ep.hub.pending:
        ep.hub.drain_for(ep)
    return 0


cdef class Endpoint(Parser):
    """One connection's WebSocket protocol state, without I/O (see the module docstring)."""

    def __cinit__(self):
        global _live_endpoints
        if XYRA_DEBUG:
            _live_endpoints += 1

    def __dealloc__(self):
        global _live_endpoints
        if XYRA_DEBUG:
            _live_endpoints -= 1
        if self.out != NULL:
            PyMem_Free(self.out)
            self.out = NULL

    cdef int open_endpoint(self, object transport, Outbox hub, EndpointConfig route,
                           object deflate, bytes response) except -1:
        """Start the open connection; ``response`` (the 101) is the first thing written."""
        self.slot = -1
        # Pause as soon as the kernel refuses a byte and resume only once the transport's
        # buffer is empty: then, while not paused, nothing sits in the transport, and the
        # backpressure accounting (queued + transport_pending) is exact.
        limits = getattr(transport, "set_write_buffer_limits", None)
        if limits is not None:
            limits(0)  # high=0 (positional: no keyword dict per connection)
        self.init_parser(route.max_payload_length, True, deflate is not None)
        if deflate is not None:
            self.deflate_mode = route.compression
            self.deflate_bits = deflate.server_max_window_bits
            # A client that keeps no context needs no per-connection window either.
            self.more().inflater = Inflater(deflate.client_max_window_bits,
                                            deflate.client_no_context_takeover)
            if self.deflate_mode == 2:
                self.extras.deflater = Deflater(deflate.server_max_window_bits,
                                                deflate.server_no_context_takeover)
        self.transport = transport
        self.hub = hub
        self.route = route
        self.state = OPEN
        self.report_code = 1006
        self.last_rx = hub.now
        if route.max_messages_per_second > 0 or route.max_bytes_per_second > 0:
            self.more().bucket_time = hub.clock()
            self.extras.msg_tokens = route.max_messages_per_second
            self.extras.byte_tokens = route.max_bytes_per_second
        # The 101 response is queued first, so what `open` sends leaves in the same write;
        # by reference, so a connection whose `open` sends nothing allocates no cork buffer.
        # Until feed_initial, output is held (in_read) and leaves in one write.
        self.in_read = True
        # The 101 is not counted in `queued`: it is not the application's output.
        self.chunks = [response] if response is not None else None
        return 0

    cdef int feed_initial(self, const unsigned char* data, Py_ssize_t n) except -1:
        """Frames that came in the same read as the HTTP head, then the first flush."""
        self.in_read = True
        try:
            self.feed_bytes(data, n)
        finally:
            self.in_read = False
        if self.out_len or self.chunks is not None:
            self.flush()
        return 0

    cdef int data_received_into(self, Py_ssize_t nbytes) except -1:
        self.last_rx = self.hub.now
        self.ping_outstanding = False
        self.in_read = True
        try:
            self.buffer_filled(nbytes)
        finally:
            self.in_read = False
        if self.out_len or self.chunks is not None:
            self.flush()
        return 0

    cdef int on_eof(self) except -1:
        # The peer will send nothing more. Either it answers our close, or it left
        # without a close frame (abnormal, reported as 1006).
        self.state = CLOSED
        return 0

    cdef int on_lost(self, object exc) except -1:
        if self.lost:
            return 0
        self.lost = True
        self.state = CLOSED
        self.finished = True
        self.release_buffers()
        self.chunks = None
        self.out_len = self.queued = 0
        self.hub.stats.closes[close_slot(self.report_code)] += 1  # live stats
        return self.ended()

    cdef int on_pause_writing(self) except -1:
        self.write_paused = True
        self.transport_pending = self.transport.get_write_buffer_size()
        return 0

    cdef int on_resume_writing(self) except -1:
        self.write_paused = False
        self.transport_pending = self.transport.get_write_buffer_size()
        return self.check_drain()

    cdef int tick(self, double now) except -1:
        """Run this connection's timers: input release, close deadline, idle, ping."""
        cdef double idle
        if self.lost:
            return 0
        if now - self.last_rx >= 0.5:
            self.free_idle_input()  # idle connections own no input buffers
        if self.state == CLOSING:
            if now >= self.more().close_deadline:
                self.state = CLOSED
                self.transport.abort()
            return 0
        if self.state == OPEN:
            idle = now - self.last_rx
            if self.route.idle_timeout > 0 and idle >= self.route.idle_timeout:
                self.hub.log.info("xyra: closing idle connection %s", self._peer())
                self.send_close(1001, "idle timeout")
                return 0
            if (self.route.ping_interval > 0 and idle >= self.route.ping_interval
                    and not self.ping_outstanding):
                self.ping_outstanding = True
                self._control(OP_PING, b"")
                self.flush()
        return 0

    # -- parser hooks ----------------------------------------------------------------------

    cdef int on_message(self, int opcode, unsigned char* data, Py_ssize_t length,
                        bint compressed, object owner) except -1:
        cdef object msg
        cdef int rc
        cdef XyraStats* stats
        if self.state != OPEN:
            return 0            # data after a close is ignored (RFC 6455 5.5.1)
        # Live stats: one C add each, on the counters the hub embeds (stats.pxd).
        stats = &self.hub.stats
        stats.messages_in[opcode & 15] += 1
        stats.bytes_in[opcode & 15] += length
        if (self.route.max_messages_per_second > 0 or self.route.max_bytes_per_second > 0) \
                and self.over_rate(length):
            if self.route.rate_limit_close:
                stats.rate_closed += 1
                return self.fail(1008, "message rate limit exceeded")
            stats.rate_dropped += 1
            return 0
        if compressed:
            # Inflate in bounded steps: max_payload_length caps the decompressed size.
            rc = self.extras.inflater.decompress(data, length, self.max_payload)
            if rc:
                return self.fail(rc, "compressed message over the size limit" if rc == 1009
                                 else "invalid compressed data")
            raw = self.extras.inflater.take_result()
            stats.inflate_in += length
            stats.inflate_out += PyBytes_GET_SIZE(raw)
            if opcode == OP_TEXT and PyBytes_GET_SIZE(raw) and xyra_utf8_feed(
                    XYRA_UTF8_ACCEPT, <const unsigned char*>PyBytes_AS_STRING(raw),
                    PyBytes_GET_SIZE(raw)) != XYRA_UTF8_ACCEPT:
                return self.fail(1007, "invalid UTF-8 in a text message")
            msg = raw.decode("utf-8") if opcode == OP_TEXT else raw
            return self.deliver(msg, OPCODES[opcode])
        if opcode == OP_TEXT:
            msg = PyUnicode_DecodeUTF8(<char*>data, length, NULL)
        elif owner is not None:
            msg = owner  # the buffer the frame was read into: no copy
        else:
            msg = PyBytes_FromStringAndSize(<char*>data, length)
        return self.deliver(msg, OPCODES[opcode])

    cdef bint over_rate(self, Py_ssize_t length) except -1:
        """Token buckets: each limit allows its rate per second, with one second of burst."""
        cdef EndpointConfig route = self.route
        cdef Extras x = self.more()
        cdef double now = self.hub.clock()
        cdef double elapsed = now - x.bucket_time
        x.bucket_time = now
        if route.max_messages_per_second > 0:
            x.msg_tokens = min(route.max_messages_per_second,
                               x.msg_tokens + elapsed * route.max_messages_per_second)
            if x.msg_tokens < 1:
                return True
        if route.max_bytes_per_second > 0:
            x.byte_tokens = min(route.max_bytes_per_second,
                                x.byte_tokens + elapsed * route.max_bytes_per_second)
            if x.byte_tokens < length:
                return True
            x.byte_tokens -= length
        if route.max_messages_per_second > 0:
            x.msg_tokens -= 1
        return False

    cdef int on_ping(self, unsigned char* data, Py_ssize_t length) except -1:
        cdef bytes payload = PyBytes_FromStringAndSize(<char*>data, length)
        if self.state != OPEN:
            return 0
        # A peer that pings without reading must not grow our queue without bound.
        if self.queued + self.transport_pending < self.route.max_backpressure:
            self._control(OP_PONG, payload)
        return self.ping_received(payload)

    cdef int on_pong(self, unsigned char* data, Py_ssize_t length) except -1:
        self.ping_outstanding = False
        if self.state == OPEN:
            return self.pong_received(data, length)
        return 0

    cdef int on_close_frame(self, int code, unsigned char* reason, Py_ssize_t length) except -1:
        cdef unsigned char frame[4]
        self.close_received = True
        self.report_code = code
        if length:
            # An empty reason is the common case: it costs no Extras (reason() says "").
            self.more().report_reason = PyUnicode_DecodeUTF8(<char*>reason, length, NULL)
        if self.state == OPEN:
            _published_first(self)  # publishes made before the close go before it
            # Echo the peer's code (none if it sent none), then the server closes TCP first.
            if self.out_len == 0 and self.chunks is None and not self.lost:
                # Nothing else queued: the close frame is the one write, with no cork buffer.
                if code == 1000:
                    self.transport.write(CLOSE_1000)
                else:
                    frame[0] = 0x80 | OP_CLOSE
                    frame[1] = 0 if code == 1005 else 2
                    frame[2] = <unsigned char>(code >> 8)
                    frame[3] = <unsigned char>(code & 0xFF)
                    self.transport.write(PyBytes_FromStringAndSize(<char*>frame, 2 + frame[1]))
            else:
                self._control(OP_CLOSE, b"" if code == 1005 else code.to_bytes(2, "big"))
        self.state = CLOSED
        self.flush()
        self.transport.close()
        return 0

    cdef int on_protocol_error(self, int code, str why) except -1:
        return self.fail(code, why)

    cdef int fail(self, int code, str why) except -1:
        """Fail the connection: the one place a bad input becomes a close code."""
        if self.state != OPEN:
            self.state = CLOSED
            self.transport.abort()
            return 0
        self.hub.log.info("xyra: closing connection from %s with %d: %s", self._peer(), code, why)
        self.finished = True
        self.report_code = code
        self.more().report_reason = why
        self.send_close(code, why)
        self.flush()
        # Half-close, then read and discard until the peer's EOF, so our close frame is
        # not destroyed by a reset; close_timeout bounds the wait.
        if self.transport.can_write_eof():
            self.transport.write_eof()
        return 0

    # -- hooks for the layer above (the WebSocket overrides them) ----------------------------

    cdef int deliver(self, object message, object opcode) except -1:
        return 0

    cdef int ping_received(self, bytes payload) except -1:
        return 0

    cdef int pong_received(self, unsigned char* data, Py_ssize_t length) except -1:
        return 0

    cdef int drained(self) except -1:
        return 0

    cdef int ended(self) except -1:
        return 0

    # -- output ----------------------------------------------------------------------------

    cdef int _reserve_out(self, Py_ssize_t need) except -1:
        cdef Py_ssize_t cap
        cdef unsigned char* nb
        if self.out_len + need <= self.out_cap:
            return 0
        cap = self.out_cap * 2
        if cap < self.out_len + need:
            cap = self.out_len + need
        if cap < 1024:
            cap = 1024
        nb = <unsigned char*>PyMem_Realloc(self.out, cap)
        if nb == NULL:
            raise MemoryError()
        self.out = nb
        self.out_cap = cap
        return 0

    cdef int _append_out(self, const unsigned char* data, Py_ssize_t n) except -1:
        self._reserve_out(n)
        memcpy(self.out + self.out_len, data, n)
        self.out_len += n
        self.queued += n
        return 0

    cdef int _seal(self) except -1:
        """Move the cork buffer's bytes into the chunk list, keeping the order."""
        if self.chunks is None:
            self.chunks = []
        if self.out_len:
            self.chunks.append(PyBytes_FromStringAndSize(<char*>self.out, self.out_len))
            self.out_len = 0
        return 0

    cdef int _control(self, int opcode, bytes payload) except -1:
        cdef unsigned char hdr[10]
        cdef Py_ssize_t n = PyBytes_GET_SIZE(payload)
        cdef Py_ssize_t hl = write_header(hdr, opcode, n, True, False)
        _published_first(self)
        self._append_out(hdr, hl)
        if n:
            self._append_out(<const unsigned char*>PyBytes_AS_STRING(payload), n)
        if not self.dirty and not self.in_read:
            self.hub.schedule_flush(self)
        return 0

    cdef Deflater compressor(self):
        if self.deflate_mode == 2:
            return self.extras.deflater
        if self.deflate_mode == 1:
            return self.hub.shared_deflater(self.deflate_bits)
        return None

    cdef object send_message(self, int opcode, const unsigned char* data, Py_ssize_t length,
                             object owner, bint compress):
        """Queue a message, compressed when asked, negotiated, and worth it."""
        cdef Deflater deflater
        cdef bytes packed
        if (compress and self.deflate_mode and length >= self.route.compression_threshold
                and self.state == OPEN
                and self.queued + self.transport_pending < self.route.max_backpressure):
            deflater = self.compressor()
            packed = deflater.compress(data, length, True)
            if packed is not None:
                self.hub.stats.deflate_in += length
                self.hub.stats.deflate_out += PyBytes_GET_SIZE(packed)
                return self.send_frame(opcode, <const unsigned char*>PyBytes_AS_STRING(packed),
                                       PyBytes_GET_SIZE(packed), packed, True)
        return self.send_frame(opcode, data, length, owner, False)

    cdef object send_frame(self, int opcode, const unsigned char* data, Py_ssize_t length,
                           object owner, bint rsv1=False):
        """Queue one data frame; ``owner`` is an immutable bytes holding ``data``, or None."""
        cdef unsigned char hdr[10]
        cdef Py_ssize_t hl, before
        cdef XyraStats* stats
        if self.state != OPEN:
            return DROPPED
        _published_first(self)
        before = self.queued + self.transport_pending
        if before >= self.route.max_backpressure:
            return self._over_limit(length)
        hl = write_header(hdr, opcode, length, True, rsv1)
        if length >= LARGE and owner is not None:
            self._seal()
            self.chunks.append(PyBytes_FromStringAndSize(<char*>hdr, hl))
            self.chunks.append(owner)
            self.queued += hl + length
        else:
            self._reserve_out(hl + length)
            memcpy(self.out + self.out_len, hdr, hl)
            if length:
                memcpy(self.out + self.out_len + hl, data, length)
            self.out_len += hl + length
            self.queued += hl + length
        stats = &self.hub.stats  # live stats (a publish counts its deliveries itself)
        stats.messages_out[opcode & 15] += 1
        stats.bytes_out[opcode & 15] += length
        if not self.dirty and not self.in_read:
            self.hub.schedule_flush(self)
        if before + hl + length > self.route.max_backpressure:
            self.congested = True
            return BACKPRESSURE
        return SUCCESS

    cdef int queue_frame(self, const unsigned char* frame, Py_ssize_t length,
                         object owner) except -1:
        """Queue a complete frame built once for many connections (publish)."""
        if self.state != OPEN:
            return 0
        _published_first(self)
        return self.queue_published(frame, length, owner)

    cdef int take_batch(self, object batch, Py_ssize_t length, Py_ssize_t last) except -1:
        """Take a topic's batch of published frames (``length`` bytes, the last one
        ``last``), the same bytes object for every subscriber: 0 if taken (or not open).

        Returns 1, taking nothing, when the backpressure limit would drop some of its
        frames: the caller then queues them one by one (``queue_published``), which
        drops exactly those a frame-by-frame publish would have dropped.
        """
        cdef Py_ssize_t before
        cdef Py_ssize_t limit = self.route.max_backpressure
        if self.state != OPEN:
            return 0
        before = self.queued + self.transport_pending
        if before + length - last >= limit:
            return 1
        if (self.out_len == 0 and self.chunks is None and not self.in_read
                and not self.congested and before + length <= limit):
            # Nothing queued before it: one write of the shared batch, no copy, no cork.
            self.write_now(<bytes>batch)
            if self.write_paused:
                self.transport_pending = self.transport.get_write_buffer_size()
            return 0
        # Behind what is corked already (or over the limit with its last frame: the
        # flush then applies the drain rules).
        self._seal()
        self.chunks.append(batch)
        self.queued += length
        if before + length > limit:
            self.congested = True
        if not self.dirty and not self.in_read:
            self.hub.schedule_flush(self)
        return 0

    cdef int write_now(self, bytes data) except -1:
        """Write ``data`` through the transport now (nothing else is waiting to go out)."""
        self.transport.write(data)
        return 0

    cdef int queue_published(self, const unsigned char* frame, Py_ssize_t length,
                             object owner) except -1:
        """queue_frame without the check for batched publishes (the Hub's own delivery)."""
        cdef Py_ssize_t before
        if self.state != OPEN:
            return 0
        before = self.queued + self.transport_pending
        if before >= self.route.max_backpressure:
            self._over_limit(frame_payload(frame, length))
            return 0
        if length >= SHARE_FRAME:
            # The publish's one immutable frame goes out by reference: no copy per
            # subscriber, and the flush hands the kernel all of them in one writev.
            self._seal()
            self.chunks.append(owner)
            self.queued += length
        else:
            self._append_out(frame, length)
        if before + length > self.route.max_backpressure:
            self.congested = True
        if not self.dirty and not self.in_read:
            self.hub.schedule_flush(self)
        return 1

    cdef object _over_limit(self, Py_ssize_t nbytes):
        """A message of ``nbytes`` (payload) is dropped: the queue is over max_backpressure."""
        cdef Extras x = self.more()
        x.dropped += 1
        self.hub.stats.dropped_messages += 1
        self.hub.stats.dropped_bytes += nbytes
        self.congested = True
        if self.route.close_on_backpressure_limit:
            self.hub.stats.backpressure_closed += 1
            self.hub.log.info("xyra: terminating %s: over max_backpressure", self._peer())
            self.state = CLOSED
            self.transport.abort()
        return DROPPED

    cdef int _check_cork(self) except -1:
        """Debug builds: the queued count is exactly the bytes in the cork and the chunks
        (but the 101 response, which goes out first and is not the application's)."""
        cdef Py_ssize_t total = self.out_len
        if self.chunks is not None:
            for i, chunk in enumerate(self.chunks):
                if i == 0 and chunk[:9] == b"HTTP/1.1 ":
                    continue
                total += len(chunk)
        if total != self.queued or self.out_len > self.out_cap or self.out_len < 0:
            raise AssertionError(
                f"cork accounting broken on {self!r}: queued={self.queued}, "
                f"cork={self.out_len}/{self.out_cap}, chunks+cork={total}")
        return 0

    cdef int flush(self) except -1:
        cdef list chunks
        if self.out_len == 0 and self.chunks is None:
            return 0
        if self.lost:
            self.out_len = self.queued = 0
            self.chunks = None
            return 0
        if XYRA_DEBUG:
            self._check_cork()
        if self.chunks is not None:
            self._seal()
            chunks, self.chunks = self.chunks, None
            if len(chunks) == 1:
                self.transport.write(chunks[0])
            else:
                self.transport.writelines(chunks)
        else:
            self.transport.write(PyBytes_FromStringAndSize(<char*>self.out, self.out_len))
        self.out_len = 0
        self.queued = 0
        # Idle connections own no output memory: the buffer is cheap to get back from
        # malloc's per-thread cache on the next send.
        PyMem_Free(self.out)
        self.out = NULL
        self.out_cap = 0
        if self.write_paused:
            self.transport_pending = self.transport.get_write_buffer_size()
        elif self.congested:
            self.transport_pending = 0
            self.check_drain()
        return 0

    cdef int send_close(self, int code, str reason) except -1:
        cdef bytes payload
        if self.state != OPEN:
            return 0
        payload = code.to_bytes(2, "big") + reason.encode("utf-8")[:123]
        self._control(OP_CLOSE, payload)
        self.state = CLOSING
        self.more().close_deadline = self.hub.now + self.route.close_timeout
        if not self.in_read:
            self.flush()
        return 0

    cdef int check_drain(self) except -1:
        if not self.congested or self.lost:
            return 0
        if self.queued + self.transport_pending >= self.route.max_backpressure:
            return 0
        self.congested = False
        return self.drained()

    # -- small helpers ---------------------------------------------------------------------

    cdef object _peer(self):
        # uvloop keeps the peer's address in the transport (even after close) and builds
        # the tuple on request: idle connections don't hold one.
        peer = self.transport.get_extra_info("peername") if self.transport is not None else None
        return tuple(peer[:2]) if isinstance(peer, tuple) else peer

    cdef Extras more(self):
        if self.extras is None:
            self.extras = Extras()
        return self.extras

    cdef str reason(self):
        if self.extras is None or self.extras.report_reason is None:
            return ""
        return self.extras.report_reason

    cdef dict topic_map(self):
        if self._topics is None:
            self._topics = {}
        return self._topics


cdef class RecordingEndpoint(Endpoint):
    """An endpoint that records what it reports: the sans-I/O test entry point.

    Built on any transport-like object and an ``Outbox``; ``receive_data(bytes)`` goes
    through the same buffers and ``data_received_into`` the server uses, and the hooks
    append to ``events``: ``("message", opcode, message)``, ``("ping", payload)``,
    ``("pong", payload)``, ``("drained",)``, ``("ended", code, reason)``.
    """

    cdef public list events

    def __init__(self, transport, Outbox outbox, EndpointConfig config, bytes response=None,
                 deflate=None):
        self.events = []
        self.open_endpoint(transport, outbox, config, deflate, response)
        self.feed_initial(NULL, 0)

    def receive_data(self, data):
        """Bytes from the peer, read the way the server reads them."""
        cdef const unsigned char[:] mv = data
        cdef Py_ssize_t n = len(mv), pos = 0, k
        cdef unsigned char[:] dst
        while pos < n and not self.lost:
            dst = self.get_buffer_view(n - pos)
            k = min(<Py_ssize_t>len(dst), n - pos)
            dst[:k] = mv[pos:pos + k]
            pos += k
            self.data_received_into(k)

    def send(self, data, opcode=None, bint compress=False):
        """Queue a message as the WebSocket's ``send`` does (a ``SendStatus``)."""
        cdef const char* p
        cdef Py_ssize_t n
        cdef int op
        data = message_payload(data, opcode, &p, &n, &op)
        return self.send_message(op, <const unsigned char*>p, n,
                                 data if type(data) is bytes else None, compress)

    def close(self, int code=1000, str reason=""):
        """Start the close handshake."""
        self.send_close(code, reason)

    def run_timers(self, double now):
        """``tick(now)``: the server's periodic timer run for this connection."""
        self.hub.now = now
        self.tick(now)

    def eof_received(self):
        self.on_eof()
        return False

    def connection_lost(self, exc=None):
        self.on_lost(exc)

    def pause_writing(self):
        self.on_pause_writing()

    def resume_writing(self):
        self.on_resume_writing()

    @property
    def state(self) -> str:
        return {OPEN: "open", CLOSING: "closing", CLOSED: "closed"}.get(self.state, "new")

    @property
    def queued_bytes(self) -> int:
        return self.queued

    @property
    def is_congested(self) -> bool:
        return self.congested

    @property
    def dropped(self) -> int:
        return self.extras.dropped if self.extras is not None else 0

    @property
    def code(self) -> int:
        """The close code the application would be told."""
        return self.report_code

    cdef int deliver(self, object message, object opcode) except -1:
        self.events.append(("message", opcode, message))
        return 0

    cdef int ping_received(self, bytes payload) except -1:
        self.events.append(("ping", payload))
        return 0

    cdef int pong_received(self, unsigned char* data, Py_ssize_t length) except -1:
        self.events.append(("pong", PyBytes_FromStringAndSize(<char*>data, length)))
        return 0

    cdef int drained(self) except -1:
        self.events.append(("drained",))
        return 0

    cdef int ended(self) except -1:
        self.events.append(("ended", self.report_code, self.reason()))
        return 0

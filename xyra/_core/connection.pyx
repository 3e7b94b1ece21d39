# cython: language_level=3
"""The WebSocket connection: the user's object and the per-connection protocol state.

Sans-I/O below the transport: frames come in through the ``Parser`` hooks, frames go
out through a per-connection cork buffer that is written with one ``transport.write``
per read batch or per event-loop iteration. Backpressure is accounted here, close
codes are chosen here (``fail`` is the one place protocol errors become closes).
"""

from collections import deque
from inspect import isawaitable

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize, PyBytes_GET_SIZE
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from cpython.unicode cimport PyUnicode_DecodeUTF8
from cpython.pythread cimport PyThread_get_thread_ident
from libc.string cimport memcpy
from posix.time cimport CLOCK_MONOTONIC, clock_gettime, timespec

from xyra._core.frames cimport (
    OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT, XYRA_UTF8_ACCEPT, shared_view,
    valid_close_code, write_header, xyra_utf8_feed,
)

from xyra.enums import OpCode, SendStatus
from xyra.errors import ConnectionClosed

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object unicode, Py_ssize_t* size) except NULL

cdef tuple OPCODES = tuple(OpCode(i) if i in (0, 1, 2, 8, 9, 10) else None for i in range(11))
cdef object SUCCESS = SendStatus.SUCCESS
cdef object BACKPRESSURE = SendStatus.BACKPRESSURE
cdef object DROPPED = SendStatus.DROPPED
cdef object SendStatusType = SendStatus

# Payloads at least this big are queued by reference (the caller's immutable bytes)
# instead of being copied into the cork buffer.
DEF LARGE = 65536
# Published frames at least this big are queued by reference; smaller ones are cheaper
# to copy into the cork than to track one by one.
DEF SHARE_FRAME = 512


cdef class RouteConfig:
    """One route's handler set and options, built once by the facade."""

    def __init__(self):
        self.open = self.message = self.close = None
        self.drain = self.ping = self.pong = self.subscription = self.upgrade = None
        self.allowed_origins = None
        self.max_messages_per_second = 0
        self.max_bytes_per_second = 0
        self.rate_limit_close = True
        self.max_payload_length = 1 << 20
        self.max_backpressure = 1 << 20
        self.max_queue = 16
        self.idle_timeout = 120.0
        self.ping_interval = 60.0
        self.close_timeout = 5.0
        self.close_on_backpressure_limit = False
        self.subprotocols = ()
        self.path = ""
        self.compression = 0
        self.compression_threshold = 64


cdef class Hub:
    """What the connections of one server share: the loop, the flush list, the clock."""

    def __init__(self, loop, log):
        self.loop = loop
        self.log = log
        self.now = loop.time()
        self.thread_id = <long>PyThread_get_thread_ident()
        self.dirty = []
        self.flush_scheduled = False
        self._flush_cb = self.flush_all
        self.handshaking = set()
        self.sockets = []
        self.per_ip = {}

    cdef int add_socket(self, WebSocket ws) except -1:
        ws.slot = len(self.sockets)
        self.sockets.append(ws)
        return 0

    cdef int remove_socket(self, WebSocket ws) except -1:
        # Swap with the last one: O(1), and 8 bytes per connection instead of a set's 50-100.
        cdef Py_ssize_t i = ws.slot
        cdef WebSocket last
        if i < 0 or i >= len(self.sockets) or self.sockets[i] is not ws:
            return 0
        last = <WebSocket>self.sockets[len(self.sockets) - 1]
        self.sockets[i] = last
        last.slot = i
        self.sockets.pop()
        ws.slot = -1
        return 0

    cdef int release_ip(self, object ip) except -1:
        cdef Py_ssize_t left = self.per_ip.get(ip, 1) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)
        return 0

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

    cdef int schedule_flush(self, WebSocket ws) except -1:
        ws.dirty = True
        self.dirty.append(ws)
        if not self.flush_scheduled:
            self.flush_scheduled = True
            self.loop.call_soon(self._flush_cb)
        return 0

    def flush_all(self):
        """Write every corked connection once: runs once per loop iteration at most."""
        cdef list batch = self.dirty
        cdef WebSocket ws
        self.dirty = []
        self.flush_scheduled = False
        for obj in batch:
            ws = <WebSocket>obj
            ws.dirty = False
            try:
                ws.flush()
            except Exception:
                self.log.exception("xyra: flushing a connection failed")
                ws.transport.abort()

    cdef int subscribe(self, WebSocket ws, str topic) except -1:
        raise NotImplementedError

    cdef int unsubscribe(self, WebSocket ws, str topic) except -1:
        raise NotImplementedError

    cdef int unsubscribe_all(self, WebSocket ws) except -1:
        return 0

    cpdef int publish(self, str topic, object message, object opcode=None, bint compress=False,
                      WebSocket exclude=None) except -1:
        raise NotImplementedError


cdef object message_payload(object message, object opcode, const char** p, Py_ssize_t* n,
                            int* op):
    """A message as (holder, pointer, length, opcode): ``str`` is TEXT, bytes-like BINARY.

    Bytes-like objects are copied into ``bytes`` now, so a buffer the caller reuses
    after the call (or from another thread) is not read later. An explicit TEXT opcode
    on bytes requires valid UTF-8. The returned holder keeps ``p`` alive.
    """
    if type(message) is not str and type(message) is not bytes:
        message = str(message) if isinstance(message, str) else bytes(message)
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


cdef inline double _monotonic() noexcept:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef inline bint _on_loop_thread(Hub hub) noexcept:
    return <long>PyThread_get_thread_ident() == hub.thread_id


cdef class Extras:
    """The per-connection state few connections need (see connection.pxd)."""
    pass


cdef class WebSocket(Parser):
    """One WebSocket connection: the same object in every callback, hashable.

    Safe to use after the close: it reports ``closed``, sends return
    ``SendStatus.DROPPED``, and nothing raises.
    """

    def __init__(self, *args, **kwargs):
        raise TypeError("WebSocket objects are created by the server")

    def __dealloc__(self):
        if self.out != NULL:
            PyMem_Free(self.out)
            self.out = NULL

    def __repr__(self):
        state = {OPEN: "open", CLOSING: "closing", CLOSED: "closed"}.get(self.state, "new")
        return f"<WebSocket {self.path!r} {self._peer()} {state}>"

    # -- life cycle (called by the protocol) -----------------------------------------------

    cdef int begin(self, object transport, Hub hub, RouteConfig route, str path,
                   str subprotocol, bytes response, object deflate,
                   object data) except -1:
        self.slot = -1
        if data is not None:
            self.more().data = data
        # Pause as soon as the kernel refuses a byte and resume only once the transport's
        # buffer is empty: then, while not paused, nothing sits in the transport, and the
        # backpressure accounting (queued + transport_pending) is exact.
        if hasattr(transport, "set_write_buffer_limits"):
            transport.set_write_buffer_limits(high=0)
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
        if path is not route.path:
            self.more().path = path
        if subprotocol is not None:
            self.more().subprotocol = subprotocol
        self.last_rx = hub.now
        if route.max_messages_per_second > 0 or route.max_bytes_per_second > 0:
            self.more().bucket_time = _monotonic()
            self.extras.msg_tokens = route.max_messages_per_second
            self.extras.byte_tokens = route.max_bytes_per_second
        if route.message is None and route.open is not None and route.open_async:
            self.more().recv_queue = deque()
        # The 101 response is queued first, so what `open` sends leaves in the same write;
        # by reference, so a connection whose `open` sends nothing allocates no cork buffer.
        self.in_read = True
        self.chunks = [response]
        if route.open is not None:
            self.call(route.open, route.open_async, (self,))
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
        cdef list waiters
        cdef Extras x = self.extras
        if self.lost:
            return 0
        self.lost = True
        self.state = CLOSED
        self.finished = True
        self.release_buffers()
        self.chunks = None
        self.out_len = self.queued = 0
        if x is not None and x.recv_waiters:
            waiters, x.recv_waiters = x.recv_waiters, None
            for fut in waiters:
                if not fut.done():
                    fut.set_exception(ConnectionClosed(self.report_code, self.reason()))
        self._wake_drain_waiters()
        if self.route.close is not None:
            self.call(self.route.close, self.route.close_async,
                      (self, self.report_code, self.reason()))
        self.hub.unsubscribe_all(self)
        return 0

    cdef int on_pause_writing(self) except -1:
        self.write_paused = True
        self.transport_pending = self.transport.get_write_buffer_size()
        return 0

    cdef int on_resume_writing(self) except -1:
        self.write_paused = False
        self.transport_pending = self.transport.get_write_buffer_size()
        return self.check_drain()

    cdef int tick(self, double now) except -1:
        cdef double idle
        if self.lost:
            return 0
        if now - self.last_rx >= 0.5:
            self.release_input()  # idle connections own no input buffers
            if self.own_reads:
                self.reader_mode()
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

    # -- asyncio protocol interface ----------------------------------------------------------
    # After the upgrade the server hands the transport to the WebSocket itself
    # (transport.set_protocol), so an open connection carries no HTTP-phase object.
    # uvloop reads into get_buffer's buffer and never calls data_received, but it looks
    # the attribute up on set_protocol: None (a class attribute) costs neither a bound
    # method per connection nor an AttributeError per upgrade.
    data_received = None

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
            self.data_received_into(nbytes)
            self.reader_mode()
        except Exception:
            self.hub.log.exception("xyra: internal error on %s; connection dropped",
                                   self._peer())
            self.transport.abort()

    def eof_received(self):
        self.on_eof()
        return False

    def connection_lost(self, exc):
        cdef Hub hub = self.hub
        hub.remove_socket(self)
        if self.extras is not None and self.extras.ip is not None:
            hub.release_ip(self.extras.ip)
            self.extras.ip = None
        self.on_lost(exc)

    def pause_writing(self):
        self.on_pause_writing()

    def resume_writing(self):
        self.on_resume_writing()

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

    # -- parser hooks ----------------------------------------------------------------------

    cdef int on_message(self, int opcode, unsigned char* data, Py_ssize_t length,
                        bint compressed, object owner) except -1:
        cdef object msg
        cdef int rc
        if self.state != OPEN:
            return 0            # data after a close is ignored (RFC 6455 5.5.1)
        if (self.route.max_messages_per_second > 0 or self.route.max_bytes_per_second > 0) \
                and self.over_rate(length):
            if self.route.rate_limit_close:
                return self.fail(1008, "message rate limit exceeded")
            return 0
        if compressed:
            # Inflate in bounded steps: max_payload_length caps the decompressed size.
            rc = self.extras.inflater.decompress(data, length, self.max_payload)
            if rc:
                return self.fail(rc, "compressed message over the size limit" if rc == 1009
                                 else "invalid compressed data")
            raw = self.extras.inflater.take_result()
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
        cdef RouteConfig route = self.route
        cdef Extras x = self.more()
        cdef double now = _monotonic()
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

    cdef int deliver(self, object message, object opcode) except -1:
        cdef RouteConfig route = self.route
        cdef object handler = route.message
        if handler is None:
            if self.extras is not None and self.extras.recv_queue is not None:
                self._enqueue_received(message)
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

    cdef int on_ping(self, unsigned char* data, Py_ssize_t length) except -1:
        cdef bytes payload = PyBytes_FromStringAndSize(<char*>data, length)
        if self.state != OPEN:
            return 0
        # A peer that pings without reading must not grow our queue without bound.
        if self.queued + self.transport_pending < self.route.max_backpressure:
            self._control(OP_PONG, payload)
        if self.route.ping is not None:
            self.call(self.route.ping, False, (self, payload))
        return 0

    cdef int on_pong(self, unsigned char* data, Py_ssize_t length) except -1:
        self.ping_outstanding = False
        if self.route.pong is not None and self.state == OPEN:
            self.call(self.route.pong, False,
                      (self, PyBytes_FromStringAndSize(<char*>data, length)))
        return 0

    cdef int on_close_frame(self, int code, unsigned char* reason, Py_ssize_t length) except -1:
        self.close_received = True
        self.report_code = code
        self.more().report_reason = PyUnicode_DecodeUTF8(<char*>reason, length, NULL)
        if self.state == OPEN:
            # Echo the peer's code (none if it sent none), then the server closes TCP first.
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
                return self.send_frame(opcode, <const unsigned char*>PyBytes_AS_STRING(packed),
                                       PyBytes_GET_SIZE(packed), packed, True)
        return self.send_frame(opcode, data, length, owner, False)

    cdef object send_frame(self, int opcode, const unsigned char* data, Py_ssize_t length,
                           object owner, bint rsv1=False):
        """Queue one data frame; ``owner`` is an immutable bytes holding ``data``, or None."""
        cdef unsigned char hdr[10]
        cdef Py_ssize_t hl, before
        if self.state != OPEN:
            return DROPPED
        before = self.queued + self.transport_pending
        if before >= self.route.max_backpressure:
            return self._over_limit()
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
        if not self.dirty and not self.in_read:
            self.hub.schedule_flush(self)
        if before + hl + length > self.route.max_backpressure:
            self.congested = True
            return BACKPRESSURE
        return SUCCESS

    cdef int queue_frame(self, const unsigned char* frame, Py_ssize_t length,
                         object owner) except -1:
        """Queue a complete frame built once for many connections (publish)."""
        cdef Py_ssize_t before
        if self.state != OPEN:
            return 0
        before = self.queued + self.transport_pending
        if before >= self.route.max_backpressure:
            self._over_limit()
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

    cdef object _over_limit(self):
        cdef Extras x = self.more()
        x.dropped += 1
        self.congested = True
        if self.route.close_on_backpressure_limit:
            self.hub.log.info("xyra: terminating %s: over max_backpressure", self._peer())
            self.state = CLOSED
            self.transport.abort()
        return DROPPED

    cdef int flush(self) except -1:
        cdef list chunks
        if self.out_len == 0 and self.chunks is None:
            return 0
        if self.lost:
            self.out_len = self.queued = 0
            self.chunks = None
            return 0
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
        self._wake_drain_waiters()
        if self.route.drain is not None:
            self.call(self.route.drain, False, (self,))
        return 0

    cdef _wake_drain_waiters(self):
        cdef list waiters
        cdef Extras x = self.extras
        if x is not None and x.drain_waiters:
            waiters, x.drain_waiters = x.drain_waiters, None
            for fut in waiters:
                if not fut.done():
                    fut.set_result(None)

    # -- calling user code -----------------------------------------------------------------

    cdef int call(self, object handler, bint is_async, tuple args) except -1:
        """Run a handler now, or after the async one in progress: arrival order holds."""
        cdef Extras x
        if self.busy:
            x = self.more()
            if x.pending is None:
                x.pending = deque()
            x.pending.append((handler, args))
            if len(x.pending) >= self.route.max_queue and not self.read_paused:
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
        task = self.hub.loop.create_task(awaitable) if not hasattr(awaitable, "add_done_callback") \
            else awaitable
        task.add_done_callback(self._task_done)

    def _task_done(self, task):
        self.busy = False
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                self.handler_failed(exc)
        cdef Extras x = self.extras
        if x is not None and x.recv_queue is not None and not self.busy \
                and self.route.message is None:
            # The simple handler returned: later messages have nobody to read them.
            x.recv_queue = None
            if self.read_paused:
                self._resume_reading()
        self.run_pending()

    cdef int run_pending(self) except -1:
        cdef object handler
        cdef tuple args
        cdef object pending = self.extras.pending if self.extras is not None else None
        while pending and not self.busy:
            handler, args = pending.popleft()
            self.call(handler, False, args)
        if self.read_paused and (not pending or len(pending) < self.route.max_queue // 2):
            self._resume_reading()
        return 0

    cdef int handler_failed(self, object exc) except -1:
        self.hub.log.error("xyra: handler error on %s from %s", self.path, self._peer(),
                           exc_info=exc)
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
        cdef Extras x = self.extras
        while x.recv_waiters:
            fut = x.recv_waiters.pop(0)
            if not fut.done():
                fut.set_result(message)
                return
        x.recv_queue.append(message)
        if len(x.recv_queue) >= self.route.max_queue:
            self._pause_reading()

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
        if not _on_loop_thread(self.hub):
            # Validated above, in the caller's thread; the bytes are taken now, too.
            self.hub.loop.call_soon_threadsafe(self.send, data, op, compress)
            return SUCCESS
        if compress:
            return self.send_message(op, <const unsigned char*>p, n, owner, True)
        return self.send_frame(op, <const unsigned char*>p, n, owner)

    def send_text(self, str text):
        """Send a TEXT message."""
        return self.send(text, OP_TEXT)

    def send_binary(self, data):
        """Send a BINARY message."""
        return self.send(data, OP_BINARY)

    def close(self, int code=1000, str reason=""):
        """Start the close handshake; the connection ends when the peer answers."""
        if not _on_loop_thread(self.hub):
            self.hub.loop.call_soon_threadsafe(self.close, code, reason)
            return
        if not valid_close_code(code):
            raise ValueError(f"{code} is not a close code an endpoint may send")
        if len(reason.encode("utf-8")) > 123:
            raise ValueError("a close reason is limited to 123 bytes of UTF-8")
        self.send_close(code, reason)

    def terminate(self):
        """Drop the TCP connection now, without a close handshake (reported as 1006)."""
        if not _on_loop_thread(self.hub):
            self.hub.loop.call_soon_threadsafe(self.terminate)
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
        if self.extras is not None and self.extras.path is not None:
            return self.extras.path
        return self.route.path

    @property
    def subprotocol(self):
        """The negotiated subprotocol, or None."""
        return self.extras.subprotocol if self.extras is not None else None

    @property
    def data(self) -> dict:
        """A dict for the application's own per-connection state."""
        cdef Extras x = self.more()
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
        """Subscribe to ``topic``; True if it was not subscribed yet."""
        if self.lost:
            return False
        return self.hub.subscribe(self, topic) == 1

    def unsubscribe(self, str topic) -> bool:
        """Unsubscribe from ``topic``; True if it was subscribed."""
        return self.hub.unsubscribe(self, topic) == 1

    def is_subscribed(self, str topic) -> bool:
        return self._topics is not None and topic in self._topics

    def publish(self, str topic, message, opcode=None, bint compress=False) -> bool:
        """Send ``message`` to every subscriber of ``topic`` except this connection."""
        return self.hub.publish(topic, message, opcode, compress, self) > 0

    def drain(self):
        """Awaitable: done when the queued bytes are under ``max_backpressure``."""
        fut = self.hub.loop.create_future()
        if self.lost or not self.congested:
            fut.set_result(None)
        else:
            if self.more().drain_waiters is None:
                self.extras.drain_waiters = []
            self.extras.drain_waiters.append(fut)
        return fut

    def receive(self):
        """Awaitable: the next message, for a simple ``async def`` handler.

        Raises ``ConnectionClosed`` once the connection is closed and no message is left.
        """
        cdef Extras x = self.extras
        queue = x.recv_queue if x is not None else None
        fut = self.hub.loop.create_future()
        if queue:
            fut.set_result(queue.popleft())
            if self.read_paused and len(queue) < self.route.max_queue // 2:
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

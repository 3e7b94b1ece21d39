# cython: language_level=3
"""RFC 6455 frame parsing and building: the sans-I/O protocol core.

``Parser`` is an explicit state machine over bytes the connection owns. Reads land
either in one shared per-process buffer (the common case: whole frames, parsed and
unmasked in place, nothing kept) or, when a frame is split across reads, in a
buffer the connection owns, sized for the rest of that frame so big payloads are
read straight into place. An idle connection owns no buffer at all.

Every protocol violation goes through ``_fail``, the one place that picks the close
code (1002, 1007, 1009).
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_Realloc
from cpython.memoryview cimport PyMemoryView_FromMemory
from cpython.buffer cimport PyBUF_WRITE
from cpython.object cimport PyObject
from cpython.ref cimport Py_INCREF
from cpython.unicode cimport PyUnicode_DecodeUTF8
from libc.stdint cimport uint64_t
from libc.string cimport memcpy, memmove

# One read buffer for every connection of the process: the loop reads one
# connection at a time and a read batch is fully parsed (or the tail copied out)
# before the next read, so nothing ever outlives a buffer_updated call in it.
cdef enum:
    SHARED_SIZE = 262144
    # Room kept after a partial frame header, and the smallest owned buffer.
    MIN_OWN = 2048
    # The first step an owned buffer grows by for a big frame; then it doubles.
    GROW_OWN = 65536
    # Binary frames at least this big are read into a buffer that becomes the message.
    DIRECT_MIN = 65536

cdef unsigned char* _shared = <unsigned char*>PyMem_Malloc(SHARED_SIZE)
if _shared == NULL:
    raise MemoryError()


# One memoryview of it, handed out again and again: the loop only takes a Py_buffer
# from it for the read and releases that, so no object is made per read.
cdef object _shared_view = PyMemoryView_FromMemory(<char*>_shared, SHARED_SIZE, PyBUF_WRITE)


cdef object shared_view():
    """The shared read buffer (the HTTP phase, and WebSockets holding no partial frame)."""
    return _shared_view


cdef unsigned char* shared_ptr() noexcept:
    return _shared


cdef inline bint _is_control(int opcode) noexcept:
    return opcode >= 8


cdef bint valid_close_code(int code) noexcept:
    """Codes a peer may send (RFC 6455 7.4.1 and the IANA registry as Autobahn checks it)."""
    return (1000 <= code <= 1003) or (1007 <= code <= 1011) or (3000 <= code <= 4999)


cdef Py_ssize_t write_header(unsigned char* out, int opcode, Py_ssize_t length, bint fin,
                             bint rsv1) noexcept:
    """Write an unmasked (server) frame header; return its size (2, 4 or 10)."""
    cdef uint64_t n = <uint64_t>length
    cdef int i
    out[0] = <unsigned char>((0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode)
    if length < 126:
        out[1] = <unsigned char>length
        return 2
    if length < 65536:
        out[1] = 126
        out[2] = <unsigned char>(n >> 8)
        out[3] = <unsigned char>(n & 0xFF)
        return 4
    out[1] = 127
    for i in range(8):
        out[2 + i] = <unsigned char>((n >> (56 - 8 * i)) & 0xFF)
    return 10


cdef bytes make_frame(int opcode, const unsigned char* payload, Py_ssize_t length, bint rsv1):
    """One complete server frame as an immutable bytes object (safe to share)."""
    cdef unsigned char hdr[10]
    cdef Py_ssize_t hl = write_header(hdr, opcode, length, True, rsv1)
    cdef bytes frame = PyBytes_FromStringAndSize(NULL, hl + length)
    cdef unsigned char* p = <unsigned char*>PyBytes_AS_STRING(frame)
    memcpy(p, hdr, hl)
    if length:
        memcpy(p + hl, payload, length)
    return frame


cdef class Parser:
    """Server-side frame parser; subclasses override the ``on_*`` hooks."""

    def __dealloc__(self):
        self.release_buffers()

    cdef void init_parser(self, Py_ssize_t max_payload, bint require_mask, bint allow_rsv1):
        self.max_payload = max_payload
        self.require_mask = require_mask
        self.allow_rsv1 = allow_rsv1
        self.utf8_state = XYRA_UTF8_ACCEPT

    cdef void release_buffers(self) noexcept:
        self.bufobj = None
        self.buf = NULL
        self.cap = self.start = self.end = 0
        if self.msg != NULL:
            PyMem_Free(self.msg)
            self.msg = NULL
        self.msg_cap = self.msg_len = 0

    cdef Py_ssize_t buffered_input(self) noexcept:
        return (self.end - self.start) + self.msg_len

    # -- buffers ---------------------------------------------------------------------------

    cdef object get_buffer_view(self, Py_ssize_t sizehint):
        cdef Py_ssize_t want, held
        if self.end == self.start and not self.in_payload:
            self.reading_shared = True
            return _shared_view
        self.reading_shared = False
        if self.in_payload and self._in_place():
            # A big whole binary frame: keep its payload at offset 0 and read no byte
            # past its end, so the buffer is the message once full (_take_buffer).
            held = self.end - self.start
            if self.start:
                memmove(self.buf, self.buf + self.start, held)
                self.start = 0
                self.end = held
            self._reserve(min(self.payload_len - held, max(GROW_OWN, held)))
            return PyMemoryView_FromMemory(<char*>(self.buf + self.end),
                                           min(self.cap - self.end, self.payload_len - held),
                                           PyBUF_WRITE)
        # A frame is split across reads: read the rest of it straight behind what we hold,
        # growing with what actually arrived (at most doubling), so a header announcing a
        # big frame costs its sender half of what it makes us hold.
        want = MIN_OWN
        if self.in_payload:
            want = min(self.payload_len - (self.end - self.start) + MIN_OWN,
                       max(GROW_OWN, self.end - self.start))
        self._reserve(want)
        return PyMemoryView_FromMemory(<char*>(self.buf + self.end), self.cap - self.end,
                                       PyBUF_WRITE)

    cdef inline bint _in_place(self) noexcept:
        """The frame in progress is read in place and becomes the message (_take_buffer)."""
        return (self.opcode == OP_BINARY and self.fin and not self.rsv1
                and self.payload_len >= DIRECT_MIN)

    cdef int _reserve(self, Py_ssize_t need) except -1:
        """Make cap - end >= need, moving held bytes to the front first."""
        cdef Py_ssize_t held = self.end - self.start
        cdef Py_ssize_t newcap
        if self.start and (self.cap - self.end < need):
            memmove(self.buf, self.buf + self.start, held)
            self.start = 0
            self.end = held
        if self.cap - self.end >= need:
            return 0
        newcap = held + need
        if newcap < MIN_OWN:
            newcap = MIN_OWN
        if self.bufobj is None:
            self.bufobj = PyBytes_FromStringAndSize(NULL, newcap)
            self.buf = <unsigned char*>PyBytes_AS_STRING(self.bufobj)
            self.cap = newcap
            return 0
        return self._resize_buf(newcap)

    cdef int _resize_buf(self, Py_ssize_t n) except -1:
        """Resize the owned buffer in place when the allocator can (realloc)."""
        cdef PyObject* old = <PyObject*>self.bufobj
        Py_INCREF(self.bufobj)   # the reference xyra_bytes_resized takes over
        self.bufobj = None       # ...so that one is the only one left
        self.buf = NULL
        self.cap = 0
        try:
            self.bufobj = xyra_bytes_resized(old, n)
        except MemoryError:
            self.start = self.end = 0  # what it held is gone; the caller fails the connection
            raise
        self.buf = <unsigned char*>PyBytes_AS_STRING(self.bufobj)
        self.cap = n
        return 0

    cdef object _take_buffer(self, Py_ssize_t length):
        """The owned buffer, holding exactly one payload, becomes that message."""
        cdef object owner
        if self.cap != length:
            self._resize_buf(length)
        owner = self.bufobj
        self.bufobj = None
        self.buf = NULL
        self.cap = 0
        return owner

    cdef int _keep(self, const unsigned char* data, Py_ssize_t n) except -1:
        """Copy an unfinished frame's bytes out of the shared buffer."""
        cdef Py_ssize_t want = n + MIN_OWN
        cdef Py_ssize_t past = MIN_OWN  # room for the next header
        if self.in_payload:
            if self._in_place():
                past = 0  # the full buffer is handed over as it is
            want = n + min(self.payload_len - n + past, max(GROW_OWN, n))
        self.start = self.end = 0
        self._reserve(want)
        memcpy(self.buf, data, n)
        self.end = n
        return 0

    cdef int buffer_filled(self, Py_ssize_t nbytes) except -1:
        """The loop wrote ``nbytes`` into the view from ``get_buffer_view``."""
        cdef Py_ssize_t used
        if self.reading_shared:
            self.reading_shared = False
            used = self._parse(_shared, nbytes)
            if used < nbytes and not self.finished:
                self._keep(_shared + used, nbytes - used)
                if XYRA_DEBUG:
                    self.check_edges()
            return 0
        self.end += nbytes
        if XYRA_DEBUG:
            self.check_edges()
        used = self._parse(self.buf + self.start, self.end - self.start)
        self.start += used
        if self.finished:
            self.free_idle_input()
        elif self.start == self.end and not self.in_payload:
            # Nothing pending: later reads go to the shared buffer again. The owned one
            # is kept for the next split frame while the connection is busy, and freed
            # by free_idle_input() once it is idle.
            self.start = self.end = 0
        if XYRA_DEBUG:
            self.check_edges()
        return 0

    cdef int check_edges(self) except -1:
        """Debug builds: the owned buffer's edges and the frame's progress are coherent."""
        if not (0 <= self.start <= self.end <= self.cap):
            raise AssertionError(f"parser buffer edges broken: 0 <= start {self.start} <= "
                                 f"end {self.end} <= capacity {self.cap}")
        if self.buf == NULL and self.cap != 0:
            raise AssertionError(f"parser has capacity {self.cap} but no buffer")
        if self.in_payload and not (0 <= self.done <= self.payload_len):
            raise AssertionError(f"parser payload progress broken: done {self.done} of "
                                 f"{self.payload_len}")
        if self.msg_len > self.msg_cap or (self.msg_len and self.msg_len > self.max_payload):
            raise AssertionError(f"parser message buffer broken: {self.msg_len} bytes in "
                                 f"{self.msg_cap}, limit {self.max_payload}")
        return 0

    cdef void free_idle_input(self) noexcept:
        """Free the owned input buffers if they hold nothing pending."""
        if self.buf == NULL:
            # A big frame read in place took the buffer with it (_take_buffer).
            self.start = self.end = 0
        elif self.finished or (self.start == self.end and not self.in_payload):
            self.bufobj = None
            self.buf = NULL
            self.cap = self.start = self.end = 0
        if self.msg != NULL and (self.finished or self.msg_opcode == 0):
            PyMem_Free(self.msg)
            self.msg = NULL
            self.msg_cap = self.msg_len = 0

    cdef int feed_bytes(self, const unsigned char* data, Py_ssize_t n) except -1:
        """Parse bytes that did not arrive through get_buffer (e.g. after the HTTP head).

        They are copied into the connection's own buffer, never the shared one: the
        caller's bytes may themselves live in the shared buffer.
        """
        if n <= 0 or self.finished:
            return 0
        self._reserve(n)
        memcpy(self.buf + self.end, data, n)
        self.reading_shared = False
        return self.buffer_filled(n)

    cdef int _append_msg(self, const unsigned char* data, Py_ssize_t n) except -1:
        cdef Py_ssize_t newcap
        cdef unsigned char* nb
        if self.msg_len + n > self.msg_cap:
            newcap = max(self.msg_cap * 2, self.msg_len + n, 1024)
            if newcap > self.max_payload:
                newcap = max(self.max_payload, self.msg_len + n)
            nb = <unsigned char*>PyMem_Realloc(self.msg, newcap)
            if nb == NULL:
                raise MemoryError()
            self.msg = nb
            self.msg_cap = newcap
        if n:
            memcpy(self.msg + self.msg_len, data, n)
        self.msg_len += n
        return 0

    cdef int _fail(self, int code, str why) except -1:
        self.finished = True
        self.in_payload = False
        self.on_protocol_error(code, why)
        return 0

    # -- the state machine -----------------------------------------------------------------

    cdef Py_ssize_t _parse(self, unsigned char* data, Py_ssize_t n) except -1:
        """Parse data[0:n]; return how many bytes are done with.

        The rest (an unfinished header, or an unfinished frame from its payload start)
        stays with the caller. Payload bytes are unmasked and UTF-8 checked as soon as
        they arrive (``done`` tracks how far), so invalid text fails fast.
        """
        cdef Py_ssize_t pos = 0
        cdef Py_ssize_t avail, hl, have, i
        cdef unsigned char b0, b1
        cdef uint64_t ln
        cdef int op
        cdef bint text
        cdef unsigned char* payload
        while not self.finished:
            if not self.in_payload:
                avail = n - pos
                if avail < 2:
                    break
                b0 = data[pos]
                b1 = data[pos + 1]
                op = b0 & 0x0F
                if b0 & 0x30:
                    self._fail(1002, "reserved bits RSV2/RSV3 set")
                    return n
                if op in (3, 4, 5, 6, 7) or op > 10:
                    self._fail(1002, "reserved opcode %d" % op)
                    return n
                if b0 & 0x40:
                    if not self.allow_rsv1:
                        self._fail(1002, "RSV1 set without a negotiated extension")
                        return n
                    if op == OP_CONT or _is_control(op):
                        self._fail(1002, "RSV1 set on a control or continuation frame")
                        return n
                if _is_control(op):
                    if not (b0 & 0x80):
                        self._fail(1002, "fragmented control frame")
                        return n
                elif op == OP_CONT:
                    if self.msg_opcode == 0:
                        self._fail(1002, "continuation frame with no message in progress")
                        return n
                elif self.msg_opcode != 0:
                    self._fail(1002, "new data frame while a fragmented message is in progress")
                    return n
                if self.require_mask and not (b1 & 0x80):
                    self._fail(1002, "client frame is not masked")
                    return n
                hl = 2
                ln = b1 & 0x7F
                if ln == 126:
                    hl = 4
                elif ln == 127:
                    hl = 10
                if avail < hl:
                    break
                if ln == 126:
                    ln = (<uint64_t>data[pos + 2] << 8) | data[pos + 3]
                elif ln == 127:
                    if data[pos + 2] & 0x80:
                        self._fail(1002, "64-bit payload length with the top bit set")
                        return n
                    ln = 0
                    for i in range(8):
                        ln = (ln << 8) | data[pos + 2 + i]
                if _is_control(op) and ln > 125:
                    self._fail(1002, "control frame payload over 125 bytes")
                    return n
                if not _is_control(op) and ln + <uint64_t>self.msg_len > <uint64_t>self.max_payload:
                    self._fail(1009, "message of %d bytes over the %d byte limit"
                               % (ln + <uint64_t>self.msg_len, self.max_payload))
                    return n
                if b1 & 0x80:
                    hl += 4
                    if avail < hl:
                        break
                self.masked = (b1 & 0x80) != 0
                if self.masked:
                    memcpy(self.key, data + pos + hl - 4, 4)
                self.fin = (b0 & 0x80) != 0
                self.rsv1 = (b0 & 0x40) != 0
                self.opcode = op
                self.payload_len = <Py_ssize_t>ln
                self.done = 0
                self.in_payload = True
                if op == OP_TEXT or op == OP_BINARY:
                    self.utf8_state = XYRA_UTF8_ACCEPT
                    self.msg_compressed = self.rsv1
                pos += hl

            # payload: unmask and check what has arrived since last time
            avail = n - pos
            have = self.payload_len if avail >= self.payload_len else avail
            if have > self.done:
                if self.masked:
                    xyra_mask(data + pos + self.done, have - self.done, self.key, self.done)
                text = (self.opcode == OP_TEXT or
                        (self.opcode == OP_CONT and self.msg_opcode == OP_TEXT))
                if text and not self.msg_compressed:
                    self.utf8_state = xyra_utf8_feed(self.utf8_state, data + pos + self.done,
                                                     have - self.done)
                    if self.utf8_state == XYRA_UTF8_REJECT:
                        self._fail(1007, "invalid UTF-8 in a text message")
                        return n
                self.done = have
            if have < self.payload_len:
                break
            payload = data + pos
            pos += self.payload_len
            self.in_payload = False
            self._dispatch(payload)
        if self.finished:
            return n
        return pos

    cdef int _dispatch(self, unsigned char* payload) except -1:
        """A whole frame has arrived (and been unmasked); act on it."""
        cdef int op = self.opcode
        cdef Py_ssize_t length = self.payload_len
        cdef object owner = None
        if op == OP_PING:
            return self.on_ping(payload, length)
        if op == OP_PONG:
            return self.on_pong(payload, length)
        if op == OP_CLOSE:
            return self._close_frame(payload, length)
        if op != OP_CONT:
            if self.fin:
                if (op == OP_TEXT and not self.msg_compressed
                        and self.utf8_state != XYRA_UTF8_ACCEPT):
                    return self._fail(1007, "text message ends inside a UTF-8 sequence")
                if (op == OP_BINARY and not self.msg_compressed and length >= DIRECT_MIN
                        and payload == self.buf and self.start == 0 and self.end == length):
                    # Read in place (get_buffer_view): the buffer holds this payload only.
                    owner = self._take_buffer(length)
                    # Trimming it to size may have moved it: point at where it is now.
                    payload = <unsigned char*>PyBytes_AS_STRING(owner)
                return self.on_message(op, payload, length, self.msg_compressed, owner)
            self.msg_opcode = op
            self.msg_len = 0
            return self._append_msg(payload, length)
        self._append_msg(payload, length)
        if not self.fin:
            return 0
        op = self.msg_opcode
        self.msg_opcode = 0
        if op == OP_TEXT and not self.msg_compressed and self.utf8_state != XYRA_UTF8_ACCEPT:
            return self._fail(1007, "text message ends inside a UTF-8 sequence")
        length = self.msg_len
        self.msg_len = 0
        return self.on_message(op, self.msg, length, self.msg_compressed, None)

    cdef int _close_frame(self, unsigned char* payload, Py_ssize_t length) except -1:
        cdef int code
        if length == 0:
            self.finished = True
            return self.on_close_frame(1005, payload, 0)
        if length == 1:
            return self._fail(1002, "close frame with a 1-byte payload")
        code = (payload[0] << 8) | payload[1]
        if not valid_close_code(code):
            return self._fail(1002, "invalid close code %d" % code)
        if xyra_utf8_feed(XYRA_UTF8_ACCEPT, payload + 2, length - 2) != XYRA_UTF8_ACCEPT:
            return self._fail(1007, "close reason is not valid UTF-8")
        self.finished = True
        return self.on_close_frame(code, payload + 2, length - 2)

    # -- hooks -----------------------------------------------------------------------------

    cdef int on_message(self, int opcode, unsigned char* data, Py_ssize_t length,
                        bint compressed, object owner) except -1:
        # ``owner``: None, or a bytes object holding exactly this payload, now the
        # receiver's (a big binary frame read in place); ``data`` points into it.
        return 0

    cdef int on_ping(self, unsigned char* data, Py_ssize_t length) except -1:
        return 0

    cdef int on_pong(self, unsigned char* data, Py_ssize_t length) except -1:
        return 0

    cdef int on_close_frame(self, int code, unsigned char* reason, Py_ssize_t length) except -1:
        return 0

    cdef int on_protocol_error(self, int code, str why) except -1:
        return 0


cdef class FrameParser(Parser):
    """A parser that records what it sees: the test and fuzzing entry point.

    ``feed(data)`` goes through the same get_buffer/buffer_updated path the server
    uses, and returns the events those bytes completed.
    """

    cdef list events

    def __init__(self, Py_ssize_t max_payload_length=1 << 20, bint require_mask=True,
                 bint allow_rsv1=False):
        self.init_parser(max_payload_length, require_mask, allow_rsv1)
        self.events = []

    def feed(self, data) -> list:
        cdef const unsigned char[:] mv = data
        cdef Py_ssize_t n = len(mv), pos = 0, k
        cdef object view
        cdef unsigned char[:] dst
        self.events = []
        # The server's own path: copy into whatever get_buffer hands out, then parse.
        while pos < n and not self.finished:
            view = self.get_buffer_view(n - pos)
            dst = view
            k = min(<Py_ssize_t>len(dst), n - pos)
            dst[:k] = mv[pos:pos + k]
            pos += k
            self.buffer_filled(k)
        out, self.events = self.events, []
        return out

    @property
    def buffered(self) -> int:
        """Bytes of input held between feeds (partial frames and fragments)."""
        return self.buffered_input()

    @property
    def capacity(self) -> int:
        """Bytes of memory the owned input buffers take (held or not)."""
        return self.cap + self.msg_cap

    def release_input(self):
        """Free the owned input buffers if nothing is pending (the server does it when idle)."""
        self.free_idle_input()

    cdef int on_message(self, int opcode, unsigned char* data, Py_ssize_t length,
                        bint compressed, object owner) except -1:
        cdef bytes raw
        if owner is not None:
            if data != <unsigned char*>PyBytes_AS_STRING(owner) or len(owner) != length:
                raise AssertionError("the payload pointer does not point into the message")
            raw = owner
        else:
            raw = PyBytes_FromStringAndSize(<char*>data, length)
        if opcode == OP_TEXT and not compressed:
            self.events.append(("text", raw.decode("utf-8")))
        else:
            self.events.append(("binary" if opcode == OP_BINARY else "text", raw))
        return 0

    cdef int on_ping(self, unsigned char* data, Py_ssize_t length) except -1:
        self.events.append(("ping", PyBytes_FromStringAndSize(<char*>data, length)))
        return 0

    cdef int on_pong(self, unsigned char* data, Py_ssize_t length) except -1:
        self.events.append(("pong", PyBytes_FromStringAndSize(<char*>data, length)))
        return 0

    cdef int on_close_frame(self, int code, unsigned char* reason, Py_ssize_t length) except -1:
        self.events.append(("close", code, PyUnicode_DecodeUTF8(<char*>reason, length, NULL)))
        return 0

    cdef int on_protocol_error(self, int code, str why) except -1:
        self.events.append(("error", code, why))
        return 0


def build_frame(int opcode, payload, bint fin=True, bint rsv1=False, mask=None) -> bytes:
    """Build one frame; masked (as a client sends it) when a 4-byte ``mask`` is given."""
    cdef bytes data = bytes(payload)
    cdef Py_ssize_t length = len(data)
    cdef unsigned char hdr[14]
    cdef Py_ssize_t hl = write_header(hdr, opcode, length, fin, rsv1)
    cdef bytes key
    cdef bytearray out
    cdef unsigned char* p
    if mask is None:
        return bytes(hdr[:hl]) + data
    key = bytes(mask)
    if len(key) != 4:
        raise ValueError("mask must be 4 bytes")
    hdr[1] |= 0x80
    out = bytearray(hdr[:hl]) + key + data
    p = <unsigned char*>(<char*>out)
    xyra_mask(p + hl + 4, length, <const unsigned char*>PyBytes_AS_STRING(key), 0)
    return bytes(out)


def mask_bytes(data, key) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` (RFC 6455 masking)."""
    cdef bytearray out = bytearray(data)
    cdef bytes k = bytes(key)
    if len(k) != 4:
        raise ValueError("key must be 4 bytes")
    if len(out):
        xyra_mask(<unsigned char*>(<char*>out), len(out),
                  <const unsigned char*>PyBytes_AS_STRING(k), 0)
    return bytes(out)


def validate_utf8(data) -> bool:
    """True if ``data`` is complete, valid UTF-8."""
    cdef const unsigned char[:] mv = data
    if len(mv) == 0:
        return True
    return xyra_utf8_feed(XYRA_UTF8_ACCEPT, &mv[0], len(mv)) == XYRA_UTF8_ACCEPT

# cython: language_level=3
"""What other compiled modules use of the load client: the frame counter
(``xyra.bench._drivers.sockload`` drives it from its own sockets) and the header
reader (the client's own on purpose: see ``loadgen.pyx``'s docstring)."""

from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy

cdef enum:
    MAX_HEADER = 14
    # Flags FrameCounter raises for its owner to act on after a feed.
    F_PING = 1
    F_CLOSE = 2
    F_ERROR = 4


cdef struct Header:
    uint64_t length
    int opcode
    int fin
    int rsv1
    int masked
    uint8_t key[4]


cdef inline Py_ssize_t read_header(const uint8_t* p, Py_ssize_t n, Header* h) noexcept nogil:
    """Parse one frame header: its size if complete, 0 if more bytes are needed, -1 if invalid."""
    cdef Py_ssize_t size = 2
    cdef uint64_t length
    cdef int i
    if n < 2:
        return 0
    h.fin = p[0] >> 7
    h.rsv1 = (p[0] >> 6) & 1
    h.opcode = p[0] & 0x0F
    h.masked = p[1] >> 7
    length = p[1] & 0x7F
    if length == 126:
        size = 4
        if n < size:
            return 0
        length = (<uint64_t>p[2] << 8) | p[3]
    elif length == 127:
        size = 10
        if n < size:
            return 0
        length = 0
        for i in range(2, 10):
            length = (length << 8) | p[i]
        if length >> 63:
            return -1
    if h.masked:
        if n < size + 4:
            return 0
        memcpy(h.key, p + size, 4)
        size += 4
    h.length = length
    return size


cdef class FrameCounter:
    cdef:
        uint8_t hbuf[MAX_HEADER]
        Py_ssize_t hlen             # bytes of a partial header held in hbuf
        Header h                    # the frame being received
        uint64_t remaining          # its payload bytes still to come
        uint64_t msg_length         # payload bytes of the message so far
        int msg_opcode
        int msg_rsv1
        uint8_t ctrl[125]
        Py_ssize_t ctrl_len
        readonly long long messages, frames, payload_bytes, mismatched, compressed
        readonly long long expect_length
        readonly int expect_opcode
        readonly int flags          # F_* bits the owner has not handled yet
        readonly int close_code     # -1 before a close frame, 1005 if it had no code
        readonly bytes ping_payload

    cdef Py_ssize_t feed_ptr(self, const uint8_t* p, Py_ssize_t n) noexcept
    cdef uint64_t skippable(self) noexcept
    cdef Py_ssize_t skip(self, uint64_t n) noexcept
    cdef Py_ssize_t _frame_start(self) noexcept
    cdef Py_ssize_t _frame_done(self) noexcept
    cdef Py_ssize_t _data_done(self) noexcept
    cdef void _control_done(self) noexcept

# The sans-I/O frame parser. Connection subclasses Parser and overrides the on_* hooks.
from cpython.object cimport PyObject
from libc.stdint cimport uint32_t

from xyra._core.debug cimport XYRA_DEBUG

cdef extern from "mask.h":
    void xyra_mask(unsigned char* data, size_t length, const unsigned char* key, size_t phase) nogil

cdef extern from "bytesbuf.h":
    object xyra_bytes_resized(PyObject* obj, Py_ssize_t n)

cdef extern from "utf8.h":
    uint32_t XYRA_UTF8_ACCEPT
    uint32_t XYRA_UTF8_REJECT
    uint32_t xyra_utf8_feed(uint32_t state, const unsigned char* s, size_t n) nogil

cdef enum:
    OP_CONT = 0
    OP_TEXT = 1
    OP_BINARY = 2
    OP_CLOSE = 8
    OP_PING = 9
    OP_PONG = 10

cdef class Parser:
    # Grouped by size, so the struct has no padding holes (it is per connection).
    cdef:
        # Bytes this connection owns: buf[start:end] is unparsed input. NULL while idle.
        # The storage of `bufobj`, a bytes object nobody else references, so a big
        # binary frame read into it can be handed over as the message itself.
        object bufobj
        unsigned char* buf
        # the fragmented message in progress (msg_opcode 0 = none)
        unsigned char* msg
        Py_ssize_t cap
        Py_ssize_t start
        Py_ssize_t end
        Py_ssize_t payload_len    # the frame being parsed
        Py_ssize_t done           # its payload bytes already unmasked and validated
        Py_ssize_t msg_len
        Py_ssize_t msg_cap
        Py_ssize_t max_payload
        uint32_t utf8_state
        unsigned char key[4]
        unsigned char reading_shared   # the last get_buffer handed out the shared buffer
        unsigned char in_payload
        unsigned char fin
        unsigned char rsv1
        unsigned char opcode
        unsigned char masked
        unsigned char msg_opcode
        unsigned char msg_compressed
        unsigned char require_mask
        unsigned char allow_rsv1
        unsigned char finished    # a close frame or an error was seen: ignore the rest

    cdef void init_parser(self, Py_ssize_t max_payload, bint require_mask, bint allow_rsv1)
    cdef object get_buffer_view(self, Py_ssize_t sizehint)
    cdef int buffer_filled(self, Py_ssize_t nbytes) except -1
    cdef int feed_bytes(self, const unsigned char* data, Py_ssize_t n) except -1
    cdef Py_ssize_t _parse(self, unsigned char* data, Py_ssize_t n) except -1
    cdef int _keep(self, const unsigned char* data, Py_ssize_t n) except -1
    cdef int _reserve(self, Py_ssize_t need) except -1
    cdef int _append_msg(self, const unsigned char* data, Py_ssize_t n) except -1
    cdef int _fail(self, int code, str why) except -1
    cdef int _dispatch(self, unsigned char* payload) except -1
    cdef int _close_frame(self, unsigned char* payload, Py_ssize_t length) except -1
    cdef void release_buffers(self) noexcept
    cdef void free_idle_input(self) noexcept
    cdef int check_edges(self) except -1
    cdef Py_ssize_t buffered_input(self) noexcept

    # hooks (a test subclass records them; Connection acts on them)
    cdef int on_message(self, int opcode, unsigned char* data, Py_ssize_t length, bint compressed,
                        object owner) except -1
    cdef object _take_buffer(self, Py_ssize_t length)
    cdef bint _in_place(self) noexcept
    cdef int _resize_buf(self, Py_ssize_t n) except -1
    cdef int on_ping(self, unsigned char* data, Py_ssize_t length) except -1
    cdef int on_pong(self, unsigned char* data, Py_ssize_t length) except -1
    cdef int on_close_frame(self, int code, unsigned char* reason, Py_ssize_t length) except -1
    cdef int on_protocol_error(self, int code, str why) except -1

cdef bytes make_frame(int opcode, const unsigned char* payload, Py_ssize_t length, bint rsv1)
cdef Py_ssize_t write_header(unsigned char* out, int opcode, Py_ssize_t length, bint fin,
                             bint rsv1) noexcept
cdef bint valid_close_code(int code) noexcept
cdef object shared_view()
cdef unsigned char* shared_ptr() noexcept

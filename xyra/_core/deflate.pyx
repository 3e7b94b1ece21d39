# cython: language_level=3
"""permessage-deflate compression engine (RFC 7692 section 7.2) on zlib's C API.

One ``Deflater`` compresses whole messages, one ``Inflater`` decompresses them;
both work on raw pointers and build the result ``bytes`` in place (no zlib Python
objects, no intermediate buffers). The C-level contract is in deflate.pxd.

Memory. zlib allocates through counting hooks, so ``memory`` reports exactly what
an engine holds (zlib state, window, hash tables, plus the z_stream itself), and
``zlib_memory()`` the total for the process. Nothing is allocated before the first
message, and ``release()`` gives it back. A deflate state needs about
``2**(window_bits + 2) + 2**(mem_level + 9)`` bytes (zlib's formula): the default
memLevel 5 (websockets' choice too) costs 144 KiB at window 15 where zlib's
default memLevel 8 costs 256 KiB, for the same ratio on WebSocket-sized messages
(the hash table only matters for long inputs). It also makes the per-message reset
of a no-context-takeover Deflater cheaper: deflateReset clears the hash heads
(8 KiB at memLevel 5, 64 KiB at memLevel 8). An inflate state is about 7 KiB plus
a ``2**window_bits`` window.
"""

cimport cython
from cpython.mem cimport PyMem_Free, PyMem_Malloc, PyMem_RawFree, PyMem_RawMalloc
from cpython.object cimport PyObject
from cpython.ref cimport Py_XDECREF
from libc.string cimport memcmp, memset

cdef extern from "zlib.h":
    ctypedef void* (*alloc_func)(void* opaque, unsigned int items, unsigned int size) noexcept nogil
    ctypedef void (*free_func)(void* opaque, void* address) noexcept nogil

    ctypedef struct z_stream:
        unsigned char* next_in     # z_const only under ZLIB_CONST: cast on assignment
        unsigned int avail_in
        unsigned char* next_out
        unsigned int avail_out
        alloc_func zalloc
        free_func zfree
        void* opaque
        int data_type

    enum:
        Z_OK
        Z_STREAM_END
        Z_NEED_DICT
        Z_STREAM_ERROR
        Z_DATA_ERROR
        Z_MEM_ERROR
        Z_BUF_ERROR
        Z_NO_FLUSH
        Z_SYNC_FLUSH
        Z_DEFLATED
        Z_DEFAULT_STRATEGY
        Z_RLE
        Z_DEFAULT_COMPRESSION

    # deflateInit2/inflateInit2 are macros over the *_ functions; Cython calls them as written.
    int deflateInit2(z_stream* strm, int level, int method, int windowBits, int memLevel,
                     int strategy) nogil
    int deflate(z_stream* strm, int flush) nogil
    int deflateReset(z_stream* strm) nogil
    int deflateEnd(z_stream* strm) nogil
    unsigned long deflateBound(z_stream* strm, unsigned long sourceLen) nogil
    int inflateInit2(z_stream* strm, int windowBits) nogil
    int inflate(z_stream* strm, int flush) nogil
    int inflateReset(z_stream* strm) nogil
    int inflateEnd(z_stream* strm) nogil
    int inflateGetDictionary(z_stream* strm, unsigned char* dictionary,
                             unsigned int* dictLength) nogil
    int inflateSetDictionary(z_stream* strm, const unsigned char* dictionary,
                             unsigned int dictLength) nogil

cdef extern from "Python.h":
    # Raw-reference variants: the output bytes object is grown in place with
    # _PyBytes_Resize, which needs the only reference held in a PyObject* slot.
    PyObject* _bytes_new "PyBytes_FromStringAndSize"(const char* data, Py_ssize_t size)
    int _bytes_resize "_PyBytes_Resize"(PyObject** obj, Py_ssize_t size) except -1
    char* _bytes_data "PyBytes_AS_STRING"(PyObject* obj)
    const Py_ssize_t PY_SSIZE_T_MAX


# The empty uncompressed block a sync flush ends with (RFC 7692 7.2.1 removes it,
# 7.2.2 appends it again before inflating).
cdef unsigned char TAIL[4]
TAIL[:] = [0x00, 0x00, 0xff, 0xff]
# The payload of an empty message: the header byte of one empty stored block.
# Sending it leaves both sliding windows unchanged, so no zlib call is needed.
cdef bytes EMPTY_PAYLOAD = b"\x00"

cdef enum:
    # zlib counts in unsigned int: feed it at most this much per call.
    STEP = 1 << 30
    # First output buffer of a decompression (grown by doubling up to max_size + 1),
    # and the size above which a compression starts smaller than deflateBound.
    FIRST_OUT = 65536
    DEFAULT_MEM_LEVEL = 5
    # Allocation header of the counting hooks: keeps zlib's blocks 16-byte aligned.
    HEADER = 16


class DecompressionError(ValueError):
    """Raised by ``Inflater.decompress_bytes``; ``code`` is 1007 or 1009."""

    def __init__(self, code, message):
        super().__init__(message)
        self.code = code


# ---------------------------------------------------------------------------
# Counting allocator

cdef size_t _total = 0


cdef void* _zalloc(void* opaque, unsigned int items, unsigned int size) noexcept nogil:
    global _total
    cdef size_t n = <size_t>items * size
    cdef char* block = <char*>PyMem_RawMalloc(n + HEADER)
    if block == NULL:
        return NULL
    (<size_t*>block)[0] = n
    (<size_t*>opaque)[0] += n
    _total += n
    return block + HEADER


cdef void _zfree(void* opaque, void* address) noexcept nogil:
    global _total
    cdef char* block = <char*>address - HEADER
    cdef size_t n = (<size_t*>block)[0]
    (<size_t*>opaque)[0] -= n
    _total -= n
    PyMem_RawFree(block)


cdef z_stream* _new_stream(size_t* counter) except NULL:
    global _total
    cdef z_stream* zs = <z_stream*>PyMem_Malloc(sizeof(z_stream))
    if zs == NULL:
        raise MemoryError()
    memset(zs, 0, sizeof(z_stream))
    zs.zalloc = _zalloc
    zs.zfree = _zfree
    zs.opaque = counter
    counter[0] += sizeof(z_stream)
    _total += sizeof(z_stream)
    return zs


cdef void _free_stream(z_stream* zs, size_t* counter) noexcept:
    global _total
    PyMem_Free(zs)
    counter[0] -= sizeof(z_stream)
    _total -= sizeof(z_stream)


def zlib_memory():
    """Bytes currently held by every Deflater and Inflater of the process."""
    return _total


cdef int _grow(PyObject** out, size_t* cap, size_t new_cap) except -1:
    """Resize the bytes object in ``out`` (on failure it is freed and NULLed)."""
    _bytes_resize(out, <Py_ssize_t>new_cap)
    cap[0] = new_cap
    return 0


cdef inline size_t _min(size_t a, size_t b) noexcept nogil:
    return a if a < b else b


cdef inline const unsigned char* _pointer(const unsigned char[::1] view) noexcept:
    return &view[0] if view.shape[0] else NULL


# ---------------------------------------------------------------------------
# Compression


@cython.final
cdef class Deflater:
    """Compresses messages for one peer (or, with no context takeover, for many).

    ``window_bits`` (8..15) is the negotiated server_max_window_bits. zlib cannot
    deflate raw streams with an 8-bit window (it refuses windowBits -8), and a
    9-bit window may emit back-references an 8-bit client cannot resolve (zlib
    happens to stop at 250 bytes back, but that is not part of its contract). So
    8 runs zlib at 9 bits with the Z_RLE strategy, whose only matches are at
    distance 1: valid for any window, at the cost of a weaker ratio.

    ``no_context_takeover``: every message starts from an empty window
    (server_no_context_takeover). Such a Deflater keeps nothing between messages,
    so one instance can serve every connection (shared compression).
    """

    def __init__(self, int window_bits=15, bint no_context_takeover=False,
                 int level=Z_DEFAULT_COMPRESSION, int mem_level=DEFAULT_MEM_LEVEL):
        if not 8 <= window_bits <= 15:
            raise ValueError(f"window_bits must be from 8 to 15, not {window_bits}")
        if not -1 <= level <= 9:
            raise ValueError(f"level must be from -1 to 9, not {level}")
        if not 1 <= mem_level <= 9:
            raise ValueError(f"mem_level must be from 1 to 9, not {mem_level}")
        if self._zs != NULL:
            self.release()
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self.level = level
        self.mem_level = mem_level
        self._zlib_bits = 9 if window_bits == 8 else window_bits
        self._strategy = Z_RLE if window_bits == 8 else Z_DEFAULT_STRATEGY

    def __dealloc__(self):
        self.release()

    @property
    def memory(self):
        """Bytes zlib holds for this Deflater now (0 before the first message)."""
        return self._mem

    cdef int _ensure(self) except -1:
        if self._zs != NULL:
            return 0
        cdef z_stream* zs = _new_stream(&self._mem)
        cdef int rc = deflateInit2(zs, self.level, Z_DEFLATED, -self._zlib_bits,
                                   self.mem_level, self._strategy)
        if rc != Z_OK:
            _free_stream(zs, &self._mem)
            if rc == Z_MEM_ERROR:
                raise MemoryError()
            raise RuntimeError(f"deflateInit2 failed ({rc})")
        self._zs = zs
        return 0

    cpdef void reset(self) noexcept:
        """Forget the sliding window: call it when a compress() result is not sent."""
        if self._zs != NULL:
            deflateReset(<z_stream*>self._zs)

    cpdef void release(self) noexcept:
        """Free zlib's memory now. Safe between any two messages: like reset(), it
        only costs ratio, as a fresh stream refers to nothing the peer lacks."""
        if self._zs != NULL:
            deflateEnd(<z_stream*>self._zs)
            _free_stream(<z_stream*>self._zs, &self._mem)
            self._zs = NULL

    cdef bytes compress(self, const unsigned char* data, size_t length,
                        bint only_if_smaller=False):
        """The permessage-deflate payload of one whole message (RFC 7692 7.2.1)."""
        if length == 0:
            return None if only_if_smaller else EMPTY_PAYLOAD
        self._ensure()
        cdef z_stream* zs = <z_stream*>self._zs
        cdef size_t cap
        if length < FIRST_OUT:
            # Enough for everything: deflateBound covers the data, 16 bytes the
            # sync flush's empty stored block and bit padding.
            cap = deflateBound(zs, length) + 16
        else:
            # Large messages usually shrink a lot: start at a quarter, double on demand.
            cap = length // 4
        cdef PyObject* out = _bytes_new(NULL, <Py_ssize_t>cap)
        if out == NULL:
            raise MemoryError()
        cdef size_t produced = 0, remaining = length, piece, room
        cdef int flush, rc
        cdef bint keep = True
        zs.avail_in = 0
        try:
            while True:
                if zs.avail_in == 0 and remaining:
                    piece = _min(remaining, STEP)
                    zs.next_in = <unsigned char*>data + (length - remaining)
                    zs.avail_in = <unsigned int>piece
                    remaining -= piece
                flush = Z_NO_FLUSH if remaining else Z_SYNC_FLUSH
                if produced == cap:
                    _grow(&out, &cap, cap * 2)
                room = _min(cap - produced, STEP)
                zs.next_out = <unsigned char*>_bytes_data(out) + produced
                zs.avail_out = <unsigned int>room
                rc = deflate(zs, flush)
                produced += room - zs.avail_out
                if rc != Z_OK and rc != Z_BUF_ERROR:
                    if rc == Z_MEM_ERROR:
                        raise MemoryError()
                    raise RuntimeError(f"deflate failed ({rc})")
                # Free output space left means zlib consumed all it was given and,
                # under Z_SYNC_FLUSH, finished the flush (zlib.h, deflate()).
                if zs.avail_out != 0 and zs.avail_in == 0 and flush == Z_SYNC_FLUSH:
                    break
            # A sync flush always ends with the empty stored block 00 00 ff ff.
            assert produced >= 4 and memcmp(_bytes_data(out) + produced - 4, TAIL, 4) == 0
            produced -= 4
            keep = not (only_if_smaller and produced >= length)
            if keep and produced != cap:
                _bytes_resize(&out, <Py_ssize_t>produced)
        except BaseException:
            # The stream holds a message nobody will receive: start afresh. That
            # keeps later output decodable whatever history the peer has, since a
            # fresh stream only refers back to what it produced itself.
            deflateReset(zs)
            Py_XDECREF(out)
            raise
        # A message the peer will not see compressed must leave no trace either.
        if not keep or self.no_context_takeover:
            deflateReset(zs)
        if not keep:
            Py_XDECREF(out)
            return None
        result = <bytes>out
        Py_XDECREF(out)
        return result

    def compress_bytes(self, data, bint only_if_smaller=False):
        """Python entry point of compress(), for tests and cold paths."""
        cdef const unsigned char[::1] view = data
        return self.compress(_pointer(view), view.shape[0], only_if_smaller)


# ---------------------------------------------------------------------------
# Decompression


@cython.final
cdef class Inflater:
    """Decompresses the messages of one peer (or, with no context takeover, of many).

    ``window_bits`` (8..15) is the window the peer compresses with (15 decodes
    any). ``no_context_takeover``: the peer starts every message with an empty
    window, so this Inflater keeps nothing between messages and one instance can
    serve every such connection of the process.
    """

    def __init__(self, int window_bits=15, bint no_context_takeover=False):
        if not 8 <= window_bits <= 15:
            raise ValueError(f"window_bits must be from 8 to 15, not {window_bits}")
        if self._zs != NULL:
            self.release()
        self.window_bits = window_bits
        self.no_context_takeover = no_context_takeover
        self.result = None

    def __dealloc__(self):
        self.release()

    @property
    def memory(self):
        """Bytes zlib holds for this Inflater now (0 before the first message)."""
        return self._mem

    cdef int _ensure(self) except -1:
        if self._zs != NULL:
            return 0
        cdef z_stream* zs = _new_stream(&self._mem)
        cdef int rc = inflateInit2(zs, -self.window_bits)
        if rc != Z_OK:
            _free_stream(zs, &self._mem)
            if rc == Z_MEM_ERROR:
                raise MemoryError()
            raise RuntimeError(f"inflateInit2 failed ({rc})")
        self._zs = zs
        self._ended = False
        return 0

    cpdef void release(self) noexcept:
        """Free zlib's memory now; only between messages of a no-context-takeover peer."""
        if self._zs != NULL:
            inflateEnd(<z_stream*>self._zs)
            _free_stream(<z_stream*>self._zs, &self._mem)
            self._zs = NULL

    cdef bytes take_result(self):
        """The message decompress() returned 0 for; the Inflater drops its reference."""
        result = self.result
        self.result = None
        return result

    cdef int _run(self, PyObject** out, size_t* cap, size_t* produced,
                  const unsigned char* data, size_t length, size_t limit) except -1:
        """Inflate ``data`` into ``out``, which never grows past ``limit`` bytes."""
        cdef z_stream* zs = <z_stream*>self._zs
        cdef size_t remaining = length, piece, room
        cdef int rc
        zs.avail_in = 0
        while True:
            if zs.avail_in == 0 and remaining:
                piece = _min(remaining, STEP)
                zs.next_in = <unsigned char*>data + (length - remaining)
                zs.avail_in = <unsigned int>piece
                remaining -= piece
            if produced[0] == cap[0]:
                # A full buffer of limit = max_size + 1 bytes is one byte too many.
                if cap[0] >= limit:
                    return DEFLATE_TOO_BIG
                _grow(out, cap, _min(cap[0] * 2, limit))
            room = _min(cap[0] - produced[0], STEP)
            zs.next_out = <unsigned char*>_bytes_data(out[0]) + produced[0]
            zs.avail_out = <unsigned int>room
            rc = inflate(zs, Z_SYNC_FLUSH)
            produced[0] += room - zs.avail_out
            if rc == Z_STREAM_END:
                # A block with BFINAL set (RFC 7692 7.2.3.4). zlib stops there, but
                # for permessage-deflate it is only a block boundary: the payload
                # may go on (the RFC's own example does, with a 00 byte), and so
                # may the next message.
                if zs.avail_in == 0 and remaining == 0:
                    self._ended = True
                    return DEFLATE_OK
                self._restart(True)
                continue
            if rc == Z_MEM_ERROR:
                raise MemoryError()
            if rc != Z_OK and rc != Z_BUF_ERROR:
                return DEFLATE_INVALID
            # Output room left over: all input consumed and nothing held back.
            if zs.avail_out != 0 and zs.avail_in == 0 and remaining == 0:
                return DEFLATE_OK

    cdef int _restart(self, bint keep_window) except -1:
        """A fresh zlib stream after a final block, still remembering the window."""
        cdef z_stream* zs = <z_stream*>self._zs
        cdef unsigned int size = 0
        cdef unsigned char* window = NULL
        self._ended = False
        if keep_window:
            window = <unsigned char*>PyMem_Malloc(<size_t>1 << self.window_bits)
            if window == NULL:
                inflateReset(zs)
                raise MemoryError()
            inflateGetDictionary(zs, window, &size)
        # inflateReset keeps next_in/avail_in and drops the final block's padding bits.
        inflateReset(zs)
        if window != NULL:
            inflateSetDictionary(zs, window, size)
            PyMem_Free(window)
        return 0

    cdef int decompress(self, const unsigned char* data, size_t length, size_t max_size) except -1:
        """Inflate one whole message (RFC 7692 7.2.2); see deflate.pxd."""
        self.result = None
        if length == 0:
            # Not a valid payload (an empty message is 00), but nothing to decode
            # either: accept it as empty and leave the window alone.
            self.result = b""
            return DEFLATE_OK
        self._ensure()
        cdef z_stream* zs = <z_stream*>self._zs
        cdef size_t limit = (max_size + 1 if max_size < <size_t>PY_SSIZE_T_MAX
                             else <size_t>PY_SSIZE_T_MAX)
        # First guess for the output: 8x the input (JSON compresses ~5x), capped.
        cdef size_t cap = _min(_min(length, FIRST_OUT) * 8, FIRST_OUT)
        cdef size_t produced = 0
        cdef int code
        cap = _min(cap if cap > 256 else 256, limit)
        cdef PyObject* out = _bytes_new(NULL, <Py_ssize_t>cap)
        if out == NULL:
            raise MemoryError()
        self._ended = False
        try:
            code = self._run(&out, &cap, &produced, data, length, limit)
            if code == DEFLATE_OK and not self._ended:
                code = self._run(&out, &cap, &produced, TAIL, 4, limit)
                # zlib's data_type has 128 set when inflate stopped between blocks:
                # anything else means the payload did not end on a flush boundary.
                if code == DEFLATE_OK and not self._ended and not (zs.data_type & 128):
                    code = DEFLATE_INVALID
            # A final block can end the stream with the buffer full at max_size + 1.
            if code == DEFLATE_OK and produced > max_size:
                code = DEFLATE_TOO_BIG
            if code != DEFLATE_OK:
                # The connection is about to close; leave a clean state anyway.
                inflateReset(zs)
                self._ended = False
                Py_XDECREF(out)
                return code
            if self._ended:
                self._restart(not self.no_context_takeover)
            elif self.no_context_takeover:
                inflateReset(zs)
            if produced != cap:
                _bytes_resize(&out, <Py_ssize_t>produced)
        except BaseException:
            inflateReset(zs)
            self._ended = False
            Py_XDECREF(out)
            raise
        self.result = <bytes>out
        Py_XDECREF(out)
        return DEFLATE_OK

    def decompress_bytes(self, data, max_size=None):
        """Python entry point of decompress(); raises DecompressionError (1007/1009)."""
        cdef const unsigned char[::1] view = data
        cdef size_t limit = <size_t>-1 if max_size is None else <size_t>max_size
        cdef int code = self.decompress(_pointer(view), view.shape[0], limit)
        if code == DEFLATE_INVALID:
            raise DecompressionError(code, "invalid compressed data")
        if code == DEFLATE_TOO_BIG:
            raise DecompressionError(code, f"message decompresses to more than {max_size} bytes")
        return self.take_result()

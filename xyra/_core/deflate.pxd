# permessage-deflate engine (RFC 7692 section 7.2) on zlib's C API. See deflate.pyx.
#
# C-level API for the connection and pub/sub code (no Python call on the way):
#
#   Deflater.compress(data, length, only_if_smaller=False) -> bytes | None
#       The payload of one compressed message (RSV1 set on its first frame), the
#       trailing 00 00 ff ff already removed. With only_if_smaller, None when the
#       result would not be shorter than the input; the Deflater has then undone
#       the message, so the caller sends it uncompressed. Without it, a result
#       that is not sent breaks every later message of a context-takeover
#       Deflater: call reset() in that case. Raises MemoryError (RuntimeError on
#       a zlib failure valid parameters never cause), after which the Deflater is
#       reset and stays usable.
#   Inflater.decompress(data, length, max_size) -> 0 | 1007 | 1009
#       0: take the message with take_result(). 1007: corrupt data. 1009: the
#       message would inflate past max_size bytes (found without allocating much
#       more than max_size). Raises only MemoryError (-1 at C level).
#   reset() / release(): forget the window / also free zlib's memory (the next
#       message allocates it again). Always safe between messages for a Deflater
#       (a fresh stream refers to nothing the peer lacks: it only costs ratio);
#       for an Inflater only when no_context_takeover (it drops the peer's window).
#
# Neither class is thread-safe; both expect the GIL (the event loop's thread).

cimport cython
from cpython.object cimport PyObject

cdef enum:
    DEFLATE_OK = 0
    DEFLATE_INVALID = 1007      # corrupt compressed data (close code 1007)
    DEFLATE_TOO_BIG = 1009      # decompressed message over max_size (close code 1009)


@cython.final
cdef class Deflater:
    cdef void* _zs              # z_stream*, NULL until the first message or after release()
    cdef size_t _mem            # bytes zlib (and the z_stream) hold for this object
    cdef int _zlib_bits         # what zlib is given: 8 is run as 9 (see deflate.pyx)
    cdef int _strategy
    cdef readonly int window_bits
    cdef readonly bint no_context_takeover
    cdef readonly int level
    cdef readonly int mem_level

    cdef int _ensure(self) except -1
    cdef bytes compress(self, const unsigned char* data, size_t length, bint only_if_smaller=*)
    cpdef void reset(self) noexcept
    cpdef void release(self) noexcept


@cython.final
cdef class Inflater:
    cdef void* _zs              # z_stream*, NULL until the first message or after release()
    cdef size_t _mem
    cdef bint _ended            # the message ended with a BFINAL block
    cdef bytes result           # the last message decompressed, until take_result()
    cdef readonly int window_bits
    cdef readonly bint no_context_takeover

    cdef int _ensure(self) except -1
    cdef int _run(self, PyObject** out, size_t* cap, size_t* produced,
                  const unsigned char* data, size_t length, size_t limit) except -1
    cdef int _restart(self, bint keep_window) except -1
    cdef int decompress(self, const unsigned char* data, size_t length, size_t max_size) except -1
    cdef bytes take_result(self)
    cpdef void release(self) noexcept

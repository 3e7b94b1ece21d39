# cython: language_level=3
"""The compiled WebSocket load client behind ``xyra bench``: the event-loop side.

``Connection`` (an asyncio protocol on uvloop) serves the workloads that hold many
connections (pub/sub, idle, memory); the echo and connect workloads run on
``xyra.bench._drivers.sockload``, which drives plain sockets itself, with this
module's ``FrameCounter``. The load client must never be the bottleneck, so the
per-message path does no Python work:

* client frames are built and masked once, before the run (``masked_frame``); a
  connection that has to send ``k`` more messages writes one pre-joined ``bytes``
  object holding ``k`` frames, so a whole read batch costs one ``transport.write``
  (and uvloop coalesces the writes of one loop iteration into one syscall);
* replies are counted, not decoded: ``FrameCounter`` walks the frame headers in
  the received buffer in C and skips payloads, wherever the reads split them;
* every connection reads into one shared buffer of the process (uvloop calls
  ``get_buffer`` and ``buffer_updated`` back to back for one connection at a time,
  and nothing is kept between reads but a partial header), so 10k idle client
  connections cost no read buffers.

For the compression workloads a connection can offer permessage-deflate in its
handshake (``extensions``) and send a rotation of different pre-built frames
(``frames``); it never inflates: it counts the messages that arrive compressed
(RSV1 set on their first frame).

The cold paths (the HTTP upgrade, pings, close frames) use plain Python objects.

What it shares with the server, and what it does not: the masking is the core's
(``xyra/_core/mask.h``, the same word-at-a-time XOR the server unmasks with). The
frame headers are read by the client's own ``read_header`` (``loadgen.pxd``), on
purpose: the load client checks the servers it measures, Xyra among them, so it
does not trust Xyra's frame codec to tell it what a server sent. The unit tests
check both it and ``masked_frame`` against a plain-Python encoding of RFC 6455.
"""

import asyncio

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_FromStringAndSize
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE
from libc.stdint cimport uint8_t, uint64_t
from libc.string cimport memcpy


cdef extern from "mask.h":  # the core's (setup.py puts xyra/_core on the include path)
    void xyra_mask(unsigned char* data, size_t length, const unsigned char* key,
                   size_t phase) noexcept nogil


# Roles of a connection.
cdef enum:
    _ECHO = 0          # keep `window` messages in flight, one new message per reply
    _SUBSCRIBER = 1    # only receives; reports deliveries to its TopicPacer
    _PUBLISHER = 2     # sends on its TopicPacer's credit
    _IDLE = 3          # opens and stays quiet
    READ_SIZE = 1048576

ECHO = _ECHO
SUBSCRIBER = _SUBSCRIBER
PUBLISHER = _PUBLISHER
IDLE = _IDLE

# The RFC 6455 sample key and its accept value: the handshake is checked, not trusted.
HANDSHAKE_KEY = b"dGhlIHNhbXBsZSBub25jZQ=="
HANDSHAKE_ACCEPT = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo="

# One read buffer for every connection of the process (see the module docstring).
# A bytearray is never resized here, so its data pointer is stable.
cdef bytearray _read_buffer = bytearray(READ_SIZE)
cdef uint8_t* _read_ptr = <uint8_t*><char*>_read_buffer


def parse_header(data):
    """Parse the frame header at the start of ``data``.

    Returns ``(header_size, payload_length, opcode, fin, mask_key)`` with
    ``mask_key`` None for an unmasked frame, or None if ``data`` is too short.
    Raises ValueError for a 64-bit length with the top bit set.
    """
    cdef const uint8_t[::1] view = data
    cdef Header h
    cdef Py_ssize_t size = read_header(&view[0] if view.shape[0] else NULL, view.shape[0], &h)
    if size < 0:
        raise ValueError("invalid 64-bit payload length")
    if size == 0:
        return None
    key = PyBytes_FromStringAndSize(<char*>h.key, 4) if h.masked else None
    return size, h.length, h.opcode, bool(h.fin), key


def masked_frame(payload, int opcode, mask_key=None, bint fin=True):
    """One client frame: header, mask key and the payload masked with it.

    The argument order is the client's own (payload first), and the name differs from
    the core's ``frames.build_frame(opcode, payload)`` so the two are never confused.
    ``mask_key`` is 4 bytes, or None for an unmasked (server-style) frame, which the
    tests use to build server replies.
    """
    cdef const uint8_t[::1] src = payload
    cdef Py_ssize_t n = src.shape[0]
    cdef Py_ssize_t size = 2 + (0 if n < 126 else 2 if n < 65536 else 8)
    cdef const uint8_t[::1] key
    cdef bytes frame
    cdef uint8_t* out
    cdef int i
    if not 0 <= opcode <= 15:
        raise ValueError("opcode must be 0..15")
    if mask_key is not None:
        key = mask_key
        if key.shape[0] != 4:
            raise ValueError("mask_key must be 4 bytes")
        size += 4
    frame = PyBytes_FromStringAndSize(NULL, size + n)
    out = <uint8_t*>PyBytes_AS_STRING(frame)
    out[0] = (0x80 if fin else 0) | opcode
    out[1] = 0x80 if mask_key is not None else 0
    if n < 126:
        out[1] |= n
        i = 2
    elif n < 65536:
        out[1] |= 126
        out[2] = (n >> 8) & 0xFF
        out[3] = n & 0xFF
        i = 4
    else:
        out[1] |= 127
        for i in range(8):
            out[2 + i] = (<uint64_t>n >> (56 - 8 * i)) & 0xFF
        i = 10
    if n:
        memcpy(out + size, &src[0], n)
    if mask_key is not None:
        memcpy(out + i, &key[0], 4)
        xyra_mask(out + size, n, &key[0], 0)
    return frame


def mask(data, key):
    """``data`` XORed with the 4-byte ``key`` (masking and unmasking are the same)."""
    cdef const uint8_t[::1] k = key
    cdef const uint8_t[::1] src = data
    cdef Py_ssize_t n = src.shape[0]
    if k.shape[0] != 4:
        raise ValueError("key must be 4 bytes")
    # A new bytes object nobody else has seen: writing into it is safe (never into
    # `data`, which may be an immutable, even interned, bytes object).
    cdef bytes out = PyBytes_FromStringAndSize(NULL, n)
    if n:
        memcpy(PyBytes_AS_STRING(out), &src[0], n)
        xyra_mask(<uint8_t*>PyBytes_AS_STRING(out), n, &k[0], 0)
    return out


cdef class FrameCounter:
    """Counts the complete messages in a byte stream of frames, split anywhere.

    Data payloads are skipped, never copied. Only a partial header (at most 14
    bytes) and control payloads (at most 125 bytes) are kept between reads.
    With ``expect_length >= 0`` every message whose opcode or length differs from
    ``expect_opcode``/``expect_length`` is counted in ``mismatched``: the proof that
    the peer really echoed what was sent. ``compressed`` counts the messages whose
    first frame had RSV1 set (permessage-deflate); they are counted, not inflated.
    """

    def __cinit__(self, long long expect_length=-1, int expect_opcode=-1):
        self.expect_length = expect_length
        self.expect_opcode = expect_opcode
        self.close_code = -1

    def feed(self, data):
        """Feed bytes; returns how many messages they completed."""
        cdef const uint8_t[::1] view = data
        if view.shape[0] == 0:
            return 0
        return self.feed_ptr(&view[0], view.shape[0])

    def take_flags(self):
        """The pending ``(ping, close, error)`` flags, cleared."""
        cdef int f = self.flags
        self.flags = 0
        return bool(f & F_PING), bool(f & F_CLOSE), bool(f & F_ERROR)

    cdef Py_ssize_t feed_ptr(self, const uint8_t* p, Py_ssize_t n) noexcept:
        cdef Py_ssize_t pos = 0, size, take, done = 0
        while pos < n:
            if self.remaining:
                take = n - pos
                if <uint64_t>take > self.remaining:
                    take = <Py_ssize_t>self.remaining
                if self.h.opcode >= 8:
                    memcpy(self.ctrl + self.ctrl_len, p + pos, take)
                    self.ctrl_len += take
                pos += take
                self.remaining -= take
                if not self.remaining:
                    done += self._frame_done()
                continue
            if self.hlen == 0:
                size = read_header(p + pos, n - pos, &self.h)
                if size > 0:
                    pos += size
                    if self.h.opcode < 8 and self.h.length <= <uint64_t>(n - pos):
                        # The common case: a whole data frame in this read.
                        pos += <Py_ssize_t>self.h.length
                        done += self._data_done()
                    else:
                        done += self._frame_start()
                    continue
                if size < 0:
                    self.flags |= F_ERROR
                    return done
                # A partial header: keep it for the next read.
                take = n - pos
                memcpy(self.hbuf, p + pos, take)
                self.hlen = take
                return done
            # Complete the partial header with bytes from this read.
            take = MAX_HEADER - self.hlen
            if take > n - pos:
                take = n - pos
            memcpy(self.hbuf + self.hlen, p + pos, take)
            size = read_header(self.hbuf, self.hlen + take, &self.h)
            if size == 0:
                self.hlen += take
                return done
            if size < 0:
                self.flags |= F_ERROR
                return done
            pos += size - self.hlen
            self.hlen = 0
            done += self._frame_start()
        return done

    cdef uint64_t skippable(self) noexcept:
        """How many payload bytes of a data frame come next: bytes a reader may drop
        unread (``skip``), since only their count matters."""
        if self.hlen == 0 and self.h.opcode < 8:
            return self.remaining
        return 0

    cdef Py_ssize_t skip(self, uint64_t n) noexcept:
        """Count ``n <= skippable()`` payload bytes as received; messages completed."""
        self.remaining -= n
        if not self.remaining:
            return self._frame_done()
        return 0

    cdef Py_ssize_t _frame_start(self) noexcept:
        if self.h.opcode >= 8:
            if self.h.length > 125 or not self.h.fin:
                self.flags |= F_ERROR
                self.remaining = 0
                return 0
            self.ctrl_len = 0
        self.remaining = self.h.length
        if not self.remaining:
            return self._frame_done()
        return 0

    cdef Py_ssize_t _frame_done(self) noexcept:
        if self.h.opcode >= 8:
            self._control_done()
            return 0
        return self._data_done()

    cdef Py_ssize_t _data_done(self) noexcept:
        self.frames += 1
        self.payload_bytes += self.h.length
        if self.h.opcode != 0:
            self.msg_opcode = self.h.opcode
            self.msg_rsv1 = self.h.rsv1
            self.msg_length = 0
        self.msg_length += self.h.length
        if not self.h.fin:
            return 0
        self.messages += 1
        self.compressed += self.msg_rsv1
        if self.expect_length >= 0 and (
            self.msg_length != <uint64_t>self.expect_length
            or self.msg_opcode != self.expect_opcode
        ):
            self.mismatched += 1
        return 1

    cdef void _control_done(self) noexcept:
        self.frames += 1
        if self.h.masked:
            xyra_mask(self.ctrl, self.ctrl_len, self.h.key, 0)
        if self.h.opcode == 9:
            self.flags |= F_PING
            self.ping_payload = PyBytes_FromStringAndSize(<char*>self.ctrl, self.ctrl_len)
        elif self.h.opcode == 8:
            self.flags |= F_CLOSE
            if self.ctrl_len >= 2:
                self.close_code = (self.ctrl[0] << 8) | self.ctrl[1]
            else:
                self.close_code = 1005


cdef class Stats:
    """Counters shared by the connections of one run, read by the runner between phases."""

    cdef public long long messages   # data messages received
    cdef public long long bytes_in   # bytes read, headers included
    cdef public long long reads      # buffer_updated calls (messages per read shows batching)
    cdef public long long opened     # handshakes completed
    cdef public long long lost       # connections lost while the run wanted them

    def snapshot(self):
        """``(messages, bytes_in)`` now."""
        return self.messages, self.bytes_in


cdef class TopicPacer:
    """Paces one publisher by what its subscribers received.

    (The client's side of a topic; not the server's ``xyra._core.pubsub.Topic``.)

    ``window`` messages may be in flight; a message stops being in flight once
    deliveries worth one copy per subscriber have arrived (all subscribers live in
    this process, so their counts are exact). ``unstick`` forgives messages a
    server dropped so pacing can never stop for good; it counts those in ``stalls``.
    """

    cdef:
        readonly Connection publisher
        readonly long long published, delivered, stalls, forgiven
        readonly Py_ssize_t subscribers, window
        long long seen
        bint running

    def __cinit__(self, Py_ssize_t subscribers, Py_ssize_t window):
        if subscribers < 1 or window < 1:
            raise ValueError("subscribers and window must be >= 1")
        self.subscribers = subscribers
        self.window = window

    def set_publisher(self, Connection publisher):
        self.publisher = publisher

    def start(self):
        """Fill the window."""
        self.running = True
        self._pump()

    def stop(self):
        """Publish nothing more; messages in flight still arrive."""
        self.running = False

    @property
    def in_flight(self):
        return self.published - self.forgiven - self.delivered // self.subscribers

    def unstick(self):
        """Called periodically: if nothing arrived since the last call while messages
        are in flight, count them as lost and refill the window. Returns True if so."""
        cdef bint stuck = (self.running and self.delivered == self.seen
                           and self.in_flight > 0)
        self.seen = self.delivered
        if stuck:
            self.stalls += 1
            self.forgiven = self.published - self.delivered // self.subscribers
            self._pump()
        return stuck

    cdef void on_delivered(self, Py_ssize_t k) except *:
        self.delivered += k
        if self.running:
            self._pump()

    cdef void _pump(self) except *:
        cdef long long free = self.window - (
            self.published - self.forgiven - self.delivered // self.subscribers)
        if free > 0 and self.publisher is not None and self.publisher.is_open:
            self.publisher._send(free)
            self.published += free


cdef dict _close_frames = {}   # mask key -> close frame (code 1000)
cdef dict _requests = {}       # (path, host, extensions) -> upgrade request


cdef class _ProtocolBase:
    # Cython extension types cannot take a Python class as first base; asyncio
    # insists on a real BufferedProtocol subclass (uvloop only checks get_buffer).
    pass


cdef class Connection(_ProtocolBase, asyncio.BufferedProtocol):
    """One client WebSocket connection (see the module docstring for the design).

    ``path`` None means a raw TCP connection with no HTTP upgrade, for the raw echo
    server that returns the client's (masked) frames as they are. ``frame`` is one
    pre-built masked client frame; ``window`` of them may be in flight. ``frames``
    instead is a list of different pre-built frames, sent in turn, round and round
    (``window`` consecutive ones are pre-joined, so a send is one slice, one write).
    ``extensions`` is the value of a ``Sec-WebSocket-Extensions`` request header
    (None: none); ``deflate`` says whether the server accepted permessage-deflate.
    """

    cdef:
        object transport
        object _write
        readonly FrameCounter parser
        readonly Stats stats
        readonly TopicPacer topic
        bytes request
        bytearray hbuf
        list batches                 # batches[k]: k frames joined, 1 <= k <= window
        bytes cycle                  # `frames` mode: frames 0..n-1, then 0..window-1 again
        list offsets                 # offsets[i]: where frame i starts in `cycle`
        Py_ssize_t nframes, next_frame
        bytes close_frame
        bytes mask_key
        Py_ssize_t window
        readonly int role
        readonly long long sent, received
        readonly bint is_open, running, lost, closing, deflate
        readonly object opened       # Future: the handshake completed (or failed)
        readonly str error

    def __init__(self, loop, Stats stats, *, path=b"/", host=b"127.0.0.1", int role=_ECHO,
                 bytes frame=None, Py_ssize_t window=1, TopicPacer topic=None,
                 bytes mask_key=b"\x12\x34\x56\x78", long long expect_length=-1,
                 int expect_opcode=-1, list frames=None, bytes extensions=None):
        self.stats = stats
        self.role = role
        self.topic = topic
        self.window = window
        self.mask_key = mask_key
        self.parser = FrameCounter(expect_length, expect_opcode)
        self.opened = loop.create_future()
        self.batches = [b""]
        if frame is not None:
            self.batches += [frame * k for k in range(1, window + 1)]
        if frames:
            if frame is not None:
                raise ValueError("pass frame or frames, not both")
            self.nframes = len(frames)
            self.offsets = [0]
            for i in range(self.nframes + window):
                self.offsets.append(self.offsets[-1] + len(<bytes>frames[i % self.nframes]))
            self.cycle = b"".join([frames[i % self.nframes] for i in range(self.nframes + window)])
        # Thousands of these open at once: build the constant parts once per process.
        self.close_frame = _close_frames.get(mask_key)
        if self.close_frame is None:
            self.close_frame = _close_frames[mask_key] = masked_frame(b"\x03\xe8", 8, mask_key)
        if path is not None:
            self.request = _requests.get((path, host, extensions))
            if self.request is None:
                self.request = _requests[(path, host, extensions)] = (
                    b"GET " + path + b" HTTP/1.1\r\nHost: " + host
                    + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
                    + HANDSHAKE_KEY + b"\r\nSec-WebSocket-Version: 13\r\n"
                    + (b"" if extensions is None
                       else b"Sec-WebSocket-Extensions: " + extensions + b"\r\n")
                    + b"\r\n"
                )

    # -- asyncio protocol callbacks ---------------------------------------------------

    def connection_made(self, transport):
        self.transport = transport
        self._write = transport.write
        if self.request is None:
            self._on_open()
        else:
            self._write(self.request)

    def get_buffer(self, Py_ssize_t sizehint):
        return _read_buffer

    def buffer_updated(self, Py_ssize_t nbytes):
        cdef Py_ssize_t off = 0, k
        self.stats.bytes_in += nbytes
        self.stats.reads += 1
        if not self.is_open:
            off = self._handshake(nbytes)
            if off < 0 or off == nbytes:
                return
        k = self.parser.feed_ptr(_read_ptr + off, nbytes - off)
        if k:
            self.received += k
            self.stats.messages += k
            if self.role == _ECHO:
                if self.running:
                    self._send(k)
            elif self.role == _SUBSCRIBER:
                if self.topic is not None:
                    self.topic.on_delivered(k)
        if self.parser.flags:
            self._control()

    def eof_received(self):
        return False

    def connection_lost(self, exc):
        self.lost = True
        if self.is_open and not self.closing:
            self.stats.lost += 1
        self.running = False
        self.is_open = False
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(self.error or "connection lost"))
            # Retrieved here so asyncio does not log it when nobody awaits `opened`;
            # awaiting it still raises.
            self.opened.exception()

    def pause_writing(self):
        # Windows are bounded, so what uvloop buffers while paused is bounded too.
        pass

    def resume_writing(self):
        pass

    # -- run control (called by the runner) -------------------------------------------

    def start(self):
        """Fill the window (echo role)."""
        if self.is_open and (len(self.batches) > 1 or self.cycle is not None):
            self.running = True
            self._send(self.window)

    def stop(self):
        """Send nothing more; replies in flight are still counted."""
        self.running = False

    @property
    def in_flight(self):
        return self.sent - self.received

    def rebind(self, Stats stats, TopicPacer topic=None):
        """Count into ``stats`` (and deliver to ``topic``) from now on."""
        self.stats = stats
        self.topic = topic

    def send_messages(self, Py_ssize_t k):
        """Write ``k`` pre-built frames now."""
        self._send(k)

    def close(self):
        """Start the close handshake (or drop a raw connection)."""
        self.running = False
        if self.transport is None or self.lost:
            return
        if self.closing:
            return
        self.closing = True
        if self.request is None:
            self.transport.abort()
        else:
            self._write(self.close_frame)

    def abort(self):
        """Drop the TCP connection now."""
        self.running = False
        self.closing = True
        if self.transport is not None and not self.lost:
            self.transport.abort()

    # -- internals --------------------------------------------------------------------

    cdef void _send(self, Py_ssize_t k) except *:
        cdef Py_ssize_t last = PyList_GET_SIZE(self.batches) - 1
        cdef Py_ssize_t take
        if self.cycle is not None:
            if self.lost or k <= 0:
                return
            self.sent += k
            while k > 0:
                take = k if k <= self.window else self.window
                self._write(self.cycle[<Py_ssize_t>self.offsets[self.next_frame]:
                                       <Py_ssize_t>self.offsets[self.next_frame + take]])
                self.next_frame = (self.next_frame + take) % self.nframes
                k -= take
            return
        if last < 1 or self.lost:
            return
        self.sent += k
        while k > last:
            self._write(<object>PyList_GET_ITEM(self.batches, last))
            k -= last
        self._write(<object>PyList_GET_ITEM(self.batches, k))

    cdef void _on_open(self) except *:
        self.is_open = True
        self.stats.opened += 1
        if not self.opened.done():
            self.opened.set_result(None)

    cdef Py_ssize_t _handshake(self, Py_ssize_t nbytes) except -2:
        """Consume the HTTP response; the offset where frames begin, or -1 on failure."""
        chunk = PyBytes_FromStringAndSize(<char*>_read_ptr, nbytes)
        if self.hbuf is not None:
            self.hbuf += chunk
            data = bytes(self.hbuf)
        else:
            data = chunk
        end = data.find(b"\r\n\r\n")
        if end < 0:
            if len(data) > 16384:
                return self._fail("HTTP response head too long")
            self.hbuf = bytearray(data)
            return nbytes
        self.hbuf = None
        head = data[:end]
        if not head.startswith(b"HTTP/1.1 101") or HANDSHAKE_ACCEPT not in head:
            return self._fail("upgrade refused: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
        if b"permessage-deflate" in head:
            for line in head.lower().split(b"\r\n"):
                if line.startswith(b"sec-websocket-extensions:") and b"permessage-deflate" in line:
                    self.deflate = True
        self._on_open()
        # Bytes after the head are frames, all of them in this read's tail.
        return nbytes - (len(data) - end - 4)

    cdef Py_ssize_t _fail(self, str why) except -2:
        self.error = why
        if not self.opened.done():
            self.opened.set_exception(ConnectionError(why))
            self.opened.exception()
        self.transport.abort()
        return -1

    cdef void _control(self) except *:
        cdef int flags = self.parser.flags
        self.parser.flags = 0
        if flags & F_PING and not self.closing:
            self._write(masked_frame(self.parser.ping_payload, 10, self.mask_key))
        if flags & F_ERROR:
            self.error = "invalid frame from server"
            self.abort()
            return
        if flags & F_CLOSE:
            self.running = False
            if not self.closing:
                # The server started the close: answer it, then let it drop TCP.
                self.stats.lost += 1
                self.closing = True
                self._write(self.close_frame)
            self.transport.close()

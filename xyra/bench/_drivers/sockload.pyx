# cython: language_level=3
"""Load drivers on plain non-blocking sockets and an epoll set of their own.

The event-loop client (``loadgen.Connection`` on uvloop) cost as much as a fast
server or more on these workloads, so a 2-core machine measured the client:

* ``connect``: every cycle made Python objects (a protocol, two futures, a timer,
  a ``create_connection`` coroutine). ``ConnectDriver`` runs the cycles as a C
  state machine over a fixed array of slots: socket, connect, upgrade request
  (sent at once when the loopback handshake is already done, as it usually is),
  101 check, close frame, close frame back, close. No Python object per cycle.
* echo of big messages: the client's own copy of every reply out of the kernel
  was half its work. ``EchoDriver`` reads frame headers into a small buffer and
  drops payload bytes in the kernel with ``recv(MSG_TRUNC)``, which skips the
  copy (Linux TCP), while ``loadgen.FrameCounter`` still counts every byte of
  every frame: a reply of the wrong length or opcode is counted as mismatched.
  The same loop serves the small-message workloads (pre-masked frames, a window
  in flight, one ``send`` per batch of replies).
* plain pub/sub: ``PubSubDriver`` is that loop with the credit moved from each
  connection to its topic: subscribers' deliveries release the publisher's next
  messages, as ``loadgen.TopicPacer`` paces them, with no Python call per read.

All run on the calling thread until their time is up (``run``) and keep their
connections between calls, so the caller takes its measurement marks in between.
Addresses are IPv4 (the bench talks to 127.0.0.1 only).
"""

import socket as _pysocket

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from libc.errno cimport EAGAIN, EINPROGRESS, EINTR, errno
from libc.stdint cimport uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport calloc, free
from libc.string cimport memmove, strerror

from xyra.bench._drivers.loadgen cimport (
    F_CLOSE, F_ERROR, F_PING, FrameCounter, Header, read_header,
)
from xyra.bench._drivers.loadgen import HANDSHAKE_ACCEPT as _ACCEPT, masked_frame


cdef extern from "<string.h>" nogil:
    void* memmem(const void* haystack, size_t hlen, const void* needle, size_t nlen)
    int memcmp(const void* a, const void* b, size_t n)

cdef extern from "<time.h>" nogil:
    struct timespec:
        long tv_sec
        long tv_nsec
    int clock_gettime(int clk, timespec* ts)
    int CLOCK_MONOTONIC

cdef extern from "<unistd.h>" nogil:
    int close(int fd)

cdef extern from "<arpa/inet.h>" nogil:
    uint16_t htons(uint16_t x)
    int inet_pton(int af, const char* src, void* dst)

cdef extern from "<netinet/in.h>" nogil:
    struct in_addr:
        uint32_t s_addr
    struct sockaddr_in:
        int sin_family
        uint16_t sin_port
        in_addr sin_addr
    int IPPROTO_TCP

cdef extern from "<netinet/tcp.h>" nogil:
    int TCP_NODELAY

cdef extern from "<sys/socket.h>" nogil:
    struct sockaddr:
        pass
    ctypedef unsigned int socklen_t
    int socket(int domain, int type, int protocol)
    int connect(int fd, const sockaddr* addr, socklen_t len)
    Py_ssize_t send(int fd, const void* buf, size_t n, int flags)
    Py_ssize_t recv(int fd, void* buf, size_t n, int flags)
    int setsockopt(int fd, int level, int name, const void* val, socklen_t len)
    int getsockopt(int fd, int level, int name, void* val, socklen_t* len)
    int AF_INET, SOCK_STREAM, SOCK_NONBLOCK, SOCK_CLOEXEC
    int SOL_SOCKET, SO_ERROR, MSG_NOSIGNAL, MSG_TRUNC

cdef extern from "<sys/epoll.h>" nogil:
    ctypedef union epoll_data_t:
        void* ptr
        int fd
        uint32_t u32
        uint64_t u64
    struct epoll_event:
        uint32_t events
        epoll_data_t data
    int epoll_create1(int flags)
    int epoll_ctl(int epfd, int op, int fd, epoll_event* event)
    int epoll_wait(int epfd, epoll_event* events, int maxevents, int timeout)
    int EPOLL_CLOEXEC, EPOLL_CTL_ADD, EPOLL_CTL_MOD, EPOLLIN, EPOLLOUT


cdef enum:
    MAX_EVENTS = 256
    POLL_MS = 10             # epoll_wait timeout: how often deadlines are looked at
    SLOT_BUF = 2048          # a 101 response head and the close frame behind it
    READ_BUF = 65536         # EchoDriver: headers and small frames are read into this

# ConnectDriver slot stages (the step each slot waits for).
cdef enum:
    _FREE = 0
    _CONNECTING = 1          # connect() in progress, request not sent yet
    _UPGRADING = 2           # request sent, reading the 101 head
    _CLOSING = 3             # close frame sent, reading the server's close frame

_STAGE_NAMES = ("socket", "connect", "upgrade", "close handshake")

cdef uint8_t _read_buf[READ_BUF]


cdef double _now() noexcept nogil:
    cdef timespec ts
    clock_gettime(CLOCK_MONOTONIC, &ts)
    return ts.tv_sec + ts.tv_nsec * 1e-9


cdef int _loopback(sockaddr_in* addr, str host, int port) except -1:
    addr.sin_family = AF_INET
    addr.sin_port = htons(<uint16_t>port)
    if inet_pton(AF_INET, host.encode(), &addr.sin_addr) != 1:
        raise ValueError(f"not an IPv4 address: {host!r}")
    return 0


cdef int _watch(int epfd, int op, int fd, uint32_t events, uint32_t tag) noexcept nogil:
    cdef epoll_event ev
    ev.events = events
    ev.data.u64 = tag
    return epoll_ctl(epfd, op, fd, &ev)


cdef struct Slot:
    int fd
    int stage
    double started
    Py_ssize_t len           # bytes held in buf
    uint8_t buf[SLOT_BUF]


cdef class ConnectDriver:
    """``parallel`` loops of: TCP connect, WebSocket upgrade, close handshake, close.

    ``completed`` counts cycles that got the server's close frame back, ``opened``
    the 101 responses (checked: status and ``Sec-WebSocket-Accept``). A cycle that
    fails or takes over ``timeout`` seconds is dropped and counted in ``errors``
    (the first one's reason in ``first_error``); past ``max_errors`` ``run``
    returns early.
    """

    cdef:
        Slot* slots
        int nslots, epfd
        sockaddr_in addr
        bytes request, close_frame
        double timeout
        bint stopping
        readonly long long completed, opened, errors, max_errors
        readonly str first_error

    def __cinit__(self):
        self.epfd = -1

    def __init__(self, int port, int parallel, bytes request, bytes close_frame, *,
                 str host="127.0.0.1", double timeout=5.0, long long max_errors=100):
        if self.slots != NULL:
            raise RuntimeError("ConnectDriver.__init__ called twice")
        if parallel < 1:
            raise ValueError("parallel must be >= 1")
        _loopback(&self.addr, host, port)
        self.request = request
        self.close_frame = close_frame
        self.timeout = timeout
        self.max_errors = max_errors
        self.slots = <Slot*>calloc(parallel, sizeof(Slot))
        if self.slots == NULL:
            raise MemoryError()
        self.nslots = parallel
        for i in range(parallel):
            self.slots[i].fd = -1
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, strerror(errno).decode())

    def __dealloc__(self):
        self.close()
        free(self.slots)

    @property
    def busy(self):
        """Cycles in progress."""
        return sum(1 for i in range(self.nslots) if self.slots[i].stage != _FREE)

    def run(self, double seconds):
        """Run cycles for ``seconds`` (new ones start in every free slot)."""
        self._loop(_now() + seconds)

    def drain(self, double timeout):
        """Start no new cycle; let the ones in progress end, then drop what is left."""
        self.stopping = True
        self._loop(_now() + timeout)
        self.close()

    def close(self):
        """Drop every connection in progress and the epoll set."""
        for i in range(self.nslots if self.slots != NULL else 0):
            self._release(&self.slots[i])
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1

    cdef void _loop(self, double deadline) except *:
        cdef epoll_event events[MAX_EVENTS]
        cdef int n, i
        cdef double now = _now()
        while now < deadline and self.errors <= self.max_errors and self.epfd >= 0:
            if not self.stopping:
                for i in range(self.nslots):
                    if self.slots[i].stage == _FREE:
                        self._start(&self.slots[i], now)
            elif not self.busy:
                return
            with nogil:  # other threads (a test's server) run while this one waits
                n = epoll_wait(self.epfd, events, MAX_EVENTS, POLL_MS)
            if n < 0 and errno != EINTR:
                raise OSError(errno, strerror(errno).decode())
            for i in range(n if n > 0 else 0):
                self._event(&self.slots[events[i].data.u32], events[i].events)
            now = _now()
            self._expire(now)

    cdef void _start(self, Slot* s, double now) except *:
        cdef int one = 1
        s.fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0)
        if s.fd < 0:
            self._fail(s, errno, NULL)
            return
        s.started = now
        s.len = 0
        s.stage = _CONNECTING
        setsockopt(s.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one))
        if connect(s.fd, <sockaddr*>&self.addr, sizeof(self.addr)) < 0 and errno != EINPROGRESS:
            self._fail(s, errno, NULL)
            return
        # On loopback the TCP handshake is usually over by now: try the request at
        # once, and wait for writability only if the socket is not connected yet.
        if self._send(s, self.request, _UPGRADING, True) == 0:
            _watch(self.epfd, EPOLL_CTL_ADD, s.fd, EPOLLIN, <uint32_t>(s - self.slots))
        elif s.stage == _CONNECTING:
            _watch(self.epfd, EPOLL_CTL_ADD, s.fd, EPOLLOUT, <uint32_t>(s - self.slots))

    cdef int _send(self, Slot* s, bytes data, int next_stage, bint may_wait) except -2:
        """Send ``data`` whole and move to ``next_stage``: 0; 1 if the socket is not
        connected yet (``may_wait``); -1 after a failure (the slot is free again)."""
        cdef Py_ssize_t size = PyBytes_GET_SIZE(data)
        cdef Py_ssize_t n = send(s.fd, PyBytes_AS_STRING(data), size, MSG_NOSIGNAL)
        if n == size:
            s.stage = next_stage
            return 0
        if n < 0 and may_wait and errno == EAGAIN:
            return 1
        # A request or a close frame is far smaller than an empty socket buffer.
        if n < 0:
            self._fail(s, errno, NULL)
        else:
            self._fail(s, 0, "short send")
        return -1

    cdef void _event(self, Slot* s, uint32_t events) except *:
        cdef int err = 0
        cdef socklen_t size = sizeof(err)
        if s.stage == _CONNECTING:
            getsockopt(s.fd, SOL_SOCKET, SO_ERROR, &err, &size)
            if err:
                self._fail(s, err, NULL)
            elif self._send(s, self.request, _UPGRADING, False) == 0:
                _watch(self.epfd, EPOLL_CTL_MOD, s.fd, EPOLLIN, <uint32_t>(s - self.slots))
            return
        if s.stage == _FREE:
            return
        cdef Py_ssize_t n = recv(s.fd, s.buf + s.len, SLOT_BUF - s.len, 0)
        if n < 0:
            if errno != EAGAIN and errno != EINTR:
                self._fail(s, errno, NULL)
            return
        if n == 0:
            self._fail(s, 0, "connection closed by the server")
            return
        s.len += n
        if s.stage == _UPGRADING:
            self._upgrade(s)
        if s.stage == _CLOSING:
            self._frames(s)

    cdef void _upgrade(self, Slot* s) except *:
        cdef uint8_t* end = <uint8_t*>memmem(s.buf, s.len, b"\r\n\r\n", 4)
        cdef Py_ssize_t head
        if end == NULL:
            if s.len == SLOT_BUF:
                self._fail(s, 0, "response head too long")
            return
        head = end + 4 - s.buf
        if (head < 12 or memcmp(s.buf, b"HTTP/1.1 101", 12)
                or memmem(s.buf, head, PyBytes_AS_STRING(_ACCEPT),
                          PyBytes_GET_SIZE(_ACCEPT)) == NULL):
            self._fail(s, 0, "upgrade refused")
            return
        self.opened += 1
        memmove(s.buf, s.buf + head, s.len - head)
        s.len -= head
        self._send(s, self.close_frame, _CLOSING, False)

    cdef void _frames(self, Slot* s) except *:
        """Look for the server's close frame; skip any frame before it."""
        cdef Header h
        cdef Py_ssize_t pos = 0, size
        while True:
            size = read_header(s.buf + pos, s.len - pos, &h)
            if size < 0:
                self._fail(s, 0, "invalid frame from the server")
                return
            if size == 0 or h.length > <uint64_t>(s.len - pos - size):
                break
            if h.opcode == 8:
                self.completed += 1
                self._release(s)
                return
            pos += size + <Py_ssize_t>h.length
        memmove(s.buf, s.buf + pos, s.len - pos)
        s.len -= pos
        if s.len == SLOT_BUF:
            self._fail(s, 0, "frame too large before the close frame")

    cdef void _expire(self, double now) except *:
        for i in range(self.nslots):
            if self.slots[i].stage != _FREE and now - self.slots[i].started > self.timeout:
                self._fail(&self.slots[i], 0, "timed out")

    cdef void _fail(self, Slot* s, int err, const char* why) except *:
        self.errors += 1
        if self.first_error is None:
            reason = why.decode() if why != NULL else strerror(err).decode()
            self.first_error = f"{_STAGE_NAMES[s.stage]}: {reason}"
        self._release(s)

    cdef void _release(self, Slot* s) noexcept:
        if s.fd >= 0:
            close(s.fd)  # also leaves the epoll set
        s.fd = -1
        s.stage = _FREE
        s.len = 0


def open_upgraded(int port, bytes request, *, str host="127.0.0.1", double timeout=5.0):
    """A blocking client handshake: ``(socket, bytes after the 101 head)``.

    The cold path of ``EchoDriver``; ``request`` None opens a raw TCP connection.
    """
    sock = _pysocket.create_connection((host, port), timeout=timeout)
    try:
        sock.setsockopt(_pysocket.IPPROTO_TCP, _pysocket.TCP_NODELAY, 1)
        if request is None:
            return sock, b""
        sock.sendall(request)
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            if not chunk or len(data) > 16384:
                raise ConnectionError("no complete 101 response")
            data += chunk
        head, _, rest = data.partition(b"\r\n\r\n")
        if not head.startswith(b"HTTP/1.1 101") or _ACCEPT not in head:
            raise ConnectionError("upgrade refused: " + head.split(b"\r\n", 1)[0].decode("latin-1"))
        return sock, rest
    except BaseException:
        sock.close()
        raise


cdef class _Peer:
    """One EchoDriver connection."""

    cdef:
        object sock               # the Python socket that owns ``fd``
        int fd
        uint32_t index            # in EchoDriver.peers, the epoll tag
        Py_ssize_t group          # PubSubDriver: the topic it belongs to (-1: none)
        bint publisher            # PubSubDriver: sends on its topic's credit
        FrameCounter counter
        Py_ssize_t pending        # bytes of frames still to send
        bint want_out             # EPOLLOUT is in the interest set
        bint dead
        readonly long long sent, received


cdef class EchoDriver:
    """Connections that each keep ``window`` copies of one pre-masked ``frame`` in
    flight and send a new one per reply (see the module docstring).

    ``request`` is the upgrade request (None: the raw TCP echo, which returns the
    client's own masked frames). Replies whose length or opcode differ from
    ``expect_length``/``expect_opcode`` are counted in ``mismatched``.
    """

    cdef:
        list peers
        int epfd
        bytes batch               # `window` frames back to back
        Py_ssize_t frame_len
        readonly bint running
        readonly long long messages, reads, lost, errors
        readonly str first_error

    def __cinit__(self):
        self.epfd = -1

    def __init__(self, int port, Py_ssize_t connections, bytes frame, Py_ssize_t window, *,
                 bytes request=None, long long expect_length=-1, int expect_opcode=-1,
                 str host="127.0.0.1", double timeout=5.0):
        if connections < 1 or window < 1 or not frame:
            raise ValueError("connections and window must be >= 1 and frame not empty")
        self._prepare(frame, window)
        try:
            for _ in range(connections):
                self._open(port, request, host, timeout, expect_length, expect_opcode)
        except BaseException:
            self.close()
            raise

    def __dealloc__(self):
        if self.epfd >= 0:
            close(self.epfd)

    cdef int _prepare(self, bytes frame, Py_ssize_t window) except -1:
        """The pre-joined batch and the epoll set, before any connection."""
        self.frame_len = len(frame)
        self.batch = frame * window
        self.peers = []
        self.epfd = epoll_create1(EPOLL_CLOEXEC)
        if self.epfd < 0:
            raise OSError(errno, strerror(errno).decode())
        return 0

    cdef _Peer _open(self, int port, bytes request, str host, double timeout,
                     long long expect_length, int expect_opcode):
        """Open, upgrade and watch one more connection."""
        cdef _Peer p = _Peer()
        sock, rest = open_upgraded(port, request, host=host, timeout=timeout)
        p.sock = sock
        sock.setblocking(False)
        p.fd = sock.fileno()
        p.index = <uint32_t>len(self.peers)
        p.group = -1
        p.counter = FrameCounter(expect_length, expect_opcode)
        self.peers.append(p)
        if _watch(self.epfd, EPOLL_CTL_ADD, p.fd, EPOLLIN, p.index) < 0:
            raise OSError(errno, strerror(errno).decode())
        if rest:
            self._received(p, p.counter.feed_ptr(<const uint8_t*>PyBytes_AS_STRING(rest),
                                                 PyBytes_GET_SIZE(rest)))
        return p

    # -- counters over all connections --------------------------------------------

    @property
    def sent(self):
        return sum((<_Peer>p).sent for p in self.peers)

    @property
    def received(self):
        return sum((<_Peer>p).received for p in self.peers)

    @property
    def mismatched(self):
        return sum((<_Peer>p).counter.mismatched for p in self.peers)

    @property
    def in_flight(self):
        return sum((<_Peer>p).sent - (<_Peer>p).received for p in self.peers
                   if not (<_Peer>p).dead)

    # -- run control ----------------------------------------------------------------

    def start(self):
        """Fill every window."""
        cdef _Peer p
        self.running = True
        for p in self.peers:
            self._queue(p, PyBytes_GET_SIZE(self.batch) // self.frame_len)

    def stop(self):
        """Send nothing more; replies in flight are still counted."""
        self.running = False

    def run(self, double seconds):
        """Serve the connections for ``seconds``."""
        cdef epoll_event events[MAX_EVENTS]
        cdef double deadline = _now() + seconds
        cdef int n, i
        cdef _Peer p
        while _now() < deadline and self.epfd >= 0:
            with nogil:  # other threads (a test's server) run while this one waits
                n = epoll_wait(self.epfd, events, MAX_EVENTS, POLL_MS)
            if n < 0 and errno != EINTR:
                raise OSError(errno, strerror(errno).decode())
            for i in range(n if n > 0 else 0):
                p = <_Peer>self.peers[events[i].data.u32]
                if events[i].events & EPOLLOUT:
                    self._flush(p)
                if events[i].events & ~EPOLLOUT:
                    self._read(p)

    def close(self):
        """Drop every connection (the echo workloads end with a plain TCP close)."""
        cdef _Peer p
        for p in self.peers or ():
            if not p.dead:
                p.dead = True
                p.sock.close()
        if self.epfd >= 0:
            close(self.epfd)
            self.epfd = -1

    # -- internals ------------------------------------------------------------------

    cdef void _read(self, _Peer p) except *:
        cdef uint64_t skip
        cdef Py_ssize_t n
        cdef Py_ssize_t k = 0
        # Up to a few reads per readiness event: a read that fills what it asked
        # for may have left more behind.
        for _ in range(4):
            skip = p.counter.skippable()
            if skip:
                n = recv(p.fd, NULL, skip if skip < (1 << 30) else (1 << 30), MSG_TRUNC)
            else:
                n = recv(p.fd, _read_buf, READ_BUF, 0)
            if n <= 0:
                if n == 0 or (errno != EAGAIN and errno != EINTR):
                    self._drop(p, "connection closed by the server" if n == 0 else None)
                break
            self.reads += 1
            k += p.counter.skip(n) if skip else p.counter.feed_ptr(_read_buf, n)
            if p.counter.flags:
                self._control(p)
                if p.dead:
                    return
            if n < (<Py_ssize_t>skip if skip else READ_BUF):
                break
        if k:
            self._received(p, k)

    cdef void _received(self, _Peer p, Py_ssize_t k) except *:
        """``k`` more data messages arrived on ``p``: each is answered with a new one."""
        p.received += k
        self.messages += k
        if self.running:
            self._queue(p, k)

    cdef void _queue(self, _Peer p, Py_ssize_t k) except *:
        if p.dead:
            return
        p.sent += k
        p.pending += k * self.frame_len
        self._flush(p)

    cdef void _flush(self, _Peer p) except *:
        # The batch is `window` equal frames back to back, and at most `window` are
        # ever owed, so the bytes owed are always the batch's last `pending` bytes.
        cdef const char* end = PyBytes_AS_STRING(self.batch) + PyBytes_GET_SIZE(self.batch)
        cdef Py_ssize_t n
        while p.pending:
            n = send(p.fd, end - p.pending, p.pending, MSG_NOSIGNAL)
            if n < 0:
                if errno == EAGAIN or errno == EINTR:
                    break
                self._drop(p, None)
                return
            p.pending -= n
        if (p.pending != 0) != p.want_out:
            p.want_out = p.pending != 0
            _watch(self.epfd, EPOLL_CTL_MOD, p.fd, EPOLLIN | (EPOLLOUT if p.want_out else 0),
                   p.index)

    cdef void _control(self, _Peer p) except *:
        cdef int flags = p.counter.flags
        p.counter.flags = 0
        if flags & F_ERROR:
            self._drop(p, "invalid frame from the server")
        elif flags & F_CLOSE:
            self._drop(p, f"the server closed the connection ({p.counter.close_code})")
        elif flags & F_PING and p.pending == 0:
            # Rare (the echo peers do not ping during a run). Only between frames: a
            # ping that arrives while a frame is half sent goes unanswered (a server
            # waits for a pong far longer than a run lasts).
            pong = masked_frame(p.counter.ping_payload, 10, b"\x00\x00\x00\x00")
            send(p.fd, PyBytes_AS_STRING(pong), PyBytes_GET_SIZE(pong), MSG_NOSIGNAL)

    cdef void _drop(self, _Peer p, str why) except *:
        if p.dead:
            return
        p.dead = True
        self.lost += 1
        self.errors += 1
        if self.first_error is None:
            self.first_error = why if why is not None else strerror(errno).decode()
        p.sock.close()


cdef struct Group:
    Py_ssize_t publisher          # index of its publisher in PubSubDriver.peers
    Py_ssize_t subscribers
    long long published, delivered, forgiven, stalls, seen


cdef class PubSubDriver(EchoDriver):
    """Topics of ``subscribers`` connections each, and one publisher per topic that
    keeps ``window`` pre-masked copies of ``frame`` in flight (``loadgen.TopicPacer``'s
    pacing, in C): a message stops being in flight once deliveries worth one copy
    per subscriber have arrived. The subscribers are counted as the echo replies are
    (``FrameCounter``, payloads of big frames dropped in the kernel).

    ``requests`` holds one upgrade request per topic (the server learns the topic
    from it); the subscribers are opened first, then the publishers. A topic that
    got nothing for ``stall_period`` seconds while messages were in flight has
    them forgiven (counted in ``stalls``), so pacing never stops for good on a
    server that drops messages.
    """

    cdef:
        Group* groups
        Py_ssize_t ngroups, window
        double stall_period, next_check
        readonly long long to_publishers   # data messages a publisher got (none expected)

    def __init__(self, int port, list requests, Py_ssize_t subscribers, bytes frame,
                 Py_ssize_t window, *, long long expect_length=-1, int expect_opcode=-1,
                 double stall_period=2.0, str host="127.0.0.1", double timeout=5.0):
        cdef _Peer p
        cdef Py_ssize_t g
        if not requests or subscribers < 1 or window < 1 or not frame:
            raise ValueError("requests, subscribers, window and frame must not be empty")
        self.window = window
        self.stall_period = stall_period
        self.groups = <Group*>calloc(len(requests), sizeof(Group))
        if self.groups == NULL:
            raise MemoryError()
        self.ngroups = len(requests)
        self._prepare(frame, window)
        try:
            for g in range(self.ngroups):
                self.groups[g].subscribers = subscribers
                for _ in range(subscribers):
                    p = self._open(port, requests[g], host, timeout, expect_length,
                                   expect_opcode)
                    p.group = g
            for g in range(self.ngroups):
                p = self._open(port, requests[g], host, timeout, -1, -1)
                p.group = g
                p.publisher = True
                self.groups[g].publisher = p.index
        except BaseException:
            self.close()
            raise

    def __dealloc__(self):
        free(self.groups)

    # -- counters ---------------------------------------------------------------------

    @property
    def published(self):
        return sum(self.groups[g].published for g in range(self.ngroups))

    @property
    def delivered(self):
        return sum(self.groups[g].delivered for g in range(self.ngroups))

    @property
    def expected(self):
        return sum(self.groups[g].published * self.groups[g].subscribers
                   for g in range(self.ngroups))

    @property
    def stalls(self):
        return sum(self.groups[g].stalls for g in range(self.ngroups))

    @property
    def in_flight(self):
        return sum(self._in_flight(&self.groups[g]) for g in range(self.ngroups))

    def unreached(self, Py_ssize_t topic):
        """How many live subscribers of ``topic`` have received nothing yet."""
        return sum(1 for p in self.peers if (<_Peer>p).group == topic
                   and not (<_Peer>p).publisher and not (<_Peer>p).dead
                   and (<_Peer>p).received == 0)

    # -- run control ------------------------------------------------------------------

    def probe(self, Py_ssize_t topic):
        """Publish one message on ``topic`` outside the counted run (the barrier that
        shows every subscription is in place)."""
        cdef _Peer p
        if not 0 <= topic < self.ngroups:
            raise IndexError(topic)
        p = <_Peer>self.peers[self.groups[topic].publisher]
        if p.pending == 0:
            p.sent += 1
            p.pending = self.frame_len
            self._flush(p)

    def reset(self):
        """Zero the counters (after the probes): every topic starts with nothing in flight."""
        cdef _Peer p
        for g in range(self.ngroups):
            self.groups[g].published = self.groups[g].delivered = 0
            self.groups[g].forgiven = self.groups[g].stalls = self.groups[g].seen = 0
        for p in self.peers:
            p.received = p.sent = 0
        self.messages = self.to_publishers = 0

    def start(self):
        """Fill every topic's window."""
        self.running = True
        self.next_check = _now() + self.stall_period
        for g in range(self.ngroups):
            self._pump(g)

    def run(self, double seconds):
        """Serve the connections for ``seconds``, looking for stalled topics."""
        cdef double now = _now()
        cdef double end = now + seconds
        while now < end and self.epfd >= 0:
            if self.running and now >= self.next_check:
                self._unstick()
                self.next_check = now + self.stall_period
            EchoDriver.run(self, min(end, self.next_check if self.running else end) - now)
            now = _now()

    # -- internals --------------------------------------------------------------------

    cdef long long _in_flight(self, Group* t) noexcept:
        return t.published - t.forgiven - t.delivered // t.subscribers

    cdef void _received(self, _Peer p, Py_ssize_t k) except *:
        if p.publisher:
            self.to_publishers += k
            return
        p.received += k
        self.messages += k
        self.groups[p.group].delivered += k
        if self.running:
            self._pump(p.group)

    cdef void _pump(self, Py_ssize_t g) except *:
        cdef Group* t = &self.groups[g]
        cdef long long free_ = self.window - self._in_flight(t)
        cdef _Peer p = <_Peer>self.peers[t.publisher]
        if free_ > 0 and not p.dead:
            t.published += free_
            self._queue(p, free_)

    cdef void _unstick(self) except *:
        cdef Group* t
        for g in range(self.ngroups):
            t = &self.groups[g]
            if t.delivered == t.seen and self._in_flight(t) > 0:
                t.stalls += 1
                t.forgiven = t.published - t.delivered // t.subscribers
                self._pump(g)
            t.seen = t.delivered

# cython: language_level=3
"""The server's hub: the open connections of one server and their topics.

``Hub`` is the ``Outbox`` of every connection of a server (the clock and the flush list,
see endpoint.pyx), plus what a server's connections share above the protocol: the event
loop and its thread (calls from other threads hop onto it), the registry of open
connections (a list where each knows its slot), and the topic index with ``publish``.

The topic index is two-way: topic -> subscribers (an insertion-ordered dict used as an
ordered set) and connection -> topics (``Endpoint._topics``), so unsubscribing a closing
connection costs O(its topics) and an empty topic is freed at once. ``publish`` builds
one immutable frame and hands the same bytes to every subscriber's cork; each subscriber
is then written once per loop iteration however many publishes hit it.

With a backplane (``hub.backplane``, set by the server when workers or machines share
topics) the hub tells it when a topic gains its first and loses its last local
subscriber, and forwards every local publish to it after local delivery; messages from
elsewhere come back through ``publish_local``. Local delivery never waits on it.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.pythread cimport PyThread_get_thread_ident

from xyra._core.debug cimport XYRA_DEBUG
from xyra._core.endpoint cimport message_payload
from xyra._core.frames cimport OP_BINARY, OP_TEXT, make_frame


cdef class Topic:
    """One topic's subscribers (an insertion-ordered set)."""

    def __init__(self, str name):
        self.name = name
        self.subs = {}


cdef class Hub(Outbox):
    """What the connections of one server share (see the module docstring)."""

    def __init__(self, loop, log):
        Outbox.__init__(self, loop.call_soon, log, loop.time())
        self.loop = loop
        self.thread_id = <long>PyThread_get_thread_ident()
        self.handshaking = set()
        self.sockets = []
        self.per_ip = {}
        self.topics = {}
        self.backplane = None
        self.gate = None

    cdef bint on_loop_thread(self) noexcept:
        return <long>PyThread_get_thread_ident() == self.thread_id

    # -- the open connections ----------------------------------------------------------------

    cdef int add_socket(self, Endpoint ep) except -1:
        ep.slot = len(self.sockets)
        self.sockets.append(ep)
        return 0

    cdef int remove_socket(self, Endpoint ep) except -1:
        # Swap with the last one: O(1), and 8 bytes per connection instead of a set's 50-100.
        cdef Py_ssize_t i = ep.slot
        cdef Endpoint last
        if i < 0 or i >= len(self.sockets) or self.sockets[i] is not ep:
            if XYRA_DEBUG:
                if ep in self.sockets:
                    raise AssertionError(f"hub slot bookkeeping broken: {ep!r} at slot {i}")
            return 0
        last = <Endpoint>self.sockets[len(self.sockets) - 1]
        self.sockets[i] = last
        last.slot = i
        self.sockets.pop()
        ep.slot = -1
        if XYRA_DEBUG:
            self.check_slots()
        return 0

    cdef int check_slots(self) except -1:
        """Every open connection knows its index in ``sockets`` (debug builds check it)."""
        cdef Py_ssize_t i
        for i in range(len(self.sockets)):
            if (<Endpoint>self.sockets[i]).slot != i:
                raise AssertionError(
                    f"hub slot bookkeeping broken: sockets[{i}] has slot "
                    f"{(<Endpoint>self.sockets[i]).slot}")
        return 0

    cdef int release_ip(self, object ip) except -1:
        cdef Py_ssize_t left = self.per_ip.get(ip, 1) - 1
        if left > 0:
            self.per_ip[ip] = left
        else:
            self.per_ip.pop(ip, None)
        return 0

    # -- topics ------------------------------------------------------------------------------

    cdef int subscribe(self, Endpoint ep, str topic) except -1:
        """Add ``ep`` to ``topic``: the new subscriber count, or 0 if it was subscribed."""
        cdef dict mine = ep.topic_map()
        cdef Topic t
        if topic in mine:
            return 0
        t = self.topics.get(topic)
        if t is None:
            t = Topic(topic)
            self.topics[topic] = t
            if self.backplane is not None:
                self.backplane.topic_added(topic)
        t.subs[ep] = None
        mine[topic] = t
        return len(t.subs)

    cdef int unsubscribe(self, Endpoint ep, str topic) except -1:
        """Remove ``ep`` from ``topic``: the subscriber count before, or 0 if not subscribed."""
        cdef Topic t
        cdef Py_ssize_t old
        if ep._topics is None:
            return 0
        t = ep._topics.pop(topic, None)
        if t is None:
            return 0
        old = len(t.subs)
        self._remove(ep, t)
        return old

    cdef list unsubscribe_all(self, Endpoint ep):
        """Remove ``ep`` from every topic: [(topic, count before)], or None."""
        cdef dict mine = ep._topics
        cdef list done
        cdef Topic t
        if not mine:
            return None
        ep._topics = None
        done = []
        for obj in mine.values():
            t = <Topic>obj
            done.append((t.name, len(t.subs)))
            self._remove(ep, t)
        return done

    cdef int _remove(self, Endpoint ep, Topic t) except -1:
        del t.subs[ep]
        if not t.subs:
            del self.topics[t.name]
            if self.backplane is not None:
                self.backplane.topic_removed(t.name)
        return 0

    cpdef int publish(self, str topic, object message, object opcode=None, bint compress=False,
                      Endpoint exclude=None) except -1:
        """Queue ``message`` for every subscriber of ``topic`` (but ``exclude``).

        Returns how many local subscribers it was queued for. From another thread it
        hops onto the loop and returns 0 at once. With a backplane, the message is also
        forwarded to the other workers and machines, after local delivery.
        """
        cdef const char* p
        cdef Py_ssize_t n
        cdef int op
        cdef int count
        # Validate and take the bytes now, in the caller's thread: errors raise there,
        # and a buffer the caller reuses right after the call is not read later.
        message = message_payload(message, opcode, &p, &n, &op)
        if op != OP_TEXT and op != OP_BINARY:
            raise ValueError("publish sends TEXT or BINARY messages")
        if not self.on_loop_thread():
            self.loop.call_soon_threadsafe(self.publish, topic, message, op, compress, exclude)
            return 0
        count = self.deliver_local(topic, <const unsigned char*>p, n, op, compress, exclude)
        if self.backplane is not None:
            self.backplane.forward(topic, message, op, compress)
        return count

    def publish_local(self, str topic, object message, object opcode=None,
                      bint compress=False) -> int:
        """Deliver a message from elsewhere (the backplane) to the local subscribers only.

        Bytes with opcode TEXT must be valid UTF-8 (checked here, in C).
        """
        cdef const char* p
        cdef Py_ssize_t n
        cdef int op
        message = message_payload(message, opcode, &p, &n, &op)
        if op != OP_TEXT and op != OP_BINARY:
            raise ValueError("publish sends TEXT or BINARY messages")
        return self.deliver_local(topic, <const unsigned char*>p, n, op, compress, None)

    cdef int deliver_local(self, str topic, const unsigned char* p, Py_ssize_t n, int op,
                           bint compress, Endpoint exclude) except -1:
        cdef Topic t = self.topics.get(topic)
        cdef bytes frame
        cdef const unsigned char* fp
        cdef Py_ssize_t fl
        cdef int count = 0
        if t is None:
            return 0
        if compress:
            return self._publish_compressed(t, op, p, n, exclude)
        frame = make_frame(op, p, n, False)
        fp = <const unsigned char*>PyBytes_AS_STRING(frame)
        fl = PyBytes_GET_SIZE(frame)
        for ep in t.subs:
            if ep is exclude:
                continue
            count += (<Endpoint>ep).queue_frame(fp, fl, frame)
        return count

    cdef int _publish_compressed(self, Topic t, int op, const unsigned char* p, Py_ssize_t n,
                                 Endpoint exclude) except -1:
        """Each variant of the frame is built at most once: plain, and compressed per window.

        Subscribers with a dedicated compression window compress for themselves: their
        peer's window holds their own stream, so a shared frame cannot stand in for it.
        """
        cdef bytes plain = None
        cdef dict packed = None      # window bits -> compressed frame, or None if no gain
        cdef bytes frame
        cdef object built
        cdef Endpoint w
        cdef int count = 0
        for ep in t.subs:
            if ep is exclude:
                continue
            w = <Endpoint>ep
            if w.deflate_mode and n >= w.route.compression_threshold:
                if w.deflate_mode == 2:
                    w.send_message(op, p, n, None, True)
                    count += 1
                    continue
                if packed is None:
                    packed = {}
                if w.deflate_bits in packed:
                    built = packed[w.deflate_bits]
                else:
                    frame = self.shared_deflater(w.deflate_bits).compress(p, n, True)
                    built = None if frame is None else make_frame(
                        op, <const unsigned char*>PyBytes_AS_STRING(frame),
                        PyBytes_GET_SIZE(frame), True)
                    packed[w.deflate_bits] = built
                if built is not None:
                    count += w.queue_frame(<const unsigned char*>PyBytes_AS_STRING(built),
                                           PyBytes_GET_SIZE(built), built)
                    continue
            if plain is None:
                plain = make_frame(op, p, n, False)
            count += w.queue_frame(<const unsigned char*>PyBytes_AS_STRING(plain),
                                   PyBytes_GET_SIZE(plain), plain)
        return count

    def num_subscribers(self, str topic) -> int:
        """How many local connections are subscribed to ``topic``."""
        cdef Topic t = self.topics.get(topic)
        return 0 if t is None else len(t.subs)

    def topic_names(self) -> list:
        """The topics with at least one local subscriber."""
        return list(self.topics)

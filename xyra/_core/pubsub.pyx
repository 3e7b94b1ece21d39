# cython: language_level=3
"""Topic fan-out: a two-way index and publish that frames each message once.

topic -> subscribers (an insertion-ordered dict used as an ordered set) and
connection -> topics (``WebSocket._topics``), so unsubscribing a closing connection
costs O(its topics) and an empty topic is freed at once. ``publish`` builds one
immutable frame and hands the same bytes to every subscriber's cork; each
subscriber is then written once per loop iteration however many publishes hit it.
"""

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.pythread cimport PyThread_get_thread_ident

from xyra._core.connection cimport Hub, WebSocket, message_payload
from xyra._core.frames cimport OP_BINARY, OP_TEXT, make_frame



cdef class Topic:
    cdef readonly str name
    cdef dict subs

    def __init__(self, str name):
        self.name = name
        self.subs = {}


cdef class PubSubHub(Hub):
    """The server's hub with the topic index."""

    cdef dict topics
    # None, or the worker's backplane (xyra.backplane): told when a topic gets its first
    # local subscriber and loses its last one, and handed every local publish after
    # local delivery. With none configured, publish pays one ``is None`` test.
    cdef public object backplane

    cdef int _deliver(self, str topic, const char* p, Py_ssize_t n, int op, bint compress,
                      WebSocket exclude) except -1
    cdef int _publish_compressed(self, Topic t, int op, const unsigned char* p, Py_ssize_t n,
                                 WebSocket exclude) except -1

    def __init__(self, loop, log):
        Hub.__init__(self, loop, log)
        self.topics = {}
        self.backplane = None

    cdef int subscribe(self, WebSocket ws, str topic) except -1:
        cdef dict mine = ws.topic_map()
        cdef Topic t
        cdef Py_ssize_t old
        if topic in mine:
            return 0
        t = self.topics.get(topic)
        if t is None:
            t = Topic(topic)
            self.topics[topic] = t
            if self.backplane is not None:
                self.backplane.topic_added(topic)
        old = len(t.subs)
        t.subs[ws] = None
        mine[topic] = t
        if ws.route.subscription is not None:
            ws.call(ws.route.subscription, False, (ws, topic, old + 1, old))
        return 1

    cdef int unsubscribe(self, WebSocket ws, str topic) except -1:
        cdef Topic t
        if ws._topics is None:
            return 0
        t = ws._topics.pop(topic, None)
        if t is None:
            return 0
        self._remove(ws, t)
        return 1

    cdef int _remove(self, WebSocket ws, Topic t) except -1:
        cdef Py_ssize_t old = len(t.subs)
        del t.subs[ws]
        if not t.subs:
            del self.topics[t.name]
            if self.backplane is not None:
                self.backplane.topic_removed(t.name)
        if ws.route.subscription is not None:
            ws.call(ws.route.subscription, False, (ws, t.name, old - 1, old))
        return 0

    cdef int unsubscribe_all(self, WebSocket ws) except -1:
        cdef dict mine = ws._topics
        if not mine:
            return 0
        ws._topics = None
        for t in mine.values():
            self._remove(ws, <Topic>t)
        return 0

    cpdef int publish(self, str topic, object message, object opcode=None, bint compress=False,
                      WebSocket exclude=None) except -1:
        """Queue ``message`` for every subscriber of ``topic`` (but ``exclude``).

        Returns how many subscribers it was queued for here. From another thread it hops
        onto the loop and returns 0 at once. With a backplane, the message then goes to
        the other workers and machines (never waiting on them).
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
        if <long>PyThread_get_thread_ident() != self.thread_id:
            self.loop.call_soon_threadsafe(self.publish, topic, message, op, compress, exclude)
            return 0
        count = self._deliver(topic, p, n, op, compress, exclude)
        if self.backplane is not None:
            self.backplane.forward(topic, message, op, compress)
        return count

    def publish_local(self, str topic, object message, object opcode=None,
                      bint compress=False) -> int:
        """Deliver to this worker's subscribers only: a message from the backplane.

        Loop thread only; never forwarded again. Bytes with opcode TEXT must be UTF-8.
        """
        cdef const char* p
        cdef Py_ssize_t n
        cdef int op
        message = message_payload(message, opcode, &p, &n, &op)
        if op != OP_TEXT and op != OP_BINARY:
            raise ValueError("publish sends TEXT or BINARY messages")
        return self._deliver(topic, p, n, op, compress, None)

    cdef int _deliver(self, str topic, const char* p, Py_ssize_t n, int op, bint compress,
                      WebSocket exclude) except -1:
        cdef Topic t = self.topics.get(topic)
        cdef bytes frame
        cdef const unsigned char* fp
        cdef Py_ssize_t fl
        cdef int count = 0
        if t is None:
            return 0
        if compress:
            return self._publish_compressed(t, op, <const unsigned char*>p, n, exclude)
        frame = make_frame(op, <const unsigned char*>p, n, False)
        fp = <const unsigned char*>PyBytes_AS_STRING(frame)
        fl = PyBytes_GET_SIZE(frame)
        for ws in t.subs:
            if ws is exclude:
                continue
            count += (<WebSocket>ws).queue_frame(fp, fl, frame)
        return count

    cdef int _publish_compressed(self, Topic t, int op, const unsigned char* p, Py_ssize_t n,
                                 WebSocket exclude) except -1:
        """Each variant of the frame is built at most once: plain, and compressed per window.

        Subscribers with a dedicated compression window compress for themselves: their
        peer's window holds their own stream, so a shared frame cannot stand in for it.
        """
        cdef bytes plain = None
        cdef dict packed = None      # window bits -> compressed frame, or None if no gain
        cdef bytes frame
        cdef object built
        cdef WebSocket w
        cdef int count = 0
        for ws in t.subs:
            if ws is exclude:
                continue
            w = <WebSocket>ws
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
        cdef Topic t = self.topics.get(topic)
        return 0 if t is None else len(t.subs)

    def topic_names(self) -> list:
        return list(self.topics)

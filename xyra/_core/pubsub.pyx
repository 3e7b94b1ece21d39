# cython: language_level=3
"""The server's hub: the open connections of one server and their topics.

``Hub`` is the ``Outbox`` of every connection of a server (the clock and the flush list,
see endpoint.pyx), plus what a server's connections share above the protocol: the event
loop and its thread (calls from other threads hop onto it), the registry of open
connections (a list where each knows its slot), and the topic index with ``publish``.

The topic index is two-way: topic -> subscribers (an insertion-ordered dict used as an
ordered set) and connection -> topics (``Endpoint._topics``), so unsubscribing a closing
connection costs O(its topics) and an empty topic is freed at once.

Publishes are batched per loop iteration, the way uWebSockets' TopicTree drains:
``publish`` builds one immutable frame and records it on its topic; at the iteration's
flush (``deliver_topics``) each topic's frames are joined once into one batch, and every
subscriber that takes all of them gets that same bytes object, in one write. The
per-subscriber work is then one write per iteration, whatever the number of messages.
The exceptions get their share one frame at a time, in publish order across topics
(``_give``): a subscriber excluded from some message (``ws.publish`` skips the sender),
one with several topics published to in the iteration, one that must get its share
early because something else is about to be queued for it (a send, a close, a
subscription change: ``drain_for``), and one over its backpressure limit, whose frames
are dropped exactly as a frame-by-frame publish would. Compressed publishes are not
batched: they first deliver the pending batches, then queue their variants directly.

With a backplane (``hub.backplane``, set by the server when workers or machines share
topics) the hub tells it when a topic gains its first and loses its last local
subscriber, and forwards every local publish to it after local delivery; messages from
elsewhere come back through ``publish_local``. Local delivery never waits on it.
"""

from heapq import nlargest

from cpython.bytes cimport PyBytes_AS_STRING, PyBytes_GET_SIZE
from cpython.pythread cimport PyThread_get_thread_ident

from xyra._core.debug cimport XYRA_DEBUG
from xyra._core.endpoint cimport OPEN, message_payload
from xyra._core.frames cimport OP_BINARY, OP_TEXT, make_frame
from xyra._core.stats cimport frame_payload, u64

from xyra.enums import SendStatus

cdef object DROPPED = SendStatus.DROPPED


# A topic's pending batch is delivered early when it would grow past these, so a burst
# of publishes in one iteration never joins more than this into one batch.
cdef enum:
    BATCH_BYTES = 262144
    BATCH_FRAMES = 1024


def _first(tuple item):
    return item[0]


cdef class Topic:
    """One topic's subscribers (an insertion-ordered set), and its pending publishes."""

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
        self.hot = []
        self.seq = 0
        self.backplane = None
        self.gate = None

    cdef bint on_loop_thread(self) noexcept:
        return <long>PyThread_get_thread_ident() == self.thread_id

    # -- the open connections ----------------------------------------------------------------

    cdef int add_socket(self, Endpoint ep) except -1:
        ep.slot = len(self.sockets)
        self.sockets.append(ep)
        # live stats: the 101 went out (the handshake was accepted)
        self.stats.handshakes_accepted += 1
        ep.route.connections += 1
        ep.route.accepted += 1
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
        ep.route.connections -= 1  # live stats
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
        if self.pending:
            # Its share of what was published before goes first; from the new topic it
            # gets only what is published from now on.
            self.drain_for(ep)
            if self.partial is None:
                self.partial = {}
            self.partial[ep] = self.seq
        t = self.topics.get(topic)
        if t is None:
            t = Topic(topic)
            self.topics[topic] = t
            if self.backplane is not None:
                self.backplane.topic_added(topic)
        t.subs[ep] = None
        mine[topic] = t
        self.stats.subscriptions += 1  # live stats
        return len(t.subs)

    cdef int unsubscribe(self, Endpoint ep, str topic) except -1:
        """Remove ``ep`` from ``topic``: the subscriber count before, or 0 if not subscribed."""
        cdef Topic t
        cdef Py_ssize_t old
        if ep._topics is None:
            return 0
        if self.pending and topic in ep._topics:
            self.drain_for(ep)  # what it was published before leaving, it still gets
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
        self.stats.subscriptions -= 1  # live stats
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
        self.stats.publishes += 1  # live stats
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
        self.stats.publishes_remote += 1  # live stats
        return self.deliver_local(topic, <const unsigned char*>p, n, op, compress, None)

    cdef int deliver_local(self, str topic, const unsigned char* p, Py_ssize_t n, int op,
                           bint compress, Endpoint exclude) except -1:
        """Publish to the local subscribers: how many it is for (``exclude`` aside).

        The frame is recorded on the topic and delivered at the iteration's flush
        (``deliver_topics``); compressed messages are queued at once, after the batches.
        """
        cdef Topic t = self.topics.get(topic)
        cdef bytes frame
        cdef Py_ssize_t fl
        cdef Py_ssize_t count
        cdef list seqs
        if t is None:
            return 0
        count = len(t.subs)
        if exclude is not None and exclude in t.subs:
            count -= 1
        t.published += 1  # live stats
        if compress:
            if self.pending:
                self.deliver_topics()
            count = self._publish_compressed(t, op, p, n, exclude)
            t.delivered += count
            self.stats.deliveries += count
            return count
        frame = make_frame(op, p, n, False)
        fl = PyBytes_GET_SIZE(frame)
        if t.frames is not None and (t.nbytes + fl > BATCH_BYTES or len(t.frames) >= BATCH_FRAMES):
            self.deliver_topics()
        if t.frames is None:
            t.frames = [frame]
            t.seqs = [self.seq]
            t.nbytes = fl
            self.hot.append(t)
            if not self.pending:
                self.pending = True
                self.schedule()
        else:
            t.frames.append(frame)
            t.seqs.append(self.seq)
            t.nbytes += fl
        # live stats of the batch, added once per subscriber that takes it whole
        if op == OP_TEXT:
            t.batch_text += 1
            t.batch_text_bytes += n
        else:
            t.batch_binary_bytes += n
        if exclude is not None and count < len(t.subs):
            if self.excluded is None:
                self.excluded = {}
            seqs = self.excluded.get(exclude)
            if seqs is None:
                self.excluded[exclude] = [self.seq]
            else:
                seqs.append(self.seq)
        self.seq += 1
        return count

    cdef int deliver_topics(self) except -1:
        """Deliver every pending publish (the iteration's flush, or earlier when needed).

        Per topic the frames are joined once; a subscriber that takes them all gets that
        bytes object (``Endpoint.take_batch``: one write, or behind its corked output).
        The others, collected in ``special``, get their share in publish order across
        all their topics (``_give``).
        """
        cdef list hot = self.hot
        cdef dict excluded = self.excluded
        cdef dict partial = self.partial
        cdef dict special = None
        cdef object only = None          # the one excluded endpoint, the usual case
        cdef Topic t, other
        cdef Endpoint ep
        cdef object batch
        cdef Py_ssize_t last
        cdef bint busy
        cdef Py_ssize_t whole
        if not self.pending:
            return 0
        self.pending = False
        self.hot = []
        self.excluded = None
        self.partial = None
        self.seq = 0
        if excluded is not None and len(excluded) == 1:
            for obj in excluded:
                only = obj
        try:
            for obj in hot:
                t = <Topic>obj
                batch = t.frames[0] if len(t.frames) == 1 else b"".join(t.frames)
                last = PyBytes_GET_SIZE(t.frames[len(t.frames) - 1])
                whole = 0
                for sub in t.subs:
                    ep = <Endpoint>sub
                    if sub is only or (partial is not None and sub in partial) or (
                            only is None and excluded is not None and sub in excluded):
                        busy = True
                    elif len(ep._topics) > 1:
                        # Another of its topics published to as well: one merged order.
                        busy = False
                        for o in ep._topics.values():
                            other = <Topic>o
                            if other is not t and other.frames is not None:
                                busy = True
                                break
                    else:
                        busy = False
                    if busy:
                        if special is None:
                            special = {}
                        special[sub] = None
                    elif ep.state == OPEN:
                        if ep.take_batch(batch, t.nbytes, last):
                            self._one_by_one(ep, t)  # over its limit: frame by frame
                        else:
                            whole += 1
                if whole:
                    self._count_batch(t, whole)
            if special is not None:
                # _give reads the pending state: put back what it needs.
                self.excluded = excluded
                for sub in special:
                    self._give(<Endpoint>sub, partial.get(sub, 0) if partial is not None else 0)
        finally:
            self.excluded = None
            for obj in hot:
                t = <Topic>obj
                t.frames = None
                t.seqs = None
                t.nbytes = 0
                t.batch_text = 0
                t.batch_text_bytes = t.batch_binary_bytes = 0
        return 0

    cdef int _count_batch(self, Topic t, Py_ssize_t whole) except -1:
        """Live stats: ``whole`` subscribers took ``t``'s pending batch, every frame of it."""
        cdef u64 k = <u64>whole
        cdef u64 frames = <u64>len(t.frames)
        self.stats.deliveries += k * frames
        t.delivered += k * frames
        self.stats.messages_out[OP_TEXT] += k * <u64>t.batch_text
        self.stats.messages_out[OP_BINARY] += k * (frames - <u64>t.batch_text)
        self.stats.bytes_out[OP_TEXT] += k * t.batch_text_bytes
        self.stats.bytes_out[OP_BINARY] += k * t.batch_binary_bytes
        return 0

    cdef int _queue_counted(self, Endpoint ep, Topic t, bytes frame) except -1:
        """Queue one published frame for ``ep``, and count the delivery if it was queued."""
        if self._queue_out(ep, frame):
            self.stats.deliveries += 1
            t.delivered += 1
        return 0

    cdef int _queue_out(self, Endpoint ep, bytes frame) except -1:
        """Queue one built frame for ``ep``: 1 if queued, counted as sent (live stats)."""
        cdef const unsigned char* fp = <const unsigned char*>PyBytes_AS_STRING(frame)
        cdef Py_ssize_t fl = PyBytes_GET_SIZE(frame)
        if not ep.queue_published(fp, fl, frame):
            return 0
        self.stats.messages_out[fp[0] & 15] += 1
        self.stats.bytes_out[fp[0] & 15] += frame_payload(fp, fl)
        return 1

    cdef int drain_for(self, Endpoint ep) except -1:
        """Give ``ep`` its share of the pending publishes now: something else (a send, a
        close frame, a subscription change) is about to be queued for it."""
        cdef Py_ssize_t since = 0
        if not self.pending or not ep._topics:
            return 0
        if self.partial is None:
            self.partial = {}
        else:
            since = self.partial.get(ep, 0)
        self._give(ep, since)
        self.partial[ep] = self.seq
        return 0

    cdef int _give(self, Endpoint ep, Py_ssize_t since) except -1:
        """Queue ``ep``'s pending frames from sequence number ``since`` on, in publish
        order across its topics, without those it is excluded from."""
        cdef list mine = None
        cdef list skip = None
        cdef Topic t
        cdef Py_ssize_t i, seq
        if ep._topics is None:
            return 0
        if self.excluded is not None:
            skip = self.excluded.get(ep)
        for obj in ep._topics.values():
            t = <Topic>obj
            if t.frames is None:
                continue
            for i in range(len(t.seqs)):
                seq = t.seqs[i]
                if seq >= since and (skip is None or seq not in skip):
                    if mine is None:
                        mine = []
                    mine.append((seq, t.frames[i], t))
        if mine is None:
            return 0
        if len(mine) > 1:
            mine.sort(key=_first)
        for item in mine:
            self._queue_counted(ep, <Topic>(<tuple>item)[2], <bytes>(<tuple>item)[1])
        return 0

    cdef int _one_by_one(self, Endpoint ep, Topic t) except -1:
        for frame in t.frames:
            self._queue_counted(ep, t, <bytes>frame)
        return 0

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
                    # send_frame counts what it sends (live stats)
                    if w.send_message(op, p, n, None, True) is not DROPPED:
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
                    if frame is not None:  # live stats: one compression per window size
                        self.stats.deflate_in += n
                        self.stats.deflate_out += PyBytes_GET_SIZE(frame)
                if built is not None:
                    count += self._queue_out(w, <bytes>built)
                    continue
            if plain is None:
                plain = make_frame(op, p, n, False)
            count += self._queue_out(w, plain)
        return count

    def num_subscribers(self, str topic) -> int:
        """How many local connections are subscribed to ``topic``."""
        cdef Topic t = self.topics.get(topic)
        return 0 if t is None else len(t.subs)

    def topic_names(self) -> list:
        """The topics with at least one local subscriber."""
        return list(self.topics)

    def topic_count(self) -> int:
        """How many topics have a local subscriber."""
        return len(self.topics)

    def top_topics(self, Py_ssize_t n) -> dict:
        """Live stats of the busiest topics: the ``n`` with the most subscribers and the
        ``n`` with the most deliveries, as ``{topic: (subscribers, publishes, deliveries)}``.

        O(topics) per call: it runs when the stats are read, never per message.
        """
        cdef Topic t
        if n <= 0 or not self.topics:
            return {}
        topics = self.topics.values()
        chosen = nlargest(n, topics, key=_subscriber_count)
        chosen += nlargest(n, topics, key=_delivered)
        out = {}
        for obj in chosen:
            t = <Topic>obj
            out[t.name] = (len(t.subs), t.published, t.delivered)
        return out


def _subscriber_count(Topic t):
    return len(t.subs)


def _delivered(Topic t):
    return t.delivered

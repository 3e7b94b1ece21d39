# The server's hub: what the connections of one server share (see pubsub.pyx).
from xyra._core.endpoint cimport Endpoint, Outbox


cdef class Topic:
    cdef readonly str name
    cdef dict subs                   # Endpoint -> None: an insertion-ordered set
    # live stats: publishes that found this topic, and the deliveries they made
    cdef readonly unsigned long long published, delivered
    # This iteration's publishes, delivered by Hub.deliver_topics (frames None: none)
    cdef list frames                 # the frames, in publish order
    cdef list seqs                   # their sequence numbers in the iteration (Hub.seq)
    cdef Py_ssize_t nbytes           # their total size
    cdef Py_ssize_t batch_text       # live stats: how many of them are TEXT
    cdef unsigned long long batch_text_bytes, batch_binary_bytes  # and their payload bytes


cdef class Hub(Outbox):
    cdef public object loop
    cdef public long thread_id
    cdef public set handshaking      # HTTP-phase protocols (few, short-lived)
    cdef public list sockets         # open connections; each knows its slot (no set per conn)
    cdef public dict per_ip          # remote host -> open connections (when limited)
    cdef public object backplane     # None, or the worker's link to other processes
    cdef public object gate          # the server's Gate (connection.pxd), or None
    cdef dict topics                 # name -> Topic
    # The publishes of this iteration (see deliver_topics)
    cdef list hot                    # the topics with frames, in order
    cdef Py_ssize_t seq              # the next publish's sequence number
    cdef dict excluded               # Endpoint -> [seq] it must not get (the sender), or None
    cdef dict partial                # Endpoint -> first seq it has not been given, or None

    cdef bint on_loop_thread(self) noexcept
    cdef int add_socket(self, Endpoint ep) except -1
    cdef int remove_socket(self, Endpoint ep) except -1
    cdef int release_ip(self, object ip) except -1
    cdef int check_slots(self) except -1
    cdef int subscribe(self, Endpoint ep, str topic) except -1
    cdef int unsubscribe(self, Endpoint ep, str topic) except -1
    cdef list unsubscribe_all(self, Endpoint ep)
    cdef int _remove(self, Endpoint ep, Topic t) except -1
    cpdef int publish(self, str topic, object message, object opcode=*, bint compress=*,
                      Endpoint exclude=*) except -1
    cdef int deliver_local(self, str topic, const unsigned char* p, Py_ssize_t n, int op,
                           bint compress, Endpoint exclude) except -1
    cdef int _publish_compressed(self, Topic t, int op, const unsigned char* p, Py_ssize_t n,
                                 Endpoint exclude) except -1
    cdef int deliver_topics(self) except -1
    cdef int drain_for(self, Endpoint ep) except -1
    cdef int _give(self, Endpoint ep, Py_ssize_t since) except -1
    cdef int _one_by_one(self, Endpoint ep, Topic t) except -1
    cdef int _count_batch(self, Topic t, Py_ssize_t whole) except -1
    cdef int _queue_counted(self, Endpoint ep, Topic t, bytes frame) except -1
    cdef int _queue_out(self, Endpoint ep, bytes frame) except -1

# The server's hub: what the connections of one server share (see pubsub.pyx).
from xyra._core.endpoint cimport Endpoint, Outbox


cdef class Topic:
    cdef readonly str name
    cdef dict subs                   # Endpoint -> None: an insertion-ordered set


cdef class Hub(Outbox):
    cdef public object loop
    cdef public long thread_id
    cdef public set handshaking      # HTTP-phase protocols (few, short-lived)
    cdef public list sockets         # open connections; each knows its slot (no set per conn)
    cdef public dict per_ip          # remote host -> open connections (when limited)
    cdef public object backplane     # None, or the worker's link to other processes
    cdef public object gate          # the server's Gate (connection.pxd), or None
    cdef dict topics                 # name -> Topic

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

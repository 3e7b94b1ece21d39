# The counters of one server, kept in C (docs/observability.md lists what each one means).
#
# One XyraStats is embedded in each Outbox (the Hub of a server), so every endpoint reaches
# it through `self.hub` with no pointer of its own: an increment is one C add on memory the
# hot path has in cache anyway, and no Python object is made for it. Reading them (a
# snapshot, at most once a second or so) is the cold path: Outbox.counters() in endpoint.pyx,
# then xyra/stats.py builds the documented schema.
#
# Only the event loop's thread writes them (every caller holds the GIL and runs on the loop),
# so plain adds are exact; a snapshot taken on the loop sees a consistent set.

ctypedef unsigned long long u64

cdef enum:
    REFUSED_MIN = 400         # refused handshakes are counted by status 400..599
    REFUSED_SLOTS = 201       # one per status, and the last for any other status
    CLOSE_SLOTS = 7           # 1000, 1001, 1006, 1008, 1009, 1011, other
    OPCODE_SLOTS = 16         # by the frame's opcode (the low 4 bits): no branch to count
    LAG_BOUNDS = 12           # the loop-lag histogram's bounds (LAG_BUCKETS, endpoint.pyx)
    LAG_WINDOW = 512          # recent loop-lag samples kept for the percentiles


ctypedef struct XyraStats:
    u64 handshakes_accepted
    u64 handshakes_refused[REFUSED_SLOTS]
    u64 handshake_timeouts
    u64 closes[CLOSE_SLOTS]
    # data messages and their payload bytes as on the wire (compressed if they were)
    u64 messages_in[OPCODE_SLOTS]
    u64 bytes_in[OPCODE_SLOTS]
    u64 messages_out[OPCODE_SLOTS]
    u64 bytes_out[OPCODE_SLOTS]
    u64 dropped_messages        # refused for backpressure (SendStatus.DROPPED)
    u64 dropped_bytes
    u64 backpressure_closed     # connections dropped: close_on_backpressure_limit
    u64 deflate_in              # message bytes given to deflate (messages sent compressed)
    u64 deflate_out
    u64 inflate_in              # compressed message bytes received and inflated
    u64 inflate_out
    u64 publishes               # publish() on this server
    u64 publishes_remote        # messages from the backplane delivered here
    u64 deliveries              # messages queued for a subscriber by a publish
    long long subscriptions     # (connection, topic) pairs now
    u64 rate_dropped            # messages dropped by a rate limit (rate_limit_close=False)
    u64 rate_closed             # connections closed with 1008 by a rate limit
    # loop lag: how late a periodic timer fired (seconds)
    u64 lag_counts[LAG_BOUNDS + 1]   # per bucket (not cumulative); the last is over them all
    u64 lag_count
    double lag_sum
    double lag_max
    double lag_window[LAG_WINDOW]    # a ring of the last samples: lag_count % LAG_WINDOW


cdef inline int close_slot(int code) noexcept:
    """The `closes` slot of a close code."""
    if code == 1000:
        return 0
    if code == 1001:
        return 1
    if code == 1006:
        return 2
    if code == 1008:
        return 3
    if code == 1009:
        return 4
    if code == 1011:
        return 5
    return 6


cdef inline int refused_slot(int status) noexcept:
    """The `handshakes_refused` slot of an HTTP status."""
    if REFUSED_MIN <= status < REFUSED_MIN + REFUSED_SLOTS - 1:
        return status - REFUSED_MIN
    return REFUSED_SLOTS - 1


cdef inline Py_ssize_t frame_payload(const unsigned char* frame, Py_ssize_t length) noexcept:
    """The payload length of a complete server frame of ``length`` bytes.

    A server frame is unmasked: 2 header bytes, 4 with a 16-bit length, 10 with a 64-bit one.
    """
    cdef unsigned char code = frame[1] & 0x7F
    return length - (2 if code < 126 else 4 if code == 126 else 10)

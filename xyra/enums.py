"""The enums of the public API: opcodes, close codes and send results."""

from enum import IntEnum


class OpCode(IntEnum):
    """WebSocket frame opcodes (RFC 6455 section 5.2)."""

    CONTINUATION = 0
    TEXT = 1
    BINARY = 2
    CLOSE = 8
    PING = 9
    PONG = 10


class CloseCode(IntEnum):
    """Close status codes (RFC 6455 section 7.4.1)."""

    NORMAL_CLOSURE = 1000
    GOING_AWAY = 1001
    PROTOCOL_ERROR = 1002
    UNSUPPORTED_DATA = 1003
    NO_STATUS_RCVD = 1005
    ABNORMAL_CLOSURE = 1006
    INVALID_PAYLOAD = 1007
    POLICY_VIOLATION = 1008
    MESSAGE_TOO_BIG = 1009
    MANDATORY_EXTENSION = 1010
    INTERNAL_ERROR = 1011


class SendStatus(IntEnum):
    """What ``send`` did with a message.

    ``SUCCESS``: queued, and the connection's queue is under ``max_backpressure``.
    ``BACKPRESSURE``: queued, but the queue is now over ``max_backpressure``.
    ``DROPPED``: not sent: the connection is closed or its queue was already full.
    """

    BACKPRESSURE = 0
    SUCCESS = 1
    DROPPED = 2

"""Type stub for the compiled load client (``loadgen.pyx``)."""

import asyncio
from typing import Final

ECHO: Final[int]
SUBSCRIBER: Final[int]
PUBLISHER: Final[int]
IDLE: Final[int]
HANDSHAKE_KEY: Final[bytes]
HANDSHAKE_ACCEPT: Final[bytes]

def parse_header(
    data: bytes | bytearray | memoryview,
) -> tuple[int, int, int, bool, bytes | None] | None:
    """``(header_size, payload_length, opcode, fin, mask_key)`` or None if incomplete."""

def masked_frame(
    payload: bytes | bytearray | memoryview,
    opcode: int,
    mask_key: bytes | None = None,
    fin: bool = True,
) -> bytes:
    """One frame, masked with ``mask_key`` (a client frame) or unmasked (None)."""

def mask(data: bytes | bytearray | memoryview, key: bytes) -> bytes:
    """``data`` XORed with the 4-byte ``key``."""

class FrameCounter:
    messages: int
    frames: int
    payload_bytes: int
    mismatched: int
    compressed: int
    """Messages whose first frame had RSV1 set (permessage-deflate)."""
    expect_length: int
    expect_opcode: int
    flags: int
    close_code: int
    ping_payload: bytes | None
    # The arguments go to Cython's __cinit__, which runs in __new__.
    def __new__(cls, expect_length: int = -1, expect_opcode: int = -1) -> FrameCounter: ...
    def feed(self, data: bytes | bytearray | memoryview) -> int:
        """Feed bytes; returns how many messages they completed."""
    def take_flags(self) -> tuple[bool, bool, bool]:
        """Pending ``(ping, close, error)``, cleared."""

class Stats:
    messages: int
    bytes_in: int
    reads: int
    opened: int
    lost: int
    def snapshot(self) -> tuple[int, int]: ...

class TopicPacer:
    """Paces one publisher by what its subscribers received."""

    publisher: Connection | None
    published: int
    delivered: int
    stalls: int
    forgiven: int
    subscribers: int
    window: int
    def __new__(cls, subscribers: int, window: int) -> TopicPacer: ...
    def set_publisher(self, publisher: Connection) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def in_flight(self) -> int: ...
    def unstick(self) -> bool: ...

class Connection(asyncio.BufferedProtocol):
    parser: FrameCounter
    stats: Stats
    topic: TopicPacer | None
    role: int
    sent: int
    received: int
    is_open: bool
    running: bool
    lost: bool
    closing: bool
    deflate: bool
    """The server accepted permessage-deflate in its handshake response."""
    opened: asyncio.Future[None]
    error: str | None
    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        stats: Stats,
        *,
        path: bytes | None = b"/",
        host: bytes = b"127.0.0.1",
        role: int = 0,
        frame: bytes | None = None,
        window: int = 1,
        topic: TopicPacer | None = None,
        mask_key: bytes = b"\x12\x34\x56\x78",
        expect_length: int = -1,
        expect_opcode: int = -1,
        frames: list[bytes] | None = None,
        extensions: bytes | None = None,
    ) -> None: ...
    def get_buffer(self, sizehint: int) -> bytearray: ...
    def buffer_updated(self, nbytes: int) -> None: ...
    def start(self) -> None: ...
    def stop(self) -> None: ...
    @property
    def in_flight(self) -> int: ...
    def rebind(self, stats: Stats, topic: TopicPacer | None = None) -> None: ...
    def send_messages(self, k: int) -> None: ...
    def close(self) -> None: ...
    def abort(self) -> None: ...

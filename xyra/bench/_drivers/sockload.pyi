"""Type stub for the socket-level load drivers (``sockload.pyx``)."""

import socket

class ConnectDriver:
    """``parallel`` loops of: connect, upgrade, close handshake, close."""

    completed: int
    opened: int
    errors: int
    max_errors: int
    first_error: str | None
    def __init__(
        self,
        port: int,
        parallel: int,
        request: bytes,
        close_frame: bytes,
        *,
        host: str = "127.0.0.1",
        timeout: float = 5.0,
        max_errors: int = 100,
    ) -> None: ...
    @property
    def busy(self) -> int:
        """Cycles in progress."""
    def run(self, seconds: float) -> None:
        """Run cycles for ``seconds``."""
    def drain(self, timeout: float) -> None:
        """Start no new cycle; let the ones in progress end, then drop the rest."""
    def close(self) -> None:
        """Drop every connection in progress."""

def open_upgraded(
    port: int, request: bytes | None, *, host: str = "127.0.0.1", timeout: float = 5.0
) -> tuple[socket.socket, bytes]:
    """A blocking client handshake: the socket and the bytes after the 101 head."""

class EchoDriver:
    """Connections keeping ``window`` copies of ``frame`` in flight."""

    running: bool
    messages: int
    reads: int
    lost: int
    errors: int
    first_error: str | None
    def __init__(
        self,
        port: int,
        connections: int,
        frame: bytes,
        window: int,
        *,
        request: bytes | None = None,
        expect_length: int = -1,
        expect_opcode: int = -1,
        host: str = "127.0.0.1",
        timeout: float = 5.0,
    ) -> None: ...
    @property
    def sent(self) -> int: ...
    @property
    def received(self) -> int: ...
    @property
    def mismatched(self) -> int: ...
    @property
    def in_flight(self) -> int: ...
    def start(self) -> None:
        """Fill every window."""
    def stop(self) -> None:
        """Send nothing more; replies in flight are still counted."""
    def run(self, seconds: float) -> None:
        """Serve the connections for ``seconds``."""
    def close(self) -> None:
        """Drop every connection."""

class PubSubDriver(EchoDriver):
    """Topics of subscriber connections, each with one publisher paced by deliveries."""

    to_publishers: int
    def __init__(
        self,
        port: int,
        requests: list[bytes],
        subscribers: int,
        frame: bytes,
        window: int,
        *,
        expect_length: int = -1,
        expect_opcode: int = -1,
        stall_period: float = 2.0,
        host: str = "127.0.0.1",
        timeout: float = 5.0,
    ) -> None: ...
    @property
    def published(self) -> int: ...
    @property
    def delivered(self) -> int: ...
    @property
    def expected(self) -> int: ...
    @property
    def stalls(self) -> int: ...
    def unreached(self, topic: int) -> int:
        """How many live subscribers of ``topic`` have received nothing yet."""
    def probe(self, topic: int) -> None:
        """Publish one message on ``topic`` outside the counted run."""
    def reset(self) -> None:
        """Zero the counters after the probes."""

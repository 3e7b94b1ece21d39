"""Type stub for the compiled sans-I/O endpoint (``endpoint.pyx``).

Only the Python-visible API: the protocol state, the cork buffer and the hooks are in
``endpoint.pxd``.
"""

import logging
from collections.abc import Callable
from typing import Any

from xyra._core.frames import Parser
from xyra.enums import SendStatus

LAG_BUCKETS: tuple[float, ...]
"""The loop-lag histogram's upper bounds in seconds (Prometheus ``le``)."""
CLOSE_CODES: tuple[str, ...]
"""The close codes counted one by one ("other" for the rest)."""

def live_objects() -> dict[str, int]:
    """Endpoints (WebSockets) and Extras alive now; always zeros in a release build."""

def debug_build() -> bool:
    """True if the core was built with XYRA_DEBUG (invariant checks compiled in)."""

def check_message(message: object) -> str | bytes:
    """``message`` as ``str`` or ``bytes`` (a copy of a mutable buffer); TypeError otherwise."""

class EndpointConfig:
    """The limits an endpoint enforces: one per route, built once by the facade."""

    max_messages_per_second: float
    max_bytes_per_second: float
    rate_limit_close: bool
    """Over a rate limit: close with 1008 (True) or drop the message (False)."""
    max_payload_length: int
    max_backpressure: int
    idle_timeout: float
    ping_interval: float
    close_timeout: float
    close_on_backpressure_limit: bool
    compression: int
    """0 off, 1 shared, 2 dedicated."""
    compression_threshold: int
    @property
    def connections(self) -> int:
        """Live stats: open connections of this route now."""
    @property
    def accepted(self) -> int:
        """Live stats: connections this route accepted so far."""
    def __init__(self) -> None: ...

class Outbox:
    """What the endpoints of one server share: the clock, the log, the flush list."""

    now: float
    log: logging.Logger
    manual_clock: bool
    """The rate-limit clock is ``now`` (tests), not CLOCK_MONOTONIC."""
    def __init__(
        self, call_soon: Callable[[Callable[[], Any]], Any], log: logging.Logger, now: float = 0.0
    ) -> None: ...
    def flush_all(self) -> None:
        """Write every corked connection once: runs once per loop iteration at most."""
    def record_lag(self, seconds: float) -> None:
        """One sample of the event loop's lag: how late a periodic timer fired."""
    def counters(self) -> dict[str, Any]:
        """The counters as plain Python values (a new dict; see xyra/stats.py)."""

class Extras:
    """The per-connection state few connections need, created on first use."""

class Endpoint(Parser):
    """One connection's WebSocket protocol state, without I/O."""

class RecordingEndpoint(Endpoint):
    """An endpoint that records what it reports: the sans-I/O test entry point.

    ``events``: ``("message", opcode, message)``, ``("ping", payload)``,
    ``("pong", payload)``, ``("drained",)``, ``("ended", code, reason)``.
    """

    events: list[tuple[Any, ...]]
    def __init__(
        self,
        transport: Any,
        outbox: Outbox,
        config: EndpointConfig,
        response: bytes | None = None,
        deflate: Any = None,
    ) -> None: ...
    def receive_data(self, data: bytes | bytearray | memoryview) -> None:
        """Bytes from the peer, read the way the server reads them."""
    def send(
        self,
        data: str | bytes | bytearray | memoryview,
        opcode: int | None = None,
        compress: bool = False,
    ) -> SendStatus:
        """Queue a message as the WebSocket's ``send`` does."""
    def close(self, code: int = 1000, reason: str = "") -> None:
        """Start the close handshake."""
    def run_timers(self, now: float) -> None:
        """``tick(now)``: the server's periodic timer run for this connection."""
    def eof_received(self) -> bool: ...
    def connection_lost(self, exc: BaseException | None = None) -> None: ...
    def pause_writing(self) -> None: ...
    def resume_writing(self) -> None: ...
    @property
    def state(self) -> str:
        """ "new", "open", "closing" or "closed"."""
    @property
    def queued_bytes(self) -> int: ...
    @property
    def is_congested(self) -> bool: ...
    @property
    def dropped(self) -> int: ...
    @property
    def code(self) -> int:
        """The close code the application would be told."""

def reset_live_objects() -> None:
    """Count from zero again (tests, after reporting a leak)."""

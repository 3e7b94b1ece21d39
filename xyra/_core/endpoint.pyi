"""Type stub for the compiled sans-I/O endpoint (``endpoint.pyx``).

Only the Python-visible API: the protocol state, the cork buffer and the hooks are in
``endpoint.pxd``.
"""

import logging
from collections.abc import Callable
from typing import Any

from xyra._core.frames import Parser

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

class Extras:
    """The per-connection state few connections need, created on first use."""

class Endpoint(Parser):
    """One connection's WebSocket protocol state, without I/O."""

def reset_live_objects() -> None:
    """Count from zero again (tests, after reporting a leak)."""

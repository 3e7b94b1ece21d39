"""Type stub for the compiled hub (``pubsub.pyx``): open connections and their topics."""

import asyncio
import logging
from typing import Any, TypeAlias

from xyra._core.endpoint import Endpoint, Outbox

_Buffer: TypeAlias = bytes | bytearray | memoryview

class Topic:
    """One topic's subscribers (an insertion-ordered set)."""

    @property
    def name(self) -> str: ...
    @property
    def published(self) -> int:
        """Live stats: publishes that found this topic."""
    @property
    def delivered(self) -> int:
        """Live stats: the deliveries they made (one per subscriber reached)."""
    def __init__(self, name: str) -> None: ...

class Hub(Outbox):
    """What the connections of one server share: the outbox, the loop, the open
    connections and the topic index."""

    loop: asyncio.AbstractEventLoop
    thread_id: int
    handshaking: set[Any]
    """HTTP-phase protocols."""
    sockets: list[Endpoint]
    """Open connections (each knows its index)."""
    per_ip: dict[Any, int]
    """Remote host -> open connections (while per-address limits are on)."""
    backplane: Any
    """None, or the worker's link to other processes (see xyra.backplane)."""
    gate: Any
    """The server's ``Gate`` (its ServerContext), or None."""
    def __init__(self, loop: asyncio.AbstractEventLoop, log: logging.Logger) -> None: ...
    def publish(
        self,
        topic: str,
        message: str | _Buffer,
        opcode: int | None = None,
        compress: bool = False,
        exclude: Endpoint | None = None,
    ) -> int:
        """Queue ``message`` for every subscriber of ``topic`` (but ``exclude``).

        Returns how many local subscribers it was queued for. From another thread it
        hops onto the loop and returns 0 at once.
        """
    def publish_local(
        self, topic: str, message: str | _Buffer, opcode: int | None = None, compress: bool = False
    ) -> int:
        """Deliver a message from elsewhere (the backplane) to the local subscribers only."""
    def num_subscribers(self, topic: str) -> int:
        """How many local connections are subscribed to ``topic``."""
    def topic_names(self) -> list[str]:
        """The topics with at least one local subscriber."""
    def topic_count(self) -> int:
        """How many topics have a local subscriber."""
    def top_topics(self, n: int) -> dict[str, tuple[int, int, int]]:
        """Live stats of the busiest topics: the ``n`` with the most subscribers and the
        ``n`` with the most deliveries, as ``{topic: (subscribers, publishes, deliveries)}``."""

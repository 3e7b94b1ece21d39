"""Type stub for the compiled pub/sub hub (``pubsub.pyx``)."""

import asyncio
import logging
from typing import TypeAlias

from xyra._core.connection import Hub, WebSocket

_Buffer: TypeAlias = bytes | bytearray | memoryview

class Topic:
    """One topic's subscribers (an insertion-ordered set)."""

    @property
    def name(self) -> str: ...
    def __init__(self, name: str) -> None: ...

class PubSubHub(Hub):
    """The server's hub with the topic index."""

    def __init__(self, loop: asyncio.AbstractEventLoop, log: logging.Logger) -> None: ...
    def publish(
        self,
        topic: str,
        message: str | _Buffer,
        opcode: int | None = None,
        compress: bool = False,
        exclude: WebSocket | None = None,
    ) -> int:
        """Queue ``message`` for every subscriber of ``topic`` (but ``exclude``).

        Returns how many subscribers it was queued for. From another thread it hops
        onto the loop and returns 0 at once.
        """
    def num_subscribers(self, topic: str) -> int: ...
    def topic_names(self) -> list[str]: ...

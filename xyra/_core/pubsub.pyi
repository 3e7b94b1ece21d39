"""Type stub for the compiled pub/sub hub (``pubsub.pyx``)."""

import asyncio
import logging
from typing import Any, TypeAlias

from xyra._core.connection import Hub, WebSocket

_Buffer: TypeAlias = bytes | bytearray | memoryview

class Topic:
    """One topic's subscribers (an insertion-ordered set)."""

    @property
    def name(self) -> str: ...
    def __init__(self, name: str) -> None: ...

class PubSubHub(Hub):
    """The server's hub with the topic index."""

    backplane: Any
    """None, or the worker's backplane (``xyra.backplane.Backplane``): the hub calls its
    ``topic_added``, ``topic_removed`` and ``forward`` on the loop thread."""

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

        Returns how many subscribers it was queued for here. From another thread it hops
        onto the loop and returns 0 at once. With a backplane, the message then goes to
        the other workers and machines (never waiting on them).
        """
    def publish_local(
        self, topic: str, message: str | _Buffer, opcode: int | None = None,
        compress: bool = False,
    ) -> int:
        """Deliver to this worker's subscribers only: a message from the backplane.

        Loop thread only; never forwarded again. Bytes with opcode TEXT must be UTF-8.
        """
    def num_subscribers(self, topic: str) -> int: ...
    def topic_names(self) -> list[str]: ...

"""The backplane interface, its link events, and the pieces every backplane shares.

A backplane carries publishes between the workers of one machine (the embedded relay)
or between machines (Redis). One backplane object lives in each worker, on its event
loop. The hub calls it on the loop thread; it must never block and never raise:

* ``topic_added(topic)``: the topic got its first local subscriber (start receiving it);
* ``topic_removed(topic)``: its last local subscriber left (stop receiving it);
* ``forward(topic, message, opcode, compress)``: a local publish, already delivered
  locally, to be sent on to the other workers and machines.

For a message from elsewhere the backplane calls ``hub.publish_local(...)``, which
delivers to this worker's subscribers only. Adding a backplane (NATS, ...) is writing
one subclass of ``Backplane``.
"""

from __future__ import annotations

import abc
import collections
import dataclasses
import random
from collections.abc import Callable
from typing import Any, Protocol

#: Outgoing messages waiting for a link that is down or congested, per link: past either
#: bound the oldest are dropped (and counted in ``stats()["dropped"]``).
QUEUE_MESSAGES = 10_000
QUEUE_BYTES = 16 << 20


class HubLike(Protocol):
    """What a backplane uses of the hub (``xyra._core.pubsub.PubSubHub``)."""

    def publish_local(
        self, topic: str, message: str | bytes, opcode: int | None = ..., compress: bool = ...
    ) -> int: ...
    def num_subscribers(self, topic: str) -> int: ...
    def topic_names(self) -> list[str]: ...


@dataclasses.dataclass(frozen=True)
class BackplaneEvent:
    """The backplane link went down or came back (what ``@app.on_backplane`` gets).

    ``missed_topics``: on ``up``, the local topics whose messages from other workers or
    machines may have been lost while the link was down (at most once delivery: they are
    not replayed). ``dropped``: outgoing messages dropped from the full queue so far.
    """

    up: bool
    backplane: str
    reason: str
    missed_topics: frozenset[str] = frozenset()
    down_for: float = 0.0
    dropped: int = 0


EventCallback = Callable[[BackplaneEvent], None]


class Backplane(abc.ABC):
    """One worker's link to the other workers and machines (see the module docstring)."""

    #: A short name for logs and stats ("relay", "redis://host:6379/0").
    name: str = "backplane"

    @abc.abstractmethod
    async def start(self, hub: HubLike, on_event: EventCallback) -> None:
        """Attach to the hub (on its loop) and connect. Must not fail on a link that is
        down: local delivery goes on, and the backplane connects in the background."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Send what is queued if the link allows it quickly, then disconnect."""

    @abc.abstractmethod
    def topic_added(self, topic: str) -> None:
        """The topic got its first local subscriber."""

    @abc.abstractmethod
    def topic_removed(self, topic: str) -> None:
        """The topic lost its last local subscriber."""

    @abc.abstractmethod
    def forward(self, topic: str, message: str | bytes, opcode: int, compress: bool) -> None:
        """Send a local publish on (after local delivery). Never blocks, never raises."""

    @abc.abstractmethod
    async def cluster_subscribers(self, topic: str) -> int:
        """Subscribers of ``topic`` in every worker and machine, this one included."""

    @abc.abstractmethod
    def stats(self) -> dict[str, Any]:
        """Counters for monitoring (messages, writes, drops, link state)."""


class OutQueue:
    """Outgoing writes waiting for a link: bounded in messages and bytes, oldest dropped.

    Each entry is one write (bytes) holding ``messages`` messages in ``commands`` commands
    (a Redis write holds several PUBLISH commands, an envelope several messages).
    """

    __slots__ = ("dropped", "items", "max_bytes", "max_messages", "messages", "nbytes")

    def __init__(self, max_messages: int = QUEUE_MESSAGES, max_bytes: int = QUEUE_BYTES) -> None:
        self.items: collections.deque[tuple[bytes, int, int]] = collections.deque()
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.messages = 0
        self.nbytes = 0
        self.dropped = 0

    def __len__(self) -> int:
        return len(self.items)

    def push(self, data: bytes, messages: int, commands: int = 1) -> None:
        self.items.append((data, messages, commands))
        self.messages += messages
        self.nbytes += len(data)
        while self.items and (self.messages > self.max_messages or self.nbytes > self.max_bytes):
            old, count, _ = self.items.popleft()
            self.messages -= count
            self.nbytes -= len(old)
            self.dropped += count

    def popleft(self) -> tuple[bytes, int]:
        """The oldest write and its command count."""
        data, count, commands = self.items.popleft()
        self.messages -= count
        self.nbytes -= len(data)
        return data, commands

    def clear(self) -> None:
        self.items.clear()
        self.messages = self.nbytes = 0


class Backoff:
    """Reconnect delays: exponential from ``first`` to ``cap``, with jitter (50-100%)."""

    def __init__(self, first: float = 0.1, cap: float = 5.0) -> None:
        self.first = first
        self.cap = cap
        self.attempt = 0

    def next(self) -> float:
        delay = min(self.cap, self.first * (2**self.attempt))
        self.attempt += 1
        return float(max(self.first, delay * random.uniform(0.5, 1.0)))

    def reset(self) -> None:
        self.attempt = 0

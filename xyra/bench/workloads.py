"""The workloads: what each one measures and how the load client drives it."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

# The kinds of load the client knows how to drive.
ECHO = "echo"  # connections x window messages in flight, each reply sends one more
PUBSUB = "pubsub"  # publishers pipeline messages, subscribers count deliveries
CONNECT = "connect"  # parallel loops of handshake + close handshake
IDLE = "idle"  # open many connections, read the server's RSS growth


@dataclass(frozen=True)
class Workload:
    """One row group of the results."""

    name: str
    kind: str
    summary: str
    connections: int = 1  # echo: connections; connect: parallel loops; idle: count
    window: int = 1  # messages in flight per connection (per publisher for pub/sub)
    size: int = 32  # payload bytes
    binary: bool = False
    topics: int = 0  # pub/sub only
    subscribers: int = 0  # pub/sub only: per topic
    unit: str = "msg/s"
    higher_is_better: bool = True
    default: bool = True  # part of a run that names no workloads

    @property
    def echo_only(self) -> bool:
        """Whether a raw TCP echo (no WebSocket at all) can serve it."""
        return self.kind == ECHO

    def scaled(self, quick: bool) -> Workload:
        """The workload as ``--quick`` runs it (smaller where size dominates the time)."""
        if quick and self.kind == IDLE:
            return Workload(**{**asdict(self), "connections": min(self.connections, 1000)})
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


WORKLOADS: dict[str, Workload] = {
    w.name: w
    for w in (
        Workload(
            "echo_small",
            ECHO,
            "100 connections, 16 x 32-byte text messages in flight each",
            connections=100,
            window=16,
            size=32,
        ),
        Workload(
            "pingpong",
            ECHO,
            "1 connection, one 32-byte text message at a time (latency bound)",
            connections=1,
            window=1,
            size=32,
        ),
        Workload(
            "large_64k",
            ECHO,
            "8 connections x 2 binary 64 KiB messages in flight",
            connections=8,
            window=2,
            size=64 * 1024,
            binary=True,
        ),
        Workload(
            "large_1m",
            ECHO,
            "2 connections x 1 binary 1 MiB message in flight",
            connections=2,
            window=1,
            size=1024 * 1024,
            binary=True,
        ),
        Workload(
            "pubsub_1x1000",
            PUBSUB,
            "1 topic, 1000 subscribers, 1 publisher pipelining 16 x 32-byte messages",
            window=16,
            size=32,
            topics=1,
            subscribers=1000,
            unit="deliveries/s",
        ),
        Workload(
            "pubsub_10x100",
            PUBSUB,
            "10 topics x 100 subscribers, 1 publisher each pipelining 16 x 32-byte messages",
            window=16,
            size=32,
            topics=10,
            subscribers=100,
            unit="deliveries/s",
        ),
        Workload(
            "connect",
            CONNECT,
            "16 parallel loops of: TCP connect, upgrade, close handshake",
            connections=16,
            unit="conn/s",
        ),
        Workload(
            "idle_10k",
            IDLE,
            "server memory per idle connection (VmRSS growth / 10k connections)",
            connections=10_000,
            unit="bytes/conn",
            higher_is_better=False,
        ),
        Workload(
            "echo_deep",
            ECHO,
            "100 connections, 64 x 32-byte text messages in flight each (load client headroom"
            " check; run it by name)",
            connections=100,
            window=64,
            size=32,
            default=False,
        ),
    )
}


def parse_workloads(text: str | None) -> list[Workload]:
    """``a,b`` -> the named workloads, in the order given (the default set for None)."""
    if not text:
        return [w for w in WORKLOADS.values() if w.default]
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in WORKLOADS]
    if unknown:
        raise ValueError(
            f"unknown workload(s): {', '.join(unknown)}; choose from {', '.join(WORKLOADS)}"
        )
    return [WORKLOADS[n] for n in names]

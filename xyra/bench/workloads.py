"""The workloads: what each one measures and how the load client drives it."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

# The kinds of load the client knows how to drive.
ECHO = "echo"  # connections x window messages in flight, each reply sends one more
PUBSUB = "pubsub"  # publishers pipeline messages, subscribers count deliveries
CONNECT = "connect"  # parallel loops of handshake + close handshake
IDLE = "idle"  # open many connections, read the server's RSS growth
MEMORY = "memory"  # open many connections, exchange a few messages on each, read RSS growth
HTTP = "http"  # keep-alive HTTP GETs from wrk, one request at a time per connection

# The ASGI workloads' servers: Xyra's own API (the reference), Xyra serving the ASGI app,
# and the ASGI servers people use (xyra/bench/servers/asgi_apps.py is every ASGI app).
ASGI_SERVERS = ("xyra-asgi", "uvicorn", "uvicorn-wsproto", "granian")

# Where the adapters serve the compression routes (xyra, socketify).
PUBSUB_DEFLATE_ROUTE = "/pubsub_deflate"  # compression "shared", publish(compress=True)
ECHO_DEFLATE_ROUTE = "/echo_deflate"  # compression "dedicated", send(compress=True)
DEFLATE_PEERS = ("xyra", "socketify")  # pub/sub; the memory workloads are Xyra's own
OFFER = b"permessage-deflate"  # what browsers offer, less client_max_window_bits


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
    payload: str = "fill"  # "fill": `size` repeated bytes; "json": different JSON messages
    route: str = ""  # the adapter route ("": the kind's usual one)
    deflate: bool = False  # the client offers permessage-deflate (and compresses, if it sends)
    messages: int = 0  # memory: messages each connection sends (and gets back)
    peers: tuple[str, ...] = ()  # the only peers with the route (empty: every peer)
    asgi: bool = False  # served through an ASGI app (the ASGI servers run only these)
    # pub/sub: "sockets" (the compiled socket driver) or "loop" (the event-loop client,
    # which the compressed workloads always use)
    client: str = "sockets"

    def __post_init__(self) -> None:
        # From JSON (the load process) a tuple arrives as a list.
        object.__setattr__(self, "peers", tuple(self.peers))

    @property
    def raw_serves(self) -> bool:
        """Whether the raw uvloop server (no WebSocket at all) can serve it: the echo
        workloads, connect (a constant 101, nothing parsed) and idle connections (the
        baseline of the per-connection memory figure)."""
        return self.kind in (ECHO, CONNECT, IDLE) and not self.asgi

    def scaled(self, quick: bool) -> Workload:
        """The workload as ``--quick`` runs it (smaller where size dominates the time)."""
        if quick and self.kind in (IDLE, MEMORY):
            return Workload(**{**asdict(self), "connections": min(self.connections, 1000)})
        if quick and self.kind == PUBSUB and self.subscribers > 2000:
            return Workload(**{**asdict(self), "subscribers": 2000})
        return self

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


PUBSUB_DEFLATE = Workload(
    "pubsub_deflate",
    PUBSUB,
    "1 topic, 1000 subscribers offering permessage-deflate, 1 publisher pipelining 16"
    " different ~1.1 KiB JSON messages, published with compress=True (shared"
    " compressor); run it by name",
    window=16,
    size=1124,
    topics=1,
    subscribers=1000,
    unit="deliveries/s",
    default=False,
    payload="json",
    route=PUBSUB_DEFLATE_ROUTE,
    deflate=True,
    peers=DEFLATE_PEERS,
)

DEDICATED_MEMORY = Workload(
    "dedicated_memory",
    MEMORY,
    "server memory per connection with a dedicated compressor: 1000 connections"
    " offering permessage-deflate each send 10 compressed ~8 KiB JSON messages and"
    " get them back compressed (both 32 KiB windows filled); VmRSS growth / 1000;"
    " run it by name",
    connections=1000,
    window=10,
    size=8 * 1024,
    unit="bytes/conn",
    higher_is_better=False,
    default=False,
    payload="json",
    route=ECHO_DEFLATE_ROUTE,
    deflate=True,
    messages=10,
    peers=("xyra",),
)


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
            "pubsub_1x10000",
            PUBSUB,
            "1 topic, 10,000 subscribers, 1 publisher pipelining 16 x 32-byte messages",
            window=16,
            size=32,
            topics=1,
            subscribers=10_000,
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
            "connect_64",
            CONNECT,
            "connect with 64 parallel loops (the load of the independent C client); run it by name",
            connections=64,
            unit="conn/s",
            default=False,
        ),
        Workload(
            "idle_10k",
            IDLE,
            "server memory per idle connection (VmRSS growth / 10k connections)",
            connections=10_000,
            unit="bytes/conn",
            higher_is_better=False,
        ),
        PUBSUB_DEFLATE,
        replace(
            PUBSUB_DEFLATE,
            name="pubsub_deflate_off",
            summary=(
                "pubsub_deflate's baseline: the same route, messages and load, but the"
                " subscribers do not offer permessage-deflate (sent uncompressed); run it by name"
            ),
            deflate=False,
        ),
        DEDICATED_MEMORY,
        replace(
            DEDICATED_MEMORY,
            name="dedicated_memory_off",
            summary=(
                "dedicated_memory's baseline: the same route and messages, no permessage-deflate"
                " offered (sent and echoed uncompressed); run it by name"
            ),
            deflate=False,
        ),
        Workload(
            "asgi_echo_small",
            ECHO,
            "echo_small through a raw ASGI echo app (xyra: its native API, the reference)",
            connections=100,
            window=16,
            size=32,
            asgi=True,
            peers=("xyra", *ASGI_SERVERS),
        ),
        Workload(
            "asgi_echo_starlette",
            ECHO,
            "echo_small through the same echo in a few lines of Starlette WebSocket code",
            connections=100,
            window=16,
            size=32,
            route="/starlette",
            asgi=True,
            peers=ASGI_SERVERS,
        ),
        Workload(
            "asgi_http_hello",
            HTTP,
            "keep-alive GETs of a raw ASGI hello world, 100 connections (wrk)"
            " (xyra: a native HTTP route, the reference)",
            connections=100,
            unit="req/s",
            route="/hello",
            asgi=True,
            peers=("xyra", *ASGI_SERVERS),
        ),
        Workload(
            "asgi_http_starlette",
            HTTP,
            "keep-alive GETs of a Starlette PlainTextResponse hello world, 100 connections (wrk)",
            connections=100,
            unit="req/s",
            route="/starlette/hello",
            asgi=True,
            peers=ASGI_SERVERS,
        ),
        Workload(
            "pubsub_1x1000_loop",
            PUBSUB,
            "pubsub_1x1000 driven by the event-loop client (loadgen.Connection) instead of"
            " the socket driver; run it by name",
            window=16,
            size=32,
            topics=1,
            subscribers=1000,
            unit="deliveries/s",
            default=False,
            client="loop",
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

"""What every adapter server shares: its command line, limits and the pub/sub URL.

An adapter is started as ``python -m xyra.bench.servers.NAME PORT``, listens on
127.0.0.1:PORT and serves two routes:

* ``/``: echo every message back with its opcode;
* ``/pubsub?topic=NAME``: subscribe to NAME on open; publish every message received
  to NAME, to every subscriber but the sender.

For the compression workloads the xyra and socketify adapters also serve
``/pubsub_deflate?topic=NAME``: ``/pubsub`` on a route with a shared compressor,
publishing with compression on. The xyra adapter serves ``/echo_deflate`` too: ``/``
with a compressor per connection, sending with compression on.
"""

from __future__ import annotations

import sys
from urllib.parse import parse_qs, urlsplit

HOST = "127.0.0.1"
# Large enough for the 1 MiB workload with room to spare, on every peer.
MAX_PAYLOAD = 16 * 1024 * 1024


def port_from_argv(argv: list[str] | None = None) -> int:
    """The port given as the only command-line argument."""
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1 or not args[0].isdigit():
        raise SystemExit("usage: python -m xyra.bench.servers.NAME PORT")
    return int(args[0])


def topic_of(target: str | bytes) -> str | None:
    """The pub/sub topic of a request target, or None for the echo route.

    ``/pubsub?topic=NAME`` is the form the load client uses; ``/pubsub/NAME`` is
    accepted too, for servers whose routing drops the query string.
    """
    if isinstance(target, bytes):
        target = target.decode("latin-1")
    parts = urlsplit(target)
    if parts.path in ("/pubsub", "/pubsub_deflate"):
        return parse_qs(parts.query).get("topic", ["default"])[0]
    if parts.path.startswith("/pubsub/"):
        return parts.path[len("/pubsub/") :] or "default"
    return None


def use_uvloop() -> None:
    """Run asyncio-based peers on uvloop, as their users would for speed."""
    import asyncio

    import uvloop

    asyncio.set_event_loop_policy(uvloop.EventLoopPolicy())

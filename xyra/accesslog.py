"""The access log: one line per WebSocket handshake on the ``xyra.access`` logger.

``xyra run`` turns it on (``--no-access-log`` turns it off); ``App.listen`` and
``App.start`` take ``access_log=True``. The server checks a flag it caches (the option,
and whether ``xyra.access`` logs INFO, looked at once per tick), so with the log off a
handshake costs one test of a C int. A line reads::

    127.0.0.1:53822 - "/chat" 101 subprotocol=chat extensions="permessage-deflate" 0.4ms

remote address, path (never the query string: query strings carry tokens), status (101
accepted, else the HTTP status of the refusal), the negotiated subprotocol and extensions
(``-`` for none), and the time from the TCP connection to the answer. The same values are
on the record as attributes (``remote``, ``path``, ``status``, ``subprotocol``,
``extensions``, ``duration``) for structured formatters.

A leaf module: the compiled core imports it, so it imports nothing of xyra.
"""

from __future__ import annotations

import logging
from time import monotonic
from typing import Any

logger = logging.getLogger("xyra.access")

_EXTENSIONS = b"\r\nSec-WebSocket-Extensions: "


def enabled() -> bool:
    """Whether ``xyra.access`` would log a handshake now."""
    return logger.isEnabledFor(logging.INFO)


def remote(peer: Any) -> str:
    """``host:port`` (``[v6]:port``) of a peer address, or ``-``."""
    if isinstance(peer, tuple) and len(peer) >= 2:
        host = str(peer[0])
        return f"[{host}]:{peer[1]}" if ":" in host else f"{host}:{peer[1]}"
    return "-" if peer is None or peer == "" else str(peer)


def path_of(target: str | bytes | None) -> str:
    """The path of a request target, without its query string."""
    if target is None:
        return "-"
    if isinstance(target, bytes):
        target = target.decode("latin-1")
    return target.split("?", 1)[0] or "-"


def extensions_of(response: bytes | None) -> str | None:
    """The ``Sec-WebSocket-Extensions`` value of a 101 response, or None."""
    if not response:
        return None
    start = response.find(_EXTENSIONS)
    if start < 0:
        return None
    start += len(_EXTENSIONS)
    return response[start : response.find(b"\r\n", start)].decode("latin-1")


def handshake(
    peer: Any,
    target: str | bytes | None,
    status: int,
    subprotocol: str | None,
    response: bytes | None,
    started: float,
) -> None:
    """Log one handshake: ``status`` 101 (accepted) or the refusal's HTTP status.

    ``started`` is the ``time.monotonic()`` of the connection (0: unknown).
    """
    extensions = extensions_of(response)
    duration = monotonic() - started if started else None
    fields = {
        "remote": remote(peer),
        "path": path_of(target),
        "status": status,
        "subprotocol": subprotocol,
        "extensions": extensions,
        "duration": duration,
    }
    logger.info(
        '%s - "%s" %d subprotocol=%s extensions=%s %s',
        fields["remote"],
        fields["path"],
        status,
        subprotocol or "-",
        f'"{extensions}"' if extensions else "-",
        "-" if duration is None else f"{duration * 1000:.1f}ms",
        extra=fields,
    )

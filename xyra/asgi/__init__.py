"""Serve ASGI applications (FastAPI, Starlette, raw ASGI) on Xyra's engine.

``App.mount(prefix, asgi_app)`` serves an ASGI 3 application next to the App's own
routes, on the same port; ``xyra run module:app`` serves one whole (docs/asgi.md).

From inside the ASGI app, Xyra is one call away (``scope`` or anything with a
``.scope``, such as a Starlette/FastAPI ``Request`` or ``WebSocket``):

* ``xyra_app(scope)``: the Xyra ``App`` serving it, for ``publish``, ``num_subscribers``...
* ``xyra_websocket(scope)``: the core ``WebSocket`` under an accepted ASGI WebSocket,
  for ``subscribe``/``unsubscribe``/``publish``: published messages then reach the
  client straight from Xyra's pub/sub, without passing through the app.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from xyra.asgi.lifespan import LifespanFailed
from xyra.asgi.types import ASGIApp, ClientDisconnected, ProtocolError

if TYPE_CHECKING:
    from xyra._core.connection import WebSocket
    from xyra.app import App

__all__ = [
    "ASGIApp",
    "ClientDisconnected",
    "LifespanFailed",
    "ProtocolError",
    "xyra_app",
    "xyra_websocket",
]


def _extension(scope_or_conn: Any) -> dict[str, Any]:
    scope = getattr(scope_or_conn, "scope", scope_or_conn)
    try:
        ext: dict[str, Any] = scope["extensions"]["xyra"]
    except (KeyError, TypeError):
        raise LookupError(
            "not an ASGI scope served by Xyra (no 'xyra' extension): run the app with "
            "`xyra run module:app` or App.mount()"
        ) from None
    return ext


def xyra_app(scope_or_conn: Any) -> App:
    """The Xyra ``App`` serving this ASGI scope (a scope, or a Request/WebSocket with one)."""
    app: App = _extension(scope_or_conn)["app"]
    return app


def xyra_websocket(scope_or_conn: Any) -> WebSocket:
    """The core ``WebSocket`` under an accepted ASGI WebSocket (subscribe, publish, ...).

    Raises ``RuntimeError`` before the ASGI WebSocket is accepted, ``LookupError`` for a
    scope that is not a WebSocket served by Xyra.
    """
    session = _extension(scope_or_conn).get("session")
    if session is None:
        raise LookupError("xyra_websocket() needs the scope of an ASGI WebSocket")
    ws: WebSocket = session.websocket
    return ws

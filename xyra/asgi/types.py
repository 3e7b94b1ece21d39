"""The ASGI 3 callable and its messages, as the adapter sees them."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
#: An ASGI 3 application: ``await app(scope, receive, send)``.
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[Any]]

#: What every scope says about the interface (ASGI 3, spec 2.4: send() on a closed
#: connection raises an OSError, see ``ClientDisconnected``).
ASGI_VERSION = {"version": "3.0", "spec_version": "2.4"}
LIFESPAN_VERSION = {"version": "3.0", "spec_version": "2.0"}


class ClientDisconnected(OSError):
    """``send()`` after the client went away (ASGI spec 2.4: an OSError)."""


class ProtocolError(RuntimeError):
    """The application broke the ASGI protocol (a message out of place or malformed)."""

"""The opening handshake (RFC 6455 section 4.2): request in, response bytes out.

Runs once per connection, does no I/O: ``process_request`` takes the parsed request
head and returns either the ``101`` response to send or a ``Rejection`` whose bytes
say what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Headers = Sequence[tuple[str, str]]


def accept_key(key: str | bytes) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return base64.b64encode(hashlib.sha1(raw + GUID).digest()).decode("ascii")


def header_tokens(headers: Headers, name: str) -> list[str]:
    """Every comma-separated token of every ``name`` header line, lowercased and stripped."""
    out: list[str] = []
    for key, value in headers:
        if key == name:
            out.extend(t.strip().lower() for t in value.split(",") if t.strip())
    return out


def header_values(headers: Headers, name: str) -> list[str]:
    return [value for key, value in headers if key == name]


@dataclass
class Rejection:
    """A refused handshake: the HTTP status, the reason for the log, extra headers."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return http_response(self.status, self.reason + "\n", self.headers)


@dataclass
class Accepted:
    """A handshake to accept: the response bytes and what was negotiated."""

    response: bytes
    subprotocol: str | None
    extension: object | None = None


def http_response(status: int, body: str, headers: Iterable[tuple[str, str]] = ()) -> bytes:
    """A complete ``Connection: close`` HTTP/1.1 response with a plain-text body."""
    payload = body.encode("utf-8")
    phrase = HTTPStatus(status).phrase
    lines = [f"HTTP/1.1 {status} {phrase}"]
    lines += [f"{k}: {v}" for k, v in headers]
    lines += [
        "Content-Type: text/plain; charset=utf-8",
        f"Content-Length: {len(payload)}",
        "Connection: close",
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + payload


def _check_key(headers: Headers) -> str | Rejection:
    keys = header_values(headers, "sec-websocket-key")
    if not keys:
        return Rejection(400, "missing Sec-WebSocket-Key header")
    if len(keys) > 1:
        return Rejection(400, "more than one Sec-WebSocket-Key header")
    key = keys[0].strip()
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return Rejection(400, "Sec-WebSocket-Key is not valid base64")
    if len(raw) != 16:
        return Rejection(400, f"Sec-WebSocket-Key must encode 16 bytes, not {len(raw)}")
    return key


def choose_subprotocol(headers: Headers, supported: Sequence[str]) -> str | None:
    """The first subprotocol the client offers that the route supports."""
    if not supported:
        return None
    offered = [t.strip() for v in header_values(headers, "sec-websocket-protocol")
               for t in v.split(",") if t.strip()]
    for name in offered:
        if name in supported:
            return name
    return None


def process_request(
    method: str,
    headers: Headers,
    subprotocols: Sequence[str] = (),
    extension_negotiator: object | None = None,
) -> Accepted | Rejection:
    """Validate a WebSocket upgrade request; header names must be lowercase.

    ``extension_negotiator``, when given, is called with the list of
    ``Sec-WebSocket-Extensions`` values and returns ``(response_value, params)``
    or ``None``; it raises ``ValueError`` for a malformed offer (answered with 400).
    """
    if method != "GET":
        return Rejection(405, f"WebSocket handshake needs GET, not {method}", [("Allow", "GET")])
    if "websocket" not in header_tokens(headers, "upgrade"):
        return Rejection(
            426,
            "this URL speaks WebSocket: send Upgrade: websocket",
            [("Upgrade", "websocket")],
        )
    if "upgrade" not in header_tokens(headers, "connection"):
        return Rejection(400, "the Connection header must contain the token 'upgrade'")
    versions = header_values(headers, "sec-websocket-version")
    if [v.strip() for v in versions] != ["13"]:
        shown = ", ".join(versions) or "none"
        return Rejection(
            426,
            f"unsupported Sec-WebSocket-Version ({shown}): this server speaks 13",
            [("Sec-WebSocket-Version", "13")],
        )
    key = _check_key(headers)
    if isinstance(key, Rejection):
        return key
    subprotocol = choose_subprotocol(headers, subprotocols)
    extension_value = None
    extension = None
    if extension_negotiator is not None:
        offers = header_values(headers, "sec-websocket-extensions")
        if offers:
            try:
                negotiated = extension_negotiator(offers)  # type: ignore[operator]
            except ValueError as exc:
                return Rejection(400, f"bad Sec-WebSocket-Extensions: {exc}")
            if negotiated is not None:
                extension_value, extension = negotiated
    lines = [
        "HTTP/1.1 101 Switching Protocols",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Accept: {accept_key(key)}",
    ]
    if subprotocol is not None:
        lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
    if extension_value is not None:
        lines.append(f"Sec-WebSocket-Extensions: {extension_value}")
    response = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
    return Accepted(response, subprotocol, extension)


_DEFAULT_PORTS = {"http": "80", "https": "443", "ws": "80", "wss": "443"}


def _origin_key(origin: str) -> str | None:
    """``scheme://host:port`` lowercased with the port made explicit, or None if unparsable."""
    scheme, sep, rest = origin.strip().lower().partition("://")
    if not sep or not rest or "/" in rest.rstrip("/"):
        return None
    host = rest.rstrip("/")
    if not host.rsplit("]", 1)[-1].count(":"):
        host += ":" + _DEFAULT_PORTS.get(scheme, "")
    return f"{scheme}://{host}"


def check_origin(
    headers: Headers, allowed: object, scheme: str = "http"
) -> Rejection | None:
    """Apply a route's ``allowed_origins`` to the request's ``Origin`` header.

    ``allowed`` is ``"*"`` (anything), a sequence of origins, or ``None``: the default
    policy allows requests with no ``Origin`` (non-browser clients) and same-origin
    requests (the Origin's host and port are the ``Host`` header's).
    """
    origins = header_values(headers, "origin")
    if allowed == "*":
        return None
    if not origins:
        return None
    origin = origins[0]
    key = _origin_key(origin)
    if allowed is None:
        hosts = header_values(headers, "host")
        if key is not None and hosts and key == _origin_key(f"{scheme}://{hosts[0]}"):
            return None
        hint = "cross-origin WebSocket requests are refused by default"
    else:
        wanted = {_origin_key(o) for o in allowed}  # type: ignore[attr-defined]
        if key is not None and key in wanted:
            return None
        hint = "this origin is not in the route's allowed_origins"
    return Rejection(
        403,
        f"origin {origin!r} not allowed ({hint}); allow it with "
        f"app.websocket(path, handlers, allowed_origins=[{origin!r}])",
    )

"""The opening handshake (RFC 6455 section 4.2): request in, response bytes out.

Runs once per connection, does no I/O: ``process_request`` takes the parsed request
head and returns either the ``101`` response to send or a ``Rejection`` whose bytes
say what was wrong.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from http import HTTPStatus

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

Headers = Sequence[tuple[str, str]]


# Exactly the base64 texts that decode to 16 bytes (22 symbols carry 132 bits).
_KEY_16 = re.compile(r"[A-Za-z0-9+/]{22}==")


def accept_key(key: str | bytes) -> str:
    """The ``Sec-WebSocket-Accept`` value for a client's ``Sec-WebSocket-Key``."""
    raw = key.encode("ascii") if isinstance(key, str) else key
    return binascii.b2a_base64(hashlib.sha1(raw + GUID).digest(), newline=False).decode("ascii")


def header_tokens(headers: Headers, name: str) -> list[str]:
    """Every comma-separated token of every ``name`` header line, lowercased and stripped."""
    out: list[str] = []
    for key, value in headers:
        if key == name:
            out.extend(t.strip().lower() for t in value.split(",") if t.strip())
    return out


def header_values(headers: Headers, name: str) -> list[str]:
    return [value for key, value in headers if key == name]


def _has_token(values: list[str], token: str) -> bool:
    """Whether ``token`` (lowercase) is one of the comma-separated tokens of ``values``."""
    for value in values:
        # Nearly every client sends the one token alone: no split for it.
        if value.strip().lower() == token or ("," in value and token in _split(value)):
            return True
    return False


def _split(value: str) -> list[str]:
    return [t.strip().lower() for t in value.split(",") if t.strip()]


@dataclass
class Rejection:
    """A refused handshake: the HTTP status, the reason for the log, extra headers."""

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    def to_bytes(self) -> bytes:
        return http_response(self.status, self.reason + "\n", self.headers)


@dataclass(slots=True)
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


def _check_key(keys: list[str]) -> str | Rejection:
    if not keys:
        return Rejection(400, "missing Sec-WebSocket-Key header")
    if len(keys) > 1:
        return Rejection(400, "more than one Sec-WebSocket-Key header")
    key = keys[0].strip()
    if _KEY_16.fullmatch(key):
        return key
    try:
        raw = base64.b64decode(key.encode("ascii"), validate=True)
    except (binascii.Error, UnicodeEncodeError):
        return Rejection(400, "Sec-WebSocket-Key is not valid base64")
    if len(raw) != 16:
        return Rejection(400, f"Sec-WebSocket-Key must encode 16 bytes, not {len(raw)}")
    return key


def choose_subprotocol(values: list[str], supported: Sequence[str]) -> str | None:
    """The first subprotocol the client offers (``Sec-WebSocket-Protocol`` ``values``)
    that the route supports."""
    if not supported:
        return None
    offered = [t.strip() for v in values for t in v.split(",") if t.strip()]
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
    # One pass over the headers: this runs for every connection.
    upgrade: list[str] = []
    connection: list[str] = []
    versions: list[str] = []
    keys: list[str] = []
    protocols: list[str] = []
    offers: list[str] = []
    for name, value in headers:
        if name == "upgrade":
            upgrade.append(value)
        elif name == "connection":
            connection.append(value)
        elif name == "sec-websocket-version":
            versions.append(value)
        elif name == "sec-websocket-key":
            keys.append(value)
        elif name == "sec-websocket-protocol":
            protocols.append(value)
        elif name == "sec-websocket-extensions":
            offers.append(value)
    if not _has_token(upgrade, "websocket"):
        return Rejection(
            426,
            "this URL speaks WebSocket: send Upgrade: websocket",
            [("Upgrade", "websocket")],
        )
    if not _has_token(connection, "upgrade"):
        return Rejection(400, "the Connection header must contain the token 'upgrade'")
    if len(versions) != 1 or versions[0].strip() != "13":
        shown = ", ".join(versions) or "none"
        return Rejection(
            426,
            f"unsupported Sec-WebSocket-Version ({shown}): this server speaks 13",
            [("Sec-WebSocket-Version", "13")],
        )
    key = _check_key(keys)
    if isinstance(key, Rejection):
        return key
    subprotocol = choose_subprotocol(protocols, subprotocols)
    extension_value = None
    extension = None
    if extension_negotiator is not None and offers:
        try:
            negotiated = extension_negotiator(offers)  # type: ignore[operator]
        except ValueError as exc:
            return Rejection(400, f"bad Sec-WebSocket-Extensions: {exc}")
        if negotiated is not None:
            extension_value, extension = negotiated
    response = (
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        f"Sec-WebSocket-Accept: {accept_key(key)}\r\n"
        + ("" if subprotocol is None else f"Sec-WebSocket-Protocol: {subprotocol}\r\n")
        + ("" if extension_value is None else f"Sec-WebSocket-Extensions: {extension_value}\r\n")
        + "\r\n"
    ).encode("latin-1")
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


def check_origin(headers: Headers, allowed: object, scheme: str = "http") -> Rejection | None:
    """Apply a route's ``allowed_origins`` to the request's ``Origin`` header.

    ``allowed`` is ``"*"`` (anything), a sequence of origins, or ``None``: the default
    policy allows requests with no ``Origin`` (non-browser clients) and same-origin
    requests (the Origin's host and port are the ``Host`` header's).
    """
    if allowed == "*":
        return None
    origins = header_values(headers, "origin")
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

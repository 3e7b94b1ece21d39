"""permessage-deflate negotiation (RFC 7692), run once per handshake.

The handshake hands :func:`negotiate_deflate` every ``Sec-WebSocket-Extensions``
value of the request and the route's ``compression`` mode. It returns the value of
the response header and the :class:`DeflateParams` the connection must use, or
``None`` when compression is off or no offer can be honoured (the connection then
simply runs uncompressed). A malformed header raises :class:`ExtensionError`, which
the handshake answers with HTTP 400.

Grammar (RFC 6455 section 9.1, RFC 7230 lists)::

    Sec-WebSocket-Extensions = 1#extension
    extension       = token *( OWS ";" OWS extension-param )
    extension-param = token [ OWS "=" OWS ( token / quoted-string ) ]

Empty list elements (``a, , b``) are skipped as RFC 7230 section 7 asks.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = [
    "COMPRESSION_MODES",
    "DeflateParams",
    "ExtensionError",
    "negotiate_deflate",
    "parse_extensions",
]

COMPRESSION_MODES = ("off", "shared", "dedicated")
"""Values of the route option ``compression``."""

_NAME = "permessage-deflate"
# RFC 7692 7.1.2: "a decimal integer value without leading zeroes between 8 to 15".
_WINDOW_BITS = {str(bits): bits for bits in range(8, 16)}
_TCHAR = frozenset("!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ")
_OWS = " \t"

Param = tuple[str, str | None]


class ExtensionError(ValueError):
    """A malformed ``Sec-WebSocket-Extensions`` header; the message is the reason."""


@dataclass(frozen=True)
class DeflateParams:
    """The permessage-deflate parameters agreed for one connection.

    ``server_max_window_bits`` is the LZ77 window (8..15) the server's compressor
    must stay within; ``client_max_window_bits`` is the window (8..15) the server's
    decompressor needs for what the client sends. The two ``*_no_context_takeover``
    flags say whose compressor starts every message with an empty window.
    """

    server_no_context_takeover: bool = False
    client_no_context_takeover: bool = False
    server_max_window_bits: int = 15
    client_max_window_bits: int = 15


@dataclass(frozen=True)
class _Offer:
    """One validated permessage-deflate offer.

    ``client_max_window_bits`` is ``None`` (not offered), ``True`` (offered without
    a value: the client accepts any value in the response) or the client's hint.
    """

    server_no_context_takeover: bool
    client_no_context_takeover: bool
    server_max_window_bits: int | None
    client_max_window_bits: int | Literal[True] | None


# ---------------------------------------------------------------------------
# Header syntax


def _skip_ows(text: str, pos: int) -> int:
    while pos < len(text) and text[pos] in _OWS:
        pos += 1
    return pos


def _token(text: str, pos: int, what: str) -> tuple[str, int]:
    end = pos
    while end < len(text) and text[end] in _TCHAR:
        end += 1
    if end == pos:
        found = repr(text[pos]) if pos < len(text) else "end of header"
        raise ExtensionError(f"expected {what} at position {pos}, found {found}")
    return text[pos:end], end


def _quoted(text: str, pos: int) -> tuple[str, int]:
    """A quoted-string starting at ``text[pos] == '"'``, unescaped."""
    chars: list[str] = []
    pos += 1
    while pos < len(text):
        char = text[pos]
        if char == '"':
            return "".join(chars), pos + 1
        if char == "\\":
            pos += 1
            if pos == len(text):
                break
            char = text[pos]
        # qdtext and quoted-pair exclude control characters except HTAB.
        if char != "\t" and (char < " " or char == "\x7f"):
            raise ExtensionError(f"control character in quoted value at position {pos}")
        chars.append(char)
        pos += 1
    raise ExtensionError("unterminated quoted value")


def _param_value(text: str, pos: int, name: str) -> tuple[str, int]:
    if pos < len(text) and text[pos] == '"':
        value, pos = _quoted(text, pos)
        # RFC 6455 9.1: the unescaped quoted value must still be a token.
        if not value or any(char not in _TCHAR for char in value):
            raise ExtensionError(f"quoted value of {name} is not a token: {value!r}")
        return value, pos
    return _token(text, pos, f"a value for {name}")


def parse_extensions(header_values: list[str]) -> list[tuple[str, list[Param]]]:
    """Parse ``Sec-WebSocket-Extensions`` values into ``(name, [(param, value)])``.

    Offers keep their order across header lines; names are lowercased (tokens
    are compared case-insensitively), values keep their case, a parameter without
    ``=`` has the value ``None``. Raises :class:`ExtensionError` on a syntax error.
    """
    offers: list[tuple[str, list[Param]]] = []
    for text in header_values:
        pos = 0
        while True:
            pos = _skip_ows(text, pos)
            if pos == len(text):
                break
            if text[pos] == ",":  # an empty list element
                pos += 1
                continue
            name, pos = _token(text, pos, "an extension name")
            params: list[Param] = []
            pos = _skip_ows(text, pos)
            while pos < len(text) and text[pos] == ";":
                pos = _skip_ows(text, pos + 1)
                param, pos = _token(text, pos, "a parameter name")
                param = param.lower()
                pos = _skip_ows(text, pos)
                value = None
                if pos < len(text) and text[pos] == "=":
                    pos = _skip_ows(text, pos + 1)
                    value, pos = _param_value(text, pos, param)
                    pos = _skip_ows(text, pos)
                params.append((param, value))
            if pos < len(text):
                if text[pos] != ",":
                    raise ExtensionError(
                        f"expected ',' or ';' at position {pos}, found {text[pos]!r}"
                    )
                pos += 1
            offers.append((name.lower(), params))
    return offers


# ---------------------------------------------------------------------------
# permessage-deflate


def _window_bits(name: str, value: str | None) -> int:
    if value is None:
        raise ExtensionError(f"{_NAME}: {name} needs a value")
    bits = _WINDOW_BITS.get(value)
    if bits is None:
        raise ExtensionError(f"{_NAME}: {name}={value!r} is not an integer from 8 to 15")
    return bits


def _deflate_offer(params: list[Param]) -> _Offer:
    """Validate one permessage-deflate offer (RFC 7692 section 7.1)."""
    seen: set[str] = set()
    snct = cnct = False
    smwb: int | None = None
    cmwb: int | Literal[True] | None = None
    for name, value in params:
        if name in seen:
            raise ExtensionError(f"{_NAME}: duplicate parameter {name}")
        seen.add(name)
        if name in ("server_no_context_takeover", "client_no_context_takeover"):
            if value is not None:
                raise ExtensionError(f"{_NAME}: {name} takes no value, got {value!r}")
            if name == "server_no_context_takeover":
                snct = True
            else:
                cnct = True
        elif name == "server_max_window_bits":
            smwb = _window_bits(name, value)
        elif name == "client_max_window_bits":
            # Without a value it only says "I understand this parameter in the response".
            cmwb = True if value is None else _window_bits(name, value)
        else:
            raise ExtensionError(f"{_NAME}: unknown parameter {name}")
    return _Offer(snct, cnct, smwb, cmwb)


def _accept(
    offer: _Offer, mode: str, server_bits: int, client_bits: int
) -> tuple[str, DeflateParams] | None:
    """The response to one offer, or ``None`` if this server cannot honour it."""
    # Shared compressors keep no context, so one frame is valid for every connection
    # that negotiated the same window: the server keeps one per window size.
    snct = True if mode == "shared" else offer.server_no_context_takeover
    # The client's limit must be honoured (RFC 7692 7.1.2.1: respond with a value no
    # larger). 8 is honoured too: Deflater(window_bits=8) restricts itself to
    # distance-1 matches, valid for any window (see deflate.pyx).
    smwb = server_bits
    if offer.server_max_window_bits is not None:
        smwb = min(server_bits, offer.server_max_window_bits)

    parts = [_NAME]
    if snct:
        parts.append("server_no_context_takeover")
    if offer.client_no_context_takeover:
        # Agreeing costs nothing and lets the server reset (or share) its inflater.
        parts.append("client_no_context_takeover")
    if offer.server_max_window_bits is not None:
        # Only echoed when offered: some clients reject an unsolicited value.
        parts.append(f"server_max_window_bits={smwb}")
    cmwb = 15
    if offer.client_max_window_bits is not None:
        # RFC 7692 7.1.2.2: may be sent only if offered, no larger than the hint.
        cmwb = client_bits
        if offer.client_max_window_bits is not True:
            cmwb = min(client_bits, offer.client_max_window_bits)
        parts.append(f"client_max_window_bits={cmwb}")
    params = DeflateParams(
        server_no_context_takeover=snct,
        client_no_context_takeover=offer.client_no_context_takeover,
        server_max_window_bits=smwb,
        client_max_window_bits=cmwb,
    )
    return "; ".join(parts), params


def negotiate_deflate(
    header_values: list[str],
    mode: str,
    *,
    server_max_window_bits: int = 15,
    client_max_window_bits: int = 15,
) -> tuple[str, DeflateParams] | None:
    """Choose the permessage-deflate configuration for one connection.

    ``header_values`` are the request's ``Sec-WebSocket-Extensions`` values (one
    per header line); ``mode`` is the route's ``compression`` option:

    * ``"off"``: never negotiate (the header is not even parsed);
    * ``"shared"``: the server compresses with no context takeover and always says
      so (``server_no_context_takeover``), so one compressed frame is valid for
      every subscriber;
    * ``"dedicated"``: the server keeps a sliding window per connection unless the
      client asks for ``server_no_context_takeover``.

    ``server_max_window_bits`` (9..15) is the window the server's compressor uses
    when the client sets no smaller limit (in shared mode, the shared compressor's
    window); ``client_max_window_bits`` (8..15) is the window asked of a client
    that offers ``client_max_window_bits``. Smaller windows save memory per
    connection (see docs/compression.md).

    Every offer is validated; the first permessage-deflate offer this server can
    honour wins. Returns ``(response_header_value, params)`` or ``None`` (no
    compression). Raises :class:`ExtensionError` for a malformed header or offer
    (unknown or duplicate parameter, bad value, syntax error) and ``ValueError``
    for an unknown mode.
    """
    if mode not in COMPRESSION_MODES:
        raise ValueError(f"compression must be one of {COMPRESSION_MODES}, not {mode!r}")
    if not 9 <= server_max_window_bits <= 15 or not 8 <= client_max_window_bits <= 15:
        raise ValueError("window bits out of range")
    if mode == "off":
        return None
    offers = [
        _deflate_offer(params) for name, params in parse_extensions(header_values) if name == _NAME
    ]
    for offer in offers:
        accepted = _accept(offer, mode, server_max_window_bits, client_max_window_bits)
        if accepted is not None:
            return accepted
    return None

"""WebSocket routes: the handler set, the route options, and the core's ``RouteConfig``.

Everything a user can get wrong when registering a route is refused here, at
registration, with a message that names the key or option: an unknown handler key or
option, a handler that cannot take the arguments it will be called with, an option of
the wrong type or out of range.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal, TypedDict

from xyra._core.connection import RouteConfig
from xyra.callables import describe, is_async, takes_positional
from xyra.extensions import negotiate_deflate
from xyra.router import PathPattern

if TYPE_CHECKING:
    from xyra._core.connection import WebSocket
    from xyra.enums import OpCode
    from xyra.http import Request, Response

__all__ = [
    "COMPRESSION_MODES",
    "DEFAULTS",
    "HANDLER_KEYS",
    "Compression",
    "Handlers",
    "RateLimitAction",
    "RouteOptions",
    "handler_set",
    "route_config",
]

#: permessage-deflate per route: off, one no-context compressor shared by every
#: connection (frames compressed once per publish), or a window per connection.
Compression = Literal["off", "shared", "dedicated"]
#: What a client over a rate limit gets: closed with 1008, or its message dropped.
RateLimitAction = Literal["close", "drop"]

# The handler signatures (sync handlers return anything; async ones a coroutine).
OpenHandler = Callable[["WebSocket"], Any]
MessageHandler = Callable[["WebSocket", "str | bytes", "OpCode"], Any]
CloseHandler = Callable[["WebSocket", int, str], Any]
DrainHandler = Callable[["WebSocket"], Any]
PingHandler = Callable[["WebSocket", bytes], Any]
SubscriptionHandler = Callable[["WebSocket", str, int, int], Any]
UpgradeHandler = Callable[["Request"], "bool | Response | Awaitable[bool | Response | None] | None"]


class Handlers(TypedDict, total=False):
    """The event handlers of a route (``app.websocket(path, {...})``)."""

    open: OpenHandler
    """``open(ws)``: the connection is open."""
    message: MessageHandler
    """``message(ws, message, opcode)``: ``str`` for TEXT, ``bytes`` for BINARY."""
    close: CloseHandler
    """``close(ws, code, reason)``: the connection is gone (1006 if no close frame)."""
    drain: DrainHandler
    """``drain(ws)``: the queued bytes fell under ``max_backpressure``."""
    ping: PingHandler
    """``ping(ws, payload)``: the peer pinged (the pong is sent already)."""
    pong: PingHandler
    """``pong(ws, payload)``: the peer answered a ping."""
    subscription: SubscriptionHandler
    """``subscription(ws, topic, new_count, old_count)``: a topic gained or lost ``ws``."""
    upgrade: UpgradeHandler
    """``upgrade(request)``: accept (None/True), refuse (False: 403) or answer a Response."""


class RouteOptions(TypedDict, total=False):
    """The options of a WebSocket route (keyword arguments of ``app.websocket``)."""

    max_payload_length: int
    """Largest message accepted, in bytes (1 MiB); bigger ones close with 1009."""
    idle_timeout: float
    """Seconds without a byte from the peer before closing with 1001 (120; 0: never)."""
    ping_interval: float | None
    """Seconds of silence before the server pings (None: ``idle_timeout / 2``; 0: never)."""
    max_backpressure: int
    """Bytes queued for a connection past which sends are dropped (1 MiB)."""
    close_on_backpressure_limit: bool
    """Drop the TCP connection of a client over ``max_backpressure`` (False)."""
    subprotocols: Sequence[str]
    """Subprotocols the route speaks, in order of preference."""
    close_timeout: float
    """Seconds the close handshake may take before the TCP connection is dropped (5)."""
    max_queue: int
    """Events waiting behind a running async handler before reading pauses (16)."""
    compression: Compression
    """permessage-deflate: "off" (default), "shared" or "dedicated"."""
    compression_threshold: int
    """Messages shorter than this are sent uncompressed (64 bytes)."""
    allowed_origins: Sequence[str] | Literal["*"] | None
    """None: same-origin and non-browser clients; "*": any origin; else these origins."""
    max_messages_per_second: float
    """Per-connection message rate limit (0: none)."""
    max_bytes_per_second: float
    """Per-connection byte rate limit (0: none)."""
    rate_limit_action: RateLimitAction
    """Over a rate limit: "close" with 1008 (default) or "drop" the message."""


HANDLER_KEYS = ("open", "message", "close", "drain", "ping", "pong", "subscription", "upgrade")

# What each handler is called with, for the registration check and its message.
_SIGNATURES: dict[str, str] = {
    "open": "(ws)",
    "message": "(ws, message, opcode)",
    "close": "(ws, code, reason)",
    "drain": "(ws)",
    "ping": "(ws, payload)",
    "pong": "(ws, payload)",
    "subscription": "(ws, topic, new_count, old_count)",
    "upgrade": "(request)",
}

DEFAULTS: dict[str, Any] = {
    "max_payload_length": 1 << 20,
    "idle_timeout": 120.0,
    "ping_interval": None,  # idle_timeout / 2
    "max_backpressure": 64 * 1024 * 16,
    "close_on_backpressure_limit": False,
    "subprotocols": (),
    "close_timeout": 5.0,
    "max_queue": 16,
    "compression": "off",
    "compression_threshold": 64,
    "allowed_origins": None,
    "max_messages_per_second": 0,
    "max_bytes_per_second": 0,
    "rate_limit_action": "close",
}

RATE_LIMIT_ACTIONS = ("close", "drop")

COMPRESSION_MODES = {"off": 0, "shared": 1, "dedicated": 2}


def handler_set(handlers: Callable[..., Any] | Mapping[str, Any]) -> dict[str, Any]:
    """Validate a simple handler or an event dict; unknown keys and bad arities are errors."""
    if callable(handlers) and not isinstance(handlers, Mapping):
        _check_arity("open", handlers, simple=True)
        return {"open": handlers}
    if not isinstance(handlers, Mapping):
        raise TypeError(
            f"a WebSocket route takes a handler function or a dict of handlers, "
            f"not {type(handlers).__name__}"
        )
    unknown = sorted(set(handlers) - set(HANDLER_KEYS))
    if unknown:
        raise ValueError(
            f"unknown WebSocket handler key(s) {unknown}; the keys are {list(HANDLER_KEYS)}"
        )
    for key, value in handlers.items():
        if value is not None and not callable(value):
            raise TypeError(f"the {key!r} handler must be callable, not {type(value).__name__}")
        if value is not None:
            _check_arity(key, value)
    return {k: v for k, v in handlers.items() if v is not None}


def _check_arity(key: str, func: Callable[..., Any], *, simple: bool = False) -> None:
    count = _SIGNATURES[key].count(",") + 1
    if takes_positional(func, count) is False:
        what = "a simple handler" if simple else f"the {key!r} handler"
        raise TypeError(
            f"{what} is called as {key}{_SIGNATURES[key]} ({count} argument"
            f"{'s' if count > 1 else ''}), but {describe(func)} cannot take that"
        )


def route_config(path: str, handlers: dict[str, Any], options: Mapping[str, Any]) -> RouteConfig:
    """Build the compiled core's per-route configuration."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown WebSocket route option(s) {unknown}; see docs/api.md")
    opts = {**DEFAULTS, **options}
    _check_options(opts)
    pattern = PathPattern(path, "a WebSocket route")
    cfg = RouteConfig()
    cfg.path = path
    cfg.pattern = None if pattern.is_static else pattern
    for key in HANDLER_KEYS:
        setattr(cfg, key, handlers.get(key))
    cfg.open_async = "open" in handlers and is_async(handlers["open"])
    cfg.message_async = "message" in handlers and is_async(handlers["message"])
    cfg.close_async = "close" in handlers and is_async(handlers["close"])
    cfg.max_payload_length = opts["max_payload_length"]
    cfg.max_backpressure = opts["max_backpressure"]
    cfg.max_queue = opts["max_queue"]
    cfg.idle_timeout = float(opts["idle_timeout"])
    ping = opts["ping_interval"]
    cfg.ping_interval = cfg.idle_timeout / 2 if ping is None else float(ping)
    cfg.close_timeout = float(opts["close_timeout"])
    cfg.close_on_backpressure_limit = opts["close_on_backpressure_limit"]
    cfg.subprotocols = tuple(opts["subprotocols"])
    cfg.compression = COMPRESSION_MODES[opts["compression"]]
    cfg.negotiator = (
        functools.partial(negotiate_deflate, mode=opts["compression"]) if cfg.compression else None
    )
    cfg.compression_threshold = opts["compression_threshold"]
    origins = opts["allowed_origins"]
    cfg.allowed_origins = origins if origins is None or origins == "*" else tuple(origins)
    cfg.max_messages_per_second = float(opts["max_messages_per_second"])
    cfg.max_bytes_per_second = float(opts["max_bytes_per_second"])
    cfg.rate_limit_close = opts["rate_limit_action"] == "close"
    return cfg


def _check_options(opts: Mapping[str, Any]) -> None:
    """Each option's type and range, with a message that names it."""
    for key, minimum in (
        ("max_payload_length", 1),
        ("max_backpressure", 1),
        ("max_queue", 1),
        ("compression_threshold", 0),
    ):
        value = opts[key]
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{key} must be an int >= {minimum}, got {value!r}")
        if value < minimum:
            raise ValueError(f"{key} must be an int >= {minimum}, got {value!r}")
    for key, allow_none in (
        ("idle_timeout", False),
        ("close_timeout", False),
        ("ping_interval", True),
        ("max_messages_per_second", False),
        ("max_bytes_per_second", False),
    ):
        value = opts[key]
        if value is None and allow_none:
            continue
        hint = " (0 disables it)" if key != "close_timeout" else ""
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            none = " or None" if allow_none else ""
            raise TypeError(f"{key} must be a number >= 0{none}{hint}, got {value!r}")
        if not value >= 0:  # also refuses NaN
            raise ValueError(f"{key} must be a number >= 0{hint}, got {value!r}")
    if not isinstance(opts["close_on_backpressure_limit"], bool):
        raise TypeError(
            f"close_on_backpressure_limit must be True or False, "
            f"got {opts['close_on_backpressure_limit']!r}"
        )
    if opts["compression"] not in COMPRESSION_MODES:
        raise ValueError(
            f"compression must be 'off', 'shared' or 'dedicated', got {opts['compression']!r}"
        )
    if opts["rate_limit_action"] not in RATE_LIMIT_ACTIONS:
        raise ValueError(
            f"rate_limit_action must be one of {RATE_LIMIT_ACTIONS}, "
            f"got {opts['rate_limit_action']!r}"
        )
    origins = opts["allowed_origins"]
    if isinstance(origins, str) and origins != "*":
        raise TypeError(f'allowed_origins must be "*" or a list of origins, got {origins!r}')
    if origins is not None and not isinstance(origins, str):
        _check_strings("allowed_origins", origins)
    subprotocols = opts["subprotocols"]
    if isinstance(subprotocols, str):
        raise TypeError(f"subprotocols must be a list of names, not one string: {subprotocols!r}")
    _check_strings("subprotocols", subprotocols)


def _check_strings(key: str, values: object) -> None:
    try:
        items = list(values)  # type: ignore[call-overload]
    except TypeError:
        raise TypeError(f"{key} must be a list of strings, got {values!r}") from None
    bad = [v for v in items if not isinstance(v, str)]
    if bad:
        raise TypeError(f"{key} must be a list of strings, got {bad[0]!r} in it")

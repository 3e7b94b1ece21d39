"""Turning the two registration styles into one handler set per route."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from typing import Any

from xyra._core.connection import RouteConfig

HANDLER_KEYS = ("open", "message", "close", "drain", "ping", "pong", "subscription", "upgrade")

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


def is_async(handler: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, and for objects whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - we want the method itself
    return call is not None and inspect.iscoroutinefunction(call)


def handler_set(handlers: Callable[..., Any] | Mapping[str, Any]) -> dict[str, Any]:
    """Validate a simple handler or an event dict; unknown keys are errors."""
    if callable(handlers) and not isinstance(handlers, Mapping):
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
    return {k: v for k, v in handlers.items() if v is not None}


def route_config(path: str, handlers: dict[str, Any], options: Mapping[str, Any]) -> RouteConfig:
    """Build the compiled core's per-route configuration."""
    unknown = sorted(set(options) - set(DEFAULTS))
    if unknown:
        raise TypeError(f"unknown WebSocket route option(s) {unknown}; see docs/api.md")
    opts = {**DEFAULTS, **options}
    _check_options(opts)
    cfg = RouteConfig()
    cfg.path = path
    for key in HANDLER_KEYS:
        setattr(cfg, key, handlers.get(key))
    cfg.open_async = "open" in handlers and is_async(handlers["open"])
    cfg.message_async = "message" in handlers and is_async(handlers["message"])
    cfg.close_async = "close" in handlers and is_async(handlers["close"])
    cfg.max_payload_length = int(opts["max_payload_length"])
    cfg.max_backpressure = int(opts["max_backpressure"])
    cfg.max_queue = int(opts["max_queue"])
    cfg.idle_timeout = float(opts["idle_timeout"])
    ping = opts["ping_interval"]
    cfg.ping_interval = cfg.idle_timeout / 2 if ping is None else float(ping)
    cfg.close_timeout = float(opts["close_timeout"])
    cfg.close_on_backpressure_limit = bool(opts["close_on_backpressure_limit"])
    cfg.subprotocols = tuple(opts["subprotocols"])
    cfg.compression = COMPRESSION_MODES[opts["compression"]]
    cfg.compression_threshold = int(opts["compression_threshold"])
    origins = opts["allowed_origins"]
    cfg.allowed_origins = origins if origins is None or origins == "*" else tuple(origins)
    cfg.max_messages_per_second = float(opts["max_messages_per_second"])
    cfg.max_bytes_per_second = float(opts["max_bytes_per_second"])
    cfg.rate_limit_close = opts["rate_limit_action"] == "close"
    return cfg


def _check_options(opts: Mapping[str, Any]) -> None:
    if int(opts["max_payload_length"]) <= 0:
        raise ValueError("max_payload_length must be positive")
    if int(opts["max_backpressure"]) <= 0:
        raise ValueError("max_backpressure must be positive")
    if int(opts["max_queue"]) <= 0:
        raise ValueError("max_queue must be positive")
    for key in ("idle_timeout", "close_timeout"):
        if float(opts[key]) < 0:
            raise ValueError(f"{key} must be >= 0")
    if opts["ping_interval"] is not None and float(opts["ping_interval"]) < 0:
        raise ValueError("ping_interval must be >= 0")
    if int(opts["compression_threshold"]) < 0:
        raise ValueError("compression_threshold must be >= 0")
    if opts["compression"] not in COMPRESSION_MODES:
        raise ValueError("compression must be 'off', 'shared' or 'dedicated'")
    if opts["rate_limit_action"] not in RATE_LIMIT_ACTIONS:
        raise ValueError(f"rate_limit_action must be one of {RATE_LIMIT_ACTIONS}")
    for key in ("max_messages_per_second", "max_bytes_per_second"):
        if float(opts[key]) < 0:
            raise ValueError(f"{key} must be >= 0 (0 disables it)")
    origins = opts["allowed_origins"]
    if isinstance(origins, str) and origins != "*":
        raise TypeError('allowed_origins must be "*" or a list of origins')
    if isinstance(opts["subprotocols"], str):
        raise TypeError("subprotocols must be a list of names, not one string")

"""An ASGI application mounted on a Xyra App: its scopes, its route, its lifespan.

``App.mount(prefix, app)`` builds an ``ASGIMount``. It holds:

* the WebSocket route (a ``RouteConfig`` with the mount's route options) whose pattern is
  the prefix, marked ``fallback`` so the core tries it after every route of the App;
* the HTTP side, through ``ASGIStreams``: the App's ``ServerConfig.http_streams``, asked by
  the core at the end of each request head; a request under a prefix that no route or
  static folder of the App claims becomes an ``HTTPCycle``;
* the lifespan (startup and shutdown hooks of the App) and its ``state``;
* ``root_path`` (the option, as uvicorn's ``--root-path``, then the prefix) and the
  proxy-header trust.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import httptools

from xyra.asgi.http import HTTPCycle
from xyra.asgi.lifespan import Lifespan, LifespanMode
from xyra.asgi.proxy import ProxyTrust
from xyra.asgi.types import ASGI_VERSION, ASGIApp, Scope
from xyra.asgi.websocket import handlers
from xyra.routes import route_config

if TYPE_CHECKING:
    from xyra._core.connection import RouteConfig
    from xyra.app import App
    from xyra.config import HTTPStream, StreamOwner

#: What an ASGI mount's WebSocket route uses unless told otherwise: Xyra's route
#: defaults, but any origin (the app sees the Origin header and decides, as under uvicorn).
ASGI_ROUTE_DEFAULTS: dict[str, Any] = {"allowed_origins": "*"}


def check_prefix(prefix: str) -> str:
    """``"/api"`` -> ``"/api"``; ``"/"`` and ``""`` -> ``""`` (everything)."""
    if not isinstance(prefix, str) or (prefix and not prefix.startswith("/")):
        raise ValueError(f"a mount prefix must start with '/', got {prefix!r}")
    if "{" in prefix or "}" in prefix or "?" in prefix or "#" in prefix:
        raise ValueError(f"a mount prefix is a plain path, without parameters: {prefix!r}")
    return prefix.rstrip("/")


class PrefixPattern:
    """The path pattern of a mount's WebSocket route: the prefix and everything under it.

    ``fallback`` tells the core to try it after every other route.
    """

    fallback = True

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.text = prefix + "/{path:path}"
        self.param_names = ()

    def covers(self, raw_path: str) -> bool:
        prefix = self.prefix
        return not prefix or (
            raw_path.startswith(prefix)
            and (len(raw_path) == len(prefix) or raw_path[len(prefix)] == "/")
        )

    def match_path(self, raw_path: str) -> dict[str, Any] | None:
        return {} if self.covers(raw_path) else None

    def __repr__(self) -> str:
        return f"PrefixPattern({self.prefix!r})"


class ASGIMount:
    """One ASGI app served under a prefix of a Xyra App (see the module docstring)."""

    def __init__(
        self,
        prefix: str,
        app: ASGIApp,
        xyra_app: App,
        *,
        root_path: str = "",
        proxy: ProxyTrust | None = None,
        lifespan: LifespanMode = "auto",
        route_options: Mapping[str, Any] | None = None,
    ) -> None:
        if not callable(app):
            raise TypeError(f"mount() takes an ASGI application (a callable), not {app!r}")
        if lifespan not in ("auto", "on", "off"):
            raise ValueError(f"lifespan must be 'auto', 'on' or 'off', got {lifespan!r}")
        self.prefix = check_prefix(prefix)
        self.app = app
        self.xyra_app = xyra_app
        self.outer_root = root_path.rstrip("/")
        self.root_path = self.outer_root + self.prefix
        self.raw_root = self.outer_root.encode("latin-1")
        self.proxy = proxy
        self.lifespan_mode: LifespanMode = lifespan
        self.lifespan: Lifespan | None = None
        self.state: dict[str, Any] = {}
        self.loop: asyncio.AbstractEventLoop = None  # type: ignore[assignment]  # at startup
        self.pattern = PrefixPattern(self.prefix)
        options = {**ASGI_ROUTE_DEFAULTS, **(route_options or {})}
        route = route_config(self.prefix or "/", {}, options)
        for key, handler in handlers(self).items():
            setattr(route, key, handler)
        route.pattern = self.pattern
        self.route: RouteConfig = route
        self.compress = route.compression != 0
        self.xyra_extension = {"app": xyra_app}

    # -- lifecycle (the App's startup and shutdown hooks) ----------------------------------

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.state = {}
        if self.lifespan_mode == "off":
            return
        self.lifespan = Lifespan(self.app, self.state, self.lifespan_mode)
        await self.lifespan.startup()

    async def shutdown(self) -> None:
        lifespan, self.lifespan = self.lifespan, None
        if lifespan is not None:
            await lifespan.shutdown()

    # -- scopes ----------------------------------------------------------------------------

    def http_cycle(
        self,
        conn: StreamOwner,
        transport: asyncio.Transport,
        scheme: str,
        method: bytes,
        raw_path: bytes,
        path: str,
        query: bytes,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        keep_alive: bool,
    ) -> HTTPCycle:
        info = conn.stream_info  # type: ignore[attr-defined]
        if info is None:
            info = conn.stream_info = (  # type: ignore[attr-defined]
                _address(transport.get_extra_info("peername")),
                _address(transport.get_extra_info("sockname")),
            )
        if "%" in path:
            path = unquote(path)
        scope: Scope = {
            "type": "http",
            "asgi": ASGI_VERSION,
            "http_version": http_version,
            "server": info[1],
            "client": info[0],
            "scheme": scheme,
            "method": method.decode("latin-1"),
            "root_path": self.root_path,
            "path": self.outer_root + path if self.outer_root else path,
            "raw_path": self.raw_root + raw_path if self.outer_root else raw_path,
            "query_string": query,
            "headers": headers,
            "state": self.state.copy(),
            "extensions": {"xyra": self.xyra_extension},
        }
        expect = False
        if self.proxy is not None:
            self.proxy.apply(scope, headers)
        for name, value in headers:
            if name == b"expect":
                expect = value.strip().lower() == b"100-continue"
        return HTTPCycle(self, conn, transport, scope, keep_alive, expect)

    def websocket_scope(self, request: Any) -> Scope:
        """The scope of a WebSocket handshake the core passed its checks (a ``Request``)."""
        raw_path = request.raw_path
        path = unquote(raw_path) if "%" in raw_path else raw_path
        headers = [
            (name.encode("latin-1"), value.encode("latin-1"))
            for name, value in request.headers.items()
        ]
        transport = getattr(request, "transport", None)
        server = _address(transport.get_extra_info("sockname")) if transport is not None else None
        scope: Scope = {
            "type": "websocket",
            "asgi": ASGI_VERSION,
            "http_version": "1.1",
            "scheme": "wss" if request.scheme == "https" else "ws",
            "server": server,
            "client": _address(request.remote_address),
            "root_path": self.root_path,
            "path": self.outer_root + path,
            "raw_path": self.raw_root + raw_path.encode("latin-1"),
            "query_string": request.query_string.encode("latin-1"),
            "headers": headers,
            "subprotocols": request.subprotocols,
            "state": self.state.copy(),
            "extensions": {
                "websocket.http.response": {},
                "xyra": {"app": self.xyra_app, "session": None},
            },
        }
        if self.proxy is not None:
            self.proxy.apply(scope, headers)
        return scope


def _address(addr: Any) -> tuple[str, int] | None:
    if isinstance(addr, tuple) and len(addr) >= 2:
        return (str(addr[0]), int(addr[1]))
    return None


class ASGIStreams:
    """The App's ``ServerConfig.http_streams``: which requests go to which mount.

    ``claim(raw_path)`` is the App's own claim on a path: how many leading segments of it
    a static folder covers, very many for a route (HTTP or WebSocket) that matches it,
    -1 for none. A mount takes a request under its prefix when its prefix is longer
    (in segments) than the App's claim: routes always win, and a static folder at "/"
    does not hide a mount at "/api".
    """

    def __init__(self, mounts: list[ASGIMount], claim: Callable[[str], int] | None) -> None:
        self.mounts = sorted(mounts, key=lambda m: -len(m.prefix))
        self.depth = {m: m.prefix.count("/") for m in self.mounts}
        self.claim = claim

    def __call__(
        self,
        conn: StreamOwner,
        transport: asyncio.Transport,
        scheme: str,
        method: bytes,
        target: bytes,
        headers: list[tuple[bytes, bytes]],
        http_version: str,
        keep_alive: bool,
    ) -> HTTPStream | None:
        if target[:1] == b"/":
            raw_path, _, query = target.partition(b"?")
        else:  # absolute form (a proxy's request) or "*"
            try:
                url = httptools.parse_url(target)
            except httptools.HttpParserInvalidURLError:
                return None
            raw_path, query = url.path or b"/", url.query or b""
        path = raw_path.decode("latin-1")
        claimed = -1 if self.claim is None else self.claim(path)
        for mount in self.mounts:
            if mount.pattern.covers(path):
                if self.depth[mount] <= claimed:
                    return None
                return mount.http_cycle(
                    conn,
                    transport,
                    scheme,
                    method,
                    raw_path,
                    path,
                    query,
                    headers,
                    http_version,
                    keep_alive,
                )
        return None

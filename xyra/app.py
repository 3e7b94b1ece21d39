"""The facade: ``App``, route registration, publish, lifecycle and ``listen``.

An App *has* a router (HTTP routes, ``xyra/router.py``) and static folders
(``xyra/static.py``) next to its WebSocket routes; it builds one frozen
``ServerConfig`` per server it starts, and a ``Server`` never reads the App itself.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import os
import ssl as _ssl
import sys
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any, TypeVar, overload

from xyra._core.connection import RouteConfig
from xyra._core.endpoint import check_message
from xyra.asgi.lifespan import LifespanFailed, LifespanMode
from xyra.asgi.mount import ASGIMount, ASGIStreams
from xyra.asgi.proxy import trusted_from
from xyra.asgi.types import ASGIApp
from xyra.backplane import Backplane, BackplaneEvent
from xyra.config import Hook, ServerConfig, ServerLimits
from xyra.errors import ListenError
from xyra.http import MAX_FILE_SIZE, Request
from xyra.router import HTTPResult, Router, check_methods
from xyra.routes import Handlers, handler_set, route_config
from xyra.server import Server, install_signal_handlers, run_on_new_loop
from xyra.static import Mount, StaticFiles, client_js_handler
from xyra.stats import TOP_TOPICS, snapshot

if TYPE_CHECKING:
    from typing_extensions import Unpack

    from xyra.routes import RouteOptions

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("xyra")

_Buffer = bytes | bytearray | memoryview


class App:
    """A Xyra application: WebSocket and HTTP routes, pub/sub, and the server that runs them."""

    def __init__(
        self,
        *,
        handshake_timeout: float = 10.0,
        max_head_size: int = 32768,
        max_headers: int = 100,
        max_body_size: int = 1 << 20,
        max_connections: int = 0,
        max_connections_per_ip: int = 0,
        keep_alive_timeout: float | None = None,
    ) -> None:
        """Server-wide limits.

        ``handshake_timeout``: seconds a client has to send a complete request head
        (slowloris protection; also the keep-alive idle time of HTTP connections).
        ``max_head_size`` (bytes) and ``max_headers`` cap the request head: past either
        the answer is 431. ``max_body_size`` caps an HTTP request body (413).
        ``max_connections`` and ``max_connections_per_ip`` (0: no limit) answer 503 to
        connections past them. ``keep_alive_timeout``: seconds an idle keep-alive HTTP
        connection stays open (None: ``handshake_timeout``).
        """
        self.limits = ServerLimits(
            handshake_timeout=handshake_timeout,
            max_head_size=max_head_size,
            max_headers=max_headers,
            max_body_size=max_body_size,
            max_connections=max_connections,
            max_connections_per_ip=max_connections_per_ip,
            keep_alive_timeout=keep_alive_timeout,
        )
        self.router = Router()
        self.static_files = StaticFiles(self._is_websocket_path)
        self._ws_routes: dict[str, RouteConfig] = {}
        self._mounts: list[ASGIMount] = []
        self._startup: list[Hook] = []
        self._shutdown: list[Hook] = []
        self._servers: set[Server] = set()
        # scale-out (xyra.workers, xyra.backplane)
        self.worker_id = 0
        """Which worker this process is: 0 to N-1 under ``workers=N``, else 0."""
        self._backplane_hooks: list[Callable[[BackplaneEvent], Any]] = []
        # Set in a worker by xyra.workers: asks the supervisor for every worker's stats.
        self._gather_stats: Callable[[int, float], Awaitable[list[dict[str, Any]]]] | None = None

    # The limits as they were given (read-only: they are part of every ServerConfig).
    @property
    def handshake_timeout(self) -> float:
        return self.limits.handshake_timeout

    @property
    def max_head_size(self) -> int:
        return self.limits.max_head_size

    @property
    def max_headers(self) -> int:
        return self.limits.max_headers

    @property
    def max_body_size(self) -> int:
        return self.limits.max_body_size

    @property
    def max_connections(self) -> int:
        return self.limits.max_connections

    @property
    def max_connections_per_ip(self) -> int:
        return self.limits.max_connections_per_ip

    def config(
        self, backplane: str | Backplane | None = None, access_log: bool = False
    ) -> ServerConfig:
        """A frozen snapshot of everything a server of this app needs."""
        return ServerConfig(
            # ASGI mounts' routes are marked as fallbacks: the core tries them last.
            routes=(*self._ws_routes.values(), *(m.route for m in self._mounts)),
            limits=self.limits,
            http_dispatch=self._http_dispatch,
            http_streams=ASGIStreams(self._mounts, self._claim) if self._mounts else None,
            startup=tuple(self._startup),
            shutdown=tuple(self._shutdown),
            backplane=backplane,
            on_backplane=self._backplane_event,
            access_log=access_log,
        )

    # -- WebSocket routes -----------------------------------------------------------------

    @overload
    def websocket(self, path: str, /, **options: Unpack[RouteOptions]) -> Callable[[F], F]: ...

    @overload
    def websocket(
        self,
        path: str,
        handlers: Callable[..., Any] | Handlers | Mapping[str, Any],
        /,
        **options: Unpack[RouteOptions],
    ) -> None: ...

    def websocket(
        self,
        path: str,
        handlers: Callable[..., Any] | Handlers | Mapping[str, Any] | None = None,
        /,
        **options: Unpack[RouteOptions],
    ) -> Callable[[F], F] | None:
        """Register a WebSocket route.

        As a decorator, ``@app.websocket("/ws")`` registers a simple handler called
        with the ``WebSocket`` when a connection opens. Called with a dict,
        ``app.websocket("/chat", {"open": f, "message": g, "close": h})`` registers
        event handlers (keys: open, message, close, drain, ping, pong, subscription,
        upgrade; see ``xyra.routes.Handlers``). Route options (``max_payload_length``,
        ``idle_timeout``, ...; see ``xyra.routes.RouteOptions``) are keywords. ``path``
        may hold ``{name}`` segments, as HTTP routes do: their values are
        ``ws.path_params``.
        """
        if handlers is None:

            def decorator(func: F) -> F:
                self._add_route(path, func, options)
                return func

            return decorator
        self._add_route(path, handlers, options)
        return None

    def _add_route(
        self,
        path: str,
        handlers: Callable[..., Any] | Mapping[str, Any],
        options: Mapping[str, Any],
    ) -> None:
        if not isinstance(path, str) or not path.startswith("/"):
            raise ValueError(f"a route path must start with '/', got {path!r}")
        if path in self._ws_routes:
            raise ValueError(
                f"a WebSocket route is already registered at {path!r}. "
                "To send to connected clients from elsewhere, use app.publish(topic, message)"
            )
        route = route_config(path, handler_set(handlers), options)
        self._ws_routes[path] = route
        for server in self._live_servers():
            server.add_route(route)

    def _is_websocket_path(self, path: str) -> bool:
        if path in self._ws_routes:
            return True
        return any(
            r.pattern is not None and r.pattern.match_path(path) is not None
            for r in self._ws_routes.values()
        )

    # -- HTTP routes and static files -------------------------------------------------------

    @overload
    def route(self, path: str, /, *, methods: Iterable[str] = ...) -> Callable[[F], F]: ...

    @overload
    def route(self, path: str, handler: F, /, *, methods: Iterable[str] = ...) -> F: ...

    def route(
        self,
        path: str,
        handler: F | None = None,
        /,
        *,
        methods: Iterable[str] = ("GET",),
    ) -> F | Callable[[F], F]:
        """Register an HTTP handler for ``methods`` (default GET) at ``path``.

        ``@app.route("/items", methods=["GET", "POST"])`` or
        ``app.route("/items", handler, methods=["GET", "POST"])``. ``path`` may hold
        ``{name}`` (one segment), ``{name:int}`` and ``{name:path}`` (the rest of the path).
        A GET handler also answers HEAD (the body is dropped).
        """
        wanted = check_methods(methods)
        if handler is None:

            def decorator(func: F) -> F:
                self.router.add(path, func, wanted)
                return func

            return decorator
        if not callable(handler):
            raise TypeError(
                f"route({path!r}, ...): the second argument is the handler; pass the methods "
                f"as methods=[...], not {handler!r}"
            )
        self.router.add(path, handler, wanted)
        return handler

    def _method(self, method: str, path: str, handler: F | None) -> F | Callable[[F], F]:
        if handler is None:
            return self.route(path, methods=[method])
        return self.route(path, handler, methods=[method])

    @overload
    def get(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def get(self, path: str, handler: F, /) -> F: ...
    def get(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.get(path)``: a GET (and HEAD) handler."""
        return self._method("GET", path, handler)

    @overload
    def post(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def post(self, path: str, handler: F, /) -> F: ...
    def post(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.post(path)``: a POST handler."""
        return self._method("POST", path, handler)

    @overload
    def put(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def put(self, path: str, handler: F, /) -> F: ...
    def put(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.put(path)``: a PUT handler."""
        return self._method("PUT", path, handler)

    @overload
    def delete(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def delete(self, path: str, handler: F, /) -> F: ...
    def delete(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.delete(path)``: a DELETE handler."""
        return self._method("DELETE", path, handler)

    @overload
    def patch(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def patch(self, path: str, handler: F, /) -> F: ...
    def patch(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.patch(path)``: a PATCH handler."""
        return self._method("PATCH", path, handler)

    @overload
    def head(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def head(self, path: str, handler: F, /) -> F: ...
    def head(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.head(path)``: an explicit HEAD handler (GET handlers answer HEAD already)."""
        return self._method("HEAD", path, handler)

    @overload
    def options(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def options(self, path: str, handler: F, /) -> F: ...
    def options(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.options(path)``: an OPTIONS handler."""
        return self._method("OPTIONS", path, handler)

    def static(
        self,
        url_prefix: str,
        directory: str | os.PathLike[str],
        *,
        index: str | None = "index.html",
        max_file_size: int = MAX_FILE_SIZE,
        dotfiles: bool = False,
        cache_control: str | None = None,
    ) -> None:
        """Serve the files of ``directory`` under ``url_prefix`` (GET and HEAD).

        Content-Type from the file name, ``ETag`` and ``Last-Modified`` with 304 answers to
        ``If-None-Match``/``If-Modified-Since``, ``index`` for a directory (a directory
        URL without its trailing slash is redirected to it; no listings). Files over
        ``max_file_size`` (64 MiB) are refused with 500 and a log line: files are read
        whole into memory. Names starting with "." are hidden unless ``dotfiles``.
        A path that would leave the folder (``..``, encoded slashes or dots, backslashes,
        NUL, symlinks pointing outside) gets 404. ``cache_control`` sets that header.
        """
        mount = Mount(url_prefix, directory, index, max_file_size, dotfiles, cache_control)
        self.static_files.add(mount, url_prefix)

    def enable_client_js(self, path: str = "/xyra.js") -> None:
        """Serve the bundled browser client ``xyra/static/xyra.js`` (``XyraSocket``) at ``path``."""
        self.route(path, client_js_handler(), methods=["GET"])

    def _http_dispatch(self, request: Request) -> HTTPResult:
        """The app's HTTP side: routes first, then static folders; None if neither has it."""
        if self.router:
            result = self.router.dispatch(request)
            if result is not None:
                return result
        if self.static_files:
            return self.static_files.dispatch(request)
        return None

    # -- ASGI applications ----------------------------------------------------------------

    def mount(
        self,
        prefix: str,
        app: ASGIApp,
        *,
        root_path: str = "",
        proxy_headers: bool = False,
        forwarded_allow_ips: str | Iterable[str] | None = None,
        lifespan: LifespanMode = "auto",
        **options: Unpack[RouteOptions],
    ) -> None:
        """Serve the ASGI 3 application ``app`` (FastAPI, Starlette, ...) under ``prefix``.

        This App's own HTTP and WebSocket routes match first; every other request under
        ``prefix`` ("/" or "": everything) goes to ``app``, with ``root_path`` (this
        option, as uvicorn's ``--root-path``, then the prefix) in its scope. A static
        folder claims the paths under its prefix unless the mount's prefix is longer.

        ``proxy_headers``: take the client address and scheme from ``X-Forwarded-For``
        and ``X-Forwarded-Proto``, from the peers ``forwarded_allow_ips`` lists
        (addresses or networks, comma-separated, or "*"; default: $FORWARDED_ALLOW_IPS,
        else 127.0.0.1). ``lifespan``: "auto" runs the app's lifespan if it speaks it,
        "on" requires it, "off" skips it. The keywords are the route options of its
        WebSocket connections (``max_payload_length``, ``idle_timeout``,
        ``ping_interval``, ``compression``, ``max_backpressure``, ...; see
        ``app.websocket``), with any origin allowed by default (the app sees the
        ``Origin`` header and decides). See docs/asgi.md.
        """
        mount = ASGIMount(
            prefix,
            app,
            self,
            root_path=root_path,
            proxy=trusted_from(forwarded_allow_ips) if proxy_headers else None,
            lifespan=lifespan,
            route_options=options,
        )
        if any(m.prefix == mount.prefix for m in self._mounts):
            raise ValueError(f"an ASGI app is already mounted at {prefix!r}")
        if self._live_servers():
            raise RuntimeError("mount() ASGI apps before the server starts")
        self._mounts.append(mount)
        self._startup.append(mount.startup)
        self._shutdown.append(mount.shutdown)

    def _claim(self, raw_path: str) -> int:
        """How much of a path this App serves itself (see xyra.asgi.mount.ASGIStreams)."""
        if self._ws_routes and self._is_websocket_path(raw_path):
            return 1 << 30
        if self.router and self.router.has_path(raw_path):
            return 1 << 30
        if self.static_files:
            return self.static_files.claim(raw_path)
        return -1

    # -- pub/sub --------------------------------------------------------------------------

    def publish(
        self,
        topic: str,
        message: str | _Buffer,
        opcode: int | None = None,
        compress: bool = False,
    ) -> bool:
        """Send ``message`` to every subscriber of ``topic``. Safe from any thread.

        ``message`` is ``str`` (TEXT) or bytes-like (BINARY); anything else raises
        ``TypeError``, whether or not a server runs. Returns True if the topic had
        subscribers.
        """
        message = check_message(message)
        had = False
        for server in self._live_servers():
            had = server.num_subscribers(topic) > 0 or had
            server.publish(topic, message, opcode, compress)
        return had

    def num_subscribers(self, topic: str) -> int:
        """How many connections of this worker are subscribed to ``topic``."""
        return sum(server.num_subscribers(topic) for server in self._live_servers())

    # -- scale-out: the backplane ---------------------------------------------------------

    async def cluster_subscribers(self, topic: str) -> int:
        """Subscribers of ``topic`` in every worker and on every machine (on the loop).

        Asks the other workers through the backplane; without one, the local count.
        Raises ConnectionError while the backplane is down, TimeoutError if a worker
        does not answer in 2 s.
        """
        total = 0
        for server in self._live_servers():
            if server.backplane is None:
                total += server.num_subscribers(topic)
            else:
                total += await server.backplane.cluster_subscribers(topic)
        return total

    def on_backplane(self, func: F) -> F:
        """Call ``func(event)`` (sync or async) when the backplane link goes down or up.

        ``event`` is a ``xyra.backplane.BackplaneEvent``: ``up``, ``reason``, and on the
        way up ``missed_topics`` (local topics that may have missed messages) and
        ``down_for`` (seconds).
        """
        self._backplane_hooks.append(func)
        return func

    def backplane_stats(self) -> dict[str, Any] | None:
        """This worker's backplane counters (``None`` without a backplane)."""
        for server in self._live_servers():
            if server.backplane is not None:
                return server.backplane.stats()
        return None

    # -- live stats -----------------------------------------------------------------------

    def stats(self, *, top_topics: int = TOP_TOPICS) -> dict[str, Any]:
        """A snapshot of this worker's live stats: a plain dict (docs/observability.md).

        Counters since the server started (every server of this app in this process,
        summed), gauges as of now, and the ``top_topics`` busiest topics. The schema is
        stable; its version is the ``schema`` key. Call it on the server's loop.
        """
        return snapshot(self._live_servers(), self.worker_id, top_topics)

    async def cluster_stats(
        self, *, top_topics: int = TOP_TOPICS, timeout: float = 2.0
    ) -> list[dict[str, Any]]:
        """Every worker's ``stats()`` snapshot, ordered by ``worker`` (on the loop).

        Under ``--workers N`` the worker asks the others through the supervisor (the
        workers of this machine only, whatever the backplane); a worker that does not
        answer within ``timeout`` seconds is left out. With one process: ``[stats()]``.
        """
        if self._gather_stats is not None:
            return await self._gather_stats(top_topics, timeout)
        return [self.stats(top_topics=top_topics)]

    def _backplane_event(self, event: BackplaneEvent) -> None:
        for hook in self._backplane_hooks:
            result = hook(event)
            if asyncio.iscoroutine(result):
                asyncio.get_running_loop().create_task(result)

    def _live_servers(self) -> list[Server]:
        self._servers = {s for s in self._servers if not s.stopped}
        return list(self._servers)

    # -- lifecycle ------------------------------------------------------------------------

    def on_startup(self, func: F) -> F:
        """Run ``func`` (sync or async) on the server's loop before it accepts connections."""
        self._startup.append(func)
        return func

    def on_shutdown(self, func: F) -> F:
        """Run ``func`` (sync or async) after every connection was closed at shutdown."""
        self._shutdown.append(func)
        return func

    async def start(
        self,
        port: int | None = 0,
        host: str | None = "127.0.0.1",
        *,
        backplane: str | Backplane | None = None,
        access_log: bool = False,
        **kwargs: Any,
    ) -> Server:
        """Serve on the running loop; returns the ``Server`` (``.port``, ``await .stop()``).

        ``port`` and ``host`` are None when a listening socket is given as ``sock=``.

        ``backplane`` (a ``redis://`` URL or a ``Backplane``) links this server's pub/sub
        with other processes. ``access_log=True`` logs each handshake on the
        ``xyra.access`` logger (``xyra.accesslog``). ``kwargs`` go to the loop's
        ``create_server``.
        """
        server = Server(self.config(backplane, access_log), asyncio.get_running_loop())
        self._servers.add(server)
        try:
            await server.start(host, port, **kwargs)
        except BaseException:
            self._servers.discard(server)
            raise
        return server

    def listen(
        self,
        port: int = 8000,
        host: str = "127.0.0.1",
        *,
        ssl: _ssl.SSLContext | None = None,
        certfile: str | None = None,
        keyfile: str | None = None,
        workers: int = 1,
        backplane: str | Backplane | None = None,
        access_log: bool = False,
        **kwargs: Any,
    ) -> None:
        """Serve on uvloop until SIGINT or SIGTERM, then shut down gracefully and return.

        ``ssl`` (an ``ssl.SSLContext``) or ``certfile``/``keyfile`` serve ``wss://``.
        ``workers=N`` (N > 1) forks N worker processes under a supervisor
        (``xyra.workers``), linked by the embedded relay; ``backplane="redis://..."``
        links every worker of every machine through Redis instead (docs/scaling.md).
        ``access_log=True`` logs each handshake on ``xyra.access`` (``xyra run`` turns
        it on).
        If the address cannot be bound (e.g. the port is in use), prints one line to
        stderr and exits with status 1 (the traceback is logged at debug level).
        """
        _default_logging()
        context = tls_context(ssl, certfile, keyfile)
        if context is not None:
            kwargs["ssl"] = context
        if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
            raise ValueError(f"workers must be an int >= 1, got {workers!r}")
        if access_log:
            kwargs["access_log"] = True  # to start(), in this process or in each worker
        try:
            if workers > 1:
                from xyra.workers import run_workers

                code = run_workers(self, port, host, workers=workers, backplane=backplane, **kwargs)
                if code:
                    raise SystemExit(code)
                return
            self._run_one(port, host, backplane=backplane, **kwargs)
        except ListenError as exc:
            log.debug("xyra: cannot listen on %s:%s", host, port, exc_info=exc.__cause__)
            print(f"xyra: cannot listen on {host}:{port}: {bind_error(exc)}", file=sys.stderr)
            raise SystemExit(1) from None
        except LifespanFailed as exc:
            raise SystemExit(exc.report()) from None

    def _run_one(self, port: int, host: str, **kwargs: Any) -> None:
        """One process: a uvloop loop serving until SIGINT or SIGTERM."""
        run_on_new_loop(self._serve(port, host, **kwargs))

    async def _serve(self, port: int, host: str, **kwargs: Any) -> None:
        stop = asyncio.Event()
        install_signal_handlers(asyncio.get_running_loop(), stop)
        server = await self.start(port, host, **kwargs)
        await stop.wait()
        log.info("xyra: shutting down")
        await server.stop()


def bind_error(exc: OSError) -> str:
    """What went wrong binding a listener, in a few words."""
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    if exc.errno == errno.EACCES:
        return "permission denied"
    if exc.errno == errno.EADDRNOTAVAIL:
        return "address not available on this machine"
    return exc.strerror or str(exc)


def tls_context(
    context: _ssl.SSLContext | None, certfile: str | None, keyfile: str | None
) -> _ssl.SSLContext | None:
    """The server's TLS context: the one given, or one built from a certificate file."""
    if context is not None and certfile is not None:
        raise ValueError("pass either ssl= or certfile=/keyfile=, not both")
    if certfile is None:
        return context
    built = _ssl.create_default_context(_ssl.Purpose.CLIENT_AUTH)
    built.load_cert_chain(certfile, keyfile)
    return built


def _default_logging() -> None:
    """A script that runs ``listen`` without configuring logging still sees xyra's log."""
    if not logging.getLogger().handlers and not log.handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)

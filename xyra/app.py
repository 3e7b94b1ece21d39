"""The facade: ``App``, route registration, publish, lifecycle and ``listen``."""

from __future__ import annotations

import asyncio
import functools
import logging
import ssl as _ssl
from collections.abc import Callable, Mapping
from typing import Any, TypeVar, overload

from xyra._core.connection import RouteConfig
from xyra.backplane import Backplane, BackplaneEvent
from xyra.extensions import negotiate_deflate
from xyra.http_routes import HTTPRoutes
from xyra.routes import handler_set, route_config
from xyra.server import Server, install_signal_handlers, new_event_loop

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("xyra")


class App(HTTPRoutes):
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
    ) -> None:
        """Server-wide limits.

        ``handshake_timeout``: seconds a client has to send a complete request head
        (slowloris protection; also the keep-alive idle time of HTTP connections).
        ``max_head_size`` (bytes) and ``max_headers`` cap the request head: past either
        the answer is 431. ``max_body_size`` caps an HTTP request body (413).
        ``max_connections`` and ``max_connections_per_ip`` (0: no limit) answer 503 to
        connections past them.
        """
        if handshake_timeout <= 0 or max_head_size <= 0 or max_headers <= 0 or max_body_size < 0:
            raise ValueError("handshake_timeout, max_head_size and max_headers must be positive")
        if max_connections < 0 or max_connections_per_ip < 0:
            raise ValueError("connection limits must be >= 0 (0: no limit)")
        self.handshake_timeout = float(handshake_timeout)
        self.max_head_size = int(max_head_size)
        self.max_headers = int(max_headers)
        self.max_body_size = int(max_body_size)
        self.max_connections = int(max_connections)
        self.max_connections_per_ip = int(max_connections_per_ip)
        HTTPRoutes.__init__(self)
        self._routes: dict[str, RouteConfig] = {}
        self._startup: list[Callable[[], Any]] = []
        self._shutdown: list[Callable[[], Any]] = []
        self._servers: set[Server] = set()
        # scale-out (xyra.workers, xyra.backplane)
        self.worker_id = 0
        """Which worker this process is: 0 to N-1 under ``workers=N``, else 0."""
        self._backplane_hooks: list[Callable[[BackplaneEvent], Any]] = []

    # -- routes ---------------------------------------------------------------------------

    @overload
    def websocket(self, path: str, /, **options: Any) -> Callable[[F], F]: ...

    @overload
    def websocket(
        self, path: str, handlers: Callable[..., Any] | Mapping[str, Any], /, **options: Any
    ) -> None: ...

    def websocket(
        self,
        path: str,
        handlers: Callable[..., Any] | Mapping[str, Any] | None = None,
        /,
        **options: Any,
    ) -> Callable[[F], F] | None:
        """Register a WebSocket route.

        As a decorator, ``@app.websocket("/ws")`` registers a simple handler called
        with the ``WebSocket`` when a connection opens. Called with a dict,
        ``app.websocket("/chat", {"open": f, "message": g, "close": h})`` registers
        event handlers (keys: open, message, close, drain, ping, pong, subscription).
        Route options (``max_payload_length``, ``idle_timeout``, ...) are keywords.
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
        if path in self._routes:
            raise ValueError(
                f"a WebSocket route is already registered at {path!r}. "
                "To send to connected clients from elsewhere, use app.publish(topic, message)"
            )
        cfg = route_config(path, handler_set(handlers), options)
        self._routes[path] = cfg
        for server in self._servers:
            server.context.routes[path] = cfg

    # -- pub/sub --------------------------------------------------------------------------

    def publish(
        self, topic: str, message: str | bytes, opcode: int | None = None, compress: bool = False
    ) -> bool:
        """Send ``message`` to every subscriber of ``topic``. Safe from any thread.

        Returns True if the topic had subscribers.
        """
        had = False
        for server in list(self._servers):
            had = server.hub.num_subscribers(topic) > 0 or had
            server.hub.publish(topic, message, opcode, compress, None)
        return had

    def num_subscribers(self, topic: str) -> int:
        """How many connections of this worker are subscribed to ``topic``."""
        return sum(server.hub.num_subscribers(topic) for server in list(self._servers))

    # -- scale-out: the backplane ---------------------------------------------------------

    async def cluster_subscribers(self, topic: str) -> int:
        """Subscribers of ``topic`` in every worker and on every machine (on the loop).

        Asks the other workers through the backplane; without one, the local count.
        Raises ConnectionError while the backplane is down, TimeoutError if a worker
        does not answer in 2 s.
        """
        total = 0
        for server in list(self._servers):
            if server.backplane is None:
                total += server.hub.num_subscribers(topic)
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
        for server in list(self._servers):
            if server.backplane is not None:
                return server.backplane.stats()
        return None

    def _backplane_event(self, event: BackplaneEvent) -> None:
        for hook in self._backplane_hooks:
            result = hook(event)
            if asyncio.iscoroutine(result):
                asyncio.get_running_loop().create_task(result)

    # -- lifecycle ------------------------------------------------------------------------

    def on_startup(self, func: F) -> F:
        """Run ``func`` (sync or async) on the server's loop before it accepts connections."""
        self._startup.append(func)
        return func

    def on_shutdown(self, func: F) -> F:
        """Run ``func`` (sync or async) after every connection was closed at shutdown."""
        self._shutdown.append(func)
        return func

    async def start(self, port: int = 0, host: str = "127.0.0.1", **kwargs: Any) -> Server:
        """Serve on the running loop; returns the ``Server`` (``.port``, ``await .stop()``)."""
        server = Server(self, asyncio.get_running_loop())
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
        **kwargs: Any,
    ) -> None:
        """Serve on uvloop until SIGINT or SIGTERM, then shut down gracefully and return.

        ``ssl`` (an ``ssl.SSLContext``) or ``certfile``/``keyfile`` serve ``wss://``.
        ``workers=N`` (N > 1) forks N worker processes under a supervisor
        (``xyra.workers``), linked by the embedded relay; ``backplane="redis://..."``
        links every worker of every machine through Redis instead (docs/scaling.md).
        """
        _default_logging()
        context = tls_context(ssl, certfile, keyfile)
        if context is not None:
            kwargs["ssl"] = context
        if workers < 1:
            raise ValueError(f"workers must be >= 1, not {workers}")
        if workers > 1:
            from xyra.workers import run_workers

            code = run_workers(self, port, host, workers=workers, backplane=backplane, **kwargs)
            if code:
                raise SystemExit(code)
            return
        if backplane is not None:
            kwargs["backplane"] = backplane
        loop = new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve(port, host, **kwargs))
        finally:
            try:
                _cancel_all_tasks(loop)
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                asyncio.set_event_loop(None)
                loop.close()

    async def _serve(self, port: int, host: str, **kwargs: Any) -> None:
        stop = asyncio.Event()
        install_signal_handlers(asyncio.get_running_loop(), stop)
        server = await self.start(port, host, **kwargs)
        await stop.wait()
        log.info("xyra: shutting down")
        await server.stop()

    # -- for the server -------------------------------------------------------------------

    def _route_configs(self) -> dict[str, RouteConfig]:
        return dict(self._routes)

    def _negotiators(self) -> dict[str, Any]:
        """permessage-deflate negotiation per route that enables compression."""
        modes = {0: "off", 1: "shared", 2: "dedicated"}
        return {
            path: functools.partial(negotiate_deflate, mode=modes[cfg.compression])
            for path, cfg in self._routes.items()
            if cfg.compression
        }

    def _max_close_timeout(self) -> float:
        return max((cfg.close_timeout for cfg in self._routes.values()), default=5.0)

    def _tick_interval(self) -> float:
        """Timers are checked by one periodic tick: a quarter of the shortest timeout."""
        spans = [self.handshake_timeout]
        for cfg in self._routes.values():
            spans += [cfg.idle_timeout, cfg.ping_interval, cfg.close_timeout]
        shortest = min(s for s in spans if s > 0)
        return min(1.0, max(0.02, shortest / 4))


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


def _cancel_all_tasks(loop: asyncio.AbstractEventLoop) -> None:
    tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
    for task in tasks:
        task.cancel()
    if tasks:
        loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))

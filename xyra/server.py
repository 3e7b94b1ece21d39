"""Running a ServerConfig: uvloop, the periodic tick, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import os
import signal
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterable
from typing import Any, cast

from xyra import accesslog
from xyra._core.connection import RouteConfig
from xyra._core.protocol import ServerContext, tune_malloc
from xyra._core.pubsub import Hub
from xyra.backplane import Backplane
from xyra.backplane import create as create_backplane
from xyra.config import Hook, ServerConfig
from xyra.errors import ListenError

log = logging.getLogger("xyra")

#: How often the loop-lag probe is due (seconds): how late it runs is the loop's lag.
LAG_INTERVAL = 0.1


async def run_hooks(hooks: Iterable[Hook]) -> None:
    for hook in hooks:
        result = hook()
        if isinstance(result, Awaitable):
            await result


class Server:
    """A running server: ``port``, ``host`` and ``await stop()``."""

    def __init__(self, config: ServerConfig, loop: asyncio.AbstractEventLoop) -> None:
        self.config = config
        self.loop = loop
        self.hub = Hub(loop, log)
        self.context = ServerContext(self.hub, config)
        self._server: asyncio.base_events.Server | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._stopped = asyncio.Event()
        self.stopped = False
        #: This worker's link to the other workers and machines, or None.
        self.backplane: Backplane | None = None
        self.host = ""
        self.port = 0
        #: When it started serving (``time.time()``), for the stats' uptime; 0 before.
        self.started_at = 0.0
        self._lag_handle: asyncio.TimerHandle | None = None
        self._lag_due = 0.0

    def add_route(self, route: RouteConfig) -> None:
        """Serve a WebSocket route added while the server runs.

        Thread-safe: from another thread the change is made on the server's loop.
        """
        if not self._on_loop():
            self.loop.call_soon_threadsafe(self.add_route, route)
            return
        self.context.add_route(route)
        # The config stays the one description of what this server serves.
        self.config = dataclasses.replace(self.config, routes=(*self.config.routes, route))

    def publish(
        self, topic: str, message: Any, opcode: int | None = None, compress: bool = False
    ) -> int:
        """Publish to this server's subscribers of ``topic`` (safe from any thread)."""
        return self.hub.publish(topic, message, opcode, compress, None)

    def num_subscribers(self, topic: str) -> int:
        """This server's subscribers of ``topic``."""
        return self.hub.num_subscribers(topic)

    def _on_loop(self) -> bool:
        try:
            return asyncio.get_running_loop() is self.loop
        except RuntimeError:
            return False

    async def start(self, host: str | None, port: int | None, **kwargs: Any) -> None:
        """Bind, run the startup hooks, then accept connections.

        The address is bound first, so a port in use fails before any hook ran; if a
        startup hook fails, the listener is closed again and the error propagates.
        """
        if os.environ.get("XYRA_TUNE_MALLOC", "1") != "0":
            tune_malloc()
        if kwargs.get("ssl") is not None:
            self.context.scheme = "https"
        context = self.context
        # uvloop reads into any protocol with get_buffer and lets the WebSocket take the
        # transport over after the upgrade; plain asyncio loops need data_received on a
        # protocol that does not inherit from asyncio.BufferedProtocol.
        context.switch_protocol = is_uvloop(self.loop)
        try:
            # The context is the protocol factory: on uvloop a new connection starts as a
            # WebSocket that its upgrade opens in place (protocol.pyx).
            listener = await self.loop.create_server(
                cast(Callable[[], asyncio.BufferedProtocol], context),
                host,
                port,
                reuse_address=True,
                start_serving=False,
                **kwargs,
            )
        except OSError as exc:
            raise ListenError(host, port, exc) from exc
        try:
            await run_hooks(self.config.startup)
            if self.config.backplane is not None:
                await self._start_backplane(self.config.backplane)
            await listener.start_serving()
        except BaseException:
            listener.close()
            if self.backplane is not None:
                await self._stop_backplane()
            raise
        self._server = listener
        sockname = listener.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self.started_at = time.time()
        self._tick()
        self._lag_due = time.monotonic()
        self._probe_lag()
        log.info("xyra: listening on %s:%d", self.host, self.port)

    async def _start_backplane(self, spec: str | Backplane) -> None:
        self.backplane = create_backplane(spec)
        self.hub.backplane = self.backplane
        on_event = self.config.on_backplane or (lambda event: None)
        await self.backplane.start(self.hub, on_event)

    async def _stop_backplane(self) -> None:
        backplane, self.backplane = self.backplane, None
        self.hub.backplane = None
        if backplane is not None:
            await backplane.stop()

    def _tick(self) -> None:
        # The access log's flag is cached in the core (one C test per handshake) and
        # follows the logger's level from here.
        self.context.access_log = self.config.access_log and accesslog.enabled()
        self.context.tick(self.loop.time())
        self._tick_handle = self.loop.call_later(self.config.tick_interval, self._tick)

    def _probe_lag(self) -> None:
        # A timer due every LAG_INTERVAL: how late it runs is how long the loop was busy
        # (a blocking handler, a long burst). One sample per run, into a C histogram.
        now = time.monotonic()
        self.hub.record_lag(now - self._lag_due)
        self._lag_due = now + LAG_INTERVAL
        self._lag_handle = self.loop.call_later(LAG_INTERVAL, self._probe_lag)

    @property
    def connections(self) -> int:
        return len(self.context.connections)

    def stop_listening(self) -> None:
        """Close the listening socket; connections already accepted go on (draining)."""
        if self._server is not None:
            self._server.close()

    async def stop(self, timeout: float | None = None) -> None:
        """Stop accepting, close every connection with 1001, run the shutdown hooks."""
        if self._server is None:
            return
        server, self._server = self._server, None
        server.close()
        self.context.close_all(1001, "server shutting down")
        limit = self.config.close_timeout + 1.0 if timeout is None else timeout
        deadline = self.loop.time() + limit
        while self.context.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.context.connections:
            log.warning(
                "xyra: %d connections did not close in time; dropping them",
                len(self.context.connections),
            )
            self.context.abort_all()
            await asyncio.sleep(0)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        if self._lag_handle is not None:
            self._lag_handle.cancel()
        await server.wait_closed()
        self.stopped = True
        await run_hooks(self.config.shutdown)
        await self._stop_backplane()
        self._stopped.set()

    async def wait_closed(self) -> None:
        await self._stopped.wait()


def install_signal_handlers(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            loop.add_signal_handler(sig, stop.set)
        except (NotImplementedError, RuntimeError):  # pragma: no cover - non-POSIX
            signal.signal(sig, lambda *_: loop.call_soon_threadsafe(stop.set))


def is_uvloop(loop: asyncio.AbstractEventLoop) -> bool:
    return type(loop).__module__.split(".")[0] == "uvloop"


def run_on_new_loop(main: Coroutine[Any, Any, None]) -> None:
    """Run ``main`` on a new uvloop loop of this thread, then cancel what it left running,
    close the async generators and the loop (a process's or a worker's whole life)."""
    loop = new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(main)
    finally:
        try:
            tasks = [t for t in asyncio.all_tasks(loop) if not t.done()]
            for task in tasks:
                task.cancel()
            if tasks:
                loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()

"""Running an App: uvloop, the periodic tick, signals and graceful shutdown."""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import signal
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, cast

from xyra._core.protocol import PlainServerProtocol, ServerContext, ServerProtocol, tune_malloc
from xyra._core.pubsub import PubSubHub
from xyra.backplane import Backplane
from xyra.backplane import create as create_backplane
from xyra.http import Request, Response

if TYPE_CHECKING:
    from xyra.app import App

log = logging.getLogger("xyra")


async def run_hooks(hooks: list[Callable[[], Any]]) -> None:
    for hook in hooks:
        result = hook()
        if isinstance(result, Awaitable):
            await result


class Server:
    """A running server: ``port``, ``host`` and ``await stop()``."""

    def __init__(self, app: App, loop: asyncio.AbstractEventLoop) -> None:
        self.app = app
        self.loop = loop
        self.hub = PubSubHub(loop, log)
        self.context = ServerContext(
            self.hub,
            app._route_configs(),
            max_head_size=app.max_head_size,
            max_headers=app.max_headers,
            handshake_timeout=app.handshake_timeout,
            max_body_size=app.max_body_size,
            max_connections=app.max_connections,
            max_connections_per_ip=app.max_connections_per_ip,
            http_dispatch=app._http_dispatch,
            request_class=Request,
            response_class=Response,
        )
        self.context.negotiators = app._negotiators()
        self._server: asyncio.base_events.Server | None = None
        self._tick_handle: asyncio.TimerHandle | None = None
        self._stopped = asyncio.Event()
        self.backplane: Backplane | None = None
        self.host = ""
        self.port = 0

    async def start(
        self, host: str, port: int, backplane: str | Backplane | None = None, **kwargs: Any
    ) -> None:
        if os.environ.get("XYRA_TUNE_MALLOC", "1") != "0":
            tune_malloc()
        if kwargs.get("ssl") is not None:
            self.context.scheme = "https"
        await run_hooks(self.app._startup)
        if backplane is not None:  # pub/sub with other workers and machines
            self.backplane = create_backplane(backplane)
            self.hub.backplane = self.backplane
            await self.backplane.start(self.hub, self.app._backplane_event)
        context = self.context
        # uvloop reads into any protocol with get_buffer and lets the WebSocket take the
        # transport over after the upgrade; plain asyncio loops need data_received on a
        # protocol that does not inherit from asyncio.BufferedProtocol.
        context.switch_protocol = is_uvloop(self.loop)
        factory = ServerProtocol if context.switch_protocol else PlainServerProtocol
        try:
            self._server = await self.loop.create_server(
                cast(Callable[[], asyncio.BufferedProtocol], functools.partial(factory, context)),
                host,
                port,
                reuse_address=True,
                **kwargs,
            )
        except BaseException:
            if self.backplane is not None:
                await self.backplane.stop()
            raise
        sockname = self._server.sockets[0].getsockname()
        self.host, self.port = sockname[0], sockname[1]
        self._interval = self.app._tick_interval()
        self._tick()
        log.info("xyra: listening on %s:%d", self.host, self.port)

    def _tick(self) -> None:
        self.context.tick(self.loop.time())
        self._tick_handle = self.loop.call_later(self._interval, self._tick)

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
        limit = self.app._max_close_timeout() + 1.0 if timeout is None else timeout
        deadline = self.loop.time() + limit
        while self.context.connections and self.loop.time() < deadline:
            await asyncio.sleep(0.02)
        if self.context.connections:
            log.warning("xyra: %d connections did not close in time; dropping them",
                        len(self.context.connections))
            self.context.abort_all()
            await asyncio.sleep(0)
        if self._tick_handle is not None:
            self._tick_handle.cancel()
        await server.wait_closed()
        self.app._servers.discard(self)
        await run_hooks(self.app._shutdown)
        if self.backplane is not None:
            await self.backplane.stop()
            self.hub.backplane = None
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


def new_event_loop() -> asyncio.AbstractEventLoop:
    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop is a dependency on POSIX
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()

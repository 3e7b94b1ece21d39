"""Fixtures of the integration tests: real sockets on 127.0.0.1, real clients.

``serve``        ``server = await serve(app, **start_kwargs)``: ``kit.served`` (``app.start()``
                 on the running loop, port 0; ``sndbuf=N`` for a small SO_SNDBUF), stopped in
                 teardown.
``connect``      ``client = await connect(server, "/path", **websockets_kwargs)``: a
                 ``websockets`` client, closed in teardown (before the server stops).
``raw_connect``  ``raw = await raw_connect(server, "/path", rcvbuf=N)``: a ``kit.RawClient``
                 that has completed the handshake and reads only when told to; the way to
                 build a client that never reads. Aborted in teardown.

Everything else (timeouts, frames, raw clients, served apps) is in the kit (tests/kit).
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import websockets
from kit import TIMEOUT, RawClient, served, ws_url

from xyra import App, Server
from xyra._core import endpoint, protocol

# -- leak check (debug builds) -----------------------------------------------------------------
# In a debug build the core counts its live WebSockets, Extras and HTTP-phase protocols
# (the counters are compiled out of release builds). After each test, once pytest has
# dropped the test's own references (its fixtures' values), they must be back to zero;
# the tests that leave any are listed and the run fails at the end.

_leaks: list[str] = []


def _live() -> dict[str, int]:
    return {**endpoint.live_objects(), **protocol.live_objects()}


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_protocol(item: pytest.Item, nextitem: pytest.Item | None) -> Any:
    yield
    if endpoint.debug_build():
        gc.collect()
        live = _live()
        if any(live.values()):
            _leaks.append(f"{item.nodeid}: {live}")
            # Count what the next test leaves from zero again.
            endpoint.reset_live_objects()
            protocol.reset_live_objects()


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if _leaks:
        print("\nleak check: objects still alive after these tests:", *_leaks, sep="\n  ")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture
async def serve() -> AsyncIterator[Callable[..., Awaitable[Server]]]:
    async with contextlib.AsyncExitStack() as stack:

        async def _serve(app: App, **kwargs: Any) -> Server:
            return await stack.enter_async_context(served(app, **kwargs))

        yield _serve


@pytest.fixture
async def connect(serve: Any) -> AsyncIterator[Callable[..., Awaitable[Any]]]:
    # Depends on ``serve`` so that the clients close before the servers stop.
    clients: list[Any] = []

    async def _connect(server: Server, path: str = "/", **kwargs: Any) -> Any:
        kwargs.setdefault("open_timeout", TIMEOUT)
        client = await websockets.connect(ws_url(server, path), **kwargs)
        clients.append(client)
        return client

    yield _connect
    for client in clients:
        try:
            await asyncio.wait_for(client.close(), 2.0)
        except (asyncio.TimeoutError, OSError):
            client.transport.abort()


@pytest.fixture
async def raw_connect(serve: Any) -> AsyncIterator[Callable[..., Awaitable[RawClient]]]:
    clients: list[RawClient] = []

    async def _raw_connect(server: Server, path: str = "/", **kwargs: Any) -> RawClient:
        raw = await RawClient.open(server, path, **kwargs)
        clients.append(raw)
        return raw

    yield _raw_connect
    for raw in clients:
        with contextlib.suppress(OSError):
            raw.abort()

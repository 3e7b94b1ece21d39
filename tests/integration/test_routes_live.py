"""WebSocket routes as a server serves them: added while it runs, and with path parameters."""

from __future__ import annotations

import asyncio
import dataclasses
from typing import Any

import pytest
import websockets
from kit import TIMEOUT, served, ws_url
from websockets.exceptions import InvalidStatus

from xyra import App, Request, WebSocket
from xyra.config import ServerConfig


async def test_route_added_while_running_negotiates_compression() -> None:
    # The bug: a route added after start got its handlers but not its negotiator.
    app = App()
    app.websocket("/plain", {"message": lambda ws, m, op: ws.send(m)})
    async with served(app) as server:
        app.websocket(
            "/late",
            {"message": lambda ws, m, op: ws.send(m, compress=True)},
            compression="shared",
            compression_threshold=0,
        )
        async with websockets.connect(ws_url(server, "/late"), compression="deflate") as client:
            extensions = client.response.headers.get("Sec-WebSocket-Extensions", "")
            assert extensions.startswith("permessage-deflate")
            await client.send("x" * 1000)
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "x" * 1000


async def test_route_added_while_running_brings_its_timers() -> None:
    # The tick interval follows the routes: a short idle timeout added at runtime works.
    app = App()
    app.websocket("/slow", {"message": lambda ws, m, op: None}, idle_timeout=600)
    async with served(app) as server:
        assert server.config.tick_interval == 1.0
        app.websocket(
            "/quick", {"message": lambda ws, m, op: None}, idle_timeout=0.2, ping_interval=0
        )
        assert server.config.tick_interval == 0.05
        async with websockets.connect(ws_url(server, "/quick"), ping_interval=None) as client:
            await asyncio.wait_for(client.wait_closed(), TIMEOUT)
            assert client.close_code == 1001


def test_server_config_is_frozen_and_complete() -> None:
    app = App(max_headers=50)

    @app.on_startup
    def hook() -> None:
        pass

    app.websocket("/a", {"open": lambda ws: None}, close_timeout=7.0)
    config = app.config()
    assert isinstance(config, ServerConfig)
    assert [r.path for r in config.routes] == ["/a"]
    assert config.limits.max_headers == 50 and config.startup == (hook,)
    assert config.close_timeout == 7.0
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.routes = ()  # type: ignore[misc]
    app.websocket("/b", {"open": lambda ws: None})
    assert len(config.routes) == 1  # a snapshot: later routes reach servers via add_route


# -- path parameters ------------------------------------------------------------------------


def rooms_app() -> tuple[App, list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    app = App()
    opened: list[tuple[str, dict[str, Any]]] = []
    upgrades: list[dict[str, Any]] = []

    def on_open(ws: WebSocket) -> None:
        opened.append((ws.path, ws.path_params))
        ws.send(f"{ws.path_params}")

    def on_upgrade(request: Request) -> None:
        upgrades.append(dict(request.path_params))

    app.websocket("/room/{name}", {"open": on_open, "upgrade": on_upgrade})
    app.websocket("/room/lobby", {"open": lambda ws: ws.send("the static lobby")})
    app.websocket("/user/{id:int}/feed", {"open": on_open})
    app.websocket("/files/{rest:path}", {"open": on_open})
    return app, opened, upgrades


async def recv_first(server: Any, path: str) -> Any:
    async with websockets.connect(ws_url(server, path)) as client:
        return await asyncio.wait_for(client.recv(), TIMEOUT)


async def test_path_parameters_reach_the_websocket_and_the_upgrade_handler() -> None:
    app, opened, upgrades = rooms_app()
    async with served(app) as server:
        assert await recv_first(server, "/room/kitchen?x=1") == "{'name': 'kitchen'}"
        assert await recv_first(server, "/room/caf%C3%A9") == "{'name': 'café'}"
        assert await recv_first(server, "/user/42/feed") == "{'id': 42}"
        assert await recv_first(server, "/files/a/b/c.txt") == "{'rest': 'a/b/c.txt'}"
    assert opened[0] == ("/room/kitchen?x=1", {"name": "kitchen"})
    assert upgrades == [{"name": "kitchen"}, {"name": "café"}]


async def test_static_route_wins_over_a_parameterised_one() -> None:
    app, opened, upgrades = rooms_app()
    async with served(app) as server:
        assert await recv_first(server, "/room/lobby") == "the static lobby"
    assert opened == [] and upgrades == []


@pytest.mark.parametrize("path", ["/room/", "/room/a/b", "/user/x/feed", "/user/1", "/other"])
async def test_paths_that_match_no_route_get_404(path: str) -> None:
    app, _, _ = rooms_app()
    async with served(app) as server:
        with pytest.raises(InvalidStatus) as info:
            await websockets.connect(ws_url(server, path))
        assert info.value.response.status_code == 404


async def test_a_route_without_parameters_has_empty_path_params() -> None:
    app = App()
    app.websocket("/plain", {"open": lambda ws: ws.send(repr(ws.path_params))})
    async with served(app) as server:
        assert await recv_first(server, "/plain") == "{}"


def test_bad_path_patterns_are_refused_at_registration() -> None:
    app = App()
    for bad, match in [
        ("/room/{name", "bad path parameter"),
        ("/a/{x}/{x}", "appears twice"),
        ("/a/{x:float}", "unknown converter"),
        ("/{rest:path}/tail", "must be the last segment"),
    ]:
        with pytest.raises(ValueError, match=match):
            app.websocket(bad, {"open": lambda ws: None})

"""The facade's less travelled paths, each through the public API with real sockets where
one is involved: limits as attributes, runtime routes from another thread, a failing
startup hook, bind errors, the CLI's argument errors, HTTP handler registration errors."""

from __future__ import annotations

import asyncio
import errno
import socket
import threading
from typing import Any

import pytest
import websockets
from kit import TIMEOUT, served, wait_for_condition, ws_url

from xyra import App, HTTPError, Request, WebSocket
from xyra.__main__ import AppSpecError, load_app, main
from xyra.app import bind_error
from xyra.backplane import BackplaneEvent
from xyra.callables import describe, takes_positional
from xyra.router import PathPattern


def test_limits_read_back_as_given() -> None:
    app = App(
        handshake_timeout=3,
        max_head_size=4096,
        max_headers=20,
        max_body_size=10,
        max_connections=5,
        max_connections_per_ip=2,
    )
    assert (app.handshake_timeout, app.max_head_size, app.max_headers) == (3, 4096, 20)
    assert (app.max_body_size, app.max_connections, app.max_connections_per_ip) == (10, 5, 2)
    assert app.config().limits == app.limits
    with pytest.raises(TypeError, match=r"max_headers must be an int >= 1, got 2\.5"):
        App(max_headers=2.5)  # type: ignore[arg-type]


async def test_route_added_from_another_thread_is_served() -> None:
    app = App()
    app.websocket("/a", {"open": lambda ws: ws.send("a")})
    async with served(app) as server:

        def register() -> None:
            app.websocket("/b", {"open": lambda ws: ws.send("b")})

        thread = threading.Thread(target=register)
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        # The change hops onto the server's loop: wait for it to have run there.
        await wait_for_condition(lambda: "/b" in server.context.routes)
        async with websockets.connect(ws_url(server, "/b")) as client:
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == "b"


async def test_a_failing_startup_hook_stops_the_start_and_frees_the_port() -> None:
    app = App()
    shutdown: list[str] = []

    @app.on_startup
    async def broken() -> None:
        raise RuntimeError("the database is down")

    app.on_shutdown(lambda: shutdown.append("ran"))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(RuntimeError, match="the database is down"):
        await app.start(port)
    # The listener was closed again: the port can be bound, and no server is left.
    with socket.socket() as again:
        again.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        again.bind(("127.0.0.1", port))
    assert app.num_subscribers("t") == 0 and shutdown == []


async def test_cluster_subscribers_without_a_backplane_is_the_local_count() -> None:
    app = App()
    opened: asyncio.Future[WebSocket] = asyncio.get_running_loop().create_future()

    def on_open(ws: WebSocket) -> None:
        ws.subscribe("news")
        opened.set_result(ws)

    app.websocket("/", {"open": on_open})
    async with served(app) as server, websockets.connect(ws_url(server)):
        await asyncio.wait_for(opened, TIMEOUT)
        assert await app.cluster_subscribers("news") == 1
        assert app.backplane_stats() is None


async def test_backplane_hooks_may_be_async() -> None:
    app = App()
    seen: asyncio.Queue[BackplaneEvent] = asyncio.Queue()

    @app.on_backplane
    async def hook(event: BackplaneEvent) -> None:
        await seen.put(event)

    event = BackplaneEvent(up=False, backplane="redis://x", reason="reset")
    app.config().on_backplane(event)  # type: ignore[misc]
    assert await asyncio.wait_for(seen.get(), TIMEOUT) is event


@pytest.mark.parametrize("workers", [0, -1, 1.5, True])
def test_listen_refuses_a_bad_worker_count(workers: Any) -> None:
    with pytest.raises(ValueError, match="workers must be an int >= 1"):
        App().listen(0, workers=workers)


@pytest.mark.parametrize(
    ("code", "words"),
    [
        (errno.EADDRINUSE, "address already in use"),
        (errno.EACCES, "permission denied"),
        (errno.EADDRNOTAVAIL, "address not available on this machine"),
        (errno.ENOENT, "No such file or directory"),
    ],
)
def test_bind_errors_in_a_few_words(code: int, words: str) -> None:
    import os

    assert bind_error(OSError(code, os.strerror(code))) == words


@pytest.mark.parametrize(
    ("argv", "error"),
    [
        (["run", "m:app", "--port", "http"], "not a port number: 'http'"),
        (["run", "m:app", "--workers", "many"], "not a number of workers: 'many'"),
        (["run", "m:app", "--workers", "0"], "must be at least 1, not 0"),
    ],
)
def test_cli_argument_errors(argv: list[str], error: str, capsys: Any) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert error in capsys.readouterr().err


def test_factory_must_be_callable(tmp_path: Any, monkeypatch: Any) -> None:
    (tmp_path / "notfactory.py").write_text("app = 42\n")
    monkeypatch.syspath_prepend(str(tmp_path))
    with pytest.raises(AppSpecError, match="--factory: notfactory:app is not callable"):
        load_app("notfactory:app", str(tmp_path), factory=True)


def test_http_handler_registration_errors() -> None:
    app = App()
    with pytest.raises(TypeError, match="the second argument is the handler"):
        app.route("/x", "GET")  # type: ignore[call-overload]
    with pytest.raises(TypeError, match="'request' cannot be \\*request"):
        app.get("/a", lambda *request: None)
    with pytest.raises(TypeError, match="positional-only request parameter must be first"):

        def late(x: int = 1, request: Request | None = None, /) -> None:
            pass

        app.get("/b", late)
    app.route("/c", lambda: "c", methods="POST")  # one method as a string
    with pytest.raises(ValueError, match="already registered"):
        app.post("/c", lambda: "again")


def test_builtins_are_taken_on_trust() -> None:
    assert takes_positional(print, 3) is True
    assert takes_positional(int.__add__, 9) is False
    # C callables without a readable signature: no verdict, and just a name in messages.
    assert takes_positional(max, 1) is None
    assert describe(max) == "max"
    assert describe(len) == "len(obj, /)"
    App().websocket("/m", {"message": max})  # taken on trust
    assert repr(PathPattern("/r/{name}")) == "PathPattern('/r/{name}')"


async def test_a_bad_http_error_is_a_500(caplog: pytest.LogCaptureFixture) -> None:
    class Broken(HTTPError):
        def response(self) -> Any:
            raise ValueError("cannot build it")

    app = App()

    @app.get("/bad")
    def bad() -> None:
        raise Broken(418, "teapot")

    async with served(app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /bad HTTP/1.1\r\nHost: x\r\n\r\n")
        line = await asyncio.wait_for(reader.readline(), TIMEOUT)
        writer.close()
    assert line.startswith(b"HTTP/1.1 500")
    assert "bad HTTPError raised by" in caplog.text


async def test_head_on_a_parameterised_get_route() -> None:
    app = App()
    app.get("/users/{id:int}", lambda id: {"id": id})
    async with served(app) as server:
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"HEAD /users/7 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        data = await asyncio.wait_for(reader.read(), TIMEOUT)
        writer.close()
    head, _, body = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200") and b"content-length: 8" in head.lower()  # {"id":7}
    assert body == b""

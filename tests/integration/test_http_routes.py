"""HTTP routes and static files over real sockets: aiohttp as the client, plus raw sockets
where the bytes on the wire matter (keep-alive, HEAD, pipelining, traversal attempts that
clients would normalise away).
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from kit import TIMEOUT, RawClient, http_request, http_url, recv, upgrade_request, ws_url
from kit.refcodec import OP_TEXT
from yarl import URL

from xyra import App, Server, WebSocket
from xyra.http import Request, Response


def base(server: Server) -> str:
    return http_url(server, "")


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=TIMEOUT)) as s:
        yield s


@pytest.fixture
async def raw(serve: Any) -> AsyncIterator[Any]:
    """``conn = await raw(server)``: a TCP connection that speaks HTTP/1.1 by hand."""
    conns: list[RawClient] = []

    async def _open(server: Server) -> RawClient:
        conn = await RawClient.connect(server)
        conns.append(conn)
        return conn

    yield _open
    for conn in conns:
        conn.close()


def demo_app(**options: Any) -> App:
    app = App(**options)

    @app.get("/")
    def index() -> str:
        return "<h1>home</h1>"

    @app.get("/users/{id:int}")
    def user(request: Request, id: int) -> dict[str, Any]:
        return {"id": id, "query": request.query, "cookies": request.cookies}

    @app.get("/files/{rest:path}")
    async def files(rest: str) -> str:
        await asyncio.sleep(0.01)
        return f"file {rest}"

    @app.post("/echo")
    def echo(request: Request) -> Response:
        return Response(request.body, content_type=request.headers.get("content-type"))

    @app.put("/json")
    async def put_json(request: Request) -> dict[str, Any]:
        return {"got": request.json()}

    @app.get("/slow")
    async def slow() -> str:
        await asyncio.sleep(0.2)
        return "slow"

    @app.get("/fast")
    def fast() -> str:
        return "fast"

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("sync secret")

    @app.get("/aboom")
    async def aboom() -> str:
        raise RuntimeError("async secret")

    @app.delete("/users/{id:int}")
    def remove(id: int) -> None:
        return None

    return app


# -- routes --------------------------------------------------------------------------------


async def test_routes_params_and_handler_kinds(serve: Any, session: aiohttp.ClientSession) -> None:
    server = await serve(demo_app())
    async with session.get(base(server) + "/") as r:
        assert r.status == 200 and r.headers["Content-Type"] == "text/html; charset=utf-8"
        assert await r.text() == "<h1>home</h1>"
        assert r.headers["Server"] == "xyra" and "Date" in r.headers
    async with session.get(
        base(server) + "/users/42?a=1&a=2&b=x", headers={"Cookie": "sid=abc; theme=dark"}
    ) as r:
        assert r.status == 200 and r.headers["Content-Type"] == "application/json"
        assert await r.json() == {
            "id": 42,
            "query": {"a": "2", "b": "x"},
            "cookies": {"sid": "abc", "theme": "dark"},
        }
    async with session.get(base(server) + "/files/a/b%20c.txt") as r:  # async handler
        assert await r.text() == "file a/b c.txt"
    async with session.post(
        base(server) + "/echo",
        data=b"\x00\xffdata",
        headers={"Content-Type": "application/x-thing"},
    ) as r:
        assert await r.read() == b"\x00\xffdata"
        assert r.headers["Content-Type"] == "application/x-thing"
    async with session.put(base(server) + "/json", json={"k": [1, "é"]}) as r:
        assert await r.json() == {"got": {"k": [1, "é"]}}
    async with session.put(base(server) + "/json", data=b"{nope") as r:
        assert r.status == 400
    async with session.delete(base(server) + "/users/1") as r:
        assert r.status == 204 and await r.read() == b""
    async with session.get(base(server) + "/users/x") as r:
        assert r.status == 404


async def test_404_405_and_allow(serve: Any, session: aiohttp.ClientSession) -> None:
    server = await serve(demo_app())
    async with session.get(base(server) + "/nothing/here") as r:
        assert r.status == 404
    async with session.post(base(server) + "/") as r:
        assert r.status == 405 and r.headers["Allow"] == "GET, HEAD"
    async with session.patch(base(server) + "/users/3") as r:
        assert r.status == 405 and r.headers["Allow"] == "DELETE, GET, HEAD"


async def test_keep_alive_two_requests_on_one_connection(serve: Any, raw: Any) -> None:
    server = await serve(demo_app())
    conn = await raw(server)
    await conn.send(http_request("/"))
    r = await conn.recv_response()
    assert (r.status, r.body) == (200, b"<h1>home</h1>")
    assert r.headers["connection"] == "keep-alive"
    await conn.send(http_request("/users/7"))
    r = await conn.recv_response()
    assert r.status == 200 and b'"id":7' in r.body
    await conn.send(http_request("/fast", headers="Connection: close\r\n"))
    r = await conn.recv_response()
    assert (r.status, r.body, r.headers["connection"]) == (200, b"fast", "close")
    assert await conn.at_eof()


async def test_pipelined_requests_are_answered_in_order(serve: Any, raw: Any) -> None:
    server = await serve(demo_app())
    conn = await raw(server)
    await conn.send(b"".join(http_request(path) for path in ("/slow", "/fast", "/files/x", "/")))
    bodies = [(await conn.recv_response()).body for _ in range(4)]
    assert bodies == [b"slow", b"fast", b"file x", b"<h1>home</h1>"]


async def test_head_has_no_body(serve: Any, raw: Any) -> None:
    server = await serve(demo_app())
    conn = await raw(server)
    await conn.send(http_request("/", method="HEAD"))
    r = await conn.recv_response(head_only=True)
    assert r.status == 200 and r.headers["content-length"] == str(len(b"<h1>home</h1>"))
    # Had the body been sent, it would come before the next response's status line.
    await conn.send(http_request("/fast"))
    r = await conn.recv_response()
    assert (r.status, r.body) == (200, b"fast")


async def test_http_1_0_closes(serve: Any, raw: Any) -> None:
    server = await serve(demo_app())
    conn = await raw(server)
    await conn.send(b"GET /fast HTTP/1.0\r\n\r\n")
    r = await conn.recv_response()
    assert (r.status, r.body, r.headers["connection"]) == (200, b"fast", "close")
    assert await conn.at_eof()


async def test_body_limit_413(serve: Any, raw: Any, session: aiohttp.ClientSession) -> None:
    assert App().max_body_size == 1 << 20
    server = await serve(demo_app(max_body_size=1024))
    async with session.post(base(server) + "/echo", data=b"x" * 1024) as r:
        assert r.status == 200 and len(await r.read()) == 1024
    conn = await raw(server)
    await conn.send(http_request("/echo", method="POST", body=b"x" * 1025))
    assert (await conn.recv_response()).status == 413
    assert await conn.at_eof()
    chunked = await raw(server)
    chunk = b"x" * 600
    await chunked.send(
        b"POST /echo HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n\r\n"
        + (b"258\r\n" + chunk + b"\r\n") * 2
        + b"0\r\n\r\n"
    )
    assert (await chunked.recv_response()).status == 413


async def test_default_body_limit_is_one_mib(serve: Any, session: aiohttp.ClientSession) -> None:
    server = await serve(demo_app())
    async with session.post(base(server) + "/echo", data=b"y" * (1 << 20)) as r:
        assert r.status == 200 and len(await r.read()) == 1 << 20
    try:
        async with session.post(base(server) + "/echo", data=b"y" * ((1 << 20) + 1)) as r:
            assert r.status == 413
    except aiohttp.ClientConnectionError:
        pass  # the server may close before the client finished sending: also a refusal


@pytest.mark.parametrize("path,secret", [("/boom", "sync secret"), ("/aboom", "async secret")])
async def test_500_without_traceback_on_the_wire(
    serve: Any, raw: Any, caplog: pytest.LogCaptureFixture, path: str, secret: str
) -> None:
    caplog.set_level(logging.ERROR, logger="xyra")
    server = await serve(demo_app())
    conn = await raw(server)
    await conn.send(http_request(path))
    r = await conn.recv_response()
    assert r.status == 500 and r.body == b"Internal Server Error\n"
    assert b"Traceback" not in r.body and secret.encode() not in r.body
    assert f"RuntimeError: {secret}" in caplog.text and "Traceback" in caplog.text
    await conn.send(http_request("/fast"))  # the connection is still usable
    assert (await conn.recv_response()).body == b"fast"


# -- static files --------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "public"
    (root / "docs").mkdir(parents=True)
    (root / "index.html").write_text("<h1>index</h1>")
    (root / "app.css").write_text("body{}")
    (root / "docs" / "index.html").write_text("docs")
    (root / "logo.png").write_bytes(b"\x89PNG\r\n" + os.urandom(400_000))  # read off-loop
    (tmp_path / "secret.txt").write_text("TOP SECRET")
    (root / "link").symlink_to(tmp_path / "secret.txt")
    return root


async def test_static_files_etag_304(
    serve: Any, site: Path, session: aiohttp.ClientSession, raw: Any
) -> None:
    app = App()
    app.static("/", site)
    server = await serve(app)
    async with session.get(base(server) + "/app.css") as r:
        assert r.status == 200 and await r.text() == "body{}"
        assert r.headers["Content-Type"] == "text/css; charset=utf-8"
        etag, modified = r.headers["ETag"], r.headers["Last-Modified"]
    async with session.get(base(server) + "/app.css", headers={"If-None-Match": etag}) as r:
        assert r.status == 304 and await r.read() == b"" and r.headers["ETag"] == etag
    async with session.get(base(server) + "/app.css", headers={"If-Modified-Since": modified}) as r:
        assert r.status == 304
    async with session.get(base(server) + "/") as r:
        assert await r.text() == "<h1>index</h1>"
    async with session.get(base(server) + "/docs", allow_redirects=False) as r:
        assert r.status == 307 and r.headers["Location"] == "/docs/"
    async with session.get(base(server) + "/docs") as r:  # following the redirect
        assert await r.text() == "docs"
    async with session.get(base(server) + "/logo.png") as r:
        assert r.headers["Content-Type"] == "image/png"
        assert await r.read() == (site / "logo.png").read_bytes()
    conn = await raw(server)
    await conn.send(http_request("/app.css", method="HEAD"))
    r = await conn.recv_response(head_only=True)
    assert r.status == 200 and r.headers["content-length"] == "6" and r.headers["etag"] == etag
    await conn.send(http_request("/missing.css"))
    assert (await conn.recv_response()).status == 404


@pytest.mark.parametrize(
    "path",
    [
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/docs/%2e%2e/%2e%2e/secret.txt",
        "/..%5csecret.txt",
        "/..\\secret.txt",
        "/docs%00",
        "/link",
    ],
)
async def test_static_traversal_is_404(serve: Any, site: Path, raw: Any, path: str) -> None:
    app = App()
    app.static("/", site)
    server = await serve(app)
    conn = await raw(server)
    await conn.send(http_request(path))
    r = await conn.recv_response()
    assert r.status in (400, 404), path  # 400: the HTTP parser refused the bytes already
    assert b"SECRET" not in r.body


async def test_static_traversal_with_aiohttp_encoded(
    serve: Any, site: Path, session: aiohttp.ClientSession
) -> None:
    app = App()
    app.static("/static", site)
    server = await serve(app)
    url = URL(base(server) + "/static/%2e%2e/secret.txt", encoded=True)
    async with session.get(url) as r:
        assert r.status == 404 and "SECRET" not in await r.text()


async def test_client_js(serve: Any, session: aiohttp.ClientSession) -> None:
    app = App()
    app.enable_client_js()
    server = await serve(app)
    async with session.get(base(server) + "/xyra.js") as r:
        assert r.status == 200 and "javascript" in r.headers["Content-Type"]
        assert "class XyraSocket" in await r.text()


# -- HTTP and WebSocket on one path ---------------------------------------------------------


async def test_websocket_and_http_share_a_path(
    serve: Any, raw: Any, session: aiohttp.ClientSession
) -> None:
    app = App()

    @app.get("/live")
    def live_page() -> str:
        return "<p>the page</p>"

    @app.websocket("/live")
    def live(ws: WebSocket) -> None:
        ws.send("hello over websocket")

    @app.websocket("/only-ws")
    def only(ws: WebSocket) -> None:
        ws.send("x")

    server = await serve(app)
    async with session.get(base(server) + "/live") as r:
        assert r.status == 200 and await r.text() == "<p>the page</p>"
    async with websockets.connect(ws_url(server, "/live")) as client:
        assert await recv(client) == "hello over websocket"
    async with session.ws_connect(base(server) + "/live") as client:  # aiohttp's client too
        msg = await client.receive(timeout=TIMEOUT)
        assert msg.data == "hello over websocket"
    async with session.get(base(server) + "/only-ws") as r:
        assert r.status == 426 and r.headers["Upgrade"].lower() == "websocket"
    # keep-alive, then an upgrade on the same connection
    conn = await raw(server)
    await conn.send(http_request("/live"))
    assert (await conn.recv_response()).body == b"<p>the page</p>"
    await conn.send(upgrade_request("/live"))
    assert (await conn.recv_head()).startswith(b"HTTP/1.1 101")
    assert await conn.recv_frame() == (OP_TEXT, b"hello over websocket")

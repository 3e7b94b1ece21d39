"""ASGI ``websocket`` scope on Xyra's WebSocket engine: a real FastAPI app and raw ASGI apps,
with the websockets client and raw sockets; pub/sub between ASGI WebSockets and Xyra."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import websockets
from kit import (
    TIMEOUT,
    RawClient,
    closed_code,
    errors_logged,
    http_url,
    recv,
    wait_for_condition,
    ws_url,
)

from xyra import App
from xyra.asgi import ClientDisconnected, xyra_app, xyra_websocket

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI, Request, WebSocket, WebSocketDisconnect  # noqa: E402


def chat_app(seen: dict[str, Any]) -> FastAPI:
    api = FastAPI()

    @api.websocket("/echo")
    async def echo(ws: WebSocket) -> None:
        offered = ws.scope["subprotocols"]
        await ws.accept(
            subprotocol="chat.v2" if "chat.v2" in offered else None,
            headers=[(b"x-served-by", b"fastapi")],
        )
        try:
            while True:
                message = await ws.receive()
                if message["type"] == "websocket.disconnect":
                    seen["disconnect"] = message
                    return
                if message.get("text") == "close please":
                    await ws.close(4321, "as you wish")
                    return
                if message.get("text") is not None:
                    await ws.send_text(message["text"])
                else:
                    await ws.send_bytes(message["bytes"])
        finally:
            seen.setdefault("ended", asyncio.Event()).set()

    @api.websocket("/private")
    async def private(ws: WebSocket) -> None:
        await ws.close(code=1008)  # before accept: the handshake is refused

    @api.websocket("/fails")
    async def fails(ws: WebSocket) -> None:
        await ws.accept()
        await ws.receive_text()
        raise RuntimeError("handler bug")

    @api.websocket("/rooms/{room}")
    async def room(ws: WebSocket, room: str) -> None:
        await ws.accept()
        native = xyra_websocket(ws)
        native.subscribe(room)
        try:
            async for text in ws.iter_text():
                native.publish(room, f"{text} (from a peer)")
        except WebSocketDisconnect:
            pass

    @api.post("/rooms/{room}")
    async def announce(room: str, request: Request) -> dict[str, bool]:
        text = (await request.body()).decode()
        return {"had": xyra_app(request).publish(room, text)}

    return api


@pytest.fixture
async def server(serve: Any) -> Any:
    seen: dict[str, Any] = {}
    app = App()
    app.websocket("/native", {"message": lambda ws, m, op: ws.send(f"native: {m}")})
    app.mount("/api", chat_app(seen), max_payload_length=1024)
    server = await serve(app)
    server.seen = seen
    return server


async def test_echo_text_bytes_subprotocol_and_accept_headers(server: Any, connect: Any) -> None:
    client = await connect(server, "/api/echo", subprotocols=["chat.v1", "chat.v2"])
    assert client.subprotocol == "chat.v2"
    assert client.response.headers["x-served-by"] == "fastapi"
    await client.send("hello")
    assert await recv(client) == "hello"
    await client.send(b"\x00\xffbytes")
    assert await recv(client) == b"\x00\xffbytes"


async def test_close_with_custom_code_and_reason(server: Any, connect: Any) -> None:
    client = await connect(server, "/api/echo")
    await client.send("close please")
    assert await closed_code(client) == (4321, "as you wish")


async def test_client_close_reaches_the_app(server: Any, connect: Any) -> None:
    client = await connect(server, "/api/echo")
    await client.close(4000, "bye")
    await asyncio.wait_for(_ended(server.seen), TIMEOUT)
    assert server.seen["disconnect"] == {
        "type": "websocket.disconnect",
        "code": 4000,
        "reason": "bye",
    }


async def _ended(seen: dict[str, Any]) -> None:
    await wait_for_condition(lambda: "ended" in seen)
    await seen["ended"].wait()


async def test_close_before_accept_is_a_403(server: Any) -> None:
    with pytest.raises(websockets.InvalidStatus) as exc:
        await websockets.connect(ws_url(server, "/api/private"), open_timeout=TIMEOUT)
    assert exc.value.response.status_code == 403


async def test_exception_closes_with_1011(
    server: Any, connect: Any, caplog: pytest.LogCaptureFixture
) -> None:
    client = await connect(server, "/api/fails")
    await client.send("go")
    code, reason = await closed_code(client)
    assert code == 1011 and "bug" not in reason
    assert any("handler bug" in (r.exc_text or "") for r in caplog.records)


async def test_route_options_apply(server: Any, connect: Any) -> None:
    client = await connect(server, "/api/echo", max_size=None)
    await client.send("x" * 2000)  # over the mount's max_payload_length=1024
    code, _ = await closed_code(client)
    assert code == 1009


async def test_native_route_beside_the_mount(server: Any, connect: Any) -> None:
    client = await connect(server, "/native")
    await client.send("hi")
    assert await recv(client) == "native: hi"


async def test_asgi_websockets_join_xyra_pubsub(server: Any, connect: Any) -> None:
    alice = await connect(server, "/api/rooms/lobby")
    bob = await connect(server, "/api/rooms/lobby")
    # The endpoint subscribes right after accept.
    await wait_for_condition(lambda: server.num_subscribers("lobby") == 2)
    async with httpx.AsyncClient(base_url=http_url(server)) as http:
        r = await http.post("/api/rooms/lobby", content=b"welcome")
    assert r.json() == {"had": True}
    # Straight from Xyra's pub/sub to both clients.
    assert await recv(alice) == "welcome"
    assert await recv(bob) == "welcome"
    await alice.send("hi bob")
    assert await recv(bob) == "hi bob (from a peer)"


# -- raw ASGI apps -----------------------------------------------------------------------------


class RawWS:
    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.errors: list[BaseException] = []
        self.done = asyncio.Event()

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            raise RuntimeError("no lifespan here")
        self.scopes.append(scope)
        path = scope["path"]
        assert (await receive())["type"] == "websocket.connect"
        try:
            if path == "/deny":
                await send(
                    {
                        "type": "websocket.http.response.start",
                        "status": 403,
                        "headers": [(b"content-type", b"text/plain"), (b"x-why", b"nope")],
                    }
                )
                await send(
                    {"type": "websocket.http.response.body", "body": b"go ", "more_body": True}
                )
                await send({"type": "websocket.http.response.body", "body": b"away"})
            elif path == "/raise-first":
                raise RuntimeError("before accept")
            elif path == "/send-first":
                await send({"type": "websocket.send", "text": "too early"})
            elif path == "/returns":
                await send({"type": "websocket.accept"})
            elif path == "/after-close":
                await send({"type": "websocket.accept"})
                while (await receive())["type"] != "websocket.disconnect":
                    pass
                await send({"type": "websocket.send", "text": "anyone?"})
            else:
                await send({"type": "websocket.accept"})
                while True:
                    event = await receive()
                    if event["type"] == "websocket.disconnect":
                        return
                    await send(
                        {
                            "type": "websocket.send",
                            "text": event.get("text"),
                            "bytes": event.get("bytes"),
                        }
                    )
        except Exception as exc:
            self.errors.append(exc)
            raise
        finally:
            self.done.set()


@pytest.fixture
async def raw_server(serve: Any) -> tuple[Any, RawWS]:
    app_ = RawWS()
    app = App()
    app.mount("/", app_)
    return await serve(app), app_


async def test_websocket_scope(raw_server: tuple[Any, RawWS], connect: Any) -> None:
    server, app_ = raw_server
    client = await connect(server, "/room%201/x?a=1", subprotocols=["p1", "p2"])
    await client.send("ping")
    assert await recv(client) == "ping"
    scope = app_.scopes[0]
    assert scope["type"] == "websocket"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["scheme"] == "ws"
    assert scope["path"] == "/room 1/x" and scope["raw_path"] == b"/room%201/x"
    assert scope["query_string"] == b"a=1"
    assert scope["subprotocols"] == ["p1", "p2"]
    assert scope["server"] == ("127.0.0.1", server.port)
    assert scope["client"][0] == "127.0.0.1"
    assert (b"upgrade", b"websocket") in scope["headers"]
    assert "websocket.http.response" in scope["extensions"]
    assert client.subprotocol is None  # the app accepted without one


async def test_denial_with_an_http_response(raw_server: tuple[Any, RawWS]) -> None:
    server, _ = raw_server
    raw = await RawClient.connect(server)
    try:
        await raw.send(
            b"GET /deny HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
        )
        response = await raw.recv_response()
    finally:
        raw.close()
    assert response.status == 403
    assert response.headers["x-why"] == "nope"
    assert response.body == b"go away"


async def test_failure_or_silence_before_accept_is_a_500(
    raw_server: tuple[Any, RawWS], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = raw_server
    for path in ("/raise-first", "/send-first"):
        with pytest.raises(websockets.InvalidStatus) as exc:
            await websockets.connect(ws_url(server, path), open_timeout=TIMEOUT)
        assert exc.value.response.status_code == 500
    logged = "\n".join(errors_logged(caplog)) + "".join(r.exc_text or "" for r in caplog.records)
    assert "before accept" in logged
    assert "'websocket.send' before 'websocket.accept'" in logged


async def test_app_returning_closes_with_1000(raw_server: tuple[Any, RawWS], connect: Any) -> None:
    server, _ = raw_server
    client = await connect(server, "/returns")
    assert (await closed_code(client))[0] == 1000


async def test_send_after_close_raises_an_oserror(
    raw_server: tuple[Any, RawWS], connect: Any
) -> None:
    server, app_ = raw_server
    client = await connect(server, "/after-close")
    await client.close()
    await asyncio.wait_for(app_.done.wait(), TIMEOUT)
    assert isinstance(app_.errors[0], ClientDisconnected)
    assert isinstance(app_.errors[0], OSError)


async def test_slow_reader_app_pauses_the_client(serve: Any) -> None:
    """Events the app has not read wait in order: past max_queue of them the core holds
    the rest (and pauses reading past max_queue more); nothing is lost or reordered."""
    release = asyncio.Event()
    got: list[str] = []

    async def slow(scope: dict[str, Any], receive: Any, send: Any) -> None:
        await receive()
        await send({"type": "websocket.accept"})
        await release.wait()
        while True:
            event = await receive()
            if event["type"] == "websocket.disconnect":
                return
            got.append(event["text"])
            if len(got) == 200:
                await send({"type": "websocket.send", "text": "all"})

    app = App()
    app.mount("/", slow, lifespan="off", max_queue=4)
    server = await serve(app)
    async with websockets.connect(ws_url(server), open_timeout=TIMEOUT) as client:
        for i in range(200):
            await client.send(str(i))
        release.set()
        assert await recv(client) == "all"
    assert got == [str(i) for i in range(200)]


async def test_tls_scopes_say_https_and_wss(serve: Any) -> None:
    import ssl

    import trustme

    ca = trustme.CA()
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    schemes: list[str] = []

    async def app_(scope: dict[str, Any], receive: Any, send: Any) -> None:
        schemes.append(scope["scheme"])
        if scope["type"] == "http":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"secure"})
        else:
            await receive()
            await send({"type": "websocket.accept"})
            await send({"type": "websocket.send", "text": "secure"})

    app = App()
    app.mount("/", app_, lifespan="off")
    server = await serve(app, ssl=server_ctx)
    async with httpx.AsyncClient(verify=client_ctx) as client:
        r = await client.get(f"https://127.0.0.1:{server.port}/")
    assert r.text == "secure"
    async with websockets.connect(
        f"wss://127.0.0.1:{server.port}/", ssl=client_ctx, open_timeout=TIMEOUT
    ) as ws:
        assert await recv(ws) == "secure"
    assert schemes == ["https", "wss"]

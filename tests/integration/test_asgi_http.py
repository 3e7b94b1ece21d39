"""ASGI ``http`` scope on Xyra: real FastAPI/Starlette apps and raw ASGI apps, mounted on an
App served on a real port, driven by httpx, aiohttp and raw sockets."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
from kit import TIMEOUT, RawClient, errors_logged, http_request, http_url, wait_for_condition

from xyra import App
from xyra.asgi import ClientDisconnected, xyra_app

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")
aiohttp = pytest.importorskip("aiohttp")
starlette_responses = pytest.importorskip("starlette.responses")

from fastapi import FastAPI, File, Request, UploadFile  # noqa: E402
from pydantic import BaseModel  # noqa: E402
from starlette.applications import Starlette  # noqa: E402
from starlette.responses import PlainTextResponse, StreamingResponse  # noqa: E402
from starlette.routing import Route  # noqa: E402


class Item(BaseModel):
    name: str
    price: float


def fastapi_app(events: dict[str, Any]) -> FastAPI:
    api = FastAPI()

    @api.get("/items/{item_id}")
    async def read_item(item_id: int, q: str | None = None) -> dict[str, Any]:
        return {"item_id": item_id, "q": q}

    @api.post("/items")
    async def create_item(item: Item) -> dict[str, Any]:
        return {"name": item.name, "price_cents": round(item.price * 100)}

    @api.post("/upload")
    async def upload(file: UploadFile = File(...)) -> dict[str, Any]:  # noqa: B008
        data = await file.read()
        return {"filename": file.filename, "size": len(data), "sum": sum(data) % 65521}

    @api.get("/stream")
    async def stream() -> StreamingResponse:
        async def chunks() -> Any:
            for i in range(5):
                yield f"part {i}\n"

        return StreamingResponse(chunks(), media_type="text/plain")

    @api.get("/sse")
    async def sse(request: Request) -> StreamingResponse:
        async def ticks() -> Any:
            try:
                i = 0
                while True:
                    yield f"data: {i}\n\n"
                    i += 1
                    await asyncio.sleep(0.005)  # the app's own pace, not a test wait
            finally:
                events["sse_ended"].set()

        return StreamingResponse(ticks(), media_type="text/event-stream")

    @api.get("/boom")
    async def boom() -> None:
        raise RuntimeError("the secret internals")

    @api.get("/link")
    async def link(request: Request) -> dict[str, str]:
        return {
            "url": str(request.url_for("read_item", item_id=7)),
            "root_path": request.scope["root_path"],
            "path": request.scope["path"],
        }

    @api.post("/publish/{topic}")
    async def publish(topic: str, request: Request) -> dict[str, bool]:
        text = (await request.body()).decode()
        return {"had": xyra_app(request).publish(topic, text)}

    return api


@pytest.fixture
def events() -> dict[str, Any]:
    return {"sse_ended": asyncio.Event()}


@pytest.fixture
async def server(serve: Any, events: dict[str, Any]) -> Any:
    app = App()

    @app.get("/native")
    def native() -> str:
        return "native"

    app.mount("/api", fastapi_app(events))
    return await serve(app)


async def test_json_path_query_and_body_with_httpx_and_aiohttp(server: Any) -> None:
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        r = await client.get("/api/items/42", params={"q": "x y"})
        assert r.status_code == 200
        assert r.json() == {"item_id": 42, "q": "x y"}
        r = await client.post("/api/items", json={"name": "café", "price": 1.5})
        assert r.json() == {"name": "café", "price_cents": 150}
        r = await client.get("/api/items/notanint")
        assert r.status_code == 422
        assert r.headers["server"] == "xyra" and "date" in r.headers
    async with aiohttp.ClientSession() as session:
        async with session.get(http_url(server, "/api/items/3?q=a")) as resp:
            assert resp.status == 200
            assert await resp.json() == {"item_id": 3, "q": "a"}
        async with session.post(
            http_url(server, "/api/items"), json={"name": "b", "price": 2}
        ) as r:
            assert await r.json() == {"name": "b", "price_cents": 200}


async def test_native_routes_match_first_and_404_outside_the_prefix(server: Any) -> None:
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        assert (await client.get("/native")).text == "native"
        r = await client.get("/elsewhere")
        assert r.status_code == 404 and r.text.startswith("nothing at")
        r = await client.get("/api/unknown")
        assert r.status_code == 404 and r.json() == {"detail": "Not Found"}


async def test_file_upload_streams_through_flow_control(server: Any) -> None:
    data = bytes(range(256)) * 4096  # 1 MiB: many body chunks, past the 64 KiB high water
    async with httpx.AsyncClient(base_url=http_url(server), timeout=TIMEOUT) as client:
        r = await client.post("/api/upload", files={"file": ("blob.bin", data)})
    assert r.status_code == 200, r.text
    assert r.json() == {"filename": "blob.bin", "size": len(data), "sum": sum(data) % 65521}


async def test_streaming_response_is_chunked(server: Any) -> None:
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        r = await client.get("/api/stream")
    assert r.headers["transfer-encoding"] == "chunked"
    assert "content-length" not in r.headers
    assert r.text == "".join(f"part {i}\n" for i in range(5))


async def test_sse_client_leaving_midway_ends_the_stream(
    server: Any, events: dict[str, Any]
) -> None:
    async with httpx.AsyncClient(base_url=http_url(server), timeout=TIMEOUT) as client:
        async with client.stream("GET", "/api/sse") as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            seen = []
            async for line in r.aiter_lines():
                if line.startswith("data:"):
                    seen.append(line)
                if len(seen) == 3:
                    break
    assert seen == ["data: 0", "data: 1", "data: 2"]
    await asyncio.wait_for(events["sse_ended"].wait(), TIMEOUT)


async def test_exception_is_a_500_without_the_traceback(
    server: Any, caplog: pytest.LogCaptureFixture
) -> None:
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        r = await client.get("/api/boom")
        assert r.status_code == 500
        assert "secret" not in r.text and "Traceback" not in r.text
        # the connection is still usable
        assert (await client.get("/api/items/1")).status_code == 200
    assert any("the secret internals" in (r.exc_text or "") for r in caplog.records)


async def test_root_path_and_url_for(serve: Any, events: dict[str, Any]) -> None:
    app = App()
    app.mount("/api", fastapi_app(events))
    app.mount("/v2", fastapi_app(events), root_path="/behind-proxy")
    server = await serve(app)
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        r = await client.get("/api/link")
        assert r.json() == {
            "url": http_url(server, "/api/items/7"),
            "root_path": "/api",
            "path": "/api/link",
        }
        r = await client.get("/v2/link")
        assert r.json() == {
            "url": http_url(server, "/behind-proxy/v2/items/7"),
            "root_path": "/behind-proxy/v2",
            "path": "/behind-proxy/v2/link",
        }


async def test_starlette_app_mounted_at_the_root(serve: Any) -> None:
    async def hello(request: Any) -> PlainTextResponse:
        return PlainTextResponse(f"hello {request.query_params.get('name', 'you')}")

    app = App()

    @app.get("/health")
    def health() -> str:
        return "ok"

    app.mount("/", Starlette(routes=[Route("/hello", hello)]))
    server = await serve(app)
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        assert (await client.get("/hello?name=x")).text == "hello x"
        assert (await client.get("/health")).text == "ok"
        assert (await client.get("/missing")).status_code == 404


# -- raw ASGI apps: the protocol's edges ---------------------------------------------------------


class Recorder:
    """A raw ASGI app that records its scope and the events it receives."""

    def __init__(self) -> None:
        self.scopes: list[dict[str, Any]] = []
        self.received: list[dict[str, Any]] = []
        self.disconnected = asyncio.Event()
        self.send_failed: list[BaseException] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            raise RuntimeError("http only")
        self.scopes.append(scope)
        path = scope["path"]
        if path == "/echo-body":
            body = b""
            while True:
                event = await receive()
                self.received.append(event)
                body += event.get("body", b"")
                if not event.get("more_body"):
                    break
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": body})
        elif path == "/sse":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/event-stream")],
                }
            )

            async def listen() -> None:
                while (await receive())["type"] != "http.disconnect":
                    pass
                self.disconnected.set()

            listener = asyncio.ensure_future(listen())
            try:
                i = 0
                while True:
                    await send(
                        {
                            "type": "http.response.body",
                            "body": b"data: %d\n\n" % i,
                            "more_body": True,
                        }
                    )
                    i += 1
                    await asyncio.sleep(0.005)  # the app's pace
            except OSError as exc:
                self.send_failed.append(exc)
            await listener
        elif path == "/flood":
            self.sent = 0
            self.pending = False
            await send({"type": "http.response.start", "status": 200, "headers": []})
            chunk = b"x" * 65536
            for _ in range(256):  # 16 MiB
                self.pending = True
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
                self.pending = False
                self.sent += len(chunk)
            await send({"type": "http.response.body", "body": b""})
        elif path == "/body-before-start":
            await send({"type": "http.response.body", "body": b"oops"})
        elif path == "/fail-after-start":
            await send({"type": "http.response.start", "status": 200, "headers": []})
            await send({"type": "http.response.body", "body": b"partial", "more_body": True})
            raise RuntimeError("midway")
        elif path == "/no-response":
            return
        elif path == "/too-long":
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-length", b"2")],
                }
            )
            await send({"type": "http.response.body", "body": b"abc"})
        else:
            await send(
                {
                    "type": "http.response.start",
                    "status": 200,
                    "headers": [(b"content-type", b"text/plain"), (b"content-length", b"5")],
                }
            )
            await send({"type": "http.response.body", "body": b"hello"})


@pytest.fixture
async def raw(serve: Any) -> tuple[Any, Recorder]:
    recorder = Recorder()
    app = App()
    app.mount("/", recorder, lifespan="off", proxy_headers=True, forwarded_allow_ips="127.0.0.1")
    return await serve(app, sndbuf=16384), recorder


async def test_scope_fields(raw: tuple[Any, Recorder]) -> None:
    server, recorder = raw
    client = await RawClient.connect(server)
    try:
        await client.send(
            b"GET /a%20b/c?x=1&y=%20 HTTP/1.1\r\nHost: example.org\r\nX-Thing: One\r\n\r\n"
        )
        response = await client.recv_response()
    finally:
        client.close()
    assert response.status == 200 and response.body == b"hello"
    scope = recorder.scopes[0]
    assert scope["type"] == "http"
    assert scope["asgi"] == {"version": "3.0", "spec_version": "2.4"}
    assert scope["http_version"] == "1.1"
    assert scope["method"] == "GET"
    assert scope["scheme"] == "http"
    assert scope["path"] == "/a b/c"
    assert scope["raw_path"] == b"/a%20b/c"
    assert scope["query_string"] == b"x=1&y=%20"
    assert scope["root_path"] == ""
    assert scope["headers"] == [(b"host", b"example.org"), (b"x-thing", b"One")]
    assert scope["client"][0] == "127.0.0.1" and scope["client"][1] > 0
    assert scope["server"] == ("127.0.0.1", server.port)
    assert isinstance(scope["state"], dict)


async def test_proxy_headers_from_a_trusted_peer(raw: tuple[Any, Recorder]) -> None:
    server, recorder = raw
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        await client.get(
            "/", headers={"X-Forwarded-For": "203.0.113.7, 127.0.0.1", "X-Forwarded-Proto": "https"}
        )
    assert recorder.scopes[-1]["client"] == ("203.0.113.7", 0)
    assert recorder.scopes[-1]["scheme"] == "https"


async def test_proxy_headers_ignored_from_an_untrusted_peer(serve: Any) -> None:
    recorder = Recorder()
    app = App()
    app.mount("/", recorder, lifespan="off", proxy_headers=True, forwarded_allow_ips="10.0.0.0/8")
    server = await serve(app)
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        await client.get("/", headers={"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https"})
    assert recorder.scopes[-1]["client"][0] == "127.0.0.1"
    assert recorder.scopes[-1]["scheme"] == "http"


async def test_request_body_arrives_in_chunks(raw: tuple[Any, Recorder]) -> None:
    server, recorder = raw
    client = await RawClient.connect(server)
    try:
        await client.send(
            b"POST /echo-body HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5\r\nhello\r\n"
        )
        await wait_for_condition(lambda: len(recorder.received) == 1)
        await client.send(b"6\r\n world\r\n0\r\n\r\n")
        response = await client.recv_response()
    finally:
        client.close()
    assert response.body == b"hello world"
    assert recorder.received[0] == {"type": "http.request", "body": b"hello", "more_body": True}
    assert recorder.received[-1]["more_body"] is False


async def test_expect_100_continue_once_the_app_reads(raw: tuple[Any, Recorder]) -> None:
    server, _ = raw
    client = await RawClient.connect(server)
    try:
        await client.send(
            b"POST /echo-body HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        assert (await client.recv_head()).startswith(b"HTTP/1.1 100 Continue")
        await client.send(b"abc")
        response = await client.recv_response()
    finally:
        client.close()
    assert response.body == b"abc"


async def test_keep_alive_pipelining_and_head(raw: tuple[Any, Recorder]) -> None:
    server, recorder = raw
    client = await RawClient.connect(server)
    try:
        await client.send(
            http_request("/one") + http_request("/two", method="HEAD") + http_request("/three")
        )
        first = await client.recv_response()
        second = await client.recv_response(head_only=True)
        third = await client.recv_response()
    finally:
        client.close()
    assert [s["path"] for s in recorder.scopes] == ["/one", "/two", "/three"]
    assert first.body == third.body == b"hello"
    assert second.status == 200 and second.headers["content-length"] == "5"
    assert "connection" not in first.headers  # keep-alive is HTTP/1.1's default


async def test_single_body_gets_a_content_length(raw: tuple[Any, Recorder]) -> None:
    server, _ = raw
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        r = await client.post("/echo-body", content=b"12345")
    assert r.headers["content-length"] == "5" and "transfer-encoding" not in r.headers


async def test_sse_disconnect_is_seen_by_the_app(raw: tuple[Any, Recorder]) -> None:
    server, recorder = raw
    client = await RawClient.connect(server)
    await client.send(http_request("/sse"))
    head = await client.recv_head()
    assert b"transfer-encoding: chunked" in head
    await client.recv_exactly(10)
    client.close()
    await asyncio.wait_for(recorder.disconnected.wait(), TIMEOUT)
    await wait_for_condition(lambda: bool(recorder.send_failed))
    assert isinstance(recorder.send_failed[0], ClientDisconnected)
    assert isinstance(recorder.send_failed[0], OSError)


async def test_send_waits_while_the_client_does_not_read(raw: tuple[Any, Recorder]) -> None:
    server, recorder = raw
    client = await RawClient.connect(server, rcvbuf=16384)
    try:
        await client.send(http_request("/flood"))
        seen: list[int] = []

        def stalled() -> bool:
            seen.append(getattr(recorder, "sent", 0))
            return getattr(recorder, "pending", False) and len(seen) > 5 and seen[-1] == seen[-6]

        await wait_for_condition(stalled, message=lambda: f"sent {seen[-1:]}")
        assert recorder.sent < 4 << 20, "the app wrote on while the client read nothing"
        head = await client.recv_head()
        assert b"transfer-encoding: chunked" in head
        # Reading it all lets the app finish: 256 chunks of 64 KiB, each with its framing.
        framed = 256 * (len(b"10000\r\n") + 65536 + 2) + len(b"0\r\n\r\n")
        await client.recv_exactly(framed)
    finally:
        client.close()
    await wait_for_condition(lambda: recorder.sent == 256 * 65536)


async def test_protocol_violations_are_logged_not_hung(
    raw: tuple[Any, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = raw
    async with httpx.AsyncClient(base_url=http_url(server)) as client:
        r = await client.get("/body-before-start")
        assert r.status_code == 500
        r = await client.get("/no-response")
        assert r.status_code == 500
        with pytest.raises(httpx.RemoteProtocolError):
            await client.get("/too-long")
    logged = "\n".join(errors_logged(caplog)) + "\n".join(r.exc_text or "" for r in caplog.records)
    assert "before 'http.response.start'" in logged
    assert "returned without a response" in logged
    assert "longer than its Content-Length" in logged


async def test_failure_after_the_head_closes_the_connection(
    raw: tuple[Any, Recorder], caplog: pytest.LogCaptureFixture
) -> None:
    server, _ = raw
    client = await RawClient.connect(server)
    try:
        await client.send(http_request("/fail-after-start"))
        await client.wait_closed()
    finally:
        client.close()
    assert b"partial" in client.buf and not client.buf.endswith(b"0\r\n\r\n")
    assert any("midway" in (r.exc_text or "") for r in caplog.records)
    caplog.set_level(logging.ERROR)


H2C = b"Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQAAP__\r\n"


async def test_an_upgrade_nobody_serves_is_answered_as_http(raw: tuple[Any, Recorder]) -> None:
    """``curl --http2 http://...`` asks for h2c: the app answers in HTTP/1.1, then close."""
    server, recorder = raw
    client = await RawClient.connect(server)
    try:
        await client.send(b"GET /h2c HTTP/1.1\r\nHost: x\r\n" + H2C + b"\r\n")
        response = await client.recv_response()
        await client.wait_closed()
    finally:
        client.close()
    assert response.status == 200 and response.body == b"hello"
    assert recorder.scopes[-1]["path"] == "/h2c"


async def test_an_async_route_with_an_upgrade_header(serve: Any) -> None:
    """The buffered path too (an async handler used to crash the connection)."""
    app = App()

    @app.get("/slow")
    async def slow() -> str:
        await asyncio.sleep(0)
        return "slow"

    server = await serve(app)
    client = await RawClient.connect(server)
    try:
        await client.send(b"GET /slow HTTP/1.1\r\nHost: x\r\n" + H2C + b"\r\n")
        response = await client.recv_response()
        await client.wait_closed()
    finally:
        client.close()
    assert response.status == 200 and response.body == b"slow"

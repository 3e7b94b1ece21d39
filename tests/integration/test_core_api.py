"""The documented API against real clients (websockets, aiohttp) over 127.0.0.1."""

from __future__ import annotations

import asyncio
import logging
import socket

import aiohttp
import pytest
import websockets
from kit import TIMEOUT, RawClient, closed_code, recv, served, ws_url
from kit.refcodec import OP_CLOSE
from websockets.exceptions import ConnectionClosed as ClientClosed
from websockets.exceptions import InvalidStatus

from xyra import App, CloseCode, ConnectionClosed, OpCode, SendStatus, WebSocket


def echo_app(**options: object) -> App:
    app = App()
    app.websocket("/", {"message": lambda ws, m, op: ws.send(m, op)}, **options)
    return app


async def test_simple_handler_sends_on_open_and_discards_later_messages() -> None:
    app = App()
    opened: list[WebSocket] = []

    @app.websocket("/ws")
    def handler(websocket: WebSocket) -> None:
        opened.append(websocket)
        websocket.send("Connected!")

    async with served(app) as server, websockets.connect(ws_url(server, "/ws")) as client:
        assert await recv(client) == "Connected!"
        await client.send("ignored")
        await client.ping()  # the connection stays open and healthy after the handler
        assert len(opened) == 1 and not opened[0].closed


async def test_async_simple_handler_consumes_with_async_for_and_receive() -> None:
    app = App()
    done = asyncio.Event()
    seen: list[object] = []

    @app.websocket("/ws")
    async def handler(ws: WebSocket) -> None:
        first = await ws.receive()
        ws.send(f"first:{first}")
        async for message in ws:
            seen.append(message)
            ws.send(message)
        with pytest.raises(ConnectionClosed):
            await ws.receive()
        done.set()

    async with served(app) as server:
        async with websockets.connect(ws_url(server, "/ws")) as client:
            await client.send("a")
            assert await recv(client) == "first:a"
            for m in ["b", b"c", "d"]:
                await client.send(m)
                assert await recv(client) == m
        await asyncio.wait_for(done.wait(), TIMEOUT)
    assert seen == ["b", b"c", "d"]


async def test_event_dict_types_opcodes_and_one_object_per_connection() -> None:
    app = App()
    events: list[tuple] = []
    closed = asyncio.Event()

    def on_open(ws: WebSocket) -> None:
        events.append(("open", ws))
        ws.data["n"] = 0
        ws.send("Welcome!")

    def on_message(ws: WebSocket, message: str | bytes, opcode: OpCode) -> None:
        ws.data["n"] += 1
        events.append(("message", ws, type(message), opcode))
        assert ws.send(message, opcode) is SendStatus.SUCCESS
        ws.send_text(f"text:{len(message)}")
        ws.send_binary(b"bin")

    def on_close(ws: WebSocket, code: int, message: str) -> None:
        events.append(("close", ws, code, message, ws.data["n"]))
        closed.set()

    app.websocket("/chat", {"open": on_open, "message": on_message, "close": on_close})
    async with served(app) as server:
        async with websockets.connect(ws_url(server, "/chat")) as client:
            assert await recv(client) == "Welcome!"
            await client.send("héllo")
            assert await recv(client) == "héllo"
            assert await recv(client) == "text:5"
            assert await recv(client) == b"bin"
            await client.send(b"\x00\xff")
            assert await recv(client) == b"\x00\xff"
            await recv(client), await recv(client)
            await client.close(1000, "bye")
        await asyncio.wait_for(closed.wait(), TIMEOUT)
    objs = {e[1] for e in events}
    assert len(objs) == 1  # the same, hashable object in every callback
    assert events[1][2:] == (str, OpCode.TEXT)
    assert events[2][2:] == (bytes, OpCode.BINARY)
    assert events[-1][2:] == (1000, "bye", 2)


async def test_send_with_explicit_opcode_and_bytes_like() -> None:
    app = App()

    def on_open(ws: WebSocket) -> None:
        ws.send("as binary", OpCode.BINARY)
        ws.send(b"as text", OpCode.TEXT)
        ws.send(bytearray(b"ba"))
        ws.send(memoryview(b"mv"))
        with pytest.raises(ValueError):
            ws.send(b"\xff\xfe", OpCode.TEXT)
        with pytest.raises(ValueError):
            ws.send("x", OpCode.CLOSE)

    app.websocket("/", {"open": on_open})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        assert await recv(client) == b"as binary"
        assert await recv(client) == "as text"
        assert await recv(client) == b"ba"
        assert await recv(client) == b"mv"


@pytest.mark.parametrize(
    ("client_close", "expected"),
    [((1000, "bye"), (1000, "bye")), ((4001, "app"), (4001, "app")), (None, (1005, ""))],
)
async def test_close_handler_gets_the_peers_code(client_close, expected) -> None:
    app = App()
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    app.websocket("/", {"close": lambda ws, code, msg: got.set_result((code, msg, ws.closed))})
    async with served(app) as server:
        raw = await RawClient.open(server)
        payload = (
            b""
            if client_close is None
            else (client_close[0].to_bytes(2, "big") + client_close[1].encode())
        )
        await raw.send_frame(OP_CLOSE, payload)
        # the server answers with a close frame echoing the code, then closes TCP
        assert await raw.recv_close() == (expected[0], "")
        await raw.wait_closed()
        assert await asyncio.wait_for(got, TIMEOUT) == (*expected, True)


async def test_abnormal_close_reports_1006() -> None:
    app = App()
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    app.websocket("/", {"close": lambda ws, code, msg: got.set_result((code, msg))})
    async with served(app) as server:
        raw = await RawClient.open(server)
        raw.close()
        assert await asyncio.wait_for(got, TIMEOUT) == (1006, "")


async def test_server_close_runs_the_handshake_and_sends_are_dropped_after() -> None:
    app = App()
    after: list[SendStatus] = []
    got: asyncio.Future = asyncio.get_running_loop().create_future()

    def on_message(ws: WebSocket, message: str, opcode: OpCode) -> None:
        ws.close(1001, "Going away")
        after.append(ws.send("late"))
        ws.close()  # a second close is harmless

    app.websocket(
        "/", {"message": on_message, "close": lambda ws, c, m: got.set_result((c, m, ws.send("x")))}
    )
    async with served(app) as server:
        async with websockets.connect(ws_url(server)) as client:
            await client.send("close me")
            assert await closed_code(client) == (1001, "Going away")
        assert await asyncio.wait_for(got, TIMEOUT) == (1001, "Going away", SendStatus.DROPPED)
    assert after == [SendStatus.DROPPED]


async def test_close_without_answer_times_out() -> None:
    app = App()
    got: asyncio.Future = asyncio.get_running_loop().create_future()
    app.websocket(
        "/",
        {"open": lambda ws: ws.close(1000, "bye"), "close": lambda ws, c, m: got.set_result(c)},
        close_timeout=0.3,
    )
    async with served(app) as server:
        raw = await RawClient.open(server)
        assert await raw.recv_close() == (1000, "bye")
        # we never answer: the server gives up after close_timeout
        assert await asyncio.wait_for(got, TIMEOUT) == 1006
        await raw.wait_closed()


async def test_terminate_drops_tcp() -> None:
    app = App()
    app.websocket("/", {"message": lambda ws, m, op: ws.terminate()})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        await client.send("x")
        code, _ = await closed_code(client)
        assert code == 1006


async def test_handler_error_closes_1011_and_others_continue(caplog) -> None:
    app = App()

    def on_message(ws: WebSocket, message: str, opcode: OpCode) -> None:
        if message == "boom":
            raise RuntimeError("secret detail")
        ws.send(message)

    app.websocket("/", {"message": on_message})
    caplog.set_level(logging.ERROR, logger="xyra")
    async with served(app) as server:
        async with (
            websockets.connect(ws_url(server)) as good,
            websockets.connect(ws_url(server)) as bad,
        ):
            await bad.send("boom")
            code, reason = await closed_code(bad)
            assert (code, reason) == (1011, "")
            await good.send("still here")
            assert await recv(good) == "still here"
    assert any("secret detail" in (r.exc_text or "") for r in caplog.records)


async def test_async_message_handlers_run_in_arrival_order() -> None:
    app = App()

    async def on_message(ws: WebSocket, message: str, opcode: OpCode) -> None:
        await asyncio.sleep(0.01 if int(message) % 2 else 0)
        ws.send(message)

    app.websocket("/", {"message": on_message})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        for i in range(20):
            await client.send(str(i))
        assert [await recv(client) for _ in range(20)] == [str(i) for i in range(20)]


async def test_async_open_runs_before_messages() -> None:
    app = App()

    async def on_open(ws: WebSocket) -> None:
        await asyncio.sleep(0.05)
        ws.send("opened")

    app.websocket("/", {"open": on_open, "message": lambda ws, m, op: ws.send(m)})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        await client.send("m")
        assert [await recv(client), await recv(client)] == ["opened", "m"]


async def test_ws_properties() -> None:
    app = App()
    seen: dict[str, object] = {}

    def on_open(ws: WebSocket) -> None:
        seen.update(
            remote=ws.remote_address,
            path=ws.path,
            sub=ws.subprotocol,
            closed=ws.closed,
            buffered=ws.buffered_amount,
            dropped=ws.dropped,
        )
        ws.send("ok")

    app.websocket("/p", {"open": on_open}, subprotocols=["v2", "v1"])
    async with served(app) as server:
        async with websockets.connect(
            ws_url(server, "/p?room=1"), subprotocols=["v1", "v2"]
        ) as client:
            assert await recv(client) == "ok"
            assert client.subprotocol == "v1"  # the first one the client offers
            port = client.local_address[1]
    assert seen == {
        "remote": ("127.0.0.1", port),
        "path": "/p?room=1",
        "sub": "v1",
        "closed": False,
        "buffered": 0,
        "dropped": 0,
    }


async def test_max_payload_length_closes_1009() -> None:
    app = echo_app(max_payload_length=1000)
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        await client.send("x" * 1000)
        assert await recv(client) == "x" * 1000
        await client.send("x" * 1001)
        assert (await closed_code(client))[0] == 1009


async def test_large_messages_roundtrip() -> None:
    app = echo_app(max_payload_length=16 << 20)
    async with served(app) as server, websockets.connect(ws_url(server), max_size=None) as client:
        for size in (125, 126, 65535, 65536, 1 << 20, 5 << 20):
            data = bytes(range(256)) * (size // 256) + b"x" * (size % 256)
            await client.send(data)
            assert await recv(client) == data


async def test_idle_timeout_closes_1001() -> None:
    app = echo_app(idle_timeout=0.3, ping_interval=0)
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        assert await closed_code(client) == (1001, "idle timeout")


async def test_automatic_pings_keep_a_healthy_connection_alive() -> None:
    app = App()
    pongs: list[bytes] = []
    five = asyncio.get_running_loop().create_future()

    def on_pong(ws: WebSocket, payload: bytes) -> None:
        pongs.append(payload)
        if len(pongs) == 5 and not five.done():
            five.set_result(None)

    app.websocket(
        "/",
        {"message": lambda ws, m, op: ws.send(m), "pong": on_pong},
        idle_timeout=0.4,
        ping_interval=0.1,
    )
    # The timer logic itself is tests/unit/test_endpoint.py's (a fake clock); this checks
    # that the server's real tick drives it: five pings answered span more than an idle
    # timeout, and only the pongs kept the connection open.
    async with (
        served(app) as server,
        websockets.connect(ws_url(server), ping_interval=None) as client,
    ):
        await asyncio.wait_for(five, TIMEOUT)
        await client.send("alive")
        assert await recv(client) == "alive"


async def test_ping_and_pong_handlers_and_auto_pong() -> None:
    app = App()
    pings: list[bytes] = []
    app.websocket("/", {"ping": lambda ws, p: pings.append(p)})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        waiter = await client.ping(b"hello")
        await asyncio.wait_for(waiter, TIMEOUT)
    assert pings == [b"hello"]


async def test_graceful_stop_closes_with_1001_and_runs_hooks() -> None:
    app = echo_app()
    calls: list[str] = []
    app.on_startup(lambda: calls.append("startup"))

    @app.on_shutdown
    async def bye() -> None:
        calls.append("shutdown")

    server = await app.start(0)
    async with websockets.connect(ws_url(server)) as client:
        await server.stop()
        assert await closed_code(client) == (1001, "server shutting down")
    assert calls == ["startup", "shutdown"]


async def test_aiohttp_client_interop() -> None:
    app = echo_app()
    async with served(app) as server, aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(server)) as ws:
            await ws.send_str("hi")
            assert (await ws.receive(timeout=TIMEOUT)).data == "hi"
            await ws.send_bytes(b"\x01")
            assert (await ws.receive(timeout=TIMEOUT)).data == b"\x01"


async def test_send_from_another_thread() -> None:
    app = App()
    opened: asyncio.Future = asyncio.get_running_loop().create_future()
    app.websocket("/", {"open": opened.set_result})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        ws = await asyncio.wait_for(opened, TIMEOUT)
        await asyncio.to_thread(ws.send, "from a thread")
        assert await recv(client) == "from a thread"


def test_registration_errors() -> None:
    app = App()
    with pytest.raises(ValueError, match="unknown WebSocket handler key"):
        app.websocket("/a", {"opne": print})
    with pytest.raises(TypeError, match="must be callable"):
        app.websocket("/a", {"open": "nope"})
    with pytest.raises(TypeError, match="unknown WebSocket route option"):
        app.websocket("/a", {"open": print}, max_payload=1)
    with pytest.raises(ValueError, match="must start with '/'"):
        app.websocket("a", {"open": print})
    with pytest.raises(TypeError, match="a handler function or a dict of handlers, not int"):
        app.websocket("/a", 42)  # type: ignore[arg-type]
    app.websocket("/a", {"open": print})
    with pytest.raises(ValueError, match="already registered"):
        app.websocket("/a", lambda ws: None)


@pytest.mark.parametrize(
    ("option", "value", "error", "match"),
    [
        ("max_payload_length", 0, ValueError, "max_payload_length must be an int >= 1, got 0"),
        ("max_backpressure", 0, ValueError, "max_backpressure must be an int >= 1, got 0"),
        ("max_queue", 0, ValueError, "max_queue must be an int >= 1, got 0"),
        ("idle_timeout", -1, ValueError, "idle_timeout must be a number >= 0"),
        ("close_timeout", -1, ValueError, "close_timeout must be a number >= 0"),
        ("ping_interval", -1, ValueError, "ping_interval must be a number >= 0"),
        ("compression_threshold", -1, ValueError, "compression_threshold must be an int >= 0"),
        ("compression", "gzip", ValueError, "compression must be 'off', 'shared' or 'dedicated'"),
        ("rate_limit_action", "ignore", ValueError, "rate_limit_action must be one of"),
        ("max_messages_per_second", -1, ValueError, "max_messages_per_second must be a number"),
        ("max_bytes_per_second", -1, ValueError, "max_bytes_per_second must be a number >= 0"),
        ("allowed_origins", "https://app.example", TypeError, "allowed_origins must be"),
        ("subprotocols", "chat", TypeError, "subprotocols must be a list of names"),
    ],
)
def test_bad_route_options_are_refused_at_registration(
    option: str, value: object, error: type[Exception], match: str
) -> None:
    app = App()
    with pytest.raises(error, match=match):
        app.websocket("/", {"open": print}, **{option: value})
    app.websocket("/", {"open": print})  # the refused route left nothing behind


@pytest.mark.parametrize(
    "limits",
    [
        {"handshake_timeout": 0},
        {"max_head_size": 0},
        {"max_headers": 0},
        {"max_body_size": -1},
        {"max_connections": -1},
        {"max_connections_per_ip": -1},
    ],
    ids=lambda limits: next(iter(limits)),
)
def test_bad_server_limits_are_refused(limits: dict[str, float]) -> None:
    ((name, _),) = limits.items()
    with pytest.raises(ValueError, match=rf"{name} must be (an int|a number of seconds) "):
        App(**limits)


async def test_a_route_added_while_serving_is_served() -> None:
    app = echo_app()
    async with served(app) as server:
        with pytest.raises(InvalidStatus) as refused:
            await websockets.connect(ws_url(server, "/late"), open_timeout=TIMEOUT)
        assert refused.value.response.status_code == 404
        app.websocket("/late", {"open": lambda ws: ws.send("late route")})
        async with websockets.connect(ws_url(server, "/late")) as client:
            assert await recv(client) == "late route"


async def test_start_on_a_port_in_use_raises_and_leaves_the_app_usable() -> None:
    app = echo_app()
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        with pytest.raises(OSError):
            await app.start(taken.getsockname()[1], "127.0.0.1")
    assert app.publish("anything", "to nobody") is False  # no half-started server in it
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        await client.send("still serves")
        assert await recv(client) == "still serves"


async def test_wait_closed_returns_after_stop_and_stop_is_idempotent() -> None:
    server = await echo_app().start(0)
    waiter = asyncio.ensure_future(server.wait_closed())
    await asyncio.sleep(0)  # one loop iteration: the waiter is waiting
    assert not waiter.done()
    await server.stop()
    await asyncio.wait_for(waiter, TIMEOUT)
    await asyncio.wait_for(server.stop(), TIMEOUT)  # stopped already: returns at once


async def test_close_codes_enum_matches_the_wire() -> None:
    app = App()
    app.websocket("/", {"open": lambda ws: ws.close(CloseCode.POLICY_VIOLATION, "policy")})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        with pytest.raises(ClientClosed):
            await recv(client)
        assert await closed_code(client) == (1008, "policy")

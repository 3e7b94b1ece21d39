"""What a newcomer meets on the first day: wrong types refused, secrets kept out of logs,
clean tracebacks, and mistakes caught at registration with messages that name them."""

from __future__ import annotations

import asyncio
import logging
import socket
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any

import pytest
import websockets
from kit import TIMEOUT, served, ws_url
from websockets.exceptions import InvalidStatus

from xyra import App, Response, SendStatus, WebSocket

ROOT = Path(__file__).resolve().parents[2]
BAD_MESSAGES = [123, 10**12, 1.5, None, [104, 105], {"a": 1}, ("x",), object()]
GOOD_MESSAGES = ["text", b"bytes", bytearray(b"array"), memoryview(b"view")]


def type_error(value: object) -> str:
    return f"message must be str or bytes-like, not {type(value).__name__}"


# -- message types ----------------------------------------------------------------------------


@pytest.mark.parametrize("bad", BAD_MESSAGES, ids=lambda v: type(v).__name__)
def test_app_publish_refuses_other_types_before_the_server_starts(bad: object) -> None:
    with pytest.raises(TypeError) as info:
        App().publish("t", bad)  # type: ignore[arg-type]
    assert str(info.value) == type_error(bad)


async def test_every_send_api_refuses_other_types_while_running() -> None:
    app = App()
    results: dict[str, list[str]] = {}
    ready = asyncio.get_running_loop().create_future()

    def on_open(ws: WebSocket) -> None:
        ws.subscribe("t")
        calls = {
            "send": ws.send,
            "send_text": ws.send_text,
            "send_binary": ws.send_binary,
            "ws.publish": lambda m: ws.publish("t", m),
            "app.publish": lambda m: app.publish("t", m),
        }
        for name, call in calls.items():
            for bad in BAD_MESSAGES:
                try:
                    call(bad)
                except TypeError as exc:
                    results.setdefault(name, []).append(str(exc))
        ready.set_result(None)

    app.websocket("/", {"open": on_open})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        await asyncio.wait_for(ready, TIMEOUT)
        # Nothing was sent: the next message is the first real one.
        app.publish("t", "first real message")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "first real message"
    expected = [type_error(bad) for bad in BAD_MESSAGES]
    assert results == {
        name: expected for name in ("send", "send_text", "send_binary", "ws.publish", "app.publish")
    }


async def test_sends_from_another_thread_are_checked_in_that_thread() -> None:
    app = App()
    opened: asyncio.Future[WebSocket] = asyncio.get_running_loop().create_future()

    def on_open(ws: WebSocket) -> None:
        ws.subscribe("t")
        opened.set_result(ws)

    app.websocket("/", {"open": on_open})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        ws = await asyncio.wait_for(opened, TIMEOUT)
        errors: list[str] = []
        statuses: list[object] = []

        def worker() -> None:
            for call in (ws.send, lambda m: app.publish("t", m)):
                try:
                    call(42)
                except TypeError as exc:
                    errors.append(str(exc))
            buffer = bytearray(b"from a thread")
            statuses.append(ws.send(buffer))
            buffer[:] = b"X" * len(buffer)  # reused at once: the bytes were taken already
            statuses.append(app.publish("t", memoryview(b"published")))

        thread = threading.Thread(target=worker)
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
        assert errors == [type_error(42)] * 2
        assert statuses == [SendStatus.SUCCESS, True]
        got = {await asyncio.wait_for(client.recv(), TIMEOUT) for _ in range(2)}
        assert got == {b"from a thread", b"published"}


@pytest.mark.parametrize("good", GOOD_MESSAGES, ids=lambda v: type(v).__name__)
async def test_str_and_bytes_like_messages_are_accepted(good: Any) -> None:
    app = App()
    app.websocket("/", {"open": lambda ws: (ws.subscribe("t"), ws.send(good))})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        expected = good if isinstance(good, str) else bytes(good)
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == expected
        assert app.publish("t", good) is True
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == expected


# -- secrets stay out of the logs -------------------------------------------------------------

SECRET = "s3cr3t-t0ken-value"


async def test_no_request_secret_reaches_the_log(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="xyra")
    app = App()
    app.websocket(
        "/dash", {"open": lambda ws: None, "upgrade": lambda request: Response("no", 401)}
    )
    app.websocket("/deny", {"open": lambda ws: None, "upgrade": lambda request: False})
    app.websocket("/strict", {"open": lambda ws: None}, allowed_origins=["https://ok.example"])
    app.get("/boom", lambda: 1 / 0)
    secret_headers = {
        "Authorization": f"Bearer {SECRET}",
        "Cookie": f"session={SECRET}",
        "Sec-WebSocket-Protocol": f"token.{SECRET}",
    }
    async with served(app) as server:
        for path in ("/dash", "/deny", "/strict", "/nowhere"):
            with pytest.raises(InvalidStatus):
                await websockets.connect(
                    ws_url(server, f"{path}?token={SECRET}&x=1"),
                    additional_headers=secret_headers,
                    origin="https://evil.example" if path == "/strict" else None,  # type: ignore[arg-type]
                )
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(
            f"GET /boom?token={SECRET} HTTP/1.1\r\nHost: x\r\n"
            f"Authorization: {SECRET}\r\n\r\n".encode()
        )
        assert (await asyncio.wait_for(reader.readline(), TIMEOUT)).startswith(b"HTTP/1.1 500")
        writer.close()
    ours = [r for r in caplog.records if r.name.startswith("xyra")]
    logged = "\n".join(caplog.handler.format(r) for r in ours)
    assert "refused" in logged and "/dash" in logged  # the refusals were logged...
    assert SECRET not in logged  # ...without the query string or any header value


# -- clean tracebacks -------------------------------------------------------------------------


def _user_error_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.exc_info and isinstance(r.exc_info[1], KeyError)]


async def test_handler_tracebacks_start_with_the_users_error(
    caplog: pytest.LogCaptureFixture,
) -> None:
    def broken(*args: Any) -> None:
        raise KeyError("the user's own bug")

    app = App()
    app.websocket("/open", {"open": broken})
    app.websocket("/upgrade", {"open": lambda ws: None, "upgrade": broken})

    @app.websocket("/simple")
    def simple(ws: WebSocket) -> None:
        broken()

    app.get("/http", broken)
    async with served(app) as server:
        for path in ("/open", "/simple"):
            async with websockets.connect(ws_url(server, path)) as client:
                await asyncio.wait_for(client.wait_closed(), TIMEOUT)
                assert client.close_code == 1011
        with pytest.raises(InvalidStatus):
            await websockets.connect(ws_url(server, "/upgrade"))
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /http HTTP/1.1\r\nHost: x\r\n\r\n")
        assert (await asyncio.wait_for(reader.readline(), TIMEOUT)).startswith(b"HTTP/1.1 500")
        writer.close()
    records = _user_error_records(caplog)
    assert len(records) == 4
    for record in records:
        exc = record.exc_info[1]  # type: ignore[index]
        assert exc.__context__ is None and exc.__cause__ is None
    assert "HttpParserUpgrade" not in caplog.text
    assert "During handling of the above exception" not in caplog.text


# -- subscribe after close --------------------------------------------------------------------


async def test_subscribe_after_close_is_a_no_op() -> None:
    app = App()
    seen: asyncio.Future[tuple[Any, ...]] = asyncio.get_running_loop().create_future()

    def on_open(ws: WebSocket) -> None:
        ws.close(1000, "done")
        seen.set_result((ws.closed, ws.subscribe("news"), ws.topics, app.num_subscribers("news")))

    app.websocket("/", {"open": on_open})
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
    assert await seen == (True, False, [], 0)


async def test_loop_only_methods_refuse_other_threads() -> None:
    app = App()
    opened: asyncio.Future[WebSocket] = asyncio.get_running_loop().create_future()
    app.websocket("/", {"open": opened.set_result})
    async with served(app) as server, websockets.connect(ws_url(server)):
        ws = await asyncio.wait_for(opened, TIMEOUT)
        errors: list[str] = []

        def worker() -> None:
            for call in (
                lambda: ws.subscribe("t"),
                lambda: ws.unsubscribe("t"),
                ws.drain,
                ws.receive,
            ):
                try:
                    call()
                except RuntimeError as exc:
                    errors.append(str(exc))

        await asyncio.get_running_loop().run_in_executor(None, worker)
        assert len(errors) == 4
        assert "must be called on the server's event loop thread" in errors[0]
        assert ws.topics == []


# -- mistakes caught at registration ----------------------------------------------------------


def message_takes_one(ws: WebSocket) -> None:
    pass


def three_args(a: Any, b: Any, c: Any) -> None:
    pass


@pytest.mark.parametrize(
    ("handlers", "expected"),
    [
        (
            {"message": message_takes_one},
            "the 'message' handler is called as message(ws, message, opcode) (3 arguments), "
            "but message_takes_one(ws: 'WebSocket') -> 'None' cannot take that",
        ),
        ({"close": lambda ws: None}, "called as close(ws, code, reason)"),
        (
            {"subscription": lambda ws, topic: None},
            "called as subscription(ws, topic, new_count, old_count)",
        ),
        ({"upgrade": lambda: None}, "called as upgrade(request) (1 argument)"),
        (lambda: None, "a simple handler is called as open(ws)"),
        (three_args, "a simple handler is called as open(ws) (1 argument), but three_args"),
    ],
)
def test_handler_arity_is_checked_at_registration(handlers: Any, expected: str) -> None:
    with pytest.raises(TypeError) as info:
        App().websocket("/x", handlers)
    assert expected in str(info.value)


def test_handlers_with_defaults_or_star_args_are_accepted() -> None:
    app = App()
    app.websocket(
        "/a",
        {
            "message": lambda ws, *rest: None,
            "close": lambda *a: None,
            "open": lambda ws, extra=None: None,
        },
    )
    app.websocket("/b", print)  # a builtin without a readable signature: taken on trust


@pytest.mark.parametrize(
    ("options", "exc", "message"),
    [
        (
            {"max_payload_length": "big"},
            TypeError,
            "max_payload_length must be an int >= 1, got 'big'",
        ),
        ({"max_payload_length": 0}, ValueError, "max_payload_length must be an int >= 1, got 0"),
        ({"max_backpressure": 1.5}, TypeError, "max_backpressure must be an int >= 1, got 1.5"),
        (
            {"idle_timeout": None},
            TypeError,
            "idle_timeout must be a number >= 0 (0 disables it), got None",
        ),
        ({"idle_timeout": -1}, ValueError, "idle_timeout must be a number >= 0"),
        ({"ping_interval": "often"}, TypeError, "ping_interval must be a number >= 0 or None"),
        ({"close_timeout": float("nan")}, ValueError, "close_timeout must be a number >= 0"),
        ({"max_queue": True}, TypeError, "max_queue must be an int >= 1, got True"),
        (
            {"compression": "gzip"},
            ValueError,
            "compression must be 'off', 'shared' or 'dedicated', got 'gzip'",
        ),
        ({"close_on_backpressure_limit": "yes"}, TypeError, "close_on_backpressure_limit must be"),
        ({"subprotocols": "chat"}, TypeError, "not one string"),
        ({"subprotocols": ["chat", 2]}, TypeError, "subprotocols must be a list of strings"),
        ({"allowed_origins": "https://a.example"}, TypeError, "allowed_origins must be"),
        ({"max_payload_lenght": 10}, TypeError, "unknown WebSocket route option"),
    ],
)
def test_option_errors_name_the_option(options: dict[str, Any], exc: type, message: str) -> None:
    with pytest.raises(exc) as info:
        App().websocket("/x", {"open": lambda ws: None}, **options)
    assert message in str(info.value)


# -- messages discarded without a word --------------------------------------------------------


async def test_discarded_messages_are_logged_once_per_route(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = App()
    got = asyncio.get_running_loop().create_future()

    @app.websocket("/sync")
    def sync_simple(ws: WebSocket) -> None:
        ws.send("hello")

    app.websocket("/echo", {"message": lambda ws, m, op: ws.send(m)})
    async with served(app) as server:
        for _ in range(2):
            async with websockets.connect(ws_url(server, "/sync")) as client:
                assert await asyncio.wait_for(client.recv(), TIMEOUT) == "hello"
                for i in range(3):
                    await client.send(f"into the void {i}")
                # A ping round trip: the messages before it were read by the server.
                await asyncio.wait_for(await client.ping(), TIMEOUT)
        async with websockets.connect(ws_url(server, "/echo")) as client:
            await client.send("kept")
            got.set_result(await asyncio.wait_for(client.recv(), TIMEOUT))
    warnings = [r.getMessage() for r in caplog.records if "discarded" in r.getMessage()]
    assert len(warnings) == 1
    assert "/sync" in warnings[0] and "async for message in ws" in warnings[0]
    assert await got == "kept"


# -- port in use ------------------------------------------------------------------------------


def taken_port() -> tuple[socket.socket, int]:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    sock.listen()
    return sock, sock.getsockname()[1]


@pytest.mark.parametrize("how", ["xyra run", "app.listen"])
def test_port_in_use_is_one_line_and_exit_status_1(how: str, tmp_path: Path) -> None:
    (tmp_path / "portapp.py").write_text(
        textwrap.dedent("""
        import sys
        from xyra import App
        app = App()
        app.websocket("/", {"open": lambda ws: None})
        if __name__ == "__main__":
            app.listen(int(sys.argv[1]))
    """)
    )
    sock, port = taken_port()
    with sock:
        if how == "xyra run":
            cmd = [sys.executable, "-m", "xyra", "run", "portapp:app", "--port", str(port)]
        else:
            cmd = [sys.executable, "portapp.py", str(port)]
        out = subprocess.run(cmd, cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    lines = [line for line in out.stderr.splitlines() if line.strip()]
    assert lines == [f"xyra: cannot listen on 127.0.0.1:{port}: address already in use"]
    assert "Traceback" not in out.stderr

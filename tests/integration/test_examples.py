"""The examples in examples/ run as they are and do what docs/websocket.md promises.

Each test starts one example as a subprocess (``python examples/X.py PORT``) on a free
127.0.0.1 port, waits for the port with a bounded connect-poll, drives it with the
``websockets`` client and kills it at the end. Every wait is bounded; ordering is
established with the protocol itself (the order of messages on one connection, and
ping/pong round trips as barriers), never with sleeps.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from kit import START_TIMEOUT, TIMEOUT, free_port, recv, wait_for_condition
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, ConnectionClosedOK, InvalidStatus

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
# After a ping/pong barrier, anything sent before the pong has arrived: a message that has
# not come within this bound is not coming. Not a wait for anything to happen.
QUIET = 0.2


# -- running an example ------------------------------------------------------------------


class Example:
    """A running example process, its port and the lines of its stdout and stderr."""

    def __init__(self, name: str, proc: asyncio.subprocess.Process, port: int) -> None:
        self.name = name
        self.proc = proc
        self.port = port
        self.lines: list[str] = []
        self.eof = False
        self._cursor = 0
        self._changed = asyncio.Event()
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.proc.stdout is not None
        try:
            while line := await self.proc.stdout.readline():
                self.lines.append(line.decode("utf-8", "replace").rstrip("\r\n"))
                self._changed.set()
        finally:
            self.eof = True
            self._changed.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    def url(self, path: str) -> str:
        return f"ws://127.0.0.1:{self.port}{path}"

    def connect(self, path: str) -> Any:
        return connect(self.url(path), open_timeout=TIMEOUT, close_timeout=TIMEOUT, proxy=None)

    async def expect_line(
        self, text: str, *, prefix: bool = False, timeout: float = TIMEOUT
    ) -> str:
        """Wait for a line equal to ``text`` (or starting with it) after the last one found."""

        async def find() -> str:
            while True:
                for i in range(self._cursor, len(self.lines)):
                    line = self.lines[i]
                    if line == text or (prefix and line.startswith(text)):
                        self._cursor = i + 1
                        return line
                if self.eof:
                    pytest.fail(f"{self.name} ended without printing {text!r}:\n{self.output}")
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(find(), timeout)
        except asyncio.TimeoutError:
            pytest.fail(f"{self.name} did not print {text!r} in {timeout}s:\n{self.output}")

    async def wait_port(self) -> None:
        async def listening() -> bool:
            if self.proc.returncode is not None:
                await asyncio.wait_for(self._reader, TIMEOUT)
                pytest.fail(f"{self.name} exited with {self.proc.returncode}:\n{self.output}")
            try:
                _, writer = await asyncio.wait_for(
                    asyncio.open_connection("127.0.0.1", self.port), TIMEOUT
                )
            except (OSError, asyncio.TimeoutError):
                return False
            writer.close()
            with contextlib.suppress(OSError):
                await asyncio.wait_for(writer.wait_closed(), TIMEOUT)
            return True

        try:
            await wait_for_condition(listening, timeout=START_TIMEOUT)
        except AssertionError:
            pytest.fail(f"{self.name} did not listen on {self.port}:\n{self.output}")

    async def stop(self, sig: int) -> int:
        """Send ``sig`` and wait for the process to exit; returns its exit code."""
        self.proc.send_signal(sig)
        code = await asyncio.wait_for(self.proc.wait(), TIMEOUT * 2)
        await asyncio.wait_for(self._reader, TIMEOUT)
        return code


@contextlib.asynccontextmanager
async def run_example(
    name: str, env: dict[str, str] | None = None, argv_port: bool = True
) -> AsyncIterator[Example]:
    port = free_port()
    full_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONIOENCODING": "utf-8"}
    full_env.pop("PORT", None)
    full_env.update(env or {})
    args = [str(EXAMPLES / f"{name}.py")]
    if argv_port:
        args.append(str(port))
    else:
        full_env["PORT"] = str(port)
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        *args,
        cwd=ROOT,
        env=full_env,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    example = Example(name, proc, port)
    try:
        await example.wait_port()
        yield example
        assert "Traceback" not in example.output, example.output
    finally:
        if proc.returncode is None:
            proc.kill()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(proc.wait(), TIMEOUT)
        with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(example._reader, TIMEOUT)


# -- client helpers ----------------------------------------------------------------------


async def barrier(ws: ClientConnection) -> None:
    """A ping/pong round trip: the server has handled everything sent before it, and
    everything it sent before the pong has arrived."""
    pong = await ws.ping()
    await asyncio.wait_for(pong, TIMEOUT)


async def assert_nothing_pending(ws: ClientConnection) -> None:
    """After a barrier, no message is waiting (anything sent before the pong is here)."""
    await barrier(ws)
    try:
        message = await asyncio.wait_for(ws.recv(), QUIET)
    except asyncio.TimeoutError:
        return
    pytest.fail(f"unexpected message {message!r}")


async def assert_closed_by_server(
    ws: ClientConnection, code: int, reason: str | None = None
) -> None:
    """The server closed the connection with ``code`` (and ``reason``) and sent no message."""
    with pytest.raises(ConnectionClosed):
        message = await recv(ws)
        pytest.fail(f"expected a close, got message {message!r}")
    await asyncio.wait_for(ws.wait_closed(), TIMEOUT)
    assert ws.close_code == code
    if reason is not None:
        assert ws.close_reason == reason


# -- Simple Handler ----------------------------------------------------------------------


async def test_simple_handler_sends_connected() -> None:
    async with run_example("simple_handler") as ex:
        async with ex.connect("/ws") as ws:
            assert await recv(ws) == "Connected!"
            # No message handler: what the client sends afterwards is discarded.
            await ws.send("anyone there?")
            await assert_nothing_pending(ws)
        async with ex.connect("/ws") as ws2:
            assert await recv(ws2) == "Connected!"


async def test_simple_handler_unknown_path_is_rejected() -> None:
    async with run_example("simple_handler") as ex:
        with pytest.raises(InvalidStatus) as info:
            async with ex.connect("/nope"):
                pass
        assert info.value.response.status_code == 404


# -- Handler with Separate Events (/chat) ------------------------------------------------


async def test_event_handlers_welcome_then_echo() -> None:
    async with run_example("event_handlers") as ex:
        async with ex.connect("/chat") as ws:
            assert await recv(ws) == "Welcome!"
            await ex.expect_line("Client connected")
            await ws.send("hello")
            assert await recv(ws) == "Echo: hello"
            await ex.expect_line("Received: hello")
            await ws.send("second message")
            assert await recv(ws) == "Echo: second message"
            await ws.send(b"bytes")
            assert await recv(ws) == "Echo: bytes"
        await ex.expect_line("Client disconnected")


# -- WebSocket Methods -------------------------------------------------------------------


async def test_methods_send_text_binary_and_opcode() -> None:
    async with run_example("websocket_methods") as ex:
        async with ex.connect("/send") as ws:
            assert await recv(ws) == "Hello World"
            assert await recv(ws) == "Text message"
            assert await recv(ws) == b"Binary data"  # bytes: a BINARY frame
            assert await recv(ws) == "Data"  # str: a TEXT frame (OpCode.TEXT)
            await assert_nothing_pending(ws)


async def test_methods_publish_reaches_other_subscribers_not_the_sender() -> None:
    async with run_example("websocket_methods") as ex:
        async with (
            ex.connect("/listen?topic=room1") as room1,
            ex.connect("/listen?topic=notifications") as notifications,
        ):
            # A subscribes to room1 and notifications, leaves room1, publishes to both.
            async with ex.connect("/publish") as a:
                assert await recv(room1) == "Hello everyone in room1!"
                assert await recv(notifications) == "System update available"
                # The sender gets neither of its own messages.
                await assert_nothing_pending(a)

                # B does the same: A (still on notifications, no longer on room1) gets B's
                # notification but not B's room1 message; B gets nothing of its own.
                async with ex.connect("/publish") as b:
                    assert await recv(room1) == "Hello everyone in room1!"
                    assert await recv(notifications) == "System update available"
                    assert await recv(a) == "System update available"
                    await assert_nothing_pending(a)
                    await assert_nothing_pending(b)

            # A and B are gone: their subscriptions went with them. A new publisher
            # reaches the two listeners only.
            async with ex.connect("/publish") as c:
                assert await recv(room1) == "Hello everyone in room1!"
                assert await recv(notifications) == "System update available"
                await assert_nothing_pending(c)
            await assert_nothing_pending(room1)
            await assert_nothing_pending(notifications)


@pytest.mark.parametrize(
    ("path", "code", "reason"),
    [
        ("/close", 1000, ""),  # close(): the later close(...) calls do nothing
        ("/close/normal", 1000, "Normal closure"),
        ("/close/going-away", 1001, "Going away"),
    ],
)
async def test_methods_close_codes_and_reasons(path: str, code: int, reason: str) -> None:
    async with run_example("websocket_methods") as ex:
        async with ex.connect(path) as ws:
            await assert_closed_by_server(ws, code, reason)


async def test_methods_status_open_and_closed() -> None:
    async with run_example("websocket_methods") as ex:
        async with ex.connect("/status") as ws:
            assert await recv(ws) == "Connection is active"
            await assert_nothing_pending(ws)
        async with ex.connect("/status/closed") as ws:
            # closed is True right after close(): the check prints and sends nothing.
            await assert_closed_by_server(ws, 1000, "")
        await ex.expect_line("Connection is closed")
        assert ex.output.count("Connection is closed") == 1


# -- Simple Chat Room --------------------------------------------------------------------


async def test_chat_room_broadcasts_to_the_others() -> None:
    async with run_example("chat_room") as ex:
        await ex.expect_line(f"🚀 Chat server running on ws://localhost:{ex.port}/chat")
        async with ex.connect("/chat") as c1:
            assert await recv(c1) == "Welcome to chat room!"
            await ex.expect_line("Client connected. Total clients: 1")
            async with ex.connect("/chat") as c2:
                assert await recv(c2) == "Welcome to chat room!"
                await ex.expect_line("Client connected. Total clients: 2")
                async with ex.connect("/chat") as c3:
                    assert await recv(c3) == "Welcome to chat room!"
                    await ex.expect_line("Client connected. Total clients: 3")

                    await c1.send("hello from one")
                    assert await recv(c2) == "User: hello from one"
                    assert await recv(c3) == "User: hello from one"
                    await ex.expect_line("Received: hello from one")
                    # c1's next message is c2's: it never got its own back.
                    await c2.send("hi from two")
                    assert await recv(c1) == "User: hi from two"
                    assert await recv(c3) == "User: hi from two"
                    await assert_nothing_pending(c1)
                    await assert_nothing_pending(c2)
                    await assert_nothing_pending(c3)
                await ex.expect_line("Client disconnected. Total clients: 2")
                # Only the two that are left take part.
                await c2.send("still here")
                assert await recv(c1) == "User: still here"
                await assert_nothing_pending(c2)
            await ex.expect_line("Client disconnected. Total clients: 1")
        await ex.expect_line("Client disconnected. Total clients: 0")


async def test_chat_room_port_from_environment() -> None:
    async with run_example("chat_room", argv_port=False) as ex:
        await ex.expect_line(f"🚀 Chat server running on ws://localhost:{ex.port}/chat")
        async with ex.connect("/chat") as ws:
            assert await recv(ws) == "Welcome to chat room!"


# -- Real-time Dashboard -----------------------------------------------------------------

DASHBOARD_ENV = {"METRICS_INTERVAL": "0.1"}


async def recv_json(ws: ClientConnection) -> Any:
    message = await recv(ws)
    assert isinstance(message, str)
    return json.loads(message)


async def recv_metrics(ws: ClientConnection) -> dict[str, Any]:
    data = await recv_json(ws)
    assert data["type"] == "metrics", data
    assert isinstance(data["timestamp"], float)
    load = data["load"]
    assert isinstance(load, list) and len(load) == 3
    assert all(isinstance(x, (int, float)) and x >= 0 for x in load)
    assert isinstance(data["rss_bytes"], int) and data["rss_bytes"] > 1_000_000
    assert isinstance(data["subscribers"], int) and data["subscribers"] >= 1
    return dict(data)


async def recv_reply(ws: ClientConnection) -> Any:
    """The next message that is not a metrics publication."""
    for _ in range(1000):
        data = await recv_json(ws)
        if data.get("type") != "metrics":
            return data
    pytest.fail("only metrics arrived")


async def test_dashboard_welcome_then_metrics() -> None:
    async with run_example("dashboard", DASHBOARD_ENV) as ex:
        async with ex.connect("/dashboard") as ws:
            assert await recv_json(ws) == {"type": "welcome", "message": "Connected to dashboard"}
            await ex.expect_line("Dashboard client connected")
            first = await recv_metrics(ws)
            second = await recv_metrics(ws)
            third = await recv_metrics(ws)
            assert first["timestamp"] < second["timestamp"] < third["timestamp"]
        await ex.expect_line("Dashboard client disconnected")


async def test_dashboard_bad_messages_get_an_error_reply() -> None:
    async with run_example("dashboard", DASHBOARD_ENV) as ex:
        async with ex.connect("/dashboard") as ws:
            assert (await recv_json(ws))["type"] == "welcome"
            await ws.send("this is not json")
            assert await recv_reply(ws) == {"error": "Invalid JSON"}
            await ws.send(b"\xff\xfe")
            assert await recv_reply(ws) == {"error": "Invalid JSON"}
            await ws.send("[1, 2]")
            assert await recv_reply(ws) == {"error": "Expected a JSON object"}
            await ws.send(json.dumps({"type": "subscribe", "topic": 7}))
            assert await recv_reply(ws) == {"error": "A topic must be a string"}
            # Still connected and still receiving metrics.
            await recv_metrics(ws)


async def test_dashboard_unsubscribe_and_subscribe() -> None:
    async with run_example("dashboard", DASHBOARD_ENV) as ex:
        async with ex.connect("/dashboard") as a, ex.connect("/dashboard") as b:
            assert (await recv_json(a))["type"] == "welcome"
            assert (await recv_json(b))["type"] == "welcome"
            # A metrics message counts the subscribers when it is published: from the first
            # that counts 2, a and b are both on the topic.
            while (await recv_metrics(a))["subscribers"] != 2:
                pass

            await a.send(json.dumps({"type": "unsubscribe"}))  # the topic defaults to metrics
            await barrier(a)  # the server has unsubscribed a
            # b is still subscribed: two publications happen while a is out of the topic.
            seen = 0
            while seen < 2:
                if (await recv_metrics(b))["subscribers"] == 1:
                    seen += 1

            await a.send(json.dumps({"type": "subscribe", "topic": "metrics"}))
            await barrier(a)  # a is subscribed again
            # b's next publication that counts 2 came after the subscribe, and reaches a too.
            while (back := await recv_metrics(b))["subscribers"] != 2:
                pass
            # a got nothing published while it was out (those count 1): everything up to
            # that publication is from before the unsubscribe or after the subscribe.
            while (got := await recv_metrics(a))["timestamp"] != back["timestamp"]:
                assert got["subscribers"] == 2, f"published while a was out: {got}"
            assert got == back

            # Unsubscribing from a topic it is not on, or another topic, changes nothing.
            await a.send(json.dumps({"type": "unsubscribe", "topic": "other"}))
            await a.send(json.dumps({"type": "subscribe", "topic": "alerts"}))
            await barrier(a)
            await recv_metrics(a)


# -- graceful shutdown, for every example -------------------------------------------------

SHUTDOWN_CASES = [
    ("simple_handler", "/ws"),
    ("event_handlers", "/chat"),
    ("websocket_methods", "/listen?topic=room1"),
    ("chat_room", "/chat"),
    ("dashboard", "/dashboard"),
    ("error_handling", "/ws"),
]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
@pytest.mark.parametrize(("name", "path"), SHUTDOWN_CASES, ids=[n for n, _ in SHUTDOWN_CASES])
async def test_shutdown_on_signal_closes_clients_with_1001(
    name: str, path: str, sig: signal.Signals
) -> None:
    async with run_example(name, DASHBOARD_ENV if name == "dashboard" else None) as ex:
        async with ex.connect(path) as ws, ex.connect(path) as ws2:
            await barrier(ws)
            await barrier(ws2)
            assert await ex.stop(sig) == 0, ex.output
            for client in (ws, ws2):
                await asyncio.wait_for(client.wait_closed(), TIMEOUT)
                assert client.close_code == 1001
        if name == "dashboard":
            assert ex.output.count("Dashboard client disconnected") == 2
            # The shutdown hook ran, after the clients were gone.
            await ex.expect_line("Metrics publisher stopped")
            closes = [i for i, x in enumerate(ex.lines) if x == "Dashboard client disconnected"]
            assert max(closes) < ex.lines.index("Metrics publisher stopped")
        if name == "chat_room":
            await ex.expect_line("Client disconnected. Total clients: 0")


async def test_shutdown_with_no_clients() -> None:
    async with run_example("dashboard", DASHBOARD_ENV) as ex:
        assert await ex.stop(signal.SIGTERM) == 0, ex.output
        await ex.expect_line("Metrics publisher stopped")


# -- Error Handling ----------------------------------------------------------------------


async def test_error_handling_replies() -> None:
    async with run_example("error_handling") as ex:
        async with ex.connect("/ws") as ws:
            assert await recv(ws) == "Welcome!"
            await ws.send("hello")
            assert await recv(ws) == "Processed: hello"
            await ws.send("x" * 1000)
            assert await recv(ws) == "Processed: " + "x" * 1000
            await ws.send("x" * 1001)
            assert await recv(ws) == "Message too long"
            await ws.send(b"bytes too")
            assert await recv(ws) == "Processed: bytes too"
            # A handled error: invalid UTF-8 in a binary message.
            await ws.send(b"\xff")
            assert await recv(ws) == "Error processing message"
            await ex.expect_line("Error processing message: 'utf-8' codec", prefix=True)
            # The connection is still open.
            await ws.send("after the error")
            assert await recv(ws) == "Processed: after the error"
        with pytest.raises(ConnectionClosedOK):
            await ws.recv()

"""The socket-level load drivers of ``xyra bench`` against real servers.

The server runs in this test's event loop; each driver runs in a worker thread
(it blocks while it runs, and waits on epoll without the GIL).
"""

from __future__ import annotations

import asyncio

import pytest

pytest.importorskip("xyra.bench._drivers.sockload", reason="the load drivers are not compiled")

from kit import TIMEOUT, free_port, served

from xyra import App
from xyra.bench._drivers.loadgen import masked_frame
from xyra.bench._drivers.sockload import ConnectDriver, EchoDriver, PubSubDriver
from xyra.bench.client import subscribe_barrier, upgrade_request

KEY = b"\x01\x02\x03\x04"
CLOSE = masked_frame(b"\x03\xe8", 8, KEY)
MIB = 1024 * 1024


def counting_app(events: list[str]) -> App:
    app = App()
    app.websocket(
        "/",
        {
            "open": lambda ws: events.append("open"),
            "message": lambda ws, m, op: ws.send(m, op),
            "close": lambda ws, code, reason: events.append("close"),
        },
        max_payload_length=2 * MIB,
    )
    app.websocket("/wrong", {"message": lambda ws, m, op: ws.send(m + m[:1], op)})
    app.websocket("/bye", {"message": lambda ws, m, op: ws.close(1000, "bye")})
    return app


async def in_thread(fn, *args):  # type: ignore[no-untyped-def]
    return await asyncio.wait_for(asyncio.to_thread(fn, *args), TIMEOUT * 3)


# -- ConnectDriver --------------------------------------------------------------------------


async def test_connect_cycles_complete_and_the_server_sees_each() -> None:
    events: list[str] = []
    async with served(counting_app(events)) as server:
        driver = ConnectDriver(server.port, 4, upgrade_request(b"/"), CLOSE)
        await in_thread(driver.run, 0.5)
        await in_thread(driver.drain, TIMEOUT)
        assert driver.errors == 0, driver.first_error
        assert driver.completed > 10
        assert driver.opened == driver.completed  # drained: nothing left half-way
        assert driver.busy == 0
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while events.count("close") < driver.completed:
            assert asyncio.get_running_loop().time() < deadline, events[-5:]
            await asyncio.sleep(0.01)
        assert events.count("open") == driver.opened


async def test_connect_counts_a_refused_upgrade_and_stops_after_max_errors() -> None:
    async with served(counting_app([])) as server:
        driver = ConnectDriver(server.port, 2, upgrade_request(b"/nowhere"), CLOSE, max_errors=5)
        await in_thread(driver.run, 60.0)  # returns early: too many errors
        driver.close()
    assert driver.completed == 0 and driver.opened == 0
    assert driver.errors > 5
    assert driver.first_error == "upgrade: upgrade refused"


async def test_connect_reports_a_refused_tcp_connection() -> None:
    driver = ConnectDriver(free_port(), 1, upgrade_request(b"/"), CLOSE, max_errors=1)
    await in_thread(driver.run, 60.0)
    driver.close()
    assert driver.errors == 2 and driver.completed == 0
    assert driver.first_error is not None
    assert "refused" in driver.first_error.lower(), driver.first_error


async def test_connect_times_out_a_silent_server() -> None:
    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # never answers
        writer.close()

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        driver = ConnectDriver(port, 2, upgrade_request(b"/"), CLOSE, timeout=0.2)
        await in_thread(driver.run, 0.5)
        driver.close()
    finally:
        server.close()
    assert driver.completed == 0 and driver.errors >= 2
    assert driver.first_error == "upgrade: timed out"


# -- EchoDriver -----------------------------------------------------------------------------


async def echo_run(
    port: int,
    path: bytes | None,
    frame: bytes,
    window: int,
    size: int,
    opcode: int,
    connections: int = 2,
) -> EchoDriver:
    request = upgrade_request(path) if path is not None else None
    driver = await in_thread(
        lambda: EchoDriver(
            port,
            connections,
            frame,
            window,
            request=request,
            expect_length=size,
            expect_opcode=opcode,
        )
    )
    driver.start()
    await in_thread(driver.run, 0.4)
    driver.stop()
    for _ in range(100):
        if driver.in_flight == 0:
            break
        await in_thread(driver.run, 0.05)
    return driver


async def test_echo_counts_every_small_reply() -> None:
    async with served(counting_app([])) as server:
        driver = await echo_run(
            server.port, b"/", masked_frame(b"x" * 32, 1, KEY), 8, 32, 1, connections=3
        )
        driver.close()
    assert driver.first_error is None and driver.lost == 0
    assert driver.received > 100
    assert driver.sent == driver.received and driver.in_flight == 0
    assert driver.mismatched == 0
    assert driver.messages == driver.received


async def test_echo_drops_big_payloads_in_the_kernel_but_counts_them() -> None:
    async with served(counting_app([])) as server:
        frame = masked_frame(b"\xa5" * MIB, 2, KEY)
        driver = await echo_run(server.port, b"/", frame, 1, MIB, 2)
        driver.close()
    assert driver.first_error is None and driver.lost == 0
    assert driver.received > 5 and driver.sent == driver.received
    assert driver.mismatched == 0
    # Copying reads take a 64 KiB buffer: 16+ per 1 MiB reply. Skipping takes a few.
    assert driver.reads < 8 * driver.received, (driver.reads, driver.received)


async def test_echo_counts_replies_of_the_wrong_length() -> None:
    async with served(counting_app([])) as server:
        driver = await echo_run(server.port, b"/wrong", masked_frame(b"y" * 100, 2, KEY), 2, 100, 2)
        driver.close()
    assert driver.received > 10
    assert driver.mismatched == driver.received


async def test_echo_reports_a_server_that_closes() -> None:
    async with served(counting_app([])) as server:
        driver = await echo_run(server.port, b"/bye", masked_frame(b"z", 1, KEY), 1, 1, 1)
        driver.close()
    assert driver.lost == 2 and driver.received == 0
    assert driver.first_error == "the server closed the connection (1000)"


async def test_echo_on_a_raw_tcp_echo_counts_the_masked_frames() -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(65536):
            writer.write(data)
        writer.close()

    server = await asyncio.start_server(echo, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        driver = await echo_run(port, None, masked_frame(b"r" * 300, 1, KEY), 4, 300, 1)
        driver.close()
    finally:
        server.close()
    assert driver.first_error is None
    assert driver.received > 10 and driver.sent == driver.received
    assert driver.mismatched == 0


def test_drivers_refuse_bad_arguments() -> None:
    with pytest.raises(ValueError):
        EchoDriver(1, 1, b"", 1)
    with pytest.raises(ValueError):
        ConnectDriver(1, 0, b"GET", CLOSE)
    with pytest.raises(ValueError):
        PubSubDriver(1, [], 1, b"x", 1)


def test_echo_raises_when_nothing_listens() -> None:
    # Blocking constructor against nothing listening: the OS error, no driver.
    with pytest.raises(OSError):
        EchoDriver(free_port(), 1, masked_frame(b"x", 1, KEY), 1, request=upgrade_request(b"/"))


# -- PubSubDriver ---------------------------------------------------------------------------


def pubsub_app(published: list[str]) -> App:
    """``/t?N``: subscribers of topic N; every message publishes to it (not the sender).
    ``/lossy?N`` drops every fifth message; ``/echoing?N`` also answers the publisher."""
    app = App()

    def subscribe(ws):  # type: ignore[no-untyped-def]
        ws.subscribe(ws.path)

    def publish(ws, message, opcode):  # type: ignore[no-untyped-def]
        published.append(ws.path)
        if ws.path.startswith("/lossy") and len(published) % 5 == 0:
            return
        ws.publish(ws.path, message, opcode)
        if ws.path.startswith("/echoing"):
            ws.send(message, opcode)

    for route in ("/t", "/lossy", "/echoing"):
        app.websocket(route, {"open": subscribe, "message": publish})
    return app


async def pubsub_run(
    port: int,
    route: bytes,
    topics: int,
    subscribers: int,
    seconds: float,
    stall_period: float = 2.0,
) -> PubSubDriver:
    requests = [upgrade_request(route + b"?%d" % i) for i in range(topics)]
    frame = masked_frame(b"m" * 20, 1, KEY)

    def run() -> PubSubDriver:
        driver = PubSubDriver(
            port,
            requests,
            subscribers,
            frame,
            4,
            expect_length=20,
            expect_opcode=1,
            stall_period=stall_period,
        )
        assert subscribe_barrier(driver, topics, TIMEOUT)
        driver.reset()
        driver.start()
        driver.run(seconds)
        driver.stop()
        for _ in range(100):
            if driver.delivered >= driver.expected:
                break
            driver.run(0.05)
        return driver

    return await in_thread(run)


async def test_pubsub_delivers_every_message_to_every_subscriber_of_its_topic() -> None:
    published: list[str] = []
    async with served(pubsub_app(published)) as server:
        driver = await pubsub_run(server.port, b"/t", 2, 20, 0.5)
        driver.close()
    assert driver.first_error is None and driver.lost == 0
    assert driver.published > 20
    # Exact: a message that leaked to the other topic's subscribers would be counted too.
    assert driver.delivered == driver.expected == driver.published * 20
    assert driver.messages == driver.delivered
    assert driver.mismatched == 0 and driver.stalls == 0 and driver.to_publishers == 0
    assert driver.in_flight == 0
    # Both topics were paced: each publisher's path shows up among the publishes.
    assert {"/t?0", "/t?1"} <= set(published)


async def test_pubsub_forgives_dropped_messages_and_keeps_publishing() -> None:
    async with served(pubsub_app([])) as server:
        driver = await pubsub_run(server.port, b"/lossy", 1, 5, 1.5, stall_period=0.2)
        driver.close()
    assert driver.stalls >= 1, "a window that can never drain was forgiven"
    assert driver.published > 4 * (driver.stalls + 1), "publishing went on after each stall"
    assert driver.delivered < driver.expected  # the dropped ones never arrived


async def test_pubsub_counts_messages_sent_back_to_a_publisher_apart() -> None:
    async with served(pubsub_app([])) as server:
        driver = await pubsub_run(server.port, b"/echoing", 1, 3, 0.3)
        driver.close()
    assert driver.to_publishers == driver.published > 0
    assert driver.delivered == driver.expected and driver.messages == driver.delivered

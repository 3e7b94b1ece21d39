"""The opening handshake's fast path over real sockets (protocol.pyx, upgrade.h).

On uvloop every connection starts as a WebSocket whose first read is scanned in C; a
canonical upgrade request is answered and opened there, anything else goes to httptools
and xyra/handshake.py. tests/unit/test_upgrade_fast.py checks the two agree on every
request; these check that real clients take the fast path, and that what leaves it
(a split head, a cross-origin browser, a server shutting down) still works.
"""

from __future__ import annotations

import asyncio

import aiohttp
import websockets
from kit import (
    TIMEOUT,
    RawClient,
    client_frame,
    echo,
    recv,
    served,
    upgrade_request,
    wait_for_condition,
    ws_url,
)
from kit.refcodec import OP_TEXT

from xyra import App


def echo_app(**options: object) -> App:
    app = App()
    app.websocket("/", {"message": echo}, **options)  # type: ignore[arg-type]
    return app


async def test_real_clients_take_the_fast_path() -> None:
    async with served(echo_app(compression="shared")) as server:
        async with websockets.connect(ws_url(server)) as client:
            await client.send("hi")
            assert await recv(client) == "hi"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url(server, "/?x=1")) as ws:
                await ws.send_str("there")
                assert (await ws.receive(TIMEOUT)).data == "there"
        assert server.context.fast_upgrades == 2


async def test_a_same_origin_browser_is_fast_a_cross_origin_one_refused() -> None:
    async with served(echo_app()) as server:
        same = await RawClient.connect(server)
        await same.send(upgrade_request(host="127.0.0.1", headers="Origin: http://127.0.0.1\r\n"))
        assert (await same.recv_response(head_only=True)).status == 101
        assert server.context.fast_upgrades == 1
        other = await RawClient.connect(server)
        await other.send(upgrade_request(headers="Origin: http://evil.example\r\n"))
        response = await other.recv_response()
        assert response.status == 403 and b"cross-origin" in response.body
        assert server.context.fast_upgrades == 1
        same.close()
        other.close()


async def test_frames_in_the_same_write_as_the_head_are_served() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.handshake(extra=client_frame(OP_TEXT, b"early") + client_frame(OP_TEXT, b"x"))
        assert (await raw.recv_wire_frame()).payload == b"early"
        assert (await raw.recv_wire_frame()).payload == b"x"
        assert server.context.fast_upgrades == 1
        raw.close()


async def test_a_head_split_over_reads_goes_the_general_way() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        head = upgrade_request()
        await raw.send(head[:20])
        # The first read was not a whole head: an HTTP-phase protocol has the connection.
        await wait_for_condition(
            lambda: any(type(p).__name__ == "ServerProtocol" for p in server.hub.handshaking)
        )
        await raw.send(head[20:])
        assert (await raw.recv_head()).startswith(b"HTTP/1.1 101 ")
        await raw.send_frame(OP_TEXT, b"still fine")
        assert (await raw.recv_wire_frame()).payload == b"still fine"
        assert server.context.fast_upgrades == 0
        raw.close()


async def test_the_close_handshake_answers_and_closes() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.open(server)
        await raw.send_frame(0x8, b"\x03\xe8")
        await raw.wait_closed()
        assert bytes(raw.buf) == b"\x88\x02\x03\xe8"
        await wait_for_condition(lambda: server.connections == 0)


async def test_shutdown_closes_connections_that_sent_nothing_yet() -> None:
    app = echo_app()
    async with served(app) as server:
        idle = await RawClient.connect(server)
        await wait_for_condition(lambda: len(server.hub.handshaking) == 1)
        stop = asyncio.ensure_future(server.stop(timeout=TIMEOUT))
        await idle.wait_closed()
        await asyncio.wait_for(stop, TIMEOUT)
        assert server.connections == 0
        idle.close()


async def test_a_server_without_websocket_routes_starts_in_the_http_phase() -> None:
    app = App()
    app.get("/", lambda request: "plain\n")
    async with served(app) as server:
        raw = await RawClient.connect(server)
        await raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        response = await raw.recv_response()
        assert response.status == 200 and response.body == b"plain\n"
        assert server.context.fast_upgrades == 0
        raw.close()

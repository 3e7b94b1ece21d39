"""Bad input over real sockets: the RFC close code or HTTP status, and nobody else hurt."""

from __future__ import annotations

import base64
import os

import pytest
import websockets
from kit import RawClient, recv, served, upgrade_request, ws_url
from kit.refcodec import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    client_frame,
    read_frame,
)

from xyra import App


def echo_app(**options: object) -> App:
    app = App(handshake_timeout=0.5)
    options.setdefault("close_timeout", 0.5)
    app.websocket("/", {"message": lambda ws, m, op: ws.send(m, op)}, **options)
    return app


async def assert_neighbour_ok(server) -> None:
    async with websockets.connect(ws_url(server)) as client:
        await client.send("still fine")
        assert await recv(client) == "still fine"


frame = client_frame

CASES = {
    "unmasked frame": (frame(OP_TEXT, b"hi", masked=False), 1002),
    "reserved opcode": (frame(3, b""), 1002),
    "rsv2 bit": (frame(OP_TEXT, b"x", rsv2=True), 1002),
    "rsv3 bit": (frame(OP_TEXT, b"x", rsv3=True), 1002),
    "126-byte ping": (frame(OP_PING, b"x" * 126), 1002),
    "fragmented ping": (frame(OP_PING, b"x", fin=False), 1002),
    "continuation with no start": (frame(OP_CONT, b"x"), 1002),
    "new message inside fragmented one": (
        frame(OP_TEXT, b"a", fin=False) + frame(OP_TEXT, b"b"),
        1002,
    ),
    "64-bit length top bit": (frame(OP_BINARY, b"", declared_length=1 << 63), 1002),
    "frame claiming 2^63-1 bytes": (frame(OP_BINARY, b"", declared_length=(1 << 63) - 1), 1009),
    "invalid utf-8": (frame(OP_TEXT, b"\xce\xba\xff"), 1007),
    "invalid utf-8 in third fragment": (
        frame(OP_TEXT, b"ok", fin=False)
        + frame(OP_CONT, b"fine", fin=False)
        + frame(OP_CONT, b"\xed\xa0\x80"),
        1007,
    ),
    "close with 1-byte payload": (frame(OP_CLOSE, b"\x03"), 1002),
    "close with invalid code": (frame(OP_CLOSE, (999).to_bytes(2, "big")), 1002),
    "close with invalid utf-8 reason": (frame(OP_CLOSE, b"\x03\xe8\xff"), 1007),
    "fragmented close": (frame(OP_CLOSE, b"\x03\xe8", fin=False), 1002),
    "compressed frame without negotiation": (frame(OP_TEXT, b"\x00", rsv1=True), 1002),
    "too big": (frame(OP_BINARY, b"x" * 2000), 1009),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_protocol_violation_gets_its_close_code(name: str) -> None:
    data, code = CASES[name]
    async with served(echo_app(max_payload_length=1000)) as server:
        raw = await RawClient.open(server)
        await raw.send(data)
        assert (await raw.recv_close())[0] == code
        await raw.wait_closed()
        await assert_neighbour_ok(server)


async def test_fail_fast_utf8_before_the_frame_is_complete() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.open(server)
        whole = frame(OP_TEXT, b"abc\xff" + b"x" * 1000)
        await raw.send(whole[:20])  # the rest never comes: the error must not wait for it
        assert (await raw.recv_close())[0] == 1007


async def test_frames_pipelined_with_the_handshake_are_parsed() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.handshake(extra=frame(OP_TEXT, b"one") + frame(OP_TEXT, b"two"))
        assert await raw.recv_frame() == (OP_TEXT, b"one")
        assert await raw.recv_frame() == (OP_TEXT, b"two")


async def test_interleaved_ping_in_fragmented_message() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.open(server)
        await raw.send(
            frame(OP_TEXT, b"Hel", fin=False) + frame(OP_PING, b"p") + frame(OP_CONT, b"lo")
        )
        assert await raw.recv_frame() == (OP_PONG, b"p")
        assert await raw.recv_frame() == (OP_TEXT, b"Hello")


async def test_frame_split_byte_by_byte() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.open(server)
        data = frame(OP_BINARY, os.urandom(300))
        for i in range(len(data)):
            await raw.send(data[i : i + 1])
        sent = read_frame(data)
        assert sent is not None and sent.size == len(data)
        assert await raw.recv_frame() == (OP_BINARY, sent.payload)


@pytest.mark.parametrize(
    ("raw_request", "status", "fragment"),
    [
        (upgrade_request("/nowhere"), 404, b"no WebSocket route at /nowhere"),
        (upgrade_request(key=""), 400, b"missing Sec-WebSocket-Key"),
        (upgrade_request(key=base64.b64encode(b"x" * 15).decode()), 400, b"16 bytes"),
        (upgrade_request(version="8"), 426, b"Sec-WebSocket-Version: 13"),
        (upgrade_request(method="POST"), 405, b"needs GET"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426, b"Upgrade: websocket"),
        (upgrade_request(headers="X-Big: " + "a" * 100_000 + "\r\n"), 431, b"request head over"),
        (
            upgrade_request(headers="".join(f"X-{i}: v\r\n" for i in range(150))),
            431,
            b"header lines",
        ),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, b"malformed HTTP request"),
    ],
    ids=[
        "unknown path",
        "no key",
        "15-byte key",
        "version 8",
        "POST",
        "no upgrade",
        "100 KiB of headers",
        "150 headers",
        "not HTTP",
    ],
)
async def test_bad_handshakes_get_the_right_status(raw_request, status, fragment) -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.send(raw_request)
        response = await raw.recv_response()
        assert response.status == status
        assert fragment in response.head + response.body
        await assert_neighbour_ok(server)


async def test_keep_alive_upgrade_token_list() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.send(upgrade_request(connection="keep-alive, Upgrade"))
        assert (await raw.recv_head()).startswith(b"HTTP/1.1 101")


async def test_slowloris_handshake_times_out() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never finish the head
        await raw.wait_closed()
        await assert_neighbour_ok(server)

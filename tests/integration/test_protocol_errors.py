"""Bad input over real sockets: the RFC close code or HTTP status, and nobody else hurt."""

from __future__ import annotations

import asyncio
import base64
import os

import pytest
import websockets
from wsutil import TIMEOUT, RawClient, frame, request, served, url

from xyra import App


def echo_app(**options: object) -> App:
    app = App(handshake_timeout=0.5)
    options.setdefault("close_timeout", 0.5)
    app.websocket("/", {"message": lambda ws, m, op: ws.send(m, op)}, **options)
    return app


async def assert_neighbour_ok(server) -> None:
    async with websockets.connect(url(server)) as client:
        await client.send("still fine")
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "still fine"


CASES = {
    "unmasked frame": (frame(1, b"hi", mask=False), 1002),
    "reserved opcode": (frame(3, b""), 1002),
    "rsv bits without extension": (frame(1, b"x", rsv=0x40), 1002),
    "126-byte ping": (frame(9, b"x" * 126), 1002),
    "fragmented ping": (frame(9, b"x", fin=False), 1002),
    "continuation with no start": (frame(0, b"x"), 1002),
    "new message inside fragmented one": (frame(1, b"a", fin=False) + frame(1, b"b"), 1002),
    "64-bit length top bit": (frame(2, b"", length=1 << 63), 1002),
    "frame claiming 2^63-1 bytes": (frame(2, b"", length=(1 << 63) - 1), 1009),
    "invalid utf-8": (frame(1, b"\xce\xba\xff"), 1007),
    "invalid utf-8 in third fragment": (
        frame(1, b"ok", fin=False) + frame(0, b"fine", fin=False) + frame(0, b"\xed\xa0\x80"),
        1007),
    "close with 1-byte payload": (frame(8, b"\x03"), 1002),
    "close with invalid code": (frame(8, (999).to_bytes(2, "big")), 1002),
    "close with invalid utf-8 reason": (frame(8, b"\x03\xe8\xff"), 1007),
    "fragmented close": (frame(8, b"\x03\xe8", fin=False), 1002),
    "compressed frame without negotiation": (frame(1, b"\x00", rsv=0x40), 1002),
    "too big": (frame(2, b"x" * 2000), 1009),
}


@pytest.mark.parametrize("name", list(CASES))
async def test_protocol_violation_gets_its_close_code(name: str) -> None:
    data, code = CASES[name]
    async with served(echo_app(max_payload_length=1000)) as server:
        raw = await RawClient.connect(server)
        await raw.handshake()
        raw.send(data)
        assert (await raw.read_close())[0] == code
        assert await raw.closed_by_server()
        await assert_neighbour_ok(server)


async def test_fail_fast_utf8_before_the_frame_is_complete() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.handshake()
        whole = frame(1, b"abc\xff" + b"x" * 1000)
        raw.send(whole[:20])  # the rest never comes: the error must not wait for it
        assert (await raw.read_close())[0] == 1007


async def test_frames_pipelined_with_the_handshake_are_parsed() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.handshake(extra=frame(1, b"one") + frame(1, b"two"))
        assert await raw.read_frame() == (1, b"one")
        assert await raw.read_frame() == (1, b"two")


async def test_interleaved_ping_in_fragmented_message() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.handshake()
        raw.send(frame(1, b"Hel", fin=False) + frame(9, b"p") + frame(0, b"lo"))
        assert await raw.read_frame() == (10, b"p")
        assert await raw.read_frame() == (1, b"Hello")


async def test_frame_split_byte_by_byte() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        await raw.handshake()
        data = frame(2, os.urandom(300))
        for i in range(len(data)):
            raw.send(data[i:i + 1])
            await raw.writer.drain()
        assert await raw.read_frame() == (2, bytes(b ^ 0 for b in _unmask(data)))


def _unmask(data: bytes) -> bytes:
    key, payload = data[4:8], data[8:]
    return bytes(b ^ key[i % 4] for i, b in enumerate(payload))


@pytest.mark.parametrize(
    ("raw_request", "status", "fragment"),
    [
        (request("/nowhere"), 404, b"no WebSocket route at /nowhere"),
        (request(key=""), 400, b"missing Sec-WebSocket-Key"),
        (request(key=base64.b64encode(b"x" * 15).decode()), 400, b"16 bytes"),
        (request(version="8"), 426, b"Sec-WebSocket-Version: 13"),
        (request(method="POST"), 405, b"needs GET"),
        (b"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 426, b"Upgrade: websocket"),
        (request(extra="X-Big: " + "a" * 100_000 + "\r\n"), 431, b"request head over"),
        (request(extra="".join(f"X-{i}: v\r\n" for i in range(150))), 431, b"header lines"),
        (b"NOT HTTP AT ALL\r\n\r\n", 400, b"malformed HTTP request"),
    ],
    ids=["unknown path", "no key", "15-byte key", "version 8", "POST", "no upgrade",
         "100 KiB of headers", "150 headers", "not HTTP"],
)
async def test_bad_handshakes_get_the_right_status(raw_request, status, fragment) -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        raw.send(raw_request)
        got, data = await raw.http_response()
        assert got == status
        assert fragment in data
        await assert_neighbour_ok(server)


async def test_keep_alive_upgrade_token_list() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        raw.send(request(connection="keep-alive, Upgrade"))
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 101")


async def test_slowloris_handshake_times_out() -> None:
    async with served(echo_app()) as server:
        raw = await RawClient.connect(server)
        raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n")  # and never finish the head
        assert await raw.closed_by_server()
        await assert_neighbour_ok(server)

"""The HTTP phase of the protocol: Expect, early 413, keep-alive 404."""

from __future__ import annotations

import asyncio

from wsutil import TIMEOUT, RawClient, served

from xyra import App


def app() -> App:
    a = App(max_body_size=1000)

    @a.post("/echo")
    def echo(request):  # type: ignore[no-untyped-def]
        return request.body

    return a


async def test_expect_100_continue_is_answered() -> None:
    async with served(app()) as server:
        raw = await RawClient.connect(server)
        raw.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n"
                 b"Expect: 100-continue\r\n\r\n")
        interim = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert interim == b"HTTP/1.1 100 Continue\r\n\r\n"
        raw.send(b"hello")
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 200")
        assert await asyncio.wait_for(raw.reader.readexactly(5), TIMEOUT) == b"hello"


async def test_too_large_content_length_is_refused_before_the_body() -> None:
    async with served(app()) as server:
        raw = await RawClient.connect(server)
        raw.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
                 b"Expect: 100-continue\r\n\r\n")
        status, body = await raw.http_response()
        assert status == 413 and b"over 1000 bytes" in body


async def test_404_keeps_the_connection_alive() -> None:
    async with served(app()) as server:
        raw = await RawClient.connect(server)
        raw.send(b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\n"
                 b"HEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n")
        head = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head.startswith(b"HTTP/1.1 404") and b"keep-alive" in head.lower()
        length = int(head.lower().split(b"content-length: ")[1].split(b"\r\n")[0])
        await raw.reader.readexactly(length)
        head2 = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head2.startswith(b"HTTP/1.1 404")
        raw.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        head3 = await asyncio.wait_for(raw.reader.readuntil(b"\r\n\r\n"), TIMEOUT)
        assert head3.startswith(b"HTTP/1.1 200")  # no body came with the HEAD answer
        assert await asyncio.wait_for(raw.reader.readexactly(2), TIMEOUT) == b"ok"

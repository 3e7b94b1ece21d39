"""The HTTP phase of the protocol: Expect, early 413, keep-alive 404."""

from __future__ import annotations

from kit import RawClient, served

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
        await raw.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n"
        )
        assert await raw.recv_head() == b"HTTP/1.1 100 Continue\r\n\r\n"
        await raw.send(b"hello")
        response = await raw.recv_response()
        assert response.status == 200 and response.body == b"hello"


async def test_too_large_content_length_is_refused_before_the_body() -> None:
    async with served(app()) as server:
        raw = await RawClient.connect(server)
        await raw.send(
            b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n"
            b"Expect: 100-continue\r\n\r\n"
        )
        response = await raw.recv_response()
        assert response.status == 413 and b"over 1000 bytes" in response.body


async def test_404_keeps_the_connection_alive() -> None:
    async with served(app()) as server:
        raw = await RawClient.connect(server)
        await raw.send(
            b"GET /missing HTTP/1.1\r\nHost: x\r\n\r\nHEAD /missing HTTP/1.1\r\nHost: x\r\n\r\n"
        )
        first = await raw.recv_response()
        assert first.status == 404 and first.headers["connection"].lower() == "keep-alive"
        assert len(first.body) == int(first.headers["content-length"])
        assert (await raw.recv_response(head_only=True)).status == 404
        await raw.send(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nok")
        # no body came with the HEAD answer: the next bytes are this response
        response = await raw.recv_response()
        assert response.status == 200 and response.body == b"ok"

"""permessage-deflate against the websockets client, over real sockets."""

from __future__ import annotations

import zlib

import pytest
import websockets
from kit import RawClient, client_frame, recv, served, upgrade_request, ws_url
from kit.refcodec import OP_BINARY, OP_CONT, OP_PING, OP_PONG, OP_TEXT
from websockets.extensions.permessage_deflate import ClientPerMessageDeflateFactory

from xyra import App

TEXT = "the quick brown fox jumps over the lazy dog " * 40


def echo_app(mode: str, **options: object) -> App:
    app = App()
    app.websocket(
        "/",
        {
            "message": lambda ws, m, op: ws.send(m, op, compress=True),
            "open": lambda ws: ws.subscribe("news"),
        },
        compression=mode,
        **options,
    )
    return app


PARAMS = [
    {},
    {"server_no_context_takeover": True},
    {"client_no_context_takeover": True},
    {"server_max_window_bits": 10},
    {"client_max_window_bits": 9},
    {"client_max_window_bits": True},
    {
        "server_no_context_takeover": True,
        "client_no_context_takeover": True,
        "server_max_window_bits": 12,
        "client_max_window_bits": 11,
    },
]


@pytest.mark.parametrize("params", PARAMS, ids=lambda p: ",".join(p) or "default")
@pytest.mark.parametrize("mode", ["shared", "dedicated"])
async def test_negotiation_and_roundtrip(mode: str, params: dict) -> None:
    factory = ClientPerMessageDeflateFactory(**params)
    async with (
        served(echo_app(mode)) as server,
        websockets.connect(ws_url(server), extensions=[factory], compression=None) as c,
    ):
        header = c.response.headers.get("Sec-WebSocket-Extensions")
        assert header is not None and header.startswith("permessage-deflate")
        if mode == "shared":
            assert "server_no_context_takeover" in header
        for i in range(5):  # several messages: context takeover across them must hold
            await c.send(f"{i}:{TEXT}")
            assert await recv(c) == f"{i}:{TEXT}"
            await c.send(TEXT.encode())
            assert await recv(c) == TEXT.encode()
        await c.send("tiny")
        assert await recv(c) == "tiny"


async def test_compressed_frames_are_really_compressed_and_small_ones_are_not() -> None:
    async with served(echo_app("shared")) as server:
        raw = await _negotiated_raw(server)
        await raw.send_frame(OP_TEXT, TEXT.encode())
        reply = await raw.recv_wire_frame()
        assert reply.rsv1 and len(reply.payload) < len(TEXT) // 4  # compressed, much smaller
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(reply.payload + b"\x00\x00\xff\xff").decode() == TEXT
        await raw.send_frame(OP_TEXT, b"short")  # under compression_threshold: sent plain
        reply = await raw.recv_wire_frame()
        assert not reply.rsv1 and reply.payload == b"short"


async def _negotiated_raw(server) -> RawClient:
    raw = await RawClient.connect(server)
    await raw.send(upgrade_request(headers="Sec-WebSocket-Extensions: permessage-deflate\r\n"))
    assert b"permessage-deflate" in await raw.recv_head()
    return raw


def _deflate(data: bytes) -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


async def test_compression_bomb_closes_1009_without_inflating_it() -> None:
    # 64 MiB of zeros compresses to ~64 KiB; the limit is 1 MiB decompressed.
    bomb = _deflate(bytes(64 << 20))
    assert len(bomb) < 100_000
    async with served(echo_app("shared", max_payload_length=1 << 20)) as server:
        raw = await _negotiated_raw(server)
        await raw.send_frame(OP_BINARY, bomb, rsv1=True)
        assert (await raw.recv_close())[0] == 1009
        async with websockets.connect(ws_url(server)) as neighbour:
            await neighbour.send(TEXT)
            assert await recv(neighbour) == TEXT


@pytest.mark.parametrize(
    ("name", "data", "code"),
    [
        ("corrupt deflate data", client_frame(OP_BINARY, b"\xff\xff\xff\xff", rsv1=True), 1007),
        (
            "rsv1 on continuation",
            client_frame(OP_TEXT, _deflate(b"ab"), rsv1=True, fin=False)
            + client_frame(OP_CONT, b"x", rsv1=True),
            1002,
        ),
        ("rsv1 on a ping", client_frame(OP_PING, b"", rsv1=True), 1002),
        (
            "invalid utf-8 inside compressed text",
            client_frame(OP_TEXT, _deflate(b"\xff\xfe"), rsv1=True),
            1007,
        ),
    ],
)
async def test_bad_compressed_input(name: str, data: bytes, code: int) -> None:
    async with served(echo_app("shared")) as server:
        raw = await _negotiated_raw(server)
        await raw.send(data)
        assert (await raw.recv_close())[0] == code


async def test_fragmented_compressed_message() -> None:
    payload = _deflate(TEXT.encode())
    async with served(echo_app("dedicated")) as server:
        raw = await _negotiated_raw(server)
        half = len(payload) // 2
        await raw.send(
            client_frame(OP_TEXT, payload[:half], rsv1=True, fin=False)
            + client_frame(OP_PING, b"p")
            + client_frame(OP_CONT, payload[half:])
        )
        assert await raw.recv_frame() == (OP_PONG, b"p")
        reply = await raw.recv_wire_frame()
        assert reply.rsv1 and reply.opcode == OP_TEXT
        inflated = zlib.decompressobj(-15).decompress(reply.payload + b"\x00\x00\xff\xff")
        assert inflated.decode() == TEXT


@pytest.mark.parametrize("mode", ["shared", "dedicated"])
async def test_publish_compressed_reaches_compressing_and_plain_subscribers(mode: str) -> None:
    app = echo_app(mode)
    small = ClientPerMessageDeflateFactory(server_max_window_bits=9)
    async with (
        served(app) as server,
        websockets.connect(ws_url(server)) as comp,
        websockets.connect(ws_url(server), extensions=[small], compression=None) as comp9,
        websockets.connect(ws_url(server), compression=None) as plain,
    ):
        assert comp.response.headers.get("Sec-WebSocket-Extensions")
        assert "server_max_window_bits=9" in comp9.response.headers["Sec-WebSocket-Extensions"]
        assert plain.response.headers.get("Sec-WebSocket-Extensions") is None
        for client in (comp, comp9, plain):
            await client.send("sync")
            assert await recv(client) == "sync"
        for i in range(3):
            assert app.publish("news", f"{i}{TEXT}", compress=True)
        for i in range(3):
            for client in (comp, comp9, plain):
                assert await recv(client) == f"{i}{TEXT}"


async def test_malformed_offer_is_400() -> None:
    async with served(echo_app("shared")) as server:
        raw = await RawClient.connect(server)
        await raw.send(
            upgrade_request(headers="Sec-WebSocket-Extensions: permessage-deflate; bogus=1\r\n")
        )
        response = await raw.recv_response()
        assert response.status == 400 and b"Sec-WebSocket-Extensions" in response.body


async def test_compression_off_declines() -> None:
    async with served(echo_app("off")) as server, websockets.connect(ws_url(server)) as c:
        assert c.response.headers.get("Sec-WebSocket-Extensions") is None
        await c.send(TEXT)
        assert await recv(c) == TEXT

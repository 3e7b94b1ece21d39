"""The compression workloads of ``xyra bench``, checked from outside the load client.

The load client counts compressed frames without inflating them; here a raw client
subscribes to the xyra adapter's ``/pubsub_deflate`` route, offering permessage-deflate,
and inflates what a publisher's message became. The workloads
themselves run in test_bench_smoke.py (every workload against Xyra); socketify's
pub/sub run is here, when it is installed.
"""

from __future__ import annotations

import asyncio
import zlib
from typing import Any

import pytest
from kit import wait_for_condition
from kit.refcodec import OP_CONT, OP_TEXT, encode_frame

pytest.importorskip("xyra.bench._drivers.loadgen", reason="the load client is not compiled")

from test_bench_smoke import SETTINGS, check

from xyra.bench import workloads as wl
from xyra.bench._drivers import loadgen
from xyra.bench._drivers.loadgen import HANDSHAKE_ACCEPT
from xyra.bench.payloads import deflate_message, inflate_message, json_messages
from xyra.bench.peers import PEERS
from xyra.bench.runner import measure
from xyra.bench.servers import xyra_server


async def test_published_json_arrives_deflated_and_inflates(serve: Any, raw_connect: Any) -> None:
    # The adapter's app, served on the test's loop: its subscriptions can be counted.
    app = xyra_server.build_app()
    server = await serve(app)
    path = f"{wl.PUBSUB_DEFLATE_ROUTE}?topic=check"
    offer = f"Sec-WebSocket-Extensions: {wl.OFFER.decode()}\r\n"
    deflated = await raw_connect(server, path, headers=offer)
    plain = await raw_connect(server, path)
    publisher = await raw_connect(server, path)
    assert b"sec-websocket-extensions: permessage-deflate" in deflated.head.lower()
    assert b"sec-websocket-extensions" not in plain.head.lower()
    # The subscriptions are made in `open`, which may run after the 101 went out.
    await wait_for_condition(lambda: app.num_subscribers("check") == 3)
    message = json_messages(3)[2]
    await publisher.send_frame(OP_TEXT, message)
    first = await deflated.recv_wire_frame()
    assert (first.fin, first.rsv1, first.opcode) == (True, True, OP_TEXT)
    assert len(first.payload) < len(message) / 2
    inflated = zlib.decompressobj(-15).decompress(first.payload + b"\x00\x00\xff\xff")
    assert inflated == message
    # The subscriber that did not offer the extension gets the same message plain.
    second = await plain.recv_wire_frame()
    assert (second.fin, second.rsv1, second.opcode, second.payload) == (
        True,
        False,
        OP_TEXT,
        message,
    )


@pytest.mark.timeout(180)
@pytest.mark.parametrize("name", ["pubsub_deflate", "pubsub_deflate_off"])
def test_socketify_pubsub_deflate(name: str) -> None:
    peer = PEERS["socketify"]
    if why := peer.unavailable():
        pytest.skip(why)
    w = wl.WORKLOADS[name]
    assert peer.supports(w) is None
    check(w, measure(w, peer, SETTINGS))


def test_other_peers_skip_the_compression_workloads() -> None:
    for name in ("pubsub_deflate", "dedicated_memory", "dedicated_memory_off"):
        w = wl.WORKLOADS[name]
        assert PEERS["xyra"].supports(w) is None
        assert PEERS["picows"].supports(w) is not None
        assert not w.default, "run by name only"
    assert PEERS["socketify"].supports(wl.WORKLOADS["dedicated_memory"]) is not None


# -- the load client's side, without a server ------------------------------------------


class FakeTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []

    def write(self, data: bytes) -> None:
        self.writes.append(bytes(data))

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


def test_frame_counter_counts_rsv1_messages() -> None:
    counter = loadgen.FrameCounter()
    compressed = encode_frame(OP_TEXT, b"z" * 200, rsv1=True)
    # A fragmented compressed message: RSV1 on the first frame only.
    first = encode_frame(OP_TEXT, b"a" * 10, fin=False, rsv1=True)
    rest = encode_frame(OP_CONT, b"b" * 10)
    counter.feed(compressed + encode_frame(OP_TEXT, b"plain") + first + rest)
    assert counter.messages == 3 and counter.compressed == 2


def test_connection_offers_deflate_and_rotates_frames() -> None:
    loop = asyncio.new_event_loop()
    try:
        frames = [encode_frame(OP_TEXT, b"%d" % i, mask=b"abcd") for i in range(3)]
        conn = loadgen.Connection(
            loop,
            loadgen.Stats(),
            path=b"/pubsub_deflate?topic=t0",
            role=loadgen.PUBLISHER,
            frames=frames,
            window=2,
            extensions=wl.OFFER,
        )
        tr = FakeTransport()
        conn.connection_made(tr)
        assert b"\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n" in tr.writes[0]
        response = (
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover\r\n"
            b"Sec-WebSocket-Accept: " + HANDSHAKE_ACCEPT + b"\r\n\r\n"
        )
        buf = conn.get_buffer(-1)
        buf[: len(response)] = response
        conn.buffer_updated(len(response))
        assert conn.is_open and conn.deflate
        tr.writes.clear()
        conn.send_messages(1)
        conn.send_messages(5)  # more than the window: two writes of 2, one of 1
        assert b"".join(tr.writes) == b"".join(frames[i % 3] for i in range(6))
        assert len(tr.writes) == 4 and conn.sent == 6
    finally:
        loop.close()


def test_json_messages_differ_and_deflate_about_3x() -> None:
    messages = json_messages(64)
    assert len(set(messages)) == 64
    total = sum(len(m) for m in messages)
    packed = [deflate_message(m) for m in messages]
    assert all(inflate_message(d) == m for d, m in zip(packed, messages, strict=True))
    assert 1000 < total / 64 < 1250
    assert 2.5 < total / sum(len(d) for d in packed) < 5

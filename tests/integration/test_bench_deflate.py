"""The compression workloads of ``xyra bench``, checked from outside the load client.

The load client counts compressed frames without inflating them; here a plain
socket client subscribes to the xyra adapter's ``/pubsub_deflate`` route, offering
permessage-deflate, and inflates what a publisher's message became. The workloads
themselves run in test_bench_smoke.py (every workload against Xyra); socketify's
pub/sub run is here, when it is installed.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
import zlib
from collections.abc import Iterator

import pytest

pytest.importorskip("xyra.bench._drivers.loadgen", reason="the load client is not compiled")

from test_bench_smoke import SETTINGS, check, xyra_missing

from xyra.bench import procs
from xyra.bench import workloads as wl
from xyra.bench._drivers import loadgen
from xyra.bench._drivers.loadgen import HANDSHAKE_ACCEPT, HANDSHAKE_KEY, client_frame
from xyra.bench.payloads import deflate_message, inflate_message, json_messages
from xyra.bench.peers import PEERS
from xyra.bench.runner import measure


def connect(port: int, path: str, offer: bool) -> tuple[socket.socket, bytes]:
    """An upgraded connection and the response head."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    sock.sendall(
        f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        f"Connection: Upgrade\r\nSec-WebSocket-Key: {HANDSHAKE_KEY.decode()}\r\n"
        "Sec-WebSocket-Version: 13\r\n".encode()
        + (b"Sec-WebSocket-Extensions: permessage-deflate\r\n" if offer else b"")
        + b"\r\n"
    )
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(4096)
        assert chunk, "connection closed during the handshake"
        head += chunk
    head, rest = head.split(b"\r\n\r\n", 1)
    assert head.startswith(b"HTTP/1.1 101") and HANDSHAKE_ACCEPT in head, head
    assert not rest
    return sock, head


def recv_exactly(sock: socket.socket, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        assert chunk, "connection closed"
        data += chunk
    return data


def recv_frame(sock: socket.socket) -> tuple[int, bytes]:
    """First byte and payload of one unmasked server frame."""
    b0, b1 = recv_exactly(sock, 2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(recv_exactly(sock, 2), "big")
    elif n == 127:
        n = int.from_bytes(recv_exactly(sock, 8), "big")
    assert not b1 & 0x80, "server frames are not masked"
    return b0, recv_exactly(sock, n)


@pytest.fixture
def xyra_port() -> Iterator[int]:
    if why := xyra_missing():
        pytest.skip(why)
    peer = PEERS["xyra"]
    port = procs.free_port()
    server = procs.spawn(peer.command(port), None, env=peer.env())
    try:
        procs.wait_listening(port, server, 30)
        yield port
    finally:
        procs.kill(server)


@pytest.mark.timeout(60)
def test_published_json_arrives_deflated_and_inflates(xyra_port: int) -> None:
    path = f"{wl.PUBSUB_DEFLATE_ROUTE}?topic=check"
    deflated, head = connect(xyra_port, path, offer=True)
    plain, plain_head = connect(xyra_port, path, offer=False)
    publisher, _ = connect(xyra_port, path, offer=False)
    try:
        assert b"sec-websocket-extensions: permessage-deflate" in head.lower()
        assert b"sec-websocket-extensions" not in plain_head.lower()
        message = json_messages(3)[2]
        # The subscriptions are made in `open`; give the server a moment before publishing.
        time.sleep(0.2)
        publisher.sendall(client_frame(message, 1, os.urandom(4)))
        first, payload = recv_frame(deflated)
        assert first == 0x80 | 0x40 | 1, "FIN, RSV1 and TEXT"
        assert len(payload) < len(message) / 2
        inflated = zlib.decompressobj(-15).decompress(payload + b"\x00\x00\xff\xff")
        assert inflated == message
        # The subscriber that did not offer the extension gets the same message plain.
        assert recv_frame(plain) == (0x80 | 1, message)
    finally:
        for sock in (deflated, plain, publisher):
            sock.close()


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
    compressed = bytearray(client_frame(b"z" * 200, 1))
    compressed[0] |= 0x40
    # A fragmented compressed message: RSV1 on the first frame only.
    first = bytearray(client_frame(b"a" * 10, 1, fin=False))
    first[0] |= 0x40
    rest = client_frame(b"b" * 10, 0)
    counter.feed(bytes(compressed) + client_frame(b"plain", 1) + bytes(first) + rest)
    assert counter.messages == 3 and counter.compressed == 2


def test_connection_offers_deflate_and_rotates_frames() -> None:
    loop = asyncio.new_event_loop()
    try:
        frames = [client_frame(b"%d" % i, 1, b"abcd") for i in range(3)]
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

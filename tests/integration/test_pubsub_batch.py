"""Publishes batched per loop iteration (pubsub.pyx ``deliver_topics``): the order each
subscriber sees, over real sockets.

A topic's publishes of one iteration go out as one batch shared by every subscriber that
takes them all; the others (several topics published to, excluded from a message, sent
something directly in between, subscribed or unsubscribed mid-burst, compressed
messages in the mix) get their share one by one. Each test makes one of those happen
within one iteration (the server runs on the test's loop, so code between two awaits is
one iteration) and checks what every client receives, in order.
"""

from __future__ import annotations

import asyncio
import os
import random
import ssl
from typing import Any

import trustme
import websockets
from kit import NamedApp, recv, recv_n

from xyra import WebSocket


def app(**options: Any) -> NamedApp:
    return NamedApp({}, **options)


async def test_one_topic_batch_reaches_every_subscriber_in_order(serve: Any, connect: Any) -> None:
    t = app()
    server = await serve(t.app)
    clients = [await connect(server, f"/ws?id=c{i}&topics=A") for i in range(20)]
    for i in range(20):
        await t.opened(f"c{i}")
    for i in range(300):  # one iteration: one batch (split where it outgrows the cap)
        t.app.publish("A", f"m{i}")
    expected = [f"m{i}" for i in range(300)]
    for client in clients:
        assert await recv_n(client, 300) == expected


async def test_order_across_topics_published_to_in_one_iteration(serve: Any, connect: Any) -> None:
    t = app()
    server = await serve(t.app)
    both = await connect(server, "/ws?id=ab&topics=A,B")
    only_a = await connect(server, "/ws?id=a&topics=A")
    only_b = await connect(server, "/ws?id=b&topics=B")
    three = await connect(server, "/ws?id=abc&topics=C,B,A")
    for name in ("ab", "a", "b", "abc"):
        await t.opened(name)
    rng = random.Random(17)
    sent = [(rng.choice("ABC"), f"{i}") for i in range(200)]
    for topic, body in sent:
        t.app.publish(topic, topic + body)
    want = {name: [tp + b for tp, b in sent if tp in name.upper()] for name in ("ab", "a", "b")}
    want["abc"] = [tp + b for tp, b in sent]
    for name, client in (("ab", both), ("a", only_a), ("b", only_b), ("abc", three)):
        assert await recv_n(client, len(want[name])) == want[name], name


async def test_the_sender_is_left_out_of_its_own_publishes_only(serve: Any, connect: Any) -> None:
    t = app()
    server = await serve(t.app)
    sender_client = await connect(server, "/ws?id=s&topics=A,B")
    other = await connect(server, "/ws?id=o&topics=A")
    sender = await t.opened("s")
    await t.opened("o")
    for i in range(10):
        sender.publish("A", f"own{i}")  # to everyone but the sender
        t.app.publish("A", f"app{i}")  # to everyone
        sender.publish("B", f"b{i}")  # nobody else on B
    assert await recv_n(sender_client, 10) == [f"app{i}" for i in range(10)]
    want = [m for i in range(10) for m in (f"own{i}", f"app{i}")]
    assert await recv_n(other, 20) == want
    sender.send("after")
    assert await recv(sender_client) == "after"


async def test_a_send_or_close_between_publishes_keeps_its_place(serve: Any, connect: Any) -> None:
    t = app()
    server = await serve(t.app)
    client = await connect(server, "/ws?id=x&topics=A")
    bystander = await connect(server, "/ws?id=y&topics=A")
    ws: WebSocket = await t.opened("x")
    await t.opened("y")
    t.app.publish("A", "1")
    ws.send("2")
    t.app.publish("A", "3")
    ws.send("4")
    t.app.publish("A", "5")
    ws.close(1000, "bye")
    t.app.publish("A", "6")  # after the close frame: not sent to x
    assert await recv_n(client, 5) == ["1", "2", "3", "4", "5"]
    await client.wait_closed()
    assert client.close_code == 1000
    assert await recv_n(bystander, 4) == ["1", "3", "5", "6"]


async def test_subscribing_or_leaving_mid_burst(serve: Any, connect: Any) -> None:
    t = app()
    server = await serve(t.app)
    joiner_client = await connect(server, "/ws?id=j&topics=B")
    leaver_client = await connect(server, "/ws?id=l&topics=A")
    stayer = await connect(server, "/ws?id=s&topics=A")
    joiner = await t.opened("j")
    leaver = await t.opened("l")
    await t.opened("s")
    t.app.publish("A", "a1")
    t.app.publish("B", "b1")
    joiner.subscribe("A")  # gets what A publishes from now on, after its B messages
    leaver.unsubscribe("A")  # keeps what A published before it left
    t.app.publish("A", "a2")
    t.app.publish("B", "b2")
    assert await recv_n(joiner_client, 3) == ["b1", "a2", "b2"]
    assert await recv(leaver_client) == "a1"
    assert await recv_n(stayer, 2) == ["a1", "a2"]
    leaver.send("nothing else came")
    assert await recv(leaver_client) == "nothing else came"


async def test_compressed_publishes_keep_their_place(serve: Any) -> None:
    t = app(compression="shared", compression_threshold=16)
    server = await serve(t.app)
    url = f"ws://127.0.0.1:{server.port}"
    async with (
        websockets.connect(f"{url}/ws?id=z&topics=A") as deflating,
        websockets.connect(f"{url}/ws?id=p&topics=A", compression=None) as plain,
    ):
        await t.opened("z")
        await t.opened("p")
        big = "compressible " * 20
        t.app.publish("A", "p1")
        t.app.publish("A", big, compress=True)
        t.app.publish("A", "p2")
        t.app.publish("A", big + "2", compress=True)
        t.app.publish("A", "p3")
        want = ["p1", big, "p2", big + "2", "p3"]
        assert await recv_n(deflating, 5) == want
        assert await recv_n(plain, 5) == want


async def test_batches_over_tls_go_through_the_transport(serve: Any) -> None:
    """Batches bypass the loop's write path only on plain TCP sockets (WebSocket.write_now):
    over TLS they go through the transport (sent raw, the clients would fail)."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    t = app(max_backpressure=1 << 24)
    server = await serve(t.app, ssl=server_ctx)
    url = f"wss://127.0.0.1:{server.port}"
    async with (
        websockets.connect(f"{url}/ws?id=a&topics=A", ssl=client_ctx, max_size=None) as a,
        websockets.connect(f"{url}/ws?id=b&topics=A", ssl=client_ctx, max_size=None) as b,
    ):
        await t.opened("a")
        await t.opened("b")
        sent = [f"{i}:" + "x" * (i * 37 % 3000) for i in range(400)]
        for message in sent:
            t.app.publish("A", message)
        assert await recv_n(a, 400) == sent
        assert await recv_n(b, 400) == sent


async def test_a_full_socket_gets_the_rest_of_a_batch_in_order(
    serve: Any, raw_connect: Any
) -> None:
    t = app(max_backpressure=1 << 24)
    server = await serve(t.app, sndbuf=4096)
    slow = await raw_connect(server, "/ws?id=s&topics=A", rcvbuf=4096)
    await t.opened("s")
    sent = [os.urandom(1000 + i) for i in range(300)]  # far more than the socket holds
    for round_start in range(0, 300, 30):
        for message in sent[round_start : round_start + 30]:
            t.app.publish("A", message)
        await asyncio.sleep(0)  # one iteration: one batch
    for message in sent:
        assert await slow.recv_frame() == (2, message)

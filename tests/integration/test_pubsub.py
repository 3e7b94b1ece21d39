"""Pub/sub over real sockets: topics, fan-out, ordering, handlers, threads, opcodes.

The server and the clients share the test's event loop (``app.start()``), so server-side
state can be inspected directly between awaits; every wait is on an event or a message,
bounded by a timeout.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import aiohttp
import pytest
from kit import TIMEOUT, NamedApp, errors_logged, recv, recv_n, ws_url

from xyra import App, OpCode, SendStatus, Server, WebSocket

# -- a small command-driven app -----------------------------------------------------------------


class Harness(NamedApp):
    """A ``NamedApp`` whose clients drive pub/sub.

    Text commands from a client: ``sub T``, ``unsub T`` (answered ``ok sub T True`` /
    ``ok unsub T False``), ``pub T body`` (``ws.publish``: TEXT), ``pubb T body``
    (``ws.publish``: BINARY). A binary message ``T\\0payload`` is published as BINARY.
    ``hook(ws, message, opcode)`` runs first and may return True to swallow the message.
    """

    def __init__(
        self,
        hook: Callable[..., Any] | None = None,
        subscription: Callable[..., Any] | None = None,
        **options: Any,
    ) -> None:
        super().__init__({"message": self._message, "subscription": self._subscription}, **options)
        self.hook = hook
        self.user_subscription = subscription
        self.subscriptions: list[tuple[str, str, int, int]] = []
        self.close_order: list[str] = []
        self.log: list[tuple[Any, ...]] = []  # close and subscription calls, in order

    def _message(self, ws: WebSocket, message: str | bytes, opcode: OpCode) -> None:
        if self.hook is not None and self.hook(ws, message, opcode):
            return
        if isinstance(message, bytes):
            topic, _, payload = message.partition(b"\0")
            ws.publish(topic.decode(), payload)
            return
        cmd, _, rest = message.partition(" ")
        if cmd == "sub":
            ws.send(f"ok sub {rest} {ws.subscribe(rest)}")
        elif cmd == "unsub":
            ws.send(f"ok unsub {rest} {ws.unsubscribe(rest)}")
        elif cmd == "pub":
            topic, _, body = rest.partition(" ")
            ws.publish(topic, body)
        elif cmd == "pubb":
            topic, _, body = rest.partition(" ")
            ws.publish(topic, body.encode())
        else:
            raise AssertionError(f"unknown command {message!r}")

    def _close(self, ws: WebSocket, code: int, reason: str) -> None:
        name = ws.data["name"]
        self.close_order.append(name)
        self.log.append(("close", name))
        super()._close(ws, code, reason)

    def _subscription(self, ws: WebSocket, topic: str, new: int, old: int) -> None:
        self.subscriptions.append((ws.data["name"], topic, new, old))
        self.log.append(("subscription", ws.data["name"], topic, new, old))
        if self.user_subscription is not None:
            self.user_subscription(ws, topic, new, old)


def path(name: str, *topics: str) -> str:
    return f"/ws?id={name}&topics={','.join(topics)}" if topics else f"/ws?id={name}"


# -- topics ------------------------------------------------------------------------------------


async def test_subscribe_unsubscribe_is_subscribed_topics(serve: Any, connect: Any) -> None:
    h = Harness()
    server: Server = await serve(h.app)
    client = await connect(server, path("a"))
    ws = await h.opened("a")

    assert ws.topics == [] and not ws.is_subscribed("x")
    assert ws.subscribe("x") is True
    assert ws.subscribe("x") is False  # already subscribed
    assert ws.subscribe("y") is True
    assert ws.subscribe("") is True  # any str is a topic
    assert ws.topics == ["x", "y", ""]  # in subscription order
    assert ws.is_subscribed("x") and ws.is_subscribed("y") and ws.is_subscribed("")
    assert not ws.is_subscribed("z")
    assert [h.app.num_subscribers(t) for t in ("x", "y", "", "z")] == [1, 1, 1, 0]
    assert sorted(server.hub.topic_names()) == ["", "x", "y"]

    assert ws.unsubscribe("x") is True
    assert ws.unsubscribe("x") is False  # not subscribed any more
    assert ws.unsubscribe("never") is False
    assert ws.topics == ["y", ""] and not ws.is_subscribed("x")
    assert h.app.num_subscribers("x") == 0
    assert "x" not in server.hub.topic_names()  # the empty topic is freed

    # the client sees the subscription through app.publish
    assert h.app.publish("y", "to y") is True
    assert h.app.publish("x", "to x") is False  # nobody listens to x
    assert await recv(client) == "to y"

    await client.close()
    await h.closed("a")
    assert ws.topics == [] and not ws.is_subscribed("y")
    assert ws.subscribe("late") is False  # a closed connection cannot join
    assert h.app.num_subscribers("late") == 0 and h.app.num_subscribers("y") == 0
    assert server.hub.topic_names() == []


async def test_ws_publish_excludes_sender_app_publish_reaches_everyone(
    serve: Any, connect: Any
) -> None:
    h = Harness()
    server = await serve(h.app)
    clients = {n: await connect(server, path(n, "room")) for n in "abc"}
    solo = await connect(server, path("solo", "alone"))
    await h.opened("solo")

    await clients["a"].send("pub room hello from a")
    assert await recv(clients["b"]) == "hello from a"
    assert await recv(clients["c"]) == "hello from a"

    assert h.app.publish("room", "to everyone") is True
    for n in "abc":
        # a's next message is the app's: it never got its own publish
        assert await recv(clients[n]) == "to everyone"

    # return values: ws.publish is True when it reached someone else
    ws_a, ws_solo = h.ws["a"], h.ws["solo"]
    assert ws_a.publish("room", "direct") is True
    assert ws_solo.publish("alone", "only me here") is False
    assert ws_a.publish("nobody", "x") is False
    assert h.app.publish("nobody", "x") is False
    assert await recv(clients["b"]) == "direct"
    assert await recv(clients["c"]) == "direct"

    # the sender, if subscribed elsewhere, still gets other publishers' messages
    await clients["b"].send("pub room from b")
    assert await recv(clients["a"]) == "from b"
    assert await recv(clients["c"]) == "from b"

    # nothing unexpected was queued for a or solo: their next messages are these
    h.ws["a"].send("end")
    h.ws["solo"].send("end")
    assert await recv(clients["a"]) == "end"
    assert await recv(solo) == "end"


@pytest.mark.parametrize("publisher", ["client", "app"])
async def test_order_per_publisher_1000_messages(serve: Any, connect: Any, publisher: str) -> None:
    h = Harness()
    server = await serve(h.app)
    subs = [await connect(server, path(f"s{i}", "feed")) for i in range(4)]
    pub = await connect(server, path("pub"))
    await h.opened("pub")

    expected = [str(i) for i in range(1000)]
    if publisher == "client":
        for m in expected:
            await pub.send(f"pub feed {m}")
    else:
        for m in expected:  # one synchronous burst: all corked together
            h.app.publish("feed", m)
    for sub in subs:
        assert await recv_n(sub, 1000) == expected


# -- changing subscriptions during a burst -----------------------------------------------------


async def test_unsubscribe_in_own_message_handler_mid_burst(serve: Any, connect: Any) -> None:
    """A subscriber asks to leave after message 100: it gets a prefix, the others get all."""
    h = Harness()
    server = await serve(h.app)
    stay = [await connect(server, path(f"s{i}", "feed")) for i in range(3)]
    quitter = await connect(server, path("q", "feed"))
    pub = await connect(server, path("pub"))
    await h.opened("pub")
    quit_sent = asyncio.Event()

    async def quitter_reader() -> tuple[list[str], str]:
        got: list[str] = []
        while True:
            m = await recv(quitter)
            if m.startswith("ok "):
                return got, m
            got.append(m)
            if m == "100":
                await quitter.send("unsub feed")
                quit_sent.set()

    reader = asyncio.create_task(quitter_reader())
    for i in range(500):
        await pub.send(f"pub feed {i}")
    got, ack = await asyncio.wait_for(reader, TIMEOUT)  # the unsubscribe is done
    assert quit_sent.is_set() and ack == "ok unsub feed True"
    for i in range(500, 1000):
        await pub.send(f"pub feed {i}")

    for sub in stay:
        assert await recv_n(sub, 1000) == [str(i) for i in range(1000)]
    # a prefix of the burst, at least up to the message that made it leave
    assert got == [str(i) for i in range(len(got))]
    assert 101 <= len(got) <= 500
    h.ws["q"].send("end")
    assert await recv(quitter) == "end"  # nothing after the unsubscribe
    assert h.app.num_subscribers("feed") == 3


async def test_subscriptions_changed_by_the_publishers_handler_mid_fanout(
    serve: Any, connect: Any
) -> None:
    """Inside the publisher's handler, at message 300 one subscriber leaves, one joins."""
    h = Harness()

    def hook(ws: WebSocket, message: Any, opcode: Any) -> bool:
        if message == "pub feed 300":
            assert h.ws["victim"].unsubscribe("feed") is True
            assert h.ws["joiner"].subscribe("feed") is True
        return False

    h.hook = hook
    server = await serve(h.app)
    stay = await connect(server, path("stay", "feed"))
    victim = await connect(server, path("victim", "feed"))
    joiner = await connect(server, path("joiner"))
    pub = await connect(server, path("pub"))
    await h.opened("pub")

    for i in range(1000):
        await pub.send(f"pub feed {i}")
    assert await recv_n(stay, 1000) == [str(i) for i in range(1000)]
    assert await recv_n(victim, 300) == [str(i) for i in range(300)]
    assert await recv_n(joiner, 700) == [str(i) for i in range(300, 1000)]
    for name, client in (("victim", victim), ("joiner", joiner)):
        h.ws[name].send("end")
        assert await recv(client) == "end"


@pytest.mark.parametrize("how", ["close", "abort"])
async def test_subscriber_closed_mid_burst(serve: Any, connect: Any, caplog: Any, how: str) -> None:
    caplog.set_level(logging.INFO)
    h = Harness()
    server = await serve(h.app)
    stay = [await connect(server, path(f"s{i}", "feed")) for i in range(3)]
    # max_queue=None: websockets would otherwise stop reading with ~300 messages unread
    # and wait for its close_timeout before seeing the server's close frame
    leaver = await connect(server, path("leaver", "feed"), max_queue=None)
    pub = await connect(server, path("pub"))
    await h.opened("pub")

    async def leave_at_200() -> None:
        while await recv(leaver) != "200":
            pass
        if how == "close":
            await leaver.close()
        else:
            leaver.transport.abort()

    leaving = asyncio.create_task(leave_at_200())
    for i in range(500):
        await pub.send(f"pub feed {i}")
    await asyncio.wait_for(leaving, TIMEOUT)
    # more of the burst while the server learns about it, and after
    for i in range(500, 700):
        await pub.send(f"pub feed {i}")
    code = await h.closed("leaver")
    assert code == (1000 if how == "close" else 1006)
    for i in range(700, 1000):
        await pub.send(f"pub feed {i}")

    for sub in stay:
        assert await recv_n(sub, 1000) == [str(i) for i in range(1000)]
    assert h.app.num_subscribers("feed") == 3
    assert h.ws["leaver"].topics == []
    assert errors_logged(caplog) == []


async def test_subscribe_and_unsubscribe_in_handlers_during_a_burst_is_safe(
    serve: Any, connect: Any, caplog: Any
) -> None:
    """Togglers flip their subscription while a publisher bursts; the subscription handler
    itself subscribes, unsubscribes and publishes. Nothing breaks, nothing is reordered."""
    caplog.set_level(logging.INFO)

    def on_subscription(ws: WebSocket, topic: str, new: int, old: int) -> None:
        if topic != "feed":
            return
        if new > old:
            ws.subscribe("shadow")
            ws.unsubscribe("shadow")
            ws.subscribe("shadow")
        else:
            ws.unsubscribe("shadow")
        h.app.publish("meta", f"{topic} {new}")

    h = Harness(subscription=on_subscription)
    server = await serve(h.app)
    watcher = await connect(server, path("w", "meta"))
    await h.opened("w")
    stable = [await connect(server, path(f"s{i}", "feed")) for i in range(2)]
    togglers = [await connect(server, path(f"t{i}")) for i in range(3)]
    pub = await connect(server, path("pub"))
    await h.opened("pub")

    async def toggle(client: Any) -> list[int]:
        """Subscribe and unsubscribe 40 times; returns the feed numbers received."""
        seen: list[int] = []
        for _ in range(40):
            for cmd in ("sub feed", "unsub feed"):
                await client.send(cmd)
                while True:
                    m = await recv(client)
                    if m.startswith("ok "):
                        assert m == f"ok {cmd} True"
                        break
                    seen.append(int(m))
        return seen

    async def publish() -> None:
        for i in range(1000):
            await pub.send(f"pub feed {i}")
            if i % 50 == 0:
                await asyncio.sleep(0)  # let the togglers' commands interleave

    results = await asyncio.wait_for(
        asyncio.gather(publish(), *(toggle(t) for t in togglers)), 3 * TIMEOUT
    )
    for sub in stable:
        assert await recv_n(sub, 1000) == [str(i) for i in range(1000)]
    assert any(results[1:]), "the togglers never overlapped the burst"
    for seen in results[1:]:
        assert seen == sorted(set(seen)), "a toggler got duplicates or reordered messages"
    # the meta topic saw every subscription change of feed: 2 stable + 3 x 80 changes
    metas = await recv_n(watcher, 2 + 3 * 80)
    assert all(m.startswith("feed ") for m in metas)
    assert h.app.num_subscribers("feed") == 2
    assert h.app.num_subscribers("shadow") == 2
    assert errors_logged(caplog) == []

    for t in togglers + stable:
        await t.close()
    for name in ["t0", "t1", "t2", "s0", "s1"]:
        await h.closed(name)
    assert h.app.num_subscribers("feed") == 0
    assert h.app.num_subscribers("shadow") == 0


# -- the subscription handler and counts -------------------------------------------------------


async def test_subscription_handler_on_subscribe_unsubscribe_and_close(
    serve: Any, connect: Any
) -> None:
    h = Harness()
    server = await serve(h.app)
    a = await connect(server, path("a", "t"))
    await h.opened("a")
    assert h.subscriptions == [("a", "t", 1, 0)]

    b = await connect(server, path("b", "t", "u"))
    await h.opened("b")
    assert h.subscriptions[1:] == [("b", "t", 2, 1), ("b", "u", 1, 0)]

    await b.send("sub t")  # already subscribed: no call
    assert await recv(b) == "ok sub t False"
    await a.send("unsub u")  # not subscribed: no call
    assert await recv(a) == "ok unsub u False"
    assert len(h.subscriptions) == 3

    await a.send("unsub t")
    assert await recv(a) == "ok unsub t True"
    assert h.subscriptions[3:] == [("a", "t", 1, 2)]
    await a.send("sub t")
    assert await recv(a) == "ok sub t True"
    assert h.subscriptions[4:] == [("a", "t", 2, 1)]

    await a.close()
    await h.closed("a")
    assert h.subscriptions[5:] == [("a", "t", 1, 2)]  # at close
    await b.close()
    await h.closed("b")
    assert sorted(h.subscriptions[6:]) == [("b", "t", 0, 1), ("b", "u", 0, 1)]
    # at close: the close handler first, then one subscription call per topic
    assert h.log[-3:] == [
        ("close", "b"),
        ("subscription", "b", "t", 0, 1),
        ("subscription", "b", "u", 0, 1),
    ]
    assert h.app.num_subscribers("t") == h.app.num_subscribers("u") == 0
    assert server.hub.topic_names() == []


async def test_subscription_handler_at_close_cannot_resubscribe(serve: Any, connect: Any) -> None:
    """At close the handler runs for each topic; a subscribe from there must not leak."""
    results: list[bool] = []

    def on_subscription(ws: WebSocket, topic: str, new: int, old: int) -> None:
        if new < old:
            results.append(ws.subscribe("zombie"))

    h = Harness(subscription=on_subscription)
    server = await serve(h.app)
    client = await connect(server, path("a", "t1", "t2"))
    await h.opened("a")
    await client.close()
    await h.closed("a")
    assert results == [False, False]
    assert h.app.num_subscribers("zombie") == 0
    assert server.hub.topic_names() == []


async def test_num_subscribers_and_empty_topics_freed(serve: Any, connect: Any) -> None:
    h = Harness()
    server = await serve(h.app)
    clients = [await connect(server, path(f"c{i}", "room", f"own{i}")) for i in range(10)]
    await h.opened("c9")
    assert h.app.num_subscribers("room") == 10
    assert all(h.app.num_subscribers(f"own{i}") == 1 for i in range(10))
    assert len(server.hub.topic_names()) == 11

    for i, client in enumerate(clients):
        await client.close()
        await h.closed(f"c{i}")
        assert h.app.num_subscribers("room") == 9 - i
        assert h.app.num_subscribers(f"own{i}") == 0
    assert h.app.num_subscribers("room") == 0
    assert server.hub.topic_names() == []
    assert h.app.publish("room", "anyone?") is False


async def test_async_subscription_handler(serve: Any, connect: Any) -> None:
    """An ``async def`` subscription handler runs in order, also at close."""
    app = App()
    seen: list[tuple[str, int, int]] = []
    closed = asyncio.Event()

    async def on_subscription(ws: WebSocket, topic: str, new: int, old: int) -> None:
        await asyncio.sleep(0)
        seen.append((topic, new, old))
        if len(seen) == 4:
            closed.set()

    def on_open(ws: WebSocket) -> None:
        ws.subscribe("a")
        ws.subscribe("b")

    app.websocket(
        "/ws", {"open": on_open, "message": lambda ws, m, op: None, "subscription": on_subscription}
    )
    server = await serve(app)
    client = await connect(server, "/ws")
    await client.close()
    await asyncio.wait_for(closed.wait(), TIMEOUT)
    assert seen == [("a", 1, 0), ("b", 1, 0), ("a", 0, 1), ("b", 0, 1)]
    assert app.num_subscribers("a") == app.num_subscribers("b") == 0


async def test_app_publish_reaches_every_server_of_the_app(serve: Any, connect: Any) -> None:
    h = Harness()
    one = await serve(h.app)
    two = await serve(h.app)
    c1 = await connect(one, path("c1", "t"))
    c2 = await connect(two, path("c2", "t"))
    await h.opened("c1")
    await h.opened("c2")
    assert h.app.num_subscribers("t") == 2
    assert h.app.publish("t", "both") is True
    assert await recv(c1) == "both"
    assert await recv(c2) == "both"


async def test_sends_and_publishes_to_one_connection_keep_their_order(
    serve: Any, connect: Any
) -> None:
    """Direct sends and publishes share one queue, small frames and large ones alike."""
    h = Harness()
    server = await serve(h.app)
    client = await connect(server, path("a", "t"), max_size=None)
    ws = await h.opened("a")
    big = [os.urandom(100 * 1024 + i) for i in range(3)]
    sequence: list[str | bytes] = []

    def direct(m: str | bytes) -> None:
        sequence.append(m)
        ws.send(m)

    def published(m: str | bytes) -> None:
        sequence.append(m)
        h.app.publish("t", m)

    direct("1")
    published("2")
    published(big[0])
    direct("3")
    direct(big[1])
    published("4")
    direct(big[2])
    direct("5")
    assert await recv_n(client, len(sequence)) == sequence


# -- payloads ----------------------------------------------------------------------------------


async def test_large_messages_to_several_subscribers_arrive_intact(
    serve: Any, connect: Any
) -> None:
    h = Harness()
    server = await serve(h.app)
    subs = [await connect(server, path(f"s{i}", "big"), max_size=None) for i in range(4)]
    pub = await connect(server, path("pub", "big"), max_size=None)
    await h.opened("pub")

    blobs = [os.urandom(200 * 1024) for _ in range(3)]
    text = ("xyra \u00e9\u4e16\U0001f600 " * 20000)[: 200 * 1024]
    h.app.publish("big", blobs[0])
    h.app.publish("big", text)
    h.app.publish("big", bytearray(blobs[1]))
    for sub in [*subs, pub]:
        assert await recv_n(sub, 3) == [blobs[0], text, blobs[1]]

    # a 200 KiB message from a client, fanned out by ws.publish (framed once)
    await pub.send(b"big\0" + blobs[2])
    for sub in subs:
        assert await recv(sub) == blobs[2]
    h.ws["pub"].send("end")
    assert await recv(pub) == "end"


async def test_binary_and_text_opcodes_preserved(serve: Any, connect: Any) -> None:
    """Through a websockets and an aiohttp subscriber."""
    h = Harness()
    server = await serve(h.app)
    wsc = await connect(server, path("w", "t"))
    pub = await connect(server, path("pub"))
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(ws_url(server, path("aio", "t"))) as aio:
            await h.opened("aio")
            cases: list[tuple[Any, Any, aiohttp.WSMsgType, str | bytes]] = [
                ("text", None, aiohttp.WSMsgType.TEXT, "text"),
                (b"bin\xff", None, aiohttp.WSMsgType.BINARY, b"bin\xff"),
                (bytearray(b"ba"), None, aiohttp.WSMsgType.BINARY, b"ba"),
                (memoryview(b"mv"), None, aiohttp.WSMsgType.BINARY, b"mv"),
                ("", None, aiohttp.WSMsgType.TEXT, ""),
                (b"", None, aiohttp.WSMsgType.BINARY, b""),
                ("as binary", OpCode.BINARY, aiohttp.WSMsgType.BINARY, b"as binary"),
                ("\u00e9t\u00e9".encode(), OpCode.TEXT, aiohttp.WSMsgType.TEXT, "\u00e9t\u00e9"),
            ]
            for message, opcode, _, _ in cases:
                assert h.app.publish("t", message, opcode) is True
            for message, opcode, mtype, expected in cases:
                got = await asyncio.wait_for(aio.receive(), TIMEOUT)
                assert (got.type, got.data) == (mtype, expected), (message, opcode)
                assert await recv(wsc) == expected

            # from clients, through ws.publish: the opcode follows the original message
            await pub.send("pub t hi")
            await pub.send("pubb t hi")
            for mtype, expected in (
                (aiohttp.WSMsgType.TEXT, "hi"),
                (aiohttp.WSMsgType.BINARY, b"hi"),
            ):
                got = await asyncio.wait_for(aio.receive(), TIMEOUT)
                assert (got.type, got.data) == (mtype, expected)
                assert await recv(wsc) == expected

            with pytest.raises(ValueError):
                h.app.publish("t", b"x", OpCode.PING)
            with pytest.raises(ValueError):
                h.app.publish("t", b"x", OpCode.CLOSE)
            h.app.publish("t", "still open")
            assert (await asyncio.wait_for(aio.receive(), TIMEOUT)).data == "still open"


async def test_publish_text_opcode_with_invalid_utf8_is_refused(serve: Any, connect: Any) -> None:
    """Like ``send``, ``publish(opcode=TEXT)`` must not put invalid UTF-8 in a TEXT frame:
    every subscriber would have to fail its connection with 1007."""
    h = Harness()
    server = await serve(h.app)
    subs = [await connect(server, path(f"s{i}", "t")) for i in range(2)]
    await h.opened("s1")
    with pytest.raises(ValueError):
        h.ws["s0"].send(b"\xff\xfe", OpCode.TEXT)  # what send does
    with pytest.raises(ValueError):
        h.app.publish("t", b"\xff\xfe", OpCode.TEXT)
    h.app.publish("t", "fine")
    for sub in subs:
        assert await recv(sub) == "fine"


# -- threads -----------------------------------------------------------------------------------


async def test_app_publish_from_8_threads(serve: Any, connect: Any) -> None:
    h = Harness()
    server = await serve(h.app)
    subs = [await connect(server, path(f"s{i}", "feed")) for i in range(3)]
    await h.opened("s2")
    n_threads, per_thread = 8, 500
    barrier = threading.Barrier(n_threads)
    returned: list[list[bool]] = [[] for _ in range(n_threads)]
    errors: list[BaseException] = []

    def worker(t: int) -> None:
        try:
            barrier.wait(TIMEOUT)
            for seq in range(per_thread):
                returned[t].append(h.app.publish("feed", f"{t}:{seq}"))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(t,)) for t in range(n_threads)]
    for th in threads:
        th.start()
    try:
        for sub in subs:
            got = await recv_n(sub, n_threads * per_thread, timeout=3 * TIMEOUT)
            by_thread: dict[int, list[int]] = defaultdict(list)
            for m in got:
                t, seq = m.split(":")
                by_thread[int(t)].append(int(seq))
            assert sorted(by_thread) == list(range(n_threads))
            for t in range(n_threads):
                assert by_thread[t] == list(range(per_thread)), f"thread {t} lost or reordered"
    finally:
        await asyncio.to_thread(lambda: [th.join(TIMEOUT) for th in threads])
    assert errors == []
    assert all(r == [True] * per_thread for r in returned)
    h.app.publish("feed", "end")
    for sub in subs:
        assert await recv(sub) == "end"  # nothing extra arrived


async def test_ws_send_from_another_thread(serve: Any, connect: Any) -> None:
    h = Harness()
    server = await serve(h.app)
    client = await connect(server, path("a"))
    ws = await h.opened("a")

    def worker() -> list[Any]:
        return [ws.send(f"from thread {i}") for i in range(200)] + [ws.send(b"bytes too")]

    statuses = await asyncio.wait_for(asyncio.to_thread(worker), TIMEOUT)
    assert statuses == [SendStatus.SUCCESS] * 201
    assert await recv_n(client, 200) == [f"from thread {i}" for i in range(200)]
    assert await recv(client) == b"bytes too"


async def test_bytes_like_passed_from_another_thread_is_taken_at_call_time(
    serve: Any, connect: Any
) -> None:
    """From another thread, publish and send hop onto the loop; a buffer the thread reuses
    right after the call must still be sent as it was at the call."""
    h = Harness()
    server = await serve(h.app)
    client = await connect(server, path("a", "t"))
    ws = await h.opened("a")

    def worker() -> None:
        buf = bytearray(b"A" * 16)
        h.app.publish("t", buf)
        buf[:] = b"B" * 16
        ws.send(buf)
        buf[:] = b"C" * 16

    await asyncio.wait_for(asyncio.to_thread(worker), TIMEOUT)
    assert await recv_n(client, 2) == [b"A" * 16, b"B" * 16]


async def test_invalid_publish_from_another_thread_raises_in_that_thread(
    serve: Any, connect: Any, caplog: Any
) -> None:
    """A call that raises on the loop thread raises in any thread too, instead of failing
    later inside a loop callback where the caller never hears of it."""
    h = Harness()
    server = await serve(h.app)
    client = await connect(server, path("a", "t"))
    await h.opened("a")

    def worker() -> list[str]:
        outcomes = []
        for opcode in (OpCode.PING, OpCode.CLOSE):
            try:
                h.app.publish("t", b"x", opcode)
                outcomes.append("returned")
            except ValueError:
                outcomes.append("ValueError")
        return outcomes

    assert await asyncio.wait_for(asyncio.to_thread(worker), TIMEOUT) == ["ValueError"] * 2
    h.app.publish("t", "after")
    assert await recv(client) == "after"
    assert errors_logged(caplog) == []

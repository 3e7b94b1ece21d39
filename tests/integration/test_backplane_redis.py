"""The Redis backplane against a real redis-server: machines, outside publishers, failures.

Each test starts its own redis-server (``redis_server``) and ``xyra run`` processes
(``clusters``); the failures are real: SIGKILL, SIGSTOP/SIGCONT, a restart on the same
port, Redis disconnecting a subscriber over its output buffer limit.
"""

from __future__ import annotations

import asyncio
import os
import signal
from typing import Any

import pytest
from scaleout import (
    Client,
    RedisServer,
    await_until,
    check_fanout,
    clients_on_workers,
    clusters_fixture,  # noqa: F401
    pid_alive,
    redis_server_fixture,  # noqa: F401
    wait_cluster_count,
    wait_until,
)

redis = pytest.importorskip("redis")

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()")


async def stats(client: Client) -> dict[str, Any]:
    reply = await client.command(op="stats")
    return {**reply["stats"], "events": reply["events"]}


async def wait_link(client: Client, up: bool, count: int = 1) -> dict[str, Any]:
    """Wait for the ``count``-th link event with ``up``; return it."""

    async def event() -> dict[str, Any] | None:
        events = [e for e in (await stats(client))["events"] if e["up"] == up]
        return events[count - 1] if len(events) >= count else None

    deadline = asyncio.get_running_loop().time() + 20
    while (found := await event()) is None:
        assert asyncio.get_running_loop().time() < deadline, f"no link event up={up}"
        await asyncio.sleep(0.05)
    return found


def ascending(messages: list[Any]) -> list[int]:
    numbers = [int(str(m).rstrip(".")) for m in messages]
    assert numbers == sorted(set(numbers)), "duplicated or reordered messages"
    return numbers


async def test_two_machines_share_one_redis(clusters, redis_server: RedisServer) -> None:
    # Two separate `xyra run` processes on different ports, like two machines.
    one = clusters(1, redis_server.url)
    two = clusters(1, redis_server.url)
    assert one.port != two.port
    a1 = await Client.open(one.port, "news")
    a2 = await Client.open(one.port, "news")
    b1 = await Client.open(two.port, "news")
    b2 = await Client.open(two.port, "news")
    everyone = [a1, a2, b1, b2]
    await wait_cluster_count(a1, "news", 4)
    await wait_cluster_count(b1, "news", 4)
    assert redis_server.numsub("xyra:news") == {"xyra:news": 2}
    await check_fanout(a1, b1, everyone)
    for client in everyone:
        await client.close()
    await asyncio.to_thread(wait_until_numsub, redis_server, "xyra:news", 0)


def wait_until_numsub(server: RedisServer, channel: str, expected: int) -> None:
    wait_until(
        lambda: server.numsub(channel)[channel] == expected,
        what=f"PUBSUB NUMSUB {channel} == {expected}",
    )


async def test_outside_publishers_reach_subscribers(clusters, redis_server: RedisServer) -> None:
    import redis.asyncio as aredis

    from xyra.backplane import publish

    cluster = clusters(2, redis_server.url)
    placed = await clients_on_workers(cluster.port, 2, topics="alerts")
    clients = [placed[0][0], placed[1][0]]
    await wait_cluster_count(clients[0], "alerts", 2)

    # redis-cli: UTF-8 arrives as TEXT, other bytes as BINARY
    assert redis_server.cli("PUBLISH", "xyra:alerts", "héllo") == "2"
    assert redis_server.cli("-x", "PUBLISH", "xyra:alerts", stdin=b"\xff\x00bin") == "2"
    # the helper, with redis-py's sync and asyncio clients
    sync = redis.Redis(port=redis_server.port)
    assert publish(sync, "alerts", "from django") == 2
    assert publish(sync, "alerts", b"ok as bytes") == 2  # BINARY although UTF-8
    assert publish(sync, "alerts", "\x00XY\x01 looks like an envelope") == 2
    sync.close()
    client = aredis.Redis(port=redis_server.port)
    assert await publish(client, "alerts", "from asyncio") == 2
    await client.aclose()

    expected = [
        "héllo",
        b"\xff\x00bin",
        "from django",
        b"ok as bytes",
        "\x00XY\x01 looks like an envelope",
        "from asyncio",
    ]
    for c in clients:
        await c.wait_messages(len(expected))
        assert c.messages == expected
        await c.close()


async def test_redis_killed_mid_stream_then_restarted(clusters, redis_server: RedisServer) -> None:
    url = redis_server.url + "?queue_messages=2000"
    cluster = clusters(2, url)
    placed = await clients_on_workers(cluster.port, 2, per_worker=2, topics="s")
    publisher, local = placed[0]
    remote = placed[1][0]
    await wait_cluster_count(publisher, "s", 4)
    pids = {publisher.pid, remote.pid}

    await publisher.command(op="publish_range", topic="s", start=0, count=2000)
    await remote.wait_messages(2000)
    redis_server.kill()
    for client in (publisher, remote):
        down = await wait_link(client, up=False)
        assert "s" in down["missed"]
    # While Redis is gone: local delivery goes on, and the queue stays within its bound.
    await publisher.command(op="publish_range", topic="s", start=2000, count=10_000, pad=100)
    await local.wait_messages(12_000)
    assert ascending(local.messages) == list(range(12_000))
    s = await stats(publisher)
    assert s["up"] is False
    assert s["queued"] <= 2000
    assert s["queued"] + s["dropped"] == 10_000
    assert s["dropped"] >= 8000

    redis_server.restart()
    for client in (publisher, remote):
        up = await wait_link(client, up=True, count=2)  # the first "up" was the start
        assert up["missed"] == ["s"]
    await wait_cluster_count(publisher, "s", 4)
    await publisher.command(op="publish_range", topic="s", start=12_000, count=100)
    await remote.wait(lambda: "12099" in remote.messages, what="delivery after the restart")
    got = ascending(remote.messages)  # at most once, in order: a gap, no duplicate
    assert got[:2000] == list(range(2000))
    assert got[-100:] == list(range(12_000, 12_100))
    assert all(pid_alive(p) for p in pids)
    assert "died" not in cluster.log()
    for client in (publisher, local, remote, placed[1][1]):
        assert client.close_code is None
        await client.close()


async def test_redis_stopped_is_detected_by_ping_and_recovers(
    clusters, redis_server: RedisServer
) -> None:
    cluster = clusters(2, redis_server.url + "?ping_interval=0.3&ping_timeout=1")
    placed = await clients_on_workers(cluster.port, 2, per_worker=2, topics="s")
    publisher, local = placed[0]
    remote = placed[1][0]
    await wait_cluster_count(publisher, "s", 4)
    redis_server.stop()
    try:
        for client in (publisher, remote):
            down = await wait_link(client, up=False)
            assert "no reply to PING for 1 s" in down["reason"]
        await publisher.command(op="publish_range", topic="s", start=0, count=1000)
        await local.wait_messages(1000)
        assert ascending(local.messages) == list(range(1000))
    finally:
        redis_server.cont()
    for client in (publisher, remote):
        up = await wait_link(client, up=True, count=2)
        assert up["missed"] == ["s"]
    await wait_cluster_count(publisher, "s", 4)
    await publisher.command(op="publish_range", topic="s", start=1000, count=10)
    await remote.wait(lambda: "1009" in remote.messages, what="delivery after SIGCONT")
    ascending(remote.messages)
    assert "died" not in cluster.log()
    for client in (publisher, local, remote, placed[1][1]):
        await client.close()


async def test_a_slow_subscriber_cut_by_redis_counts_as_a_gap(
    clusters, redis_server: RedisServer
) -> None:
    one = clusters(1, redis_server.url)
    two = clusters(1, redis_server.url)
    publisher = await Client.open(one.port, "s")
    remote = await Client.open(two.port, "s")
    await wait_cluster_count(publisher, "s", 2)
    redis_server.cli("CONFIG", "SET", "client-output-buffer-limit", "pubsub 64kb 0 0")
    two_pid = remote.pid
    os.kill(two_pid, signal.SIGSTOP)  # a worker too slow to read its subscriptions
    try:
        await publisher.command(op="publish_range", topic="s", start=0, count=2000, pad=200)
        # Redis cuts the subscriber off past 64 KiB of output it could not send
        await asyncio.to_thread(wait_until_numsub, redis_server, "xyra:s", 1)
    finally:
        os.kill(two_pid, signal.SIGCONT)
    up = await wait_link(remote, up=True, count=2)
    assert up["missed"] == ["s"]
    assert (await stats(remote))["downs"] == 1
    await wait_cluster_count(publisher, "s", 2)
    await publisher.command(op="publish_range", topic="s", start=2000, count=10)
    await remote.wait(lambda: "2009" in remote.messages, what="delivery after the gap")
    for client in (publisher, remote):
        await client.close()


async def test_churn_leaves_no_subscription_behind(clusters, redis_server: RedisServer) -> None:
    cluster = clusters(2, redis_server.url)
    placed = await clients_on_workers(cluster.port, 2, per_worker=2)
    clients = [*placed[0], *placed[1]]
    channels = [f"xyra:churn-{i}" for i in range(250)]

    async def churn(client: Client, offset: int) -> int:
        done = 0
        for round_ in range(12):
            topics = [f"churn-{(offset + round_ * 37 + j) % 250}" for j in range(125)]
            await client.command(op="sub", topics=topics)
            await client.command(op="unsub", topics=topics[:100])
            done += len(topics) + 100
        return done

    ops = sum(await asyncio.gather(*(churn(c, 60 * i) for i, c in enumerate(clients))))
    assert ops >= 10_000
    # Some topics are still subscribed here (25 per round were kept): Redis knows them.
    assert sum((await asyncio.to_thread(redis_server.numsub, *channels)).values()) > 0
    for client in clients[:2]:  # these unsubscribe what they hold by closing
        await client.close()
    for client in clients[2:]:
        await client.command(op="unsub", topics=[c.removeprefix("xyra:") for c in channels])

    def all_zero() -> bool:
        return not any(redis_server.numsub(*channels).values())

    await await_until(all_zero, what="PUBSUB NUMSUB back to 0")
    for client in clients[2:]:
        await client.close()

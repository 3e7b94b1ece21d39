"""``xyra run --workers N``: the supervisor and pub/sub between workers (real processes).

The pub/sub test runs over the embedded relay and over Redis; the worker-failure tests
over the relay (the supervisor is the same with Redis).
"""

from __future__ import annotations

import asyncio
import base64
import json
import os
import signal
import zlib

import pytest
import websockets
from kit import wait_for_condition
from scaleout import (
    Client,
    Cluster,
    await_until,
    check_fanout,
    clients_on_workers,
    clusters_fixture,  # noqa: F401
    pid_alive,
    redis_server_fixture,  # noqa: F401
    wait_cluster_count,
)

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()")


# Each worker's own SO_REUSEPORT listener and SEQPACKET control sockets (Linux), or one
# shared listener and datagram control sockets (macOS, the BSDs), forced here.
PORTABLE = pytest.mark.parametrize("portable", [False, True], ids=["linux", "portable"])


@pytest.fixture(params=["relay", "redis"])
def backplane(request: pytest.FixtureRequest) -> str | None:
    """None: the embedded relay; else a Redis URL (a fresh redis-server)."""
    if request.param == "relay":
        return None
    return str(request.getfixturevalue("redis_server").url)


async def test_publish_reaches_every_worker_once_and_in_order(clusters, backplane) -> None:
    cluster = clusters(2, backplane)
    await fanout_across_workers(cluster)


async def test_the_portable_path_fans_out_and_gathers_stats(clusters) -> None:
    """One listening socket shared by the workers and datagram control sockets: what the
    supervisor does where SO_REUSEPORT does not spread connections."""
    cluster = clusters(2, portable=True)
    assert "one shared socket" in cluster.log()
    placed = await clients_on_workers(cluster.port, 2, per_worker=2)
    expected = [{"worker": 0, "open": 2}, {"worker": 1, "open": 2}]

    async def gathered() -> bool:  # the clients placed elsewhere first may still be closing
        reply = await placed[0][0].command(op="cluster_stats")
        return bool(reply["workers"] == expected)

    await wait_for_condition(gathered, message="both workers' snapshots, 2 open each")
    for client in [*placed[0], *placed[1]]:
        await client.close()
    await fanout_across_workers(cluster)


async def fanout_across_workers(cluster: Cluster) -> None:
    placed = await clients_on_workers(cluster.port, 2, per_worker=2, topics="news")
    everyone = [*placed[0], *placed[1]]
    publisher, thread_publisher = placed[0][0], placed[1][0]
    await wait_cluster_count(publisher, "news", 4)
    await wait_cluster_count(thread_publisher, "news", 4)

    await check_fanout(publisher, thread_publisher, everyone)
    for client in everyone:
        await client.close()


@PORTABLE
async def test_a_killed_worker_is_restarted_and_the_others_untouched(
    clusters, portable: bool
) -> None:
    cluster = clusters(2, portable=portable)
    placed = await clients_on_workers(cluster.port, 2, per_worker=2, topics="t")
    survivors, victims = placed[0], placed[1]
    dead_pid = victims[0].pid
    mark = len(cluster.log())
    os.kill(dead_pid, signal.SIGKILL)
    for victim in victims:
        assert await victim.wait_closed() == 1006
    await cluster.await_log(
        rf"worker 1 \(pid {dead_pid}\) died \(signal SIGKILL\); "
        r"restarting it in [\d.]+ s",
        after=mark,
    )
    new_pid = int((await cluster.await_log(r"worker 1 ready \(pid (\d+)\)", after=mark)).group(1))
    assert new_pid != dead_pid

    # The clients of worker 0 never noticed.
    for client in survivors:
        assert client.close_code is None
    replaced = (await clients_on_workers(cluster.port, 2, topics="t"))[1][0]
    assert replaced.pid == new_pid
    # The new worker is linked to the survivor both ways (its relay ends came by SCM_RIGHTS).
    await wait_cluster_count(survivors[0], "t", 4)  # 2 survivors, 2 from clients_on_workers
    await wait_cluster_count(replaced, "t", 4)
    await survivors[0].command(op="publish", topic="t", items=["to-new"])
    await replaced.wait(lambda: "to-new" in replaced.messages, what="a publish from worker 0")
    await replaced.command(op="publish", topic="t", items=["from-new"])
    for client in survivors:
        await client.wait(lambda c=client: "from-new" in c.messages, what="the new worker's")
    assert survivors[1].messages == ["to-new", "from-new"]
    assert not pid_alive(dead_pid)


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_sigterm_closes_every_client_with_1001_and_every_process_exits(
    clusters, sig: int
) -> None:
    cluster = clusters(2)
    placed = await clients_on_workers(cluster.port, 2, per_worker=2)
    clients = [*placed[0], *placed[1]]
    pids = {c.pid for c in clients}
    assert len(pids) == 2
    cluster.signal(sig)
    codes = [await c.wait_closed() for c in clients]
    assert codes == [1001] * len(clients)
    assert await asyncio.to_thread(cluster.proc.wait, 30) == 0
    await await_until(lambda: not any(pid_alive(p) for p in pids), what="the workers to exit")
    log = cluster.log()
    for client in clients:  # the shutdown hooks ran in every worker
        assert f"shutdown hook ran in worker {client.worker} (pid {client.pid})" in log


@PORTABLE
async def test_sighup_replaces_the_workers_and_no_connection_is_refused(
    clusters, portable: bool
) -> None:
    cluster = clusters(2, portable=portable)
    old = await clients_on_workers(cluster.port, 2)
    old_pids = {w: c[0].pid for w, c in old.items()}
    failures: list[BaseException] = []
    seen: list[tuple[int, int]] = []
    done = asyncio.Event()

    async def connect_in_a_loop() -> None:
        while not done.is_set():
            try:
                client = await Client.open(cluster.port)
            except (
                OSError,
                websockets.InvalidHandshake,
                websockets.ConnectionClosed,
                asyncio.TimeoutError,
            ) as exc:
                failures.append(exc)
                continue
            seen.append((client.worker, client.pid))
            await client.close()

    looping = asyncio.get_running_loop().create_task(connect_in_a_loop())
    mark = len(cluster.log())
    cluster.signal(signal.SIGHUP)
    await cluster.await_log("rolling restart done", after=mark)
    # Go on until the loop has met both new workers (the kernel spreads connections).
    await await_until(
        lambda: {w for w, p in seen if p != old_pids[w]} == {0, 1},
        what="connections to both new workers",
    )
    done.set()
    await looping
    assert failures == []
    assert len(seen) > 10
    for client in [*old[0], *old[1]]:
        assert await client.wait_closed() == 1001  # drained by the old workers
    log = cluster.log()[mark:]
    assert log.count("replaced and drained (exit code 0)") == 2
    assert "died" not in log
    # The new workers are linked by the relay.
    new = await clients_on_workers(cluster.port, 2, topics="after")
    assert {new[0][0].pid, new[1][0].pid}.isdisjoint(old_pids.values())
    await wait_cluster_count(new[0][0], "after", 2)
    await new[0][0].command(op="publish", topic="after", items=["hello"])
    await new[1][0].wait(lambda: new[1][0].messages == ["hello"], what="a relayed publish")
    for client in [*new[0], *new[1]]:
        await client.close()


async def test_cluster_wide_count_and_per_worker_count(clusters) -> None:
    cluster = clusters(2)
    placed = await clients_on_workers(cluster.port, 2, per_worker=2, topics="room")
    await wait_cluster_count(placed[0][0], "room", 4)
    reply = await placed[1][0].command(op="count", topic="room")
    assert (reply["count"], reply["local"]) == (4, 2)
    await placed[1][1].close()
    await wait_cluster_count(placed[0][0], "room", 3)
    for client in [*placed[0], placed[1][0]]:
        await client.close()


async def test_a_port_in_use_is_an_error_not_a_shared_port(clusters) -> None:
    first = clusters(2)
    with pytest.raises(AssertionError, match=r"cannot listen on 127\.0\.0\.1:\d+"):
        Cluster(2, extra=("--port", str(first.port)))


async def _deflate_client(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, int]:
    """A raw client on /z that negotiates permessage-deflate; its worker from the hello."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16)).decode()
    writer.write(
        (
            f"GET /z?topics=big HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
            "Sec-WebSocket-Version: 13\r\n"
            "Sec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
        ).encode()
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    assert b"101" in head.split(b"\r\n")[0] and b"permessage-deflate" in head, head
    _, payload = await _read_frame(reader)
    return reader, writer, json.loads(payload)["worker"]


async def _read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 10)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return b0, await asyncio.wait_for(reader.readexactly(n), 10)


async def test_compressed_publish_reaches_deflate_clients_of_every_worker_compressed(
    clusters, backplane
) -> None:
    cluster = clusters(2, backplane)
    raw: dict[int, tuple[asyncio.StreamReader, asyncio.StreamWriter]] = {}
    for _ in range(200):
        if len(raw) == 2:
            break
        reader, writer, worker = await _deflate_client(cluster.port)
        if worker in raw:
            writer.close()
        else:
            raw[worker] = (reader, writer)
    publisher = (await clients_on_workers(cluster.port, 2))[0][0]
    await wait_cluster_count(publisher, "big", 2)
    text = "all work and no play " * 50
    await publisher.command(op="publish", topic="big", items=[text], compress=True)
    for worker, (reader, writer) in raw.items():
        b0, payload = await _read_frame(reader)
        assert b0 == 0x80 | 0x40 | 1, (worker, hex(b0))  # FIN, RSV1 (compressed), TEXT
        assert len(payload) < len(text) // 4
        inflater = zlib.decompressobj(-15)
        assert inflater.decompress(payload + b"\x00\x00\xff\xff").decode() == text
        writer.close()
    await publisher.close()

"""Prometheus: /metrics scraped over real HTTP, parsed with prometheus_client's own parsers.

In one process the series must carry the snapshot's values; under ``xyra run --workers 2``
a scrape of the one address must return both workers' series (worker label), gathered
through the supervisor.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from kit import START_TIMEOUT, TIMEOUT, free_port, recv, wait_for_condition
from prometheus_client import CollectorRegistry, Counter
from prometheus_client.openmetrics.parser import (
    text_string_to_metric_families as openmetrics_families,
)
from prometheus_client.parser import text_string_to_metric_families

from xyra import App
from xyra.metrics import install
from xyra.statsgather import CTRL_MAX, SupervisorStats, WorkerStats

ROOT = Path(__file__).resolve().parents[2]
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def samples(text: str, parse: Any = text_string_to_metric_families) -> Samples:
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in parse(text)
        for s in family.samples
    }


def value(found: Samples, name: str, **labels: str) -> float:
    return found[(name, frozenset(labels.items()))]


async def scrape(port: int, path: str = "/metrics", **headers: str) -> tuple[str, str]:
    async with aiohttp.ClientSession() as session:
        async with session.get(
            f"http://127.0.0.1:{port}{path}",
            headers=headers,
            timeout=aiohttp.ClientTimeout(TIMEOUT),
        ) as response:
            assert response.status == 200
            return await response.text(), response.headers["Content-Type"]


def echo_app() -> App:
    app = App()

    def on_open(ws: Any) -> None:
        ws.subscribe("room")

    app.websocket("/ws", {"open": on_open, "message": lambda ws, m, op: ws.send(m)})
    return app


async def test_scrape_parses_and_matches_the_snapshot(serve: Any, connect: Any) -> None:
    app = echo_app()
    own = CollectorRegistry()
    Counter("my_app_events", "an application metric", registry=own).inc(3)
    install(app, registry=own)
    server = await serve(app)
    clients = [await connect(server, "/ws") for _ in range(2)]
    for i, c in enumerate(clients):
        await c.send("x" * (i + 1))
        assert await recv(c) == "x" * (i + 1)
        await c.send(b"\x01\x02")
        assert await recv(c) == b"\x01\x02"
    app.publish("room", "hey")
    for c in clients:
        assert await recv(c) == "hey"

    text, content_type = await scrape(server.port)
    assert content_type.startswith("text/plain")
    found = samples(text)
    snap = app.stats()
    w = {"worker": "0"}
    assert value(found, "xyra_connections", route="/ws", **w) == 2
    assert value(found, "xyra_handshakes_accepted_total", route="/ws", **w) == 2
    assert value(found, "xyra_messages_received_total", kind="text", **w) == 2
    assert value(found, "xyra_messages_received_total", kind="binary", **w) == 2
    assert value(found, "xyra_messages_sent_total", kind="text", **w) == 4
    assert value(found, "xyra_received_bytes_total", kind="text", **w) == 3
    assert value(found, "xyra_sent_bytes_total", kind="binary", **w) == 4
    assert value(found, "xyra_publishes_total", origin="local", **w) == 1
    assert value(found, "xyra_deliveries_total", **w) == 2
    assert value(found, "xyra_topics", **w) == 1
    assert value(found, "xyra_subscriptions", **w) == 2
    assert value(found, "xyra_topic_subscribers", topic="room", **w) == 2
    assert value(found, "xyra_topic_deliveries_total", topic="room", **w) == 2
    assert value(found, "xyra_closes_total", code="1000", **w) == 0
    assert value(found, "xyra_handshaking_connections", **w) == 1  # this scrape's connection
    lag_count = value(found, "xyra_loop_lag_seconds_count", **w)
    assert lag_count >= 1
    assert value(found, "xyra_loop_lag_seconds_bucket", le="+Inf", **w) == lag_count
    assert value(found, "xyra_info", pid=str(os.getpid()), version=snap["version"], **w) == 1
    assert value(found, "my_app_events_total") == 3  # the registry given is served too
    names = {name for name, _ in found}
    assert all(n.startswith(("xyra_", "my_app_")) for n in names), names

    # every counter ends in _total, every name has its unit where it has one
    for family in text_string_to_metric_families(text):
        if family.type == "counter":
            assert all(s.name.endswith("_total") for s in family.samples), family.name
        if "bytes" in family.name or "seconds" in family.name or "lag" in family.name:
            assert family.name.endswith(("_bytes", "_seconds")), family.name


async def test_openmetrics_when_asked(serve: Any) -> None:
    app = echo_app()
    install(app, "/m", registry=None)
    server = await serve(app)
    text, content_type = await scrape(
        server.port, "/m", Accept="application/openmetrics-text; version=1.0.0"
    )
    assert content_type.startswith("application/openmetrics-text")
    assert text.rstrip().endswith("# EOF")
    found = samples(text, openmetrics_families)
    assert found[("xyra_topics", frozenset({("worker", "0")}))] == 0
    assert all(name.startswith("xyra_") for name, _ in found)  # registry=None: Xyra's only


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="SO_REUSEPORT spreading")
async def test_a_scrape_of_any_worker_returns_every_worker(tmp_path: Path) -> None:
    (tmp_path / "metrics_app.py").write_text(
        textwrap.dedent(
            """
            from xyra import App
            from xyra.metrics import install

            app = App()
            app.websocket("/ws", {"message": lambda ws, m, op: ws.send(m)})
            install(app, registry=None)
            """
        )
    )
    port = free_port()
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    cmd = [sys.executable, "-m", "xyra", "run", "metrics_app:app", "--workers", "2"]
    cmd += ["--port", str(port), "--app-dir", str(tmp_path), "--no-access-log"]
    proc = subprocess.Popen(
        cmd,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    clients: list[Any] = []
    try:
        found: Samples = {}

        async def both_workers_answer() -> bool:
            nonlocal found
            try:
                found = samples((await scrape(port))[0])
            except (OSError, aiohttp.ClientError, AssertionError):
                return False
            return {dict(k)["worker"] for n, k in found if n == "xyra_info"} == {"0", "1"}

        await wait_for_condition(both_workers_answer, timeout=START_TIMEOUT)
        pids = {dict(k)["pid"] for n, k in found if n == "xyra_info"}
        assert len(pids) == 2

        # connections spread over the workers; any worker's scrape counts all of them
        for _ in range(8):
            client = await websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT)
            clients.append(client)
            await client.send("hi")
            assert await recv(client) == "hi"

        async def all_counted() -> bool:
            found = samples((await scrape(port))[0])
            total = sum(v for (n, _), v in found.items() if n == "xyra_connections")
            received = sum(v for (n, _), v in found.items() if n == "xyra_messages_received_total")
            return total == 8 and received == 8

        await wait_for_condition(all_counted)
    finally:
        for client in clients:
            await asyncio.wait_for(client.close(), TIMEOUT)
        proc.send_signal(signal.SIGTERM)
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate(timeout=10)
    assert proc.returncode == 0, err


async def test_gathering_through_the_supervisor_keeps_one_snapshot_per_worker() -> None:
    """statsgather over real Unix socket pairs, the supervisor's side driven by the loop:
    a worker being replaced shares its index with its replacement for a moment."""
    loop = asyncio.get_running_loop()
    supervisor = SupervisorStats()
    workers: dict[int, tuple[socket.socket, socket.socket, WorkerStats]] = {}
    for pid, index in ((100, 0), (101, 1), (102, 1), (103, 2)):
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        mine.setblocking(False)
        theirs.setblocking(False)
        stats = WorkerStats(mine, lambda top, pid=pid, index=index: {"worker": index, "pid": pid})
        workers[pid] = (mine, theirs, stats)
        if pid != 103:  # worker 103 never answers
            loop.add_reader(mine, lambda s=stats, m=mine: s.on_message(m.recv(CTRL_MAX)))

        def on_supervisor(pid: int = pid, end: socket.socket = theirs) -> None:
            others = [(p, w[1]) for p, w in workers.items()]
            supervisor.on_message(end, pid, end.recv(CTRL_MAX), others)

        loop.add_reader(theirs, on_supervisor)
    try:
        asked = asyncio.ensure_future(workers[101][2].gather(5, TIMEOUT))
        await wait_for_condition(lambda: supervisor.next_deadline() is not None)
        assert not asked.done()  # worker 103 has not answered
        supervisor.timers(supervisor.next_deadline() or 0.0)  # its time is up
        snapshots = await asyncio.wait_for(asked, TIMEOUT)
    finally:
        for mine, theirs, _ in workers.values():
            loop.remove_reader(mine)
            loop.remove_reader(theirs)
            mine.close()
            theirs.close()
    assert snapshots == [{"worker": 0, "pid": 100}, {"worker": 1, "pid": 101}]

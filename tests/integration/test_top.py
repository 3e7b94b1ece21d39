"""``xyra top`` against a live server: the numbers on screen follow the traffic.

Once with rich's own harness (``Console(record=True)``) driving the dashboard refresh by
refresh, and once as the real command in a tmux pane, read with ``capture-pane``.
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import pytest
from kit import START_TIMEOUT, recv, wait_for_condition
from rich.console import Console

from xyra import App
from xyra.metrics import install
from xyra.top import Dashboard, metrics_url

ROOT = Path(__file__).resolve().parents[2]


def feed_app() -> App:
    app = App()

    def on_open(ws: Any) -> None:
        for topic in ws.path.partition("?")[2].split(","):
            if topic:
                ws.subscribe(topic)

    def on_message(ws: Any, message: Any, opcode: Any) -> None:
        ws.publish(message, "tick")
        ws.send("ok")

    app.websocket("/ws", {"open": on_open, "message": on_message})
    install(app)
    return app


async def publish_through(client: Any, topic: str) -> None:
    """The client publishes to ``topic`` (through the server) and waits for its "ok";
    ticks of other clients' publishes may come first."""
    await client.send(topic)
    while await recv(client) != "ok":
        pass


def screen(dashboard: Dashboard) -> str:
    console = Console(record=True, width=120, color_system=None)
    console.print(dashboard.refresh())
    return console.export_text()


def row(text: str, label: str) -> str:
    """The dashboard's line that holds ``label``, with its spacing collapsed."""
    for line in text.splitlines():
        if label in line:
            return re.sub(r"[\s│┃]+", " ", line).strip()
    raise AssertionError(f"no {label!r} on the screen:\n{text}")


async def test_the_dashboard_follows_the_traffic(serve: Any, connect: Any) -> None:
    server = await serve(feed_app())
    dashboard = Dashboard(metrics_url(f"127.0.0.1:{server.port}"), "test")
    first = await asyncio.to_thread(screen, dashboard)
    assert "connections 0 " in row(first, "connections")
    assert "in - out -" in row(first, "messages/s")  # no rate before the second scrape

    clients = [await connect(server, f"/ws?{topic}") for topic in ("prices", "prices", "news")]
    for _ in range(5):
        for c in clients:
            await publish_through(c, "prices")
    second = await asyncio.to_thread(screen, dashboard)
    assert "connections 3 " in row(second, "connections")
    rates = re.search(r"in ([\d,.]+) out ([\d,.]+)", row(second, "messages/s"))
    assert rates is not None and float(rates[1].replace(",", "")) > 0
    assert float(rates[2].replace(",", "")) > float(rates[1].replace(",", ""))
    # the topics by subscribers (left): prices 2, then news 1
    lines = [re.sub(r"[\s│┃]+", " ", line).strip() for line in second.splitlines()]
    by_subscribers = [
        line.split()[:2] for line in lines if line.split()[:1] in (["prices"], ["news"])
    ]
    assert by_subscribers == [["prices", "2"], ["news", "1"]]
    assert "worker" in second and str(os.getpid()) in second


async def test_an_unreachable_server_is_said_so(serve: Any) -> None:
    dashboard = Dashboard("http://127.0.0.1:9/metrics", "nowhere")
    text = await asyncio.to_thread(screen, dashboard)
    assert "cannot read http://127.0.0.1:9/metrics" in text


@pytest.mark.skipif(shutil.which("tmux") is None, reason="needs tmux")
async def test_xyra_top_in_a_terminal(serve: Any, connect: Any) -> None:
    server = await serve(feed_app())
    session = f"xyra-top-{uuid.uuid4().hex[:8]}"
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TERM": "xterm-256color"}
    command = f"{sys.executable} -m xyra top 127.0.0.1:{server.port} --interval 0.3"
    subprocess.run(
        ["tmux", "new-session", "-d", "-s", session, "-x", "110", "-y", "40", command],
        env=env,
        check=True,
        timeout=30,
    )

    def pane() -> str:
        out = subprocess.run(
            ["tmux", "capture-pane", "-p", "-t", session],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return out.stdout

    def shows(connections: int) -> bool:
        text = pane()
        return any(re.search(rf"connections\s+{connections}\s", line) for line in text.splitlines())

    try:
        await wait_for_condition(
            lambda: asyncio.to_thread(shows, 0), timeout=START_TIMEOUT, message=pane
        )
        clients = [await connect(server, "/ws?news") for _ in range(2)]
        await wait_for_condition(lambda: asyncio.to_thread(shows, 2), message=pane)
        for c in clients:
            await publish_through(c, "news")
        await wait_for_condition(lambda: asyncio.to_thread(lambda: "news" in pane()), message=pane)
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], timeout=30, check=False)

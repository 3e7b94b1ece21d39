"""The "Real-time Dashboard" from docs/websocket.md, publishing the right way.

Clients of /dashboard are subscribed to the "metrics" topic when they connect. A
background task, started by an ``on_startup`` hook on the server's event loop,
publishes a metrics snapshot to that topic every METRICS_INTERVAL seconds (default 5)
with ``app.publish``; an ``on_shutdown`` hook stops it.

Clients may send ``{"type": "subscribe", "topic": "..."}`` or
``{"type": "unsubscribe", "topic": "..."}`` (the topic defaults to "metrics").

Run: METRICS_INTERVAL=1 python examples/dashboard.py [PORT]
"""

import asyncio
import json
import os
import sys
import time
from typing import Any

from xyra import App, OpCode, WebSocket

app = App()

INTERVAL = float(os.environ.get("METRICS_INTERVAL", "5"))

# The publishing task, kept so the shutdown hook can stop it.
tasks: set[asyncio.Task[None]] = set()


def rss_bytes() -> int | None:
    """This process's resident set size, from /proc (Linux); None elsewhere."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024  # the value is in kB
    except OSError:
        pass
    return None


def collect_metrics() -> dict[str, Any]:
    load1, load5, load15 = os.getloadavg()
    return {
        "type": "metrics",
        "load": [load1, load5, load15],
        "cpus": os.cpu_count(),
        "rss_bytes": rss_bytes(),
        "subscribers": app.num_subscribers("metrics"),
        "timestamp": time.time(),
    }


async def publish_metrics(interval: float) -> None:
    while True:
        await asyncio.sleep(interval)
        app.publish("metrics", json.dumps(collect_metrics()))


@app.on_startup
def start_metrics() -> None:
    # Startup hooks run on the server's event loop, so the task runs there too.
    tasks.add(asyncio.get_running_loop().create_task(publish_metrics(INTERVAL)))


@app.on_shutdown
async def stop_metrics() -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()
    print("Metrics publisher stopped")


def on_open(ws: WebSocket) -> None:
    print("Dashboard client connected")
    ws.subscribe("metrics")
    ws.send(json.dumps({"type": "welcome", "message": "Connected to dashboard"}))


def on_message(ws: WebSocket, message: str | bytes, opcode: OpCode) -> None:
    try:
        data = json.loads(message)
    except (json.JSONDecodeError, UnicodeDecodeError):
        ws.send(json.dumps({"error": "Invalid JSON"}))
        return
    if not isinstance(data, dict):
        ws.send(json.dumps({"error": "Expected a JSON object"}))
        return
    topic = data.get("topic", "metrics")
    if not isinstance(topic, str):
        ws.send(json.dumps({"error": "A topic must be a string"}))
        return
    if data.get("type") == "subscribe":
        ws.subscribe(topic)
    elif data.get("type") == "unsubscribe":
        ws.unsubscribe(topic)


def on_close(ws: WebSocket, code: int, message: str) -> None:
    print("Dashboard client disconnected")


app.websocket("/dashboard", {"open": on_open, "message": on_message, "close": on_close})


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    app.listen(port, host="127.0.0.1")

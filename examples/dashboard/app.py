"""A live dashboard in the browser: metrics pushed every second over a WebSocket.

The "Real-time Dashboard" of docs/websocket.md with its page. A background task, started
by an ``on_startup`` hook on the server's event loop, samples CPU and memory use every
second and publishes them to the "metrics" topic; every client of ``/dashboard`` is
subscribed when it connects and first gets the last minute of samples, so its chart is
full at once. The page (``/``) draws the chart with a plain canvas, no CDN, and
reconnects by itself (``/xyra.js``).

Run: python examples/dashboard/app.py [PORT]   (default 8000), then open the printed URL.
``METRICS_INTERVAL`` (seconds, default 1) sets the sampling period.
"""

import asyncio
import json
import os
import sys
import time
from collections import deque
from pathlib import Path
from typing import Any

from xyra import App, OpCode, WebSocket
from xyra.http import FileResponse

HERE = Path(__file__).resolve().parent
INTERVAL = float(os.environ.get("METRICS_INTERVAL", "1"))

app = App()
app.enable_client_js()  # GET /xyra.js

history: deque[dict[str, Any]] = deque(maxlen=60)  # the last samples, for new clients
tasks: set[asyncio.Task[None]] = set()


class CPUMeter:
    """Busy share of all CPUs since the previous reading (Linux /proc/stat), else of this
    process (``time.process_time``)."""

    def __init__(self) -> None:
        self.last = self.read()

    @staticmethod
    def read() -> tuple[float, float]:
        try:
            with open("/proc/stat") as f:
                fields = [float(x) for x in f.readline().split()[1:]]
            idle = fields[3] + (fields[4] if len(fields) > 4 else 0.0)  # idle + iowait
            return sum(fields) - idle, sum(fields)
        except (OSError, ValueError, IndexError):
            return time.process_time(), time.monotonic() * (os.cpu_count() or 1)

    def percent(self) -> float:
        now = self.read()
        busy, total = now[0] - self.last[0], now[1] - self.last[1]
        self.last = now
        return round(100.0 * busy / total, 1) if total > 0 else 0.0


def memory_percent() -> float | None:
    """Memory in use, % of the total (Linux /proc/meminfo); None elsewhere."""
    try:
        info: dict[str, int] = {}
        with open("/proc/meminfo") as f:
            for line in f:
                key, _, rest = line.partition(":")
                info[key] = int(rest.split()[0])
        total = info["MemTotal"]
        return round(100.0 * (total - info["MemAvailable"]) / total, 1)
    except (OSError, ValueError, KeyError, IndexError, ZeroDivisionError):
        return None


def sample(cpu: CPUMeter) -> dict[str, Any]:
    return {
        "type": "metrics",
        "cpu": cpu.percent(),
        "memory": memory_percent(),
        "load": round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None,
        "clients": app.num_subscribers("metrics"),
        "timestamp": time.time(),
    }


async def publish_metrics() -> None:
    cpu = CPUMeter()
    while True:
        await asyncio.sleep(INTERVAL)
        metrics = sample(cpu)
        history.append(metrics)
        app.publish("metrics", json.dumps(metrics))


@app.on_startup
def start_metrics() -> None:
    # Startup hooks run on the server's event loop, so the task runs there too.
    tasks.add(asyncio.get_running_loop().create_task(publish_metrics()))


@app.on_shutdown
async def stop_metrics() -> None:
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    tasks.clear()


@app.get("/")
def index() -> FileResponse:
    return FileResponse(HERE / "index.html")


def on_open(ws: WebSocket) -> None:
    ws.subscribe("metrics")
    ws.send(json.dumps({"type": "welcome", "message": "Connected to dashboard"}))
    ws.send(json.dumps({"type": "history", "samples": list(history)}))


def on_message(ws: WebSocket, message: str | bytes, opcode: OpCode) -> None:
    try:
        data = json.loads(message)
    except (json.JSONDecodeError, UnicodeDecodeError):
        ws.send(json.dumps({"error": "Invalid JSON"}))
        return
    if not isinstance(data, dict) or not isinstance(data.get("topic", "metrics"), str):
        ws.send(json.dumps({"error": "Expected {'type': ..., 'topic': '...'}"}))
        return
    if data.get("type") == "subscribe":
        ws.subscribe(data.get("topic", "metrics"))
    elif data.get("type") == "unsubscribe":
        ws.unsubscribe(data.get("topic", "metrics"))


app.websocket("/dashboard", {"open": on_open, "message": on_message})


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    print(f"Open http://127.0.0.1:{port}/", flush=True)
    app.listen(port, host="127.0.0.1")

"""The app the scale-out tests serve with ``xyra run scale_app:app --workers N``.

``/ws?topics=a,b`` subscribes to the topics and first sends a JSON hello naming the
worker (``app.worker_id``) and its pid. Text messages that are JSON objects are commands
(answered with a JSON object); everything published reaches clients as it was sent.
"""

from __future__ import annotations

import asyncio
import json
import os
import threading
from typing import Any
from urllib.parse import parse_qs, urlsplit

from xyra import App, WebSocket
from xyra.backplane import BackplaneEvent

app = App()
events: list[dict[str, Any]] = []


@app.on_backplane
def on_backplane(event: BackplaneEvent) -> None:
    events.append(
        {
            "up": event.up,
            "reason": event.reason,
            "missed": sorted(event.missed_topics),
            "dropped": event.dropped,
        }
    )


def on_open(ws: WebSocket) -> None:
    ws.send(json.dumps({"worker": app.worker_id, "pid": os.getpid()}))
    query = parse_qs(urlsplit(ws.path).query)
    for topic in query.get("topics", [""])[0].split(","):
        if topic:
            ws.subscribe(topic)


def publish_from_thread(topic: str, items: list[str]) -> None:
    for item in items:
        app.publish(topic, item)


async def on_message(ws: WebSocket, message: str | bytes, opcode: int) -> None:
    cmd = json.loads(message)
    op = cmd["op"]
    reply: dict[str, Any] = {"op": op}
    if op == "publish":  # ws.publish each item (everyone but this client)
        for item in cmd["items"]:
            ws.publish(cmd["topic"], item, compress=cmd.get("compress", False))
    elif op == "publish_range":  # many numbered messages, in chunks across loop iterations
        topic, start, count, size = cmd["topic"], cmd["start"], cmd["count"], cmd.get("pad", 0)
        pad = "." * size
        for i in range(start, start + count):
            ws.publish(topic, f"{i}{pad}")
            if i % 500 == 499:
                await asyncio.sleep(0)
    elif op == "thread_publish":  # app.publish from another thread
        thread = threading.Thread(target=publish_from_thread, args=(cmd["topic"], cmd["items"]))
        thread.start()
        await asyncio.get_running_loop().run_in_executor(None, thread.join)
    elif op == "count":
        try:
            reply["count"] = await app.cluster_subscribers(cmd["topic"])
        except (ConnectionError, asyncio.TimeoutError) as exc:  # the backplane is down
            reply["error"] = repr(exc)
        reply["local"] = app.num_subscribers(cmd["topic"])
    elif op == "sub":
        for topic in cmd["topics"]:
            ws.subscribe(topic)
    elif op == "unsub":
        for topic in cmd["topics"]:
            ws.unsubscribe(topic)
    elif op == "cluster_stats":  # every worker's snapshot, through the supervisor
        reply["workers"] = [
            {"worker": snap["worker"], "open": snap["connections"]["open"]}
            for snap in await app.cluster_stats()
        ]
    elif op == "stats":
        reply["stats"] = app.backplane_stats()
        reply["events"] = events
    ws.send(json.dumps(reply))


@app.on_shutdown
def shutdown() -> None:
    print(f"shutdown hook ran in worker {app.worker_id} (pid {os.getpid()})", flush=True)


app.websocket("/ws", {"open": on_open, "message": on_message})
# the same with permessage-deflate offered (shared window)
app.websocket("/z", {"open": on_open, "message": on_message}, compression="shared")

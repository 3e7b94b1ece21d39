"""A browser chat room: the page, the browser client and the WebSocket route on one port.

This is the "JavaScript Client" page of docs/websocket.md grown into a runnable app. The
server serves the page at ``/``, the browser client at ``/xyra.js`` and the chat at
``/chat``. Every client subscribes to the "chat" topic; a message is published to the
others (``ws.publish`` skips the sender, whose page shows its own line itself). The page
reconnects by itself when the server restarts, and what is typed while it is away is
sent once it is back.

Run: python examples/chat/app.py [PORT]   (default 8000), then open the printed URL in two
browser tabs.
"""

import sys
from pathlib import Path

from xyra import App, OpCode, WebSocket
from xyra.http import FileResponse

HERE = Path(__file__).resolve().parent

app = App()
app.enable_client_js()  # GET /xyra.js

# Store connected clients (in production, use proper storage)
connected_clients: set[WebSocket] = set()


@app.get("/")
def index() -> FileResponse:
    return FileResponse(HERE / "index.html")


def on_open(ws: WebSocket) -> None:
    connected_clients.add(ws)
    ws.subscribe("chat")
    print(f"Client connected. Total clients: {len(connected_clients)}", flush=True)
    ws.send("Welcome to chat room!")


def on_message(ws: WebSocket, message: str | bytes, opcode: OpCode) -> None:
    if isinstance(message, bytes):  # a BINARY message; TEXT ones arrive as str
        message = message.decode("utf-8", errors="replace")
    print(f"Received: {message}", flush=True)
    ws.publish("chat", f"User: {message}")  # to every subscriber but the sender


def on_close(ws: WebSocket, code: int, message: str) -> None:
    connected_clients.discard(ws)
    print(f"Client disconnected. Total clients: {len(connected_clients)}", flush=True)


app.websocket("/chat", {"open": on_open, "message": on_message, "close": on_close})


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    print(f"Open http://127.0.0.1:{port}/", flush=True)
    app.listen(port, host="127.0.0.1")

"""The "Simple Chat Room" from docs/websocket.md.

Run: python examples/chat_room.py [PORT]  (the port also comes from $PORT; default 8000)
"""

import os
import sys

from xyra import App, OpCode, WebSocket

app = App()

# Store connected clients (in production, use proper storage)
connected_clients: set[WebSocket] = set()


def on_open(ws: WebSocket) -> None:
    connected_clients.add(ws)
    print(f"Client connected. Total clients: {len(connected_clients)}")
    ws.send("Welcome to chat room!")


def on_message(ws: WebSocket, message: str | bytes, opcode: OpCode) -> None:
    if isinstance(message, bytes):  # a BINARY message; TEXT ones arrive as str
        message = message.decode("utf-8", errors="replace")
    print(f"Received: {message}")

    # Broadcast message to all clients
    for client in connected_clients:
        if client != ws:  # Don't send to sender
            client.send(f"User: {message}")


def on_close(ws: WebSocket, code: int, message: str) -> None:
    connected_clients.discard(ws)
    print(f"Client disconnected. Total clients: {len(connected_clients)}")


app.websocket("/chat", {"open": on_open, "message": on_message, "close": on_close})

if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else int(os.environ.get("PORT", "8000"))
    print(f"🚀 Chat server running on ws://localhost:{port}/chat")
    app.listen(port)

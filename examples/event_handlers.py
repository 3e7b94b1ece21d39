"""The "Handler with Separate Events" from docs/websocket.md: a /chat echo route.

Run: python examples/event_handlers.py [PORT]  (then connect to ws://127.0.0.1:PORT/chat)
"""

import sys

from xyra import App, OpCode, WebSocket

app = App()


def on_open(ws: WebSocket) -> None:
    print("Client connected")
    ws.send("Welcome!")


def on_message(ws: WebSocket, message: str | bytes, opcode: OpCode) -> None:
    if isinstance(message, bytes):  # a BINARY message; TEXT ones arrive as str
        message = message.decode("utf-8", errors="replace")
    print(f"Received: {message}")
    ws.send(f"Echo: {message}")


def on_close(ws: WebSocket, code: int, message: str) -> None:
    print("Client disconnected")


app.websocket("/chat", {"open": on_open, "message": on_message, "close": on_close})


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    app.listen(port, host="127.0.0.1")

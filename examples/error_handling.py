"""The "Error Handling" snippet from docs/websocket.md, on a /ws route.

A handler that raises is logged by Xyra and the connection is closed with 1011
(no exception text on the wire); catching errors yourself lets you answer instead.

Run: python examples/error_handling.py [PORT]  (then connect to ws://127.0.0.1:PORT/ws)
"""

import sys

from xyra import App, OpCode, WebSocket

app = App()


def on_open(ws: WebSocket) -> None:
    try:
        ws.send("Welcome!")
        # Setup initial state
    except Exception as e:
        print(f"Error in on_open: {e}")
        ws.close(1011, "Internal error")


def on_message(ws: WebSocket, message: str | bytes, opcode: OpCode) -> None:
    try:
        # Process message
        if len(message) > 1000:
            ws.send("Message too long")
            return

        # Process message...
        if isinstance(message, bytes):  # a BINARY message; TEXT ones arrive as str
            message = message.decode("utf-8")  # invalid UTF-8 raises, and is handled below
        ws.send(f"Processed: {message}")
    except Exception as e:
        print(f"Error processing message: {e}")
        ws.send("Error processing message")


app.websocket("/ws", {"open": on_open, "message": on_message})


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    app.listen(port, host="127.0.0.1")

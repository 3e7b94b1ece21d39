"""The "Simple Handler" from docs/websocket.md.

A simple handler is called once per connection, when it opens.

Run: python examples/simple_handler.py [PORT]  (then connect to ws://127.0.0.1:PORT/ws)
"""

import sys

from xyra import App, WebSocket

app = App()


@app.websocket("/ws")
def handle_websocket(websocket: WebSocket) -> None:
    websocket.send("Connected!")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    app.listen(port, host="127.0.0.1")

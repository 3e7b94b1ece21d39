"""The "WebSocket Methods" snippets from docs/websocket.md, one route each.

    /send               Sending Data: text, binary, and a message with an explicit opcode
    /publish            Publish to Topic: subscribe, unsubscribe, publish to the others
    /listen?topic=T     a plain subscriber to topic T, to watch what /publish sends
    /close              Close Connection: the snippet as written (only the first close counts)
    /close/normal       close(1000, "Normal closure")
    /close/going-away   close(1001, "Going away")
    /status             Check Connection Status on an open connection
    /status/closed      the same check after close(): the closed branch

Each snippet is a simple handler: it runs once, when the connection opens.

Run: python examples/websocket_methods.py [PORT]
"""

import sys
from urllib.parse import parse_qs, urlsplit

from xyra import App, OpCode, WebSocket

app = App()


# -- Sending Data ------------------------------------------------------------------------


@app.websocket("/send")
def send_handler(websocket: WebSocket) -> None:
    # Send text message
    websocket.send("Hello World")
    websocket.send_text("Text message")

    # Send binary data
    websocket.send_binary(b"Binary data")

    # Send with specific opcode
    websocket.send("Data", OpCode.TEXT)


# -- Publish to Topic --------------------------------------------------------------------


@app.websocket("/publish")
def publish_handler(websocket: WebSocket) -> None:
    # Subscribe to topic
    websocket.subscribe("room1")
    websocket.subscribe("notifications")

    # Unsubscribe from topic
    websocket.unsubscribe("room1")

    # Publish message to topic (every subscriber but this connection gets it)
    websocket.publish("room1", "Hello everyone in room1!")
    websocket.publish("notifications", "System update available", compress=True)


@app.websocket("/listen")
def listen_handler(websocket: WebSocket) -> None:
    # /listen?topic=room1 subscribes to room1 and does nothing else.
    query = parse_qs(urlsplit(websocket.path).query)
    for topic in query.get("topic", []):
        websocket.subscribe(topic)


# -- Close Connection --------------------------------------------------------------------


@app.websocket("/close")
def close_handler(websocket: WebSocket) -> None:
    # Close with normal status
    websocket.close()

    # The close handshake has started: the two calls below do nothing, the client
    # sees code 1000 with an empty reason.
    # Close with code and message
    websocket.close(1000, "Normal closure")

    # Close with error code
    websocket.close(1001, "Going away")


@app.websocket("/close/normal")
def close_normal_handler(websocket: WebSocket) -> None:
    websocket.close(1000, "Normal closure")


@app.websocket("/close/going-away")
def close_going_away_handler(websocket: WebSocket) -> None:
    websocket.close(1001, "Going away")


# -- Check Connection Status -------------------------------------------------------------


def check_status(websocket: WebSocket) -> None:
    if websocket.closed:
        print("Connection is closed")
        return

    # Connection is still active
    websocket.send("Connection is active")


@app.websocket("/status")
def status_handler(websocket: WebSocket) -> None:
    check_status(websocket)


@app.websocket("/status/closed")
def status_closed_handler(websocket: WebSocket) -> None:
    websocket.close()
    check_status(websocket)  # prints "Connection is closed", sends nothing


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
    app.listen(port, host="127.0.0.1")

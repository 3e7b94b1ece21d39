"""Exceptions raised by the public API."""


class ConnectionClosed(Exception):
    """The connection is closed: raised by ``await ws.receive()`` after the close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason

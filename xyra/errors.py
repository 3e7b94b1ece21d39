"""Exceptions raised by the public API."""


class ConnectionClosed(Exception):
    """The connection is closed: raised by ``await ws.receive()`` after the close."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(f"connection closed: {code} {reason}".rstrip())
        self.code = code
        self.reason = reason


class ListenError(OSError):
    """The server could not bind its listening address (port in use, no permission, ...)."""

    def __init__(self, host: object, port: object, cause: OSError) -> None:
        super().__init__(cause.errno, cause.strerror or str(cause))
        self.host = host
        self.port = port

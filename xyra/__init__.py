"""Xyra: a fast, correct WebSocket server for Python (Cython hot path on uvloop)."""

from xyra._core.connection import WebSocket
from xyra._version import __version__
from xyra.app import App
from xyra.enums import CloseCode, OpCode, SendStatus
from xyra.errors import ConnectionClosed
from xyra.http import FileResponse, HTTPError, Request, Response
from xyra.server import Server

__all__ = [
    "App",
    "CloseCode",
    "ConnectionClosed",
    "FileResponse",
    "HTTPError",
    "OpCode",
    "Request",
    "Response",
    "SendStatus",
    "Server",
    "WebSocket",
    "__version__",
]

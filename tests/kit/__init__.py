"""The test kit: what every test of tests/ imports (``from kit import ...``).

``tests/conftest.py`` puts tests/ on ``sys.path``, so this package is ``kit`` from any
folder of the suite. The fixtures built on it (``serve``, ``connect``, ``raw_connect``)
live in tests/integration/conftest.py.

================  ===========================================================================
``refcodec``      the pure-Python reference codec: the oracle of the frame parser, and the
                  only frame builder of the suite (``encode_frame``, ``client_frame``,
                  ``read_frame``, ``wire_length``)
``waiting``       ``TIMEOUT`` (the one timeout policy), ``wait_for_condition``, ``recv``,
                  ``recv_n``, ``closed_code``
``raw``           ``RawClient`` (raw bytes over a plain socket, reads only when asked),
                  ``upgrade_request``, ``http_request``, ``free_port``, ``HTTPResponse``
``serving``       ``served`` (an app on the test's loop), ``ws_url``, ``http_url``,
                  ``NamedApp``, ``errors_logged``, ``echo``
================  ===========================================================================

``serving`` imports xyra; it is loaded on first use, so ``import kit.refcodec`` (the fuzz
harnesses) loads no part of xyra.
"""

from typing import Any

from . import refcodec
from .raw import (
    HTTPResponse,
    RawClient,
    accept_for,
    free_port,
    http_request,
    new_key,
    upgrade_request,
)
from .refcodec import client_frame, encode_frame, read_frame, wire_length
from .waiting import (
    START_TIMEOUT,
    TIMEOUT,
    closed_code,
    recv,
    recv_n,
    wait_for_condition,
)

__all__ = [
    "START_TIMEOUT",
    "TIMEOUT",
    "HTTPResponse",
    "NamedApp",
    "RawClient",
    "accept_for",
    "client_frame",
    "closed_code",
    "echo",
    "encode_frame",
    "errors_logged",
    "free_port",
    "http_request",
    "http_url",
    "new_key",
    "read_frame",
    "recv",
    "recv_n",
    "refcodec",
    "served",
    "upgrade_request",
    "wait_for_condition",
    "wire_length",
    "ws_url",
]

_SERVING = {"NamedApp", "echo", "errors_logged", "http_url", "served", "ws_url"}


def __getattr__(name: str) -> Any:
    if name in _SERVING:
        from . import serving

        return getattr(serving, name)
    raise AttributeError(f"module 'kit' has no attribute {name!r}")

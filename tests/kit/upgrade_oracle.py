"""The upgrade fast path against the general path, without sockets.

On uvloop a new connection starts as a WebSocket whose first read is scanned in C
(protocol.pyx, upgrade.h); anything the fast path does not take goes to httptools and
xyra/handshake.py, the reference semantics. ``run`` plays what uvloop does with one
connection of a server (the protocol factory, ``connection_made``, reads into
``get_buffer``'s buffer and ``buffer_updated``, the loop's ``call_soon`` callbacks, EOF,
``connection_lost``) over a recording transport, and returns everything the server did:
the bytes it wrote, whether it closed or aborted the transport, what its handlers saw,
its log lines. ``compare`` runs the same reads with the fast path on and off and asserts
the two outcomes are the same, so the fast path can only ever be a faster way to the
general path's answer. tests/unit/test_upgrade_fast.py drives it with Hypothesis,
tests/fuzz/fuzz_handshake.py with libFuzzer.
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from kit.fake_transport import RecordingTransport as Transport

KEY = "dGhlIHNhbXBsZSBub25jZQ=="
ORIGIN_ALLOWED = "http://a.example"
# The routes of the oracle's app (see build_app) and what each exercises.
PATHS = ("/", "/chat", "/z", "/o", "/any", "/u", "/p/7", "/http", "/nothing")
SUBPROTOCOLS = ("chat", "superchat")
# (max_head_size, max_headers) pairs a harness may pick.
LIMITS = ((32768, 100), (256, 100), (600, 6), (180, 4))


class Loop:
    """The part of an event loop the Hub uses; callbacks run when ``run_ready`` says."""

    def __init__(self) -> None:
        self.ready: list[tuple[Any, tuple[Any, ...]]] = []

    def call_soon(self, callback: Any, *args: Any) -> None:
        self.ready.append((callback, args))

    call_soon_threadsafe = call_soon

    def time(self) -> float:
        return 0.0

    def run_ready(self) -> None:
        for _ in range(100):
            if not self.ready:
                return
            batch, self.ready = self.ready, []
            for callback, args in batch:
                callback(*args)


_DATE = re.compile(rb"\r\nDate: [^\r\n]*")


class Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[tuple[int, str]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append((record.levelno, record.getMessage()))


@dataclass
class Outcome:
    """Everything one connection's server side did."""

    written: bytes
    closed: bool
    aborted: bool
    eof_written: bool
    events: list[tuple[Any, ...]]
    log: list[tuple[int, str]]
    left_open: int = 0  # connections still registered after connection_lost
    fast: int = 0  # connections the fast path opened (not compared)
    extra: dict[str, Any] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        return (
            self.written,
            self.closed,
            self.aborted,
            self.eof_written,
            self.events,
            self.log,
            self.left_open,
        )


def build_app(limits: tuple[int, int], events: list[tuple[Any, ...]]) -> Any:
    """An app with one route per way the handshake can go (see PATHS)."""
    from xyra import App

    def opened(ws: Any) -> None:
        events.append(("open", ws.path, ws.subprotocol, ws.path_params))

    def message(ws: Any, data: Any, opcode: Any) -> None:
        events.append(("message", ws.path, data))
        ws.send(data, opcode)

    def closed(ws: Any, code: int, reason: str) -> None:
        events.append(("close", ws.path, code, reason))

    handlers = {"open": opened, "message": message, "close": closed}
    app = App(max_head_size=limits[0], max_headers=limits[1])
    app.websocket("/", handlers)
    app.websocket("/chat", handlers, subprotocols=list(SUBPROTOCOLS))
    app.websocket("/z", handlers, compression="shared")
    app.websocket("/o", handlers, allowed_origins=[ORIGIN_ALLOWED])
    app.websocket("/any", handlers, allowed_origins="*")
    app.websocket("/u", {**handlers, "upgrade": lambda request: True})
    app.websocket("/p/{id}", handlers)
    app.get("/http", lambda request: "hello\n")
    return app


def run(
    reads: Sequence[bytes],
    *,
    fast: bool,
    limits: tuple[int, int] = LIMITS[0],
    eof: bool = True,
) -> Outcome:
    """One connection: ``reads`` arrive one by one (then EOF if ``eof``), then it is lost."""
    from xyra._core.protocol import ServerContext
    from xyra._core.pubsub import Hub

    events: list[tuple[Any, ...]] = []
    records = Records()
    log = logging.getLogger("xyra.upgrade-oracle")
    log.propagate = False
    log.setLevel(logging.DEBUG)
    log.addHandler(records)
    try:
        loop = Loop()
        hub = Hub(loop, log)
        hub.thread_id = threading.get_ident()
        ctx = ServerContext(hub, build_app(limits, events).config())
        ctx.switch_protocol = True  # as on uvloop
        ctx.fast_upgrade = fast
        transport = Transport()
        transport.protocol = ctx()
        transport.protocol.connection_made(transport)
        loop.run_ready()
        for data in reads:
            if transport.is_closing() or not data:
                continue
            view = transport.protocol.get_buffer(len(data))
            n = min(len(view), len(data))
            view[:n] = data[:n]
            transport.protocol.buffer_updated(n)
            loop.run_ready()
        if eof and not transport.is_closing():
            if not transport.protocol.eof_received():
                transport.close()
            loop.run_ready()
        transport.protocol.connection_lost(None)
        loop.run_ready()
        return Outcome(
            # HTTP responses carry the time, which two runs may see a second apart.
            written=_DATE.sub(b"\r\nDate: -", bytes(transport.written)),
            closed=transport.closed,
            aborted=transport.aborted,
            eof_written=transport.eof_written,
            events=events,
            log=records.lines,
            left_open=len(hub.handshaking) + len(hub.sockets),
            fast=ctx.fast_upgrades,
            extra={"protocol_changes": transport.protocol_changes, "writes": transport.writes},
        )
    finally:
        log.removeHandler(records)


class Mismatch(AssertionError):
    pass


def compare(
    reads: Sequence[bytes], limits: tuple[int, int] = LIMITS[0], eof: bool = True
) -> Outcome:
    """Run ``reads`` with the fast path on and off; raise Mismatch if the outcomes differ.

    Returns the fast run's outcome (``fast`` says whether the fast path opened it).
    """
    general = run(reads, fast=False, limits=limits, eof=eof)
    quick = run(reads, fast=True, limits=limits, eof=eof)
    if quick.key() != general.key():
        raise Mismatch(
            f"fast path and general path differ for {list(reads)!r} (limits {limits}):\n"
            f"  general: {general.key()!r}\n  fast:    {quick.key()!r}"
        )
    if general.fast:
        raise Mismatch("the general path went through the fast path")
    if quick.left_open:
        raise Mismatch(f"{quick.left_open} connections left registered after connection_lost")
    return quick


# -- requests ------------------------------------------------------------------------------


def upgrade_request(
    path: str = "/",
    headers: Sequence[tuple[str, str]] | None = None,
    *,
    method: str = "GET",
    version: str = "HTTP/1.1",
    eol: str = "\r\n",
    extra: Sequence[tuple[str, str]] = (),
) -> bytes:
    """A request head; ``headers`` default to the canonical handshake headers."""
    if headers is None:
        headers = canonical_headers()
    lines = [f"{method} {path} {version}", *(f"{k}: {v}" for k, v in (*headers, *extra))]
    return (eol.join(lines) + eol + eol).encode("latin-1")


def canonical_headers(key: str = KEY) -> list[tuple[str, str]]:
    return [
        ("Host", "example.com"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", key),
        ("Sec-WebSocket-Version", "13"),
    ]


def random_key(raw: bytes) -> str:
    return base64.b64encode(raw[:16].ljust(16, b"\0")).decode()

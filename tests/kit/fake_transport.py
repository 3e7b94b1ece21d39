"""A transport for socket-free tests: what uvloop's gives a protocol, recorded."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


class RecordingTransport:
    """What a uvloop transport gives a protocol, recording what is done with it.

    As uvloop, nothing written after ``close()`` or ``abort()`` leaves; with
    ``strict=True`` a write after ``abort()`` is a test failure instead, for tests
    whose subject must never do it. ``buffered`` is what ``get_write_buffer_size``
    reports, so a test can play a slow reader.
    """

    def __init__(self, *, strict: bool = False) -> None:
        self.strict = strict
        self.protocol: Any = None
        self.protocol_changes = 0
        self.written = bytearray()
        self.writes = 0
        self.closed = False
        self.aborted = False
        self.eof_written = False
        self.paused = False
        self.buffered = 0
        self.limits: dict[str, int] = {}

    def write(self, data: bytes) -> None:
        assert not (self.strict and self.aborted), "write after abort"
        if self.closed or self.aborted:
            return
        self.written += data
        self.writes += 1

    def writelines(self, chunks: Sequence[bytes]) -> None:
        self.write(b"".join(chunks))

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def can_write_eof(self) -> bool:
        return True

    def write_eof(self) -> None:
        self.eof_written = True

    def get_write_buffer_size(self) -> int:
        return self.buffered

    def set_write_buffer_limits(self, high: int | None = None, low: int | None = None) -> None:
        self.limits = {"high": high or 0, "low": low or 0}

    def get_extra_info(self, name: str, default: Any = None) -> Any:
        return ("127.0.0.1", 40000) if name == "peername" else default

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol
        self.protocol_changes += 1

    def get_protocol(self) -> Any:
        return self.protocol

    def pause_reading(self) -> None:
        self.paused = True

    def resume_reading(self) -> None:
        self.paused = False

"""Type stub for the compiled frame parser (``frames.pyx``).

Only the Python-visible API: the C-level parser interface (``cdef`` methods, the
shared read buffer) is in ``frames.pxd``.
"""

from typing import TypeAlias

_Buffer: TypeAlias = bytes | bytearray | memoryview

#: What ``FrameParser.feed`` reports, in arrival order:
#: ``("text", str)``; ``("text", bytes)`` for a compressed text message (still deflated);
#: ``("binary", bytes)``; ``("ping", bytes)``; ``("pong", bytes)``;
#: ``("close", code, reason)``; ``("error", close_code, why)``.
_Event: TypeAlias = tuple[str, str | bytes] | tuple[str, int, str]

class Parser:
    """Server-side frame parser; the C-level ``on_*`` hooks are overridden by subclasses."""

class FrameParser(Parser):
    """A parser that records what it sees: the test and fuzzing entry point.

    ``feed(data)`` goes through the same get_buffer/buffer_updated path the server
    uses, and returns the events those bytes completed.
    """

    def __init__(
        self,
        max_payload_length: int = 1048576,
        require_mask: bool = True,
        allow_rsv1: bool = False,
    ) -> None: ...
    def feed(self, data: _Buffer) -> list[_Event]:
        """Parse ``data``; return the events it completed."""
    @property
    def buffered(self) -> int:
        """Bytes of input held between feeds (partial frames and fragments)."""
    @property
    def capacity(self) -> int:
        """Bytes of memory the owned input buffers take (held or not)."""
    def release_input(self) -> None:
        """Free the owned input buffers if nothing is pending (the server does it when idle)."""

def build_frame(
    opcode: int,
    payload: _Buffer,
    fin: bool = True,
    rsv1: bool = False,
    mask: _Buffer | None = None,
) -> bytes:
    """Build one frame; masked (as a client sends it) when a 4-byte ``mask`` is given."""

def mask_bytes(data: _Buffer, key: _Buffer) -> bytes:
    """XOR ``data`` with the 4-byte ``key`` (RFC 6455 masking)."""

def validate_utf8(data: _Buffer) -> bool:
    """True if ``data`` is complete, valid UTF-8."""

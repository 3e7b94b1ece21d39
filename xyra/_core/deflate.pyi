"""permessage-deflate engine (RFC 7692) on zlib's C API.

The C-level API (``compress``, ``decompress``, ``take_result``) is in deflate.pxd;
Python sees the wrappers below, meant for tests and cold paths.
"""

from typing import TypeAlias

Buffer: TypeAlias = bytes | bytearray | memoryview

def zlib_memory() -> int:
    """Bytes currently held by every Deflater and Inflater of the process."""

class DecompressionError(ValueError):
    """Raised by ``Inflater.decompress_bytes``; ``code`` is 1007 or 1009."""

    code: int
    def __init__(self, code: int, message: str) -> None: ...

class Deflater:
    """Compresses whole messages; ``window_bits`` 8..15 (8 runs as 9 with Z_RLE)."""

    window_bits: int
    no_context_takeover: bool
    level: int
    mem_level: int
    def __init__(
        self,
        window_bits: int = 15,
        no_context_takeover: bool = False,
        level: int = -1,
        mem_level: int = 5,
    ) -> None: ...
    @property
    def memory(self) -> int:
        """Bytes zlib holds for this Deflater now (0 before the first message)."""
    def compress_bytes(self, data: Buffer, only_if_smaller: bool = False) -> bytes | None:
        """The payload of one compressed message, without the 00 00 ff ff tail.

        With ``only_if_smaller``, ``None`` when it would not be shorter than ``data``
        (the message is then forgotten, so it can go out uncompressed).
        """
    def reset(self) -> None:
        """Forget the sliding window (needed when a result is not sent)."""
    def release(self) -> None:
        """Free zlib's memory now (safe between any two messages; costs ratio)."""

class Inflater:
    """Decompresses whole messages of a peer compressing with ``window_bits`` (8..15)."""

    window_bits: int
    no_context_takeover: bool
    def __init__(self, window_bits: int = 15, no_context_takeover: bool = False) -> None: ...
    @property
    def memory(self) -> int:
        """Bytes zlib holds for this Inflater now (0 before the first message)."""
    def decompress_bytes(self, data: Buffer, max_size: int | None = None) -> bytes:
        """The message; raises DecompressionError (code 1007 or 1009)."""
    def release(self) -> None:
        """Free zlib's memory now; only between messages of a no-context-takeover peer."""

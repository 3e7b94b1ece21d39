"""Atheris harness: the permessage-deflate engine (xyra._core.deflate).

Run it through tests/fuzz/run.sh; directly:
``XYRA_FUZZ_TREE=<fuzz build> python tests/fuzz/fuzz_inflate.py [libFuzzer flags] [corpus]``.

Input layout:

* byte 0: bits 0-2 ``window_bits - 8``, bit 3 ``no_context_takeover``, bit 4 round-trip mode,
  bits 5-7 the Deflater's level (round trip only, from ``LEVELS``);
* byte 1: bits 0-3 ``max_size`` from ``MAX_SIZES`` (inflate mode) or the growth ``g`` of the
  first message (round trip: when ``g > 0`` and it is not empty it becomes
  ``min(16 << g, 70000)`` bytes, its bytes repeated for odd ``g``, pseudo-random bytes seeded
  by it for even ``g``, so the Deflater's paths for messages over 64 KiB and for
  incompressible input are reached with small inputs),
  bits 4-6 the Deflater's ``mem_level - 1`` (1..8), bit 7 ``only_if_smaller``;
* byte 2: the rest holds ``1 + (b2 & 3)`` messages, each but the last prefixed by its
  length (2 bytes, big-endian; the last one takes what is left).

Inflate mode: each message goes to one ``Inflater.decompress_bytes(msg, max_size)``. Allowed:
bytes of at most ``max_size``, or ``DecompressionError`` with code 1007 or 1009; anything
else is a finding. Until the first error, the result is also checked against a model built
on Python's zlib (same libz) that follows deflate.pyx's documented contract: the 00 00 ff ff
tail appended unless the payload ended on a final block, a final (BFINAL) block followed by
more data continues as a fresh stream that keeps the window, the window carried across
messages unless ``no_context_takeover``. A success must equal the model's output; 1009 needs
the model's output to be longer than ``max_size`` (or corrupt); 1007 needs the model to
reject the data, or to end mid-block (tested by appending an empty final stored block). A
stream whose back-references reach past the window may go either way (zlib's leniency, see
``Model``): 1007 then needs the strict model to reject it, acceptance needs the 15-bit model
to inflate it to the same bytes.

Round-trip mode: one Deflater and one Inflater (same options) for all messages: each
``compress_bytes`` result must inflate back to the message with ``max_size = len(message)``
(the exact limit), and must also decode with Python's zlib as a peer would.
"""

from __future__ import annotations

import random
import zlib
from typing import Any

from _common import fuzz

TAIL = b"\x00\x00\xff\xff"
FINAL_EMPTY_BLOCK = b"\x01\x00\x00\xff\xff"  # BFINAL=1, stored, LEN=0
MAX_SIZES = (
    0, 1, 2, 7, 63, 64, 255, 256, 257, 1000, 4096, 16_384, 65_535, 65_536, 200_000, 1 << 20,
)  # fmt: skip
LEVELS = (-1, 0, 1, 2, 5, 6, 9, -1)

deflate: Any = None


def load(deflate_module: Any = None) -> None:
    global deflate
    if deflate_module is None:
        from xyra._core import deflate as deflate_module
    deflate = deflate_module


class Finding(AssertionError):
    pass


def split(data: bytes, b2: int) -> list[bytes]:
    out = []
    pos = 0
    for _ in range(b2 & 3):
        n = int.from_bytes(data[pos : pos + 2].ljust(2, b"\0"), "big")
        out.append(data[pos + 2 : pos + 2 + n])
        pos += 2 + n
    out.append(data[pos:])
    return out


# --------------------------------------------------------------------------- zlib model


class Model:
    """What an Inflater should return, on Python's zlib (see the module docstring).

    zlib resolves a back-reference farther than the window when the bytes it points to are
    still in the output buffer of the same ``inflate()`` call, and fails it ("invalid
    distance too far back") otherwise, so whether a stream that breaks its window is accepted
    depends on how the output is cut. One big buffer (Python's default) is the lenient view;
    ``strict`` inflates one output byte per call, so every reference must lie in the window.
    """

    def __init__(self, bits: int, no_context: bool, strict: bool = False) -> None:
        self.bits = bits
        self.no_context = no_context
        self.chunk = 1 if strict else 0
        self.history = b""  # everything inflated so far on this stream (context takeover)
        self.d = self._fresh(b"")

    def _fresh(self, window: bytes) -> Any:
        window = window[-(1 << self.bits) :]
        if window:
            return zlib.decompressobj(-self.bits, zdict=window)
        return zlib.decompressobj(-self.bits)

    def message(self, payload: bytes) -> tuple[str, bytes]:
        """("ok", data) | ("invalid", b"") | ("midblock", data): data ended inside a block."""
        if not payload:
            return ("ok", b"")  # taken as an empty message; the window is left alone
        if self.no_context:
            self.history = b""
            self.d = self._fresh(b"")
        out = bytearray()
        try:
            ended = self._run(payload, out)
            if not ended:
                ended = self._run(TAIL, out)
                if not ended:
                    probe = self.d.copy()
                    extra = probe.decompress(FINAL_EMPTY_BLOCK)
                    if extra or not probe.eof or probe.unused_data:
                        return ("midblock", bytes(out))
        except zlib.error:
            return ("invalid", b"")
        self.history = (self.history + bytes(out))[-(1 << self.bits) :]
        return ("ok", bytes(out))

    def _inflate(self, buf: bytes, out: bytearray) -> None:
        if not self.chunk:
            out += self.d.decompress(buf)
            return
        while True:
            piece = self.d.decompress(buf, self.chunk)
            out += piece
            buf = self.d.unconsumed_tail
            if self.d.eof or not (buf or piece):
                return

    def _run(self, buf: bytes, out: bytearray) -> bool:
        """Inflate ``buf``; True if it ended exactly with a final block."""
        while True:
            self._inflate(buf, out)
            if not self.d.eof:
                return False
            rest = self.d.unused_data
            # after a final block inside a message, the message's own output stays in the
            # window, with or without context takeover (history is b"" for no_context)
            self.d = self._fresh(self.history + bytes(out))
            if not rest:
                return True
            buf = rest


# --------------------------------------------------------------------------- the checks


def _replay(model: Model, messages: list[bytes]) -> tuple[str, bytes]:
    """The model's view of the last message (the earlier ones all inflated)."""
    for m in messages[:-1]:
        if model.message(m)[0] != "ok":
            return ("invalid", b"")
    return model.message(messages[-1])


def check_inflate(bits: int, no_context: bool, max_size: int, messages: list[bytes]) -> None:
    inflater = deflate.Inflater(bits, no_context)
    model: Model | None = Model(bits, no_context)
    for i, msg in enumerate(messages):
        where = (
            f"message {i} of {[m.hex() for m in messages]}\n  window_bits={bits} "
            f"no_context_takeover={no_context} max_size={max_size}"
        )
        try:
            out = inflater.decompress_bytes(msg, max_size)
            got: tuple[str, Any] = ("ok", out)
        except deflate.DecompressionError as e:
            if e.code not in (1007, 1009) or not isinstance(e.args[0], str):
                raise Finding(f"DecompressionError with code {e.code!r}: {where}") from e
            got = ("error", e.code)
        except Exception as e:
            raise Finding(f"decompress_bytes raised {e!r}: {where}") from e
        if got[0] == "ok":
            if not isinstance(out, bytes):
                raise Finding(f"result is {type(out)}: {where}")
            if len(out) > max_size:
                raise Finding(f"{len(out)} bytes out, over max_size: {where}")
        if model is None:
            continue
        want, data = model.message(msg)
        mismatch = None
        if got[0] == "ok":
            if want != "ok":
                # Accepting a stream whose back-references break the window is zlib's leniency
                # too (see Model): fine if it inflates the same with the widest window.
                wide = _replay(Model(15, no_context), messages[: i + 1])
                if wide != ("ok", out):
                    mismatch = f"Inflater accepted, zlib model says {want}"
            elif data != out:
                mismatch = f"output differs: got {out[:64].hex()}.., zlib {data[:64].hex()}.."
        elif got[1] == 1009:
            if want == "ok" and len(data) <= max_size:
                mismatch = f"1009 but zlib inflates it to {len(data)} <= max_size bytes"
        elif want == "ok" and len(data) <= max_size:
            # zlib's leniency again: 1007 is right if a back-reference breaks the window.
            strict = _replay(Model(bits, no_context, strict=True), messages[: i + 1])
            if strict[0] == "ok":
                mismatch = f"1007 but zlib inflates it to {len(data)} bytes at a block boundary"
        if mismatch:
            raise Finding(f"{mismatch}: {where}")
        if got[0] != "ok":
            model = None  # the Inflater was reset; the connection would be closing


def check_round_trip(
    bits: int, no_context: bool, level: int, mem_level: int, only_if_smaller: bool,
    messages: list[bytes],
) -> None:  # fmt: skip
    deflater = deflate.Deflater(bits, no_context, level, mem_level)
    inflater = deflate.Inflater(bits, no_context)
    peer = zlib.decompressobj(-bits)
    for i, msg in enumerate(messages):
        where = (
            f"message {i} of {[m.hex() for m in messages]}\n  window_bits={bits} "
            f"no_context_takeover={no_context} level={level} mem_level={mem_level} "
            f"only_if_smaller={only_if_smaller}"
        )
        try:
            payload = deflater.compress_bytes(msg, only_if_smaller)
        except Exception as e:
            raise Finding(f"compress_bytes raised {e!r}: {where}") from e
        if payload is None:
            if not only_if_smaller:
                raise Finding(f"compress_bytes returned None: {where}")
            continue  # sent uncompressed: neither inflater sees it
        if not isinstance(payload, bytes) or not payload:
            raise Finding(f"compress_bytes returned {payload!r}: {where}")
        if only_if_smaller and len(payload) >= len(msg):
            raise Finding(f"only_if_smaller gave {len(payload)} >= {len(msg)} bytes: {where}")
        try:
            back = inflater.decompress_bytes(payload, len(msg))
        except Exception as e:
            raise Finding(f"own output {payload.hex()} does not inflate: {e!r}: {where}") from e
        if back != msg:
            raise Finding(f"round trip gave {back[:64].hex()}..: {where}")
        if no_context:
            peer = zlib.decompressobj(-bits)
        try:
            theirs = peer.decompress(payload + TAIL)
        except zlib.error as e:
            raise Finding(f"zlib rejects {payload.hex()}: {e}: {where}") from e
        if theirs != msg:
            raise Finding(f"zlib inflates {payload.hex()} to {theirs[:64].hex()}..: {where}")


def grow(msg: bytes, g: int) -> bytes:
    if not g or not msg:
        return msg
    target = min(16 << g, 70_000)
    if g & 1:
        return (msg * (target // len(msg) + 1))[:target]
    return random.Random(msg).randbytes(target)


def test_one_input(data: bytes) -> None:
    head = data[:3].ljust(3, b"\0")
    bits = 8 + (head[0] & 7)
    no_context = bool(head[0] & 8)
    messages = split(data[3:], head[2])
    if head[0] & 0x10:
        level = LEVELS[head[0] >> 5]
        mem_level = 1 + ((head[1] >> 4) & 7)
        messages[0] = grow(messages[0], head[1] & 15)
        check_round_trip(bits, no_context, level, mem_level, bool(head[1] & 0x80), messages)
    else:
        check_inflate(bits, no_context, MAX_SIZES[head[1] & 15], messages)


def main() -> None:
    fuzz("deflate", load, test_one_input)


if __name__ == "__main__":
    main()

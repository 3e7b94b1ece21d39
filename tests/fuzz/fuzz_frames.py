"""Atheris harness: the compiled frame parser against the pure-Python reference decoder.

Run it through tests/fuzz/run.sh (which builds the XYRA_FUZZ=1 extensions); directly:
``XYRA_FUZZ_TREE=<fuzz build> python tests/fuzz/fuzz_frames.py [libFuzzer flags] [corpus]``.

Input layout (every byte string is a valid input):

* byte 0, options: bit 0 ``require_mask``, bit 1 ``allow_rsv1``, bit 2 structured mode,
  bits 4-7 pick ``max_payload_length`` from ``MAX_LENGTHS``;
* bytes 1-2, chunking: ``b1 & 3`` = 0 one feed, 1 fixed-size chunks of ``b2 + 1`` bytes,
  2 up to 16 random cuts (empty chunks included) seeded by ``b1, b2``, 3 byte by byte (the
  first 3000 bytes, then the rest in one feed);
* the rest is the stream, raw, or in structured mode a list of frame specs that the harness
  encodes (and masks) with ``refcodec.encode_frame``, so masked text can still be valid
  UTF-8 and lengths can be big without big inputs (see ``structured``).

Checks, per input: ``FrameParser`` and ``refcodec.RefParser`` fed the same chunks give the
same events in the same feeds; an error has the oracle's close code, comes after the same
events and within the oracle's error window (the rules of
tests/unit/test_frames_oracle.py::check_against_oracle); ``feed`` never raises and returns
only well-formed events; after every feed ``buffered <= max_payload_length + 14 + 125`` (a
message may hold max_payload_length bytes while a control frame of up to 125 payload bytes
with a 14-byte header is half read).

refcodec does not model permessage-deflate (RSV1) messages: ``CompressAwareRef`` adds the
Cython parser's contract for them (no UTF-8 check, the payload as bytes, kind by opcode).
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from typing import Any

from _common import Mismatch, feed_checked

MAX_LENGTHS = (
    0, 1, 2, 3, 16, 125, 126, 127, 200, 1000, 4096, 65_535, 65_536, 70_000, 300_000, 1 << 20,
)  # fmt: skip
CONTROL_SLACK = 14 + 125
BIG_STEP = 67  # structured mode: "big" payloads are (byte * 67) long, up to 17,085 bytes
ERROR_CODES = {1002, 1007, 1009}

frames: Any = None
refcodec: Any = None
RefParser: Any = None


def load(frames_module: Any = None, refcodec_module: Any = None) -> None:
    """Bind the implementations (the fuzz build under atheris, the importable one in pytest)."""
    global frames, refcodec, RefParser
    if frames_module is None:
        from xyra._core import frames as frames_module
    if refcodec_module is None:
        from kit import refcodec as refcodec_module
    frames, refcodec = frames_module, refcodec_module
    RefParser = _compress_aware(refcodec_module.RefParser)


def _compress_aware(base: type) -> type:
    class CompressAwareRef(base):  # type: ignore[valid-type, misc]
        """RefParser plus FrameParser's contract for RSV1 (compressed) data messages."""

        _compressed = False

        def _header_byte(self, b: int) -> Any:
            if not self._hdr and (b & 0x0F) in (1, 2):
                # a data frame's first byte: if it passes the checks, a message starts here
                self._compressed = bool(b & 0x40)
            return super()._header_byte(b)

        def _payload_byte(self, b: int) -> Any:
            if not self._compressed or self._opcode >= 8:
                return super()._payload_byte(b)
            if self._masked:
                b ^= self._key[self._pos % 4]
            self._pos += 1
            self._msg.append(b)  # compressed: no UTF-8 check before inflating
            if self._pos == self._length:
                return self._end_frame()
            return None

        def _end_frame(self) -> Any:
            if not self._compressed or self._opcode >= 8 or not self._fin:
                return super()._end_frame()
            self._in_header = True
            self._hdr = bytearray()
            op, msg = self._msg_opcode, bytes(self._msg)
            self._msg_opcode = None
            self._msg = bytearray()
            return ("text" if op == 1 else "binary", msg)

    return CompressAwareRef


# --------------------------------------------------------------------------- input decoding


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int | None:
        if self.pos >= len(self.data):
            return None
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += len(out)
        return out


def structured(body: bytes) -> bytes:
    """Encode frame specs: ``A B [extra] [key] payload`` repeated.

    A is the first header byte as sent (FIN, RSV1-3, opcode). B: bit 7 masked, bits 5-6 the
    length form (0 minimal, 1 16-bit, 2 64-bit, 3 64-bit with a declared length from the next
    8 bytes that need not match the payload), bits 0-4 the payload length: 0-29 as is, 30 the
    next byte, 31 "big": (next byte) * BIG_STEP, up to 17 KB (past the 2 KiB minimum owned
    buffer and into the 16-bit length form), filled by repeating the up to 16 payload bytes
    given (the oracle is slow: 17 KB cost it ~20 ms). The payload is given in clear and
    masked with the key here.
    """
    r = _Reader(body)
    out = bytearray()
    while True:
        a = r.byte()
        b = r.byte()
        if a is None or b is None:
            if a is not None:
                out.append(a)
            return bytes(out)
        masked = bool(b & 0x80)
        form = (b >> 5) & 3
        n = b & 0x1F
        declared = None
        big = False
        if form == 3:
            declared = int.from_bytes(r.take(8).ljust(8, b"\0"), "big")
        if n == 30:
            n = r.byte() or 0
        elif n == 31:
            n = (r.byte() or 0) * BIG_STEP
            big = True
        key = r.take(4).ljust(4, b"\0") if masked else None
        if big:
            pattern = r.take(16) or b"x"
            payload = (pattern * (n // len(pattern) + 1))[:n]
        else:
            payload = r.take(n)
        length_form = ("auto", "16", "64", "64")[form]
        if length_form == "16" and len(payload) > 0xFFFF:
            length_form = "auto"
        out += refcodec.encode_frame(
            a & 0x0F,
            payload,
            fin=bool(a & 0x80),
            rsv1=bool(a & 0x40),
            rsv2=bool(a & 0x20),
            rsv3=bool(a & 0x10),
            mask=key,
            length_form=length_form,
            declared_length=declared,
        )


def chunking(stream: bytes, mode: int, param: int) -> list[bytes]:
    kind = mode & 3
    if kind == 0:
        return [stream]
    if kind == 1:
        step = param + 1
        return [stream[i : i + step] for i in range(0, len(stream), step)] or [b""]
    if kind == 2:
        rng = random.Random((mode << 8) | param)
        cuts = sorted(rng.randint(0, len(stream)) for _ in range(rng.randint(1, 16)))
        bounds = [0, *cuts, len(stream)]
        return [stream[a:b] for a, b in itertools.pairwise(bounds)]
    head = [stream[i : i + 1] for i in range(min(len(stream), 3000))]
    return [*head, stream[3000:]] if len(stream) > 3000 else head or [b""]


def decode(data: bytes) -> tuple[dict[str, Any], list[bytes]]:
    head = data[:3].ljust(3, b"\0")
    opts = {
        "max_payload_length": MAX_LENGTHS[head[0] >> 4],
        "require_mask": bool(head[0] & 1),
        "allow_rsv1": bool(head[0] & 2),
    }
    body = data[3:]
    stream = structured(body) if head[0] & 4 else body
    return opts, chunking(stream, head[1], head[2])


# --------------------------------------------------------------------------- the check


def _norm(ev: Any) -> Any:
    return ("error", ev[1]) if ev and ev[0] == "error" else ev


def _well_formed(ev: Any, opts: dict[str, Any]) -> bool:
    if not isinstance(ev, tuple) or not ev:
        return False
    kind = ev[0]
    limit = opts["max_payload_length"]
    if kind == "text":
        ok_type = isinstance(ev[1], str) or (opts["allow_rsv1"] and isinstance(ev[1], bytes))
        # a str is at most as long as its UTF-8 encoding
        return len(ev) == 2 and ok_type and len(ev[1]) <= limit
    if kind == "binary":
        return len(ev) == 2 and isinstance(ev[1], bytes) and len(ev[1]) <= limit
    if kind in ("ping", "pong"):
        return len(ev) == 2 and isinstance(ev[1], bytes) and len(ev[1]) <= 125
    if kind == "close":
        return len(ev) == 3 and isinstance(ev[1], int) and isinstance(ev[2], str)
    if kind == "error":
        return len(ev) == 3 and ev[1] in ERROR_CODES and isinstance(ev[2], str)
    return False


def _feed_of(cum: list[int], offset: int) -> int:
    for i, end in enumerate(cum):
        if end >= offset:
            return i
    return len(cum) - 1


def check(opts: dict[str, Any], chunks: list[bytes]) -> None:
    """Raise Mismatch (with a report) if the Cython parser and the oracle disagree."""
    oracle = RefParser(**opts)
    exp: list[tuple[int, Any]] = []
    for i, c in enumerate(chunks):
        exp += [(i, ev) for ev in oracle.feed(c)]
    parser = frames.FrameParser(**opts)
    got: list[tuple[int, Any]] = []
    limit = opts["max_payload_length"] + CONTROL_SLACK

    def report(why: str) -> str:
        return (
            f"{why}\n  opts: {opts}\n  stream: {b''.join(chunks).hex()}\n"
            f"  chunks: {[c.hex() for c in chunks]}\n"
            f"  expected (feed, event): {exp!r:.3000}\n  got (feed, event): {got!r:.3000}\n"
            f"  oracle error window (stream offsets): {oracle.error_window}"
        )

    for i, c in enumerate(chunks):
        out = feed_checked(parser, c, i, report)
        got += [(i, ev) for ev in out]
        for ev in out:
            if not _well_formed(ev, opts):
                raise Mismatch(report(f"malformed event {ev!r:.200}"))
        held = parser.buffered
        if not 0 <= held <= limit:
            raise Mismatch(report(f"buffered = {held} after feed {i}, limit {limit}"))

    err_idx = next((k for k, (_, ev) in enumerate(exp) if ev[0] == "error"), None)
    if err_idx is None:
        if [(i, _norm(ev)) for i, ev in got] != [(i, _norm(ev)) for i, ev in exp]:
            raise Mismatch(report("event mismatch"))
        return
    if [(i, _norm(ev)) for i, ev in got[:err_idx]] != [(i, _norm(ev)) for i, ev in exp[:err_idx]]:
        raise Mismatch(report("events before the error differ"))
    rest = got[err_idx:]
    lo, hi = oracle.error_window
    if not rest and hi is None:
        return  # the bad header is cut short: reporting it is optional
    if not rest:
        raise Mismatch(report(f"expected error {exp[err_idx][1][1]}, got no error"))
    feed_idx, ev = rest[0]
    if _norm(ev) != _norm(exp[err_idx][1]):
        raise Mismatch(report("wrong event / close code at the error"))
    if len(rest) != 1:
        raise Mismatch(report("events after the error"))
    cum: list[int] = []
    total = 0
    for c in chunks:
        total += len(c)
        cum.append(total)
    lo_feed = _feed_of(cum, lo)
    hi_feed = len(chunks) - 1 if hi is None else _feed_of(cum, hi)
    if not lo_feed <= feed_idx <= hi_feed:
        raise Mismatch(report(f"error in feed {feed_idx}, allowed feeds {lo_feed}..{hi_feed}"))


def test_one_input(data: bytes) -> None:
    opts, chunks = decode(data)
    check(opts, chunks)


def main() -> None:
    import _common

    _common.prepare()
    import atheris

    if os.environ.get("XYRA_FUZZ_INSTRUMENT_ORACLE") == "1":
        # Python coverage of the oracle too: more guidance, half the speed.
        with atheris.instrument_imports(include=["kit.refcodec"]):
            from kit import refcodec as ref
    else:
        from kit import refcodec as ref
    from xyra._core import frames as fr

    _common.check_loaded(fr)
    load(fr, ref)
    atheris.Setup(sys.argv, test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main()

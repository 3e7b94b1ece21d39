"""Pure-Python reference WebSocket frame codec: the oracle for ``xyra._core.frames``.

Not shipped, not fast, meant to be *obviously* correct. The decoder works one byte at a
time, so every error is reported at the earliest byte that makes the stream invalid.

It is also the one frame builder of the test suite: ``encode_frame`` writes any frame, valid
or not; ``client_frame`` is what a client sends (masked with a fresh key unless told
otherwise); ``read_frame`` splits one frame off a byte stream without judging it, for clients
that look at what the server wrote.

Semantics (the contract of the Cython parser, see the test brief):

* events: ``("text", str)``, ``("binary", bytes)``, ``("ping", bytes)``, ``("pong", bytes)``,
  ``("close", code, reason)`` (``1005, ""`` for an empty payload), ``("error", code, text)``;
  after an error or a close event the parser is done and returns ``[]``.
* 1002: RSV bits without extension, reserved opcodes, unmasked frame when ``require_mask``,
  fragmented control frame, control payload > 125, continuation without a message in
  progress, new data frame while a fragmented message is in progress, 64-bit length with the
  top bit set, close payload of length 1, close code outside the valid ranges.
  Non-minimal length encodings are accepted.
* 1007: invalid UTF-8 in a text message (fail-fast, at the byte that makes the prefix
  invalid, or at the end of the message for a truncated sequence) or in a close reason.
* 1009: message total above ``max_payload_length``, as soon as the length is known.

Besides the events, the decoder records ``error_window = (lo, hi)``: the range of stream
offsets (number of bytes consumed) at which a correct implementation may report the error.
Header errors may be reported anywhere from the frame's first byte to the end of its header
(mask key included), close-payload errors anywhere within the close frame, and UTF-8 errors
in a text message exactly at the offending byte (fail-fast).
"""

from __future__ import annotations

import os
from typing import Literal, NamedTuple

OP_CONT = 0x0
OP_TEXT = 0x1
OP_BINARY = 0x2
OP_CLOSE = 0x8
OP_PING = 0x9
OP_PONG = 0xA

DATA_OPCODES = frozenset({OP_TEXT, OP_BINARY})
CONTROL_OPCODES = frozenset({OP_CLOSE, OP_PING, OP_PONG})
KNOWN_OPCODES = frozenset({OP_CONT}) | DATA_OPCODES | CONTROL_OPCODES

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
MESSAGE_TOO_BIG = 1009

Event = tuple[object, ...]
LengthForm = Literal["auto", "7", "16", "64"]


# --------------------------------------------------------------------------- helpers


def mask_bytes(data: bytes, key: bytes) -> bytes:
    """XOR ``data`` with the repeating 4-byte ``key`` (masking and unmasking are the same)."""
    if len(key) != 4:
        raise ValueError("mask key must be 4 bytes")
    n = len(data)
    # One big-integer XOR instead of a byte loop: megabyte payloads stay quick.
    stream = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(stream, "big")).to_bytes(n, "big")


def is_valid_close_code(code: int) -> bool:
    """Close codes a peer may send (RFC 6455 7.4, as the Xyra contract narrows them)."""
    return 1000 <= code <= 1003 or 1007 <= code <= 1011 or 3000 <= code <= 4999


class Utf8Validator:
    """Incremental UTF-8 validator following Unicode Table 3-7 (well-formed sequences).

    ``feed_byte`` returns False at the first byte after which no continuation can make the
    input valid; ``complete`` tells whether the input so far ends on a code point boundary.
    (Python's own incremental decoder accepts ``ED A0`` as a pending prefix, so it is not
    fail-fast enough to serve as the oracle here.)
    """

    def __init__(self) -> None:
        self.need = 0  # continuation bytes still expected
        self.lo = 0x80  # allowed range of the next continuation byte
        self.hi = 0xBF

    @property
    def complete(self) -> bool:
        return self.need == 0

    def feed_byte(self, b: int) -> bool:
        if self.need:
            if not self.lo <= b <= self.hi:
                return False
            self.need -= 1
            self.lo, self.hi = 0x80, 0xBF
            return True
        if b <= 0x7F:
            return True
        if 0xC2 <= b <= 0xDF:
            self.need, self.lo, self.hi = 1, 0x80, 0xBF
        elif b == 0xE0:
            self.need, self.lo, self.hi = 2, 0xA0, 0xBF
        elif 0xE1 <= b <= 0xEC or 0xEE <= b <= 0xEF:
            self.need, self.lo, self.hi = 2, 0x80, 0xBF
        elif b == 0xED:
            self.need, self.lo, self.hi = 2, 0x80, 0x9F
        elif b == 0xF0:
            self.need, self.lo, self.hi = 3, 0x90, 0xBF
        elif 0xF1 <= b <= 0xF3:
            self.need, self.lo, self.hi = 3, 0x80, 0xBF
        elif b == 0xF4:
            self.need, self.lo, self.hi = 3, 0x80, 0x8F
        else:  # 80..C1 (continuation / overlong lead), F5..FF
            return False
        return True


def utf8_error_offset(data: bytes) -> int | None:
    """Bytes consumed when ``data`` is known invalid (``len(data)`` if truncated), else None."""
    v = Utf8Validator()
    for i, b in enumerate(data):
        if not v.feed_byte(b):
            return i + 1
    return None if v.complete else len(data)


def validate_utf8(data: bytes) -> bool:
    return utf8_error_offset(data) is None


# --------------------------------------------------------------------------- encoder


def encode_frame(
    opcode: int,
    payload: bytes,
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    mask: bytes | None = None,
    length_form: LengthForm = "auto",
    declared_length: int | None = None,
) -> bytes:
    """Encode one frame, allowing every (also invalid) combination.

    ``length_form`` picks the 7-bit, 16-bit or 64-bit length field ("auto" = minimal);
    ``declared_length`` writes a length that differs from ``len(payload)`` (for frames whose
    announced length is too big to send).
    """
    if not 0 <= opcode <= 0xF:
        raise ValueError("opcode out of range")
    length = len(payload) if declared_length is None else declared_length
    b0 = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | (0x20 if rsv2 else 0)
    b0 |= (0x10 if rsv3 else 0) | opcode
    mbit = 0x80 if mask is not None else 0
    form = length_form
    if form == "auto":
        form = "7" if length <= 125 else "16" if length <= 0xFFFF else "64"
    if form == "7":
        if length > 125:
            raise ValueError("length does not fit the 7-bit form")
        head = bytes([b0, mbit | length])
    elif form == "16":
        if length > 0xFFFF:
            raise ValueError("length does not fit the 16-bit form")
        head = bytes([b0, mbit | 126]) + length.to_bytes(2, "big")
    else:
        head = bytes([b0, mbit | 127]) + length.to_bytes(8, "big")
    if mask is None:
        return head + payload
    if len(mask) != 4:
        raise ValueError("mask key must be 4 bytes")
    return head + mask + mask_bytes(payload, mask)


def build_frame(
    opcode: int,
    payload: bytes,
    fin: bool = True,
    rsv1: bool = False,
    mask: bytes | None = None,
) -> bytes:
    """Same signature as ``frames.build_frame``: minimal length form."""
    return encode_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)


def client_frame(
    opcode: int,
    payload: bytes = b"",
    *,
    fin: bool = True,
    rsv1: bool = False,
    rsv2: bool = False,
    rsv3: bool = False,
    masked: bool = True,
    declared_length: int | None = None,
) -> bytes:
    """A frame as a client sends it: masked with a fresh random key.

    ``masked=False`` leaves out the mask (a protocol error from a client), the ``rsv*`` bits
    are set as given, and ``declared_length`` announces a length other than the payload's.
    """
    key = os.urandom(4) if masked else None
    return encode_frame(
        opcode,
        payload,
        fin=fin,
        rsv1=rsv1,
        rsv2=rsv2,
        rsv3=rsv3,
        mask=key,
        declared_length=declared_length,
    )


def wire_length(payload_length: int, *, masked: bool = False) -> int:
    """Bytes on the wire of a frame with this payload (minimal length form)."""
    extended = 0 if payload_length <= 125 else 2 if payload_length <= 0xFFFF else 8
    return 2 + extended + (4 if masked else 0) + payload_length


class Frame(NamedTuple):
    """One frame as ``read_frame`` found it (the payload unmasked)."""

    fin: bool
    rsv1: bool
    rsv2: bool
    rsv3: bool
    opcode: int
    masked: bool
    payload: bytes
    size: int  # bytes the frame took in the stream


def read_frame(data: bytes | bytearray) -> Frame | None:
    """The frame at the start of ``data``, or None until all of it is there.

    It judges nothing (any opcode, any bits, masked or not): the caller asserts what it
    expects. ``frame.size`` bytes of ``data`` belong to it.
    """
    if len(data) < 2:
        return None
    b0, b1 = data[0], data[1]
    n7 = b1 & 0x7F
    ext = 2 if n7 == 126 else 8 if n7 == 127 else 0
    masked = bool(b1 & 0x80)
    head = 2 + ext + (4 if masked else 0)
    if len(data) < head:
        return None
    length = n7 if ext == 0 else int.from_bytes(data[2 : 2 + ext], "big")
    if len(data) < head + length:
        return None
    payload = bytes(data[head : head + length])
    if masked:
        payload = mask_bytes(payload, bytes(data[head - 4 : head]))
    return Frame(
        fin=bool(b0 & 0x80),
        rsv1=bool(b0 & 0x40),
        rsv2=bool(b0 & 0x20),
        rsv3=bool(b0 & 0x10),
        opcode=b0 & 0x0F,
        masked=masked,
        payload=payload,
        size=head + length,
    )


def encode_close_payload(code: int | None, reason: bytes = b"") -> bytes:
    if code is None:
        return b""
    return code.to_bytes(2, "big") + reason


# --------------------------------------------------------------------------- decoder


class RefParser:
    """Incremental server-side decoder with the same API as ``frames.FrameParser``."""

    def __init__(
        self,
        max_payload_length: int = 1 << 20,
        require_mask: bool = True,
        allow_rsv1: bool = False,
    ) -> None:
        self.max_payload_length = max_payload_length
        self.require_mask = require_mask
        self.allow_rsv1 = allow_rsv1
        self.offset = 0  # stream bytes consumed so far
        self.done = False
        self.error_window: tuple[int, int | None] | None = None
        self._hdr_error_pending = False  # still looking for the end of the bad header
        # current frame
        self._frame_start = 0
        self._hdr = bytearray()
        self._in_header = True
        self._fin = False
        self._rsv1 = False
        self._opcode = 0
        self._masked = False
        self._length = 0
        self._key = b""
        self._payload = bytearray()  # control payloads only
        self._pos = 0  # payload bytes of the current frame seen
        # current (possibly fragmented) data message
        self._msg_opcode: int | None = None
        self._msg = bytearray()
        self._utf8 = Utf8Validator()

    # ---- public API

    def feed(self, data: bytes | bytearray | memoryview) -> list[Event]:
        events: list[Event] = []
        for b in bytes(data):
            if self.done:
                self.offset += 1
                self._track_error_header(b)
                continue
            self.offset += 1
            ev = self._byte(b)
            if ev is not None:
                events.append(ev)
        return events

    # ---- internals

    @staticmethod
    def _header_length(hdr: bytes | bytearray) -> int | None:
        """Total header length once its second byte is known."""
        if len(hdr) < 2:
            return None
        n7 = hdr[1] & 0x7F
        ext = 2 if n7 == 126 else 8 if n7 == 127 else 0
        return 2 + ext + (4 if hdr[1] & 0x80 else 0)

    def _track_error_header(self, b: int) -> None:
        if not self._hdr_error_pending:
            return
        self._hdr.append(b)
        if len(self._hdr) == self._header_length(self._hdr):
            self._close_header_window()

    def _close_header_window(self) -> None:
        assert self.error_window is not None
        self.error_window = (self.error_window[0], self.offset)
        self._hdr_error_pending = False

    def _header_error(self, code: int, why: str) -> Event:
        self.done = True
        self.error_window = (self._frame_start + 1, None)
        self._hdr_error_pending = True
        if len(self._hdr) == self._header_length(self._hdr):
            self._close_header_window()
        return ("error", code, why)

    def _close_frame_error(self, code: int, why: str) -> Event:
        # reported at the end of the close frame; allowed from its first byte on
        self.done = True
        self.error_window = (self._frame_start + 1, self.offset)
        return ("error", code, why)

    def _utf8_error(self, why: str) -> Event:
        self.done = True
        self.error_window = (self.offset, self.offset)
        return ("error", INVALID_DATA, why)

    def _byte(self, b: int) -> Event | None:
        if self._in_header:
            return self._header_byte(b)
        return self._payload_byte(b)

    def _header_byte(self, b: int) -> Event | None:
        hdr = self._hdr
        if not hdr:
            self._frame_start = self.offset - 1
        hdr.append(b)
        n = len(hdr)
        if n == 1:
            self._fin = bool(b & 0x80)
            self._rsv1 = bool(b & 0x40)
            self._opcode = op = b & 0x0F
            if b & 0x30:
                return self._header_error(PROTOCOL_ERROR, "RSV2/RSV3 set")
            if op not in KNOWN_OPCODES:
                return self._header_error(PROTOCOL_ERROR, f"reserved opcode {op}")
            if self._rsv1 and not (self.allow_rsv1 and op in DATA_OPCODES):
                return self._header_error(PROTOCOL_ERROR, "RSV1 set")
            if op in CONTROL_OPCODES and not self._fin:
                return self._header_error(PROTOCOL_ERROR, "fragmented control frame")
            if op == OP_CONT and self._msg_opcode is None:
                return self._header_error(PROTOCOL_ERROR, "continuation without a message")
            if op in DATA_OPCODES and self._msg_opcode is not None:
                return self._header_error(PROTOCOL_ERROR, "new message inside a fragmented one")
            return None
        if n == 2:
            self._masked = bool(b & 0x80)
            if self.require_mask and not self._masked:
                return self._header_error(PROTOCOL_ERROR, "unmasked client frame")
        n7 = hdr[1] & 0x7F
        ext = 2 if n7 == 126 else 8 if n7 == 127 else 0
        if ext == 8 and n == 3 and b & 0x80:
            return self._header_error(PROTOCOL_ERROR, "64-bit length with the top bit set")
        if n == 2 + ext:  # the length is known now
            self._length = n7 if ext == 0 else int.from_bytes(hdr[2:], "big")
            if self._opcode in CONTROL_OPCODES:
                if self._length > 125:
                    return self._header_error(PROTOCOL_ERROR, "control payload > 125")
            elif len(self._msg) + self._length > self.max_payload_length:
                return self._header_error(MESSAGE_TOO_BIG, "message too big")
        header_length = self._header_length(hdr)
        assert header_length is not None
        if n < header_length:
            return None
        # header complete
        self._key = bytes(hdr[2 + ext :]) if self._masked else b""
        self._in_header = False
        self._pos = 0
        self._payload = bytearray()
        if self._opcode in DATA_OPCODES:
            self._msg_opcode = self._opcode
            self._msg = bytearray()
            self._utf8 = Utf8Validator()
        if self._length == 0:
            return self._end_frame()
        return None

    def _payload_byte(self, b: int) -> Event | None:
        if self._masked:
            b ^= self._key[self._pos % 4]
        self._pos += 1
        if self._opcode in CONTROL_OPCODES:
            self._payload.append(b)
        else:
            self._msg.append(b)
            if self._msg_opcode == OP_TEXT and not self._utf8.feed_byte(b):
                return self._utf8_error("invalid UTF-8 in text message")
        if self._pos == self._length:
            return self._end_frame()
        return None

    def _end_frame(self) -> Event | None:
        self._in_header = True
        self._hdr = bytearray()
        op = self._opcode
        if op == OP_PING:
            return ("ping", bytes(self._payload))
        if op == OP_PONG:
            return ("pong", bytes(self._payload))
        if op == OP_CLOSE:
            return self._end_close()
        if not self._fin:
            return None
        msg_op, msg = self._msg_opcode, bytes(self._msg)
        self._msg_opcode = None
        self._msg = bytearray()
        if msg_op == OP_BINARY:
            return ("binary", msg)
        if not self._utf8.complete:
            return self._utf8_error("truncated UTF-8 sequence at the end of a text message")
        return ("text", msg.decode("utf-8"))

    def _end_close(self) -> Event:
        payload = bytes(self._payload)
        if len(payload) == 0:
            self.done = True
            return ("close", 1005, "")
        if len(payload) == 1:
            return self._close_frame_error(PROTOCOL_ERROR, "close payload of length 1")
        code = int.from_bytes(payload[:2], "big")
        if not is_valid_close_code(code):
            return self._close_frame_error(PROTOCOL_ERROR, f"invalid close code {code}")
        if not validate_utf8(payload[2:]):
            return self._close_frame_error(INVALID_DATA, "invalid UTF-8 in close reason")
        self.done = True
        return ("close", code, payload[2:].decode("utf-8"))


# Same name as the Cython class, so this module can stand in for ``frames`` in the tests.
FrameParser = RefParser

"""Fixed vectors for the WebSocket frame codec: RFC 6455 5.7, every error close code, close
code validity, Autobahn-style UTF-8 cases, masking at every alignment.

Each test runs against the Cython module (``xyra._core.frames``) and against the pure-Python
reference codec in ``tests/kit/refcodec.py``, so the oracle is checked by the same vectors.
"""

from __future__ import annotations

import types
from collections.abc import Iterable
from typing import Any

import pytest
from kit import refcodec
from kit.refcodec import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    LengthForm,
    encode_frame,
)

try:
    from xyra._core import frames as _cython_frames
except ImportError:  # pragma: no cover - the extension is not built
    _cython_frames = None

IMPLS = [
    pytest.param(refcodec, id="refcodec"),
    pytest.param(
        _cython_frames,
        id="cython",
        marks=pytest.mark.skipif(_cython_frames is None, reason="xyra._core.frames not built"),
    ),
]

KEY = bytes.fromhex("37fa213d")  # the RFC 6455 5.7 example key
KOSME = b"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"  # Autobahn's "κόσμε"
Event = tuple[Any, ...]


@pytest.fixture(params=IMPLS)
def impl(request: pytest.FixtureRequest) -> types.ModuleType:
    mod: types.ModuleType = request.param
    return mod


def norm(events: Iterable[Event]) -> list[Event]:
    """Errors compare by close code only; check the description is a string."""
    out: list[Event] = []
    for ev in events:
        assert isinstance(ev, tuple), ev
        if ev[0] == "error":
            assert len(ev) == 3 and isinstance(ev[2], str), ev
            out.append(("error", ev[1]))
        else:
            out.append(ev)
    return out


def parse(impl: types.ModuleType, data: bytes, **opts: Any) -> list[Event]:
    """Feed ``data`` at once and byte by byte; both must agree. Returns normalised events."""
    whole = norm(impl.FrameParser(**opts).feed(data))
    p = impl.FrameParser(**opts)
    split: list[Event] = []
    for i in range(len(data)):
        split += p.feed(data[i : i + 1])
    assert norm(split) == whole, f"byte-by-byte feed differs for {data.hex()}"
    return whole


def mframe(opcode: int, payload: bytes, **kw: Any) -> bytes:
    """A masked (client) frame."""
    kw.setdefault("mask", KEY)
    return encode_frame(opcode, payload, **kw)


def err(code: int) -> list[Event]:
    return [("error", code)]


# --------------------------------------------------------------------------- RFC 6455 5.7


def test_rfc_single_frame_unmasked_text(impl: types.ModuleType) -> None:
    data = bytes.fromhex("810548656c6c6f")
    assert parse(impl, data, require_mask=False) == [("text", "Hello")]
    assert parse(impl, data) == err(1002)  # servers require masked client frames


def test_rfc_single_frame_masked_text(impl: types.ModuleType) -> None:
    data = bytes.fromhex("818537fa213d7f9f4d5158")
    assert parse(impl, data) == [("text", "Hello")]
    assert parse(impl, data, require_mask=False) == [("text", "Hello")]


def test_rfc_fragmented_unmasked_text(impl: types.ModuleType) -> None:
    data = bytes.fromhex("010348656c") + bytes.fromhex("80026c6f")
    assert parse(impl, data, require_mask=False) == [("text", "Hello")]
    assert parse(impl, data) == err(1002)


def test_rfc_fragmented_masked_text(impl: types.ModuleType) -> None:
    data = mframe(OP_TEXT, b"Hel", fin=False) + mframe(OP_CONT, b"lo")
    assert parse(impl, data) == [("text", "Hello")]


def test_rfc_ping_and_pong(impl: types.ModuleType) -> None:
    assert parse(impl, bytes.fromhex("890548656c6c6f"), require_mask=False) == [("ping", b"Hello")]
    pong = bytes.fromhex("8a8537fa213d7f9f4d5158")
    assert parse(impl, pong) == [("pong", b"Hello")]
    assert parse(impl, mframe(OP_PING, b"Hello")) == [("ping", b"Hello")]


def test_rfc_256_bytes_binary_16bit_length(impl: types.ModuleType) -> None:
    payload = bytes(range(256))
    data = bytes.fromhex("827e0100") + payload
    assert parse(impl, data, require_mask=False) == [("binary", payload)]
    masked = bytes.fromhex("82fe0100") + KEY + refcodec.mask_bytes(payload, KEY)
    assert masked == mframe(OP_BINARY, payload)
    assert parse(impl, masked) == [("binary", payload)]


def test_rfc_64k_binary_64bit_length(impl: types.ModuleType) -> None:
    payload = bytes(i * 7 & 0xFF for i in range(65536))
    data = bytes.fromhex("827f0000000000010000") + payload
    assert impl.FrameParser(require_mask=False).feed(data) == [("binary", payload)]
    masked = bytes.fromhex("82ff0000000000010000") + KEY + refcodec.mask_bytes(payload, KEY)
    assert masked == mframe(OP_BINARY, payload)
    assert impl.FrameParser().feed(masked) == [("binary", payload)]
    # in uneven chunks
    p = impl.FrameParser()
    got: list[Event] = []
    for i in range(0, len(masked), 4099):
        got += p.feed(masked[i : i + 4099])
    assert got == [("binary", payload)]


@pytest.mark.parametrize("length", [0, 1, 124, 125, 126, 127, 65535, 65536, 70001])
@pytest.mark.parametrize("mask", [None, KEY, b"\x00\x00\x00\x00", b"\xff\x01\x80\x7f"])
def test_build_frame_matches_reference(
    impl: types.ModuleType, length: int, mask: bytes | None
) -> None:
    payload = bytes(i & 0xFF for i in range(length))
    for opcode in (OP_CONT, OP_TEXT, OP_BINARY, OP_CLOSE, OP_PING, OP_PONG):
        if opcode >= 8 and length > 125:
            continue
        for fin in (True, False):
            for rsv1 in (False, True):
                want = refcodec.build_frame(opcode, payload, fin, rsv1, mask)
                got = impl.build_frame(opcode, payload, fin=fin, rsv1=rsv1, mask=mask)
                assert got == want, (opcode, fin, rsv1, mask, length)


def test_build_frame_rfc_bytes(impl: types.ModuleType) -> None:
    assert impl.build_frame(OP_TEXT, b"Hello").hex() == "810548656c6c6f"
    assert impl.build_frame(OP_TEXT, b"Hello", mask=KEY).hex() == "818537fa213d7f9f4d5158"
    assert impl.build_frame(OP_TEXT, b"Hel", fin=False).hex() == "010348656c"
    assert impl.build_frame(OP_CONT, b"lo").hex() == "80026c6f"
    assert impl.build_frame(OP_PING, b"Hello").hex() == "890548656c6c6f"
    assert impl.build_frame(OP_PONG, b"Hello", mask=KEY).hex() == "8a8537fa213d7f9f4d5158"
    assert impl.build_frame(OP_BINARY, bytes(256))[:4].hex() == "827e0100"
    assert impl.build_frame(OP_BINARY, bytes(65536))[:10].hex() == "827f0000000000010000"


# --------------------------------------------------------------------------- 1002


@pytest.mark.parametrize("rsv", [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 1)])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_PONG, OP_CLOSE])
def test_rsv_bits_without_extension(
    impl: types.ModuleType, rsv: tuple[int, int, int], opcode: int
) -> None:
    payload = b"\x03\xe8" if opcode == OP_CLOSE else b"abc"
    data = mframe(opcode, payload, rsv1=bool(rsv[0]), rsv2=bool(rsv[1]), rsv3=bool(rsv[2]))
    assert parse(impl, data) == err(1002)


def test_rsv_on_continuation(impl: types.ModuleType) -> None:
    data = mframe(OP_TEXT, b"a", fin=False) + mframe(OP_CONT, b"b", rsv3=True)
    assert parse(impl, data) == err(1002)


def test_rsv2_rsv3_with_allow_rsv1(impl: types.ModuleType) -> None:
    for kw in ({"rsv2": True}, {"rsv3": True}):
        assert parse(impl, mframe(OP_BINARY, b"x", **kw), allow_rsv1=True) == err(1002)
    # RFC 7692 6: RSV1 on a control frame is an error even with the extension
    assert parse(impl, mframe(OP_PING, b"x", rsv1=True), allow_rsv1=True) == err(1002)


@pytest.mark.parametrize("opcode", [3, 4, 5, 6, 7, 11, 12, 13, 14, 15])
@pytest.mark.parametrize("fin", [True, False])
def test_reserved_opcodes(impl: types.ModuleType, opcode: int, fin: bool) -> None:
    assert parse(impl, mframe(opcode, b"xyz", fin=fin)) == err(1002)
    assert parse(impl, mframe(opcode, b"")) == err(1002)


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY, OP_PING, OP_PONG, OP_CLOSE, OP_CONT])
def test_unmasked_frame_rejected(impl: types.ModuleType, opcode: int) -> None:
    assert parse(impl, encode_frame(opcode, b"")) == err(1002)
    # the masked counterpart is fine (continuation aside, which needs a message)
    if opcode != OP_CONT:
        assert parse(impl, mframe(opcode, b""))[0][0] != "error"


def test_unmasked_frame_after_valid_one(impl: types.ModuleType) -> None:
    data = mframe(OP_TEXT, b"ok") + encode_frame(OP_TEXT, b"no")
    assert parse(impl, data) == [("text", "ok"), ("error", 1002)]


def test_masked_frames_accepted_without_require_mask(impl: types.ModuleType) -> None:
    data = mframe(OP_TEXT, b"a", fin=False) + encode_frame(OP_CONT, b"b")
    assert parse(impl, data, require_mask=False) == [("text", "ab")]


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_fragmented_control_frame(impl: types.ModuleType, opcode: int) -> None:
    payload = b"\x03\xe8" if opcode == OP_CLOSE else b"hi"
    assert parse(impl, mframe(opcode, payload, fin=False)) == err(1002)
    assert parse(impl, mframe(opcode, b"", fin=False)) == err(1002)


@pytest.mark.parametrize("opcode", [OP_PING, OP_PONG, OP_CLOSE])
def test_control_payload_too_long(impl: types.ModuleType, opcode: int) -> None:
    ok_payload = b"\x03\xe8" + b"r" * 123 if opcode == OP_CLOSE else b"p" * 125
    assert parse(impl, mframe(opcode, ok_payload))[0][0] != "error"
    for n in (126, 127, 200, 65535, 65536):
        payload = (b"\x03\xe8" + b"r" * (n - 2)) if opcode == OP_CLOSE else b"p" * n
        assert parse(impl, mframe(opcode, payload)) == err(1002), n


def test_control_payload_too_long_fails_at_header(impl: types.ModuleType) -> None:
    header = mframe(OP_PING, b"p" * 126)[:8]  # 2 + 2-byte length + key, no payload
    assert norm(impl.FrameParser().feed(header)) == err(1002)


@pytest.mark.parametrize("fin", [True, False])
def test_continuation_without_message(impl: types.ModuleType, fin: bool) -> None:
    assert parse(impl, mframe(OP_CONT, b"abc", fin=fin)) == err(1002)
    after = mframe(OP_TEXT, b"abc") + mframe(OP_CONT, b"def", fin=fin)
    assert parse(impl, after) == [("text", "abc"), ("error", 1002)]


@pytest.mark.parametrize("first", [OP_TEXT, OP_BINARY])
@pytest.mark.parametrize("second", [OP_TEXT, OP_BINARY])
def test_new_data_frame_inside_fragmented_message(
    impl: types.ModuleType, first: int, second: int
) -> None:
    data = mframe(first, b"ab", fin=False) + mframe(second, b"cd")
    assert parse(impl, data) == err(1002)
    # control frames in between are fine; the message still completes
    ok = mframe(first, b"ab", fin=False) + mframe(OP_PING, b"!") + mframe(OP_CONT, b"cd")
    kind = "text" if first == OP_TEXT else "binary"
    want = "abcd" if first == OP_TEXT else b"abcd"
    assert parse(impl, ok) == [("ping", b"!"), (kind, want)]


@pytest.mark.parametrize("top", [0x80, 0xFF])
def test_64bit_length_top_bit(impl: types.ModuleType, top: int) -> None:
    header = bytes([0x82, 0xFF, top, 0, 0, 0, 0, 0, 0, 5]) + KEY
    assert parse(impl, header + b"hello") == err(1002)
    assert parse(impl, header) == err(1002)
    assert parse(impl, header, max_payload_length=1 << 62) == err(1002)


@pytest.mark.parametrize("form", ["16", "64"])
@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_non_minimal_lengths_accepted(
    impl: types.ModuleType, form: LengthForm, opcode: int
) -> None:
    for payload in (b"", b"Hi", b"x" * 125):
        want: Event = ("text", payload.decode()) if opcode == OP_TEXT else ("binary", payload)
        assert parse(impl, mframe(opcode, payload, length_form=form)) == [want]
    frags = mframe(opcode, b"a", fin=False, length_form=form)
    frags += mframe(OP_CONT, b"b", length_form="64")
    assert parse(impl, frags)[0][1] in ("ab", b"ab")


@pytest.mark.parametrize("form", ["16", "64"])
def test_non_minimal_length_on_control_frame(impl: types.ModuleType, form: LengthForm) -> None:
    """The contract accepts non-minimal lengths and caps control *payloads* at 125, so a ping
    whose 5-byte payload is announced in the 16/64-bit form is valid."""
    assert parse(impl, mframe(OP_PING, b"Hello", length_form=form)) == [("ping", b"Hello")]


# --------------------------------------------------------------------------- close frames

VALID_CLOSE_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]
INVALID_CLOSE_CODES = [
    0,
    1,
    999,
    1004,
    1005,
    1006,
    1012,
    1013,
    1014,
    1015,
    1016,
    1100,
    2000,
    2999,
    5000,
    65535,
]


def test_close_code_table_is_complete() -> None:
    assert [c for c in range(65536) if refcodec.is_valid_close_code(c)] == [
        *range(1000, 1004),
        *range(1007, 1012),
        *range(3000, 5000),
    ]


@pytest.mark.parametrize("code", VALID_CLOSE_CODES)
def test_valid_close_codes(impl: types.ModuleType, code: int) -> None:
    assert parse(impl, mframe(OP_CLOSE, code.to_bytes(2, "big"))) == [("close", code, "")]
    reason = "bye κόσμε 🙂"
    data = mframe(OP_CLOSE, code.to_bytes(2, "big") + reason.encode())
    assert parse(impl, data) == [("close", code, reason)]


@pytest.mark.parametrize("code", INVALID_CLOSE_CODES)
def test_invalid_close_codes(impl: types.ModuleType, code: int) -> None:
    assert parse(impl, mframe(OP_CLOSE, code.to_bytes(2, "big"))) == err(1002)
    assert parse(impl, mframe(OP_CLOSE, code.to_bytes(2, "big") + b"why")) == err(1002)


def test_close_code_validity_full_range(impl: types.ModuleType) -> None:
    for code in range(65536):
        data = mframe(OP_CLOSE, code.to_bytes(2, "big"))
        want = [("close", code, "")] if refcodec.is_valid_close_code(code) else err(1002)
        assert norm(impl.FrameParser().feed(data)) == want, code


def test_empty_close(impl: types.ModuleType) -> None:
    assert parse(impl, mframe(OP_CLOSE, b"")) == [("close", 1005, "")]
    assert parse(impl, mframe(OP_CLOSE, b"", mask=None), require_mask=False) == [
        ("close", 1005, "")
    ]


@pytest.mark.parametrize("byte", [b"\x00", b"\x03", b"\xe8"])
def test_close_payload_of_length_one(impl: types.ModuleType, byte: bytes) -> None:
    assert parse(impl, mframe(OP_CLOSE, byte)) == err(1002)


@pytest.mark.parametrize(
    "reason", [b"\xff", b"ok\xc0\xaf", b"\xed\xa0\x80", b"abc\xe2\x82", b"\xf4\x90\x80\x80"]
)
def test_close_reason_invalid_utf8(impl: types.ModuleType, reason: bytes) -> None:
    assert parse(impl, mframe(OP_CLOSE, b"\x03\xe8" + reason)) == err(1007)


def test_close_reason_125_bytes(impl: types.ModuleType) -> None:
    reason = "é" * 61 + "x"  # 123 bytes
    data = mframe(OP_CLOSE, b"\x03\xe8" + reason.encode())
    assert parse(impl, data) == [("close", 1000, reason)]


def test_parser_done_after_close(impl: types.ModuleType) -> None:
    p = impl.FrameParser()
    data = mframe(OP_TEXT, b"a") + mframe(OP_CLOSE, b"\x03\xe8") + mframe(OP_TEXT, b"b")
    assert p.feed(data) == [("text", "a"), ("close", 1000, "")]
    assert p.feed(mframe(OP_TEXT, b"c")) == []
    assert p.feed(b"\xff\xff\xff") == []


def test_parser_done_after_error(impl: types.ModuleType) -> None:
    p = impl.FrameParser()
    assert norm(p.feed(mframe(OP_TEXT, b"a") + mframe(3, b""))) == [("text", "a"), ("error", 1002)]
    assert p.feed(mframe(OP_TEXT, b"c")) == []
    assert p.feed(mframe(OP_CLOSE, b"")) == []


def test_control_frames_interleaved_in_fragmented_message(impl: types.ModuleType) -> None:
    data = (
        mframe(OP_TEXT, KOSME[:3], fin=False)  # code point split across fragments
        + mframe(OP_PING, b"1")
        + mframe(OP_CONT, KOSME[3:7], fin=False)
        + mframe(OP_PONG, b"2")
        + mframe(OP_CONT, b"")
        + mframe(OP_CONT, KOSME[7:], fin=False, mask=b"\x00\x00\x00\x00")
    )
    # the message ends with the empty final fragment; the last frame is then a
    # continuation without a message in progress
    want_text = KOSME[:7].decode()
    events = parse(impl, data)
    assert events == [("ping", b"1"), ("pong", b"2"), ("text", want_text), ("error", 1002)]


# --------------------------------------------------------------------------- 1009


def test_message_exactly_at_limit(impl: types.ModuleType) -> None:
    assert parse(impl, mframe(OP_BINARY, b"x" * 100), max_payload_length=100) == [
        ("binary", b"x" * 100)
    ]
    assert parse(impl, mframe(OP_TEXT, b"x" * 100), max_payload_length=100) == [("text", "x" * 100)]


@pytest.mark.parametrize("opcode", [OP_TEXT, OP_BINARY])
def test_message_too_big_single_frame(impl: types.ModuleType, opcode: int) -> None:
    assert parse(impl, mframe(opcode, b"x" * 101), max_payload_length=100) == err(1009)
    assert parse(impl, mframe(opcode, b"x" * 126), max_payload_length=125) == err(1009)
    assert parse(impl, mframe(opcode, b"x" * 70000), max_payload_length=65536) == err(1009)


@pytest.mark.parametrize("form", ["7", "16", "64"])
def test_message_too_big_detected_at_header(impl: types.ModuleType, form: LengthForm) -> None:
    length = 101
    header = encode_frame(OP_BINARY, b"", mask=KEY, length_form=form, declared_length=length)
    assert norm(impl.FrameParser(max_payload_length=100).feed(header)) == err(1009)
    huge = encode_frame(OP_BINARY, b"", mask=KEY, length_form="64", declared_length=1 << 40)
    assert norm(impl.FrameParser(max_payload_length=100).feed(huge)) == err(1009)


def test_message_too_big_across_fragments(impl: types.ModuleType) -> None:
    ok = mframe(OP_TEXT, b"a" * 60, fin=False) + mframe(OP_CONT, b"b" * 40)
    assert parse(impl, ok, max_payload_length=100) == [("text", "a" * 60 + "b" * 40)]
    bad = mframe(OP_TEXT, b"a" * 60, fin=False) + mframe(OP_PING, b"") + mframe(OP_CONT, b"b" * 41)
    assert parse(impl, bad, max_payload_length=100) == [("ping", b""), ("error", 1009)]
    # detected when the third fragment's header arrives, before its payload
    p = impl.FrameParser(max_payload_length=100)
    assert p.feed(mframe(OP_BINARY, b"a" * 50, fin=False)) == []
    assert p.feed(mframe(OP_CONT, b"b" * 50, fin=False)) == []
    assert norm(p.feed(mframe(OP_CONT, b"c")[:6])) == err(1009)


def test_limit_resets_between_messages(impl: types.ModuleType) -> None:
    data = b"".join(mframe(OP_BINARY, b"z" * 100) for _ in range(5))
    assert parse(impl, data, max_payload_length=100) == [("binary", b"z" * 100)] * 5


# --------------------------------------------------------------------------- UTF-8

VALID_UTF8 = [
    b"",
    "κόσμε".encode(),
    KOSME,
    "\U0001f600\U0001f4a9".encode(),
    b"\x00",
    b"\x7f",
    b"\xc2\x80",
    b"\xdf\xbf",
    b"\xe0\xa0\x80",
    b"\xed\x9f\xbf",  # U+D7FF, last before the surrogates
    b"\xee\x80\x80",  # U+E000, first after them
    b"\xef\xbf\xbd",  # U+FFFD
    b"\xef\xbf\xbf",  # U+FFFF
    b"\xf0\x90\x80\x80",
    b"\xf4\x8f\xbf\xbf",  # U+10FFFF
    "\u007f\u0080\u07ff\u0800\uffff\U00010000\U0010ffff".encode(),
    ("a" * 7 + "é" + "€" * 3 + "𝄞" * 5).encode(),
]

INVALID_UTF8 = [
    b"\x80",  # lone continuation bytes
    b"\xbf",
    b"a\x80b",
    b"\x80\x81\x82\x83",
    b"\xc0\x80",  # overlong NUL
    b"\xc0\xaf",  # overlong '/'
    b"\xc1\xbf",
    b"\xe0\x80\xaf",
    b"\xe0\x9f\xbf",  # overlong U+07FF
    b"\xf0\x80\x80\xaf",
    b"\xf0\x8f\xbf\xbf",  # overlong U+FFFF
    b"\xf8\x88\x80\x80\x80",
    b"\xfc\x84\x80\x80\x80\x80",
    b"\xed\xa0\x80",  # U+D800
    b"\xed\xad\xbf",
    b"\xed\xb0\x80",
    b"\xed\xbf\xbf",  # U+DFFF
    b"\xed\xa0\x80\xed\xb0\x80",  # surrogate pair
    b"\xf4\x90\x80\x80",  # U+110000
    b"\xf5\x80\x80\x80",
    b"\xf7\xbf\xbf\xbf",
    b"\xfe",
    b"\xff",
    b"\xfe\xfe\xff\xff",
    b"\xc2",  # truncated at the end
    b"\xe2\x82",
    b"\xf0\x9f\x98",
    KOSME + b"\xed\xa0\x80edited",
    KOSME[:-1],
    b"\xc2\x41",  # truncated followed by ASCII
    b"\xe2\x28\xa1",
    b"\xf0\x28\x8c\x28",
]


@pytest.mark.parametrize("data", VALID_UTF8, ids=lambda b: b.hex() or "empty")
def test_validate_utf8_valid(impl: types.ModuleType, data: bytes) -> None:
    data.decode("utf-8")  # the vector itself is valid
    assert impl.validate_utf8(data) is True


@pytest.mark.parametrize("data", INVALID_UTF8, ids=lambda b: b.hex())
def test_validate_utf8_invalid(impl: types.ModuleType, data: bytes) -> None:
    with pytest.raises(UnicodeDecodeError):
        data.decode("utf-8")
    assert impl.validate_utf8(data) is False


def test_validate_utf8_all_code_points(impl: types.ModuleType) -> None:
    chars = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF)
    data = chars.encode()
    assert impl.validate_utf8(data) is True
    for c in (0x7F, 0x80, 0x7FF, 0x800, 0xFFFF, 0x10000, 0x10FFFF):
        assert impl.validate_utf8(chr(c).encode()) is True
        assert impl.validate_utf8(b"x" * 13 + chr(c).encode() + b"y" * 17) is True


def test_validate_utf8_long_inputs_every_position(impl: types.ModuleType) -> None:
    """A bad byte at any offset of a long ASCII run (exercises word-at-a-time fast paths)."""
    for n in (0, 1, 7, 8, 15, 16, 31, 32, 33, 64, 100):
        for pos in range(n + 1):
            good = b"a" * pos + "é".encode() + b"b" * (n - pos)
            assert impl.validate_utf8(good) is True, (n, pos)
            bad = b"a" * pos + b"\xff" + b"b" * (n - pos)
            assert impl.validate_utf8(bad) is False, (n, pos)
            trunc = b"a" * pos + b"\xe2\x82"
            assert impl.validate_utf8(trunc) is False, (pos,)


@pytest.mark.parametrize("data", VALID_UTF8, ids=lambda b: b.hex() or "empty")
def test_text_message_valid_utf8(impl: types.ModuleType, data: bytes) -> None:
    want = [("text", data.decode())]
    assert parse(impl, mframe(OP_TEXT, data)) == want
    # split into single-byte fragments: code points cross frame boundaries
    frags = [bytes([b]) for b in data] or [b""]
    stream = b"".join(
        mframe(OP_TEXT if i == 0 else OP_CONT, f, fin=i == len(frags) - 1)
        for i, f in enumerate(frags)
    )
    assert parse(impl, stream) == want


@pytest.mark.parametrize("data", INVALID_UTF8, ids=lambda b: b.hex())
def test_text_message_invalid_utf8(impl: types.ModuleType, data: bytes) -> None:
    assert parse(impl, mframe(OP_TEXT, data)) == err(1007)
    assert parse(impl, mframe(OP_TEXT, data, mask=None), require_mask=False) == err(1007)
    frags = [bytes([b]) for b in data]
    stream = b"".join(
        mframe(OP_TEXT if i == 0 else OP_CONT, f, fin=i == len(frags) - 1)
        for i, f in enumerate(frags)
    )
    assert parse(impl, stream) == err(1007)


def test_invalid_utf8_in_binary_is_fine(impl: types.ModuleType) -> None:
    for data in INVALID_UTF8:
        assert parse(impl, mframe(OP_BINARY, data)) == [("binary", data)]


@pytest.mark.parametrize("data", INVALID_UTF8, ids=lambda b: b.hex())
def test_text_invalid_utf8_fails_fast(impl: types.ModuleType, data: bytes) -> None:
    """Feeding the header plus the bytes up to the offending one reports 1007 right then,
    although the frame announces more payload."""
    frame = mframe(OP_TEXT, data + b"0123456789")  # the frame is longer than the prefix
    header_len = 6
    # with ASCII after it, a truncated sequence becomes invalid at the first ASCII byte
    at_stream = refcodec.utf8_error_offset(data + b"0123456789")
    assert at_stream is not None
    p = impl.FrameParser()
    before = frame[: header_len + at_stream - 1]
    assert p.feed(before) == [], f"error reported too early: {before.hex()}"
    assert norm(p.feed(frame[header_len + at_stream - 1 : header_len + at_stream])) == err(1007), (
        f"no 1007 once byte {at_stream - 1} of the payload arrived: {frame.hex()}"
    )


def test_truncated_sequence_only_fails_at_message_end(impl: types.ModuleType) -> None:
    p = impl.FrameParser()
    assert p.feed(mframe(OP_TEXT, b"ab\xe2\x82", fin=False)) == []
    assert p.feed(mframe(OP_PING, b"")) == [("ping", b"")]
    assert norm(p.feed(mframe(OP_CONT, b""))) == err(1007)
    p = impl.FrameParser()
    assert p.feed(mframe(OP_TEXT, b"ab\xe2\x82", fin=False)) == []
    assert p.feed(mframe(OP_CONT, b"\xac")) == [("text", "ab€")]


def test_fail_fast_invalid_byte_in_third_fragment(impl: types.ModuleType) -> None:
    p = impl.FrameParser()
    assert p.feed(mframe(OP_TEXT, "κό".encode(), fin=False)) == []
    assert p.feed(mframe(OP_CONT, "σμ".encode(), fin=False)) == []
    third = mframe(OP_CONT, b"ok\xf4\x90\x80\x80 and more text", fin=True)
    assert p.feed(third[:8]) == []  # header + "ok"
    assert norm(p.feed(third[8:10])) == err(1007)  # F4 90 is already impossible
    assert p.feed(third[10:]) == []


# --------------------------------------------------------------------------- masking


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


MASK_KEYS = [b"\x00\x00\x00\x00", KEY, b"\xff\xff\xff\xff", b"\x01\x02\x04\x80"]


@pytest.mark.parametrize("key", MASK_KEYS, ids=lambda k: k.hex())
def test_mask_bytes_every_alignment_and_length(impl: types.ModuleType, key: bytes) -> None:
    buf = bytes((i * 37 + 11) & 0xFF for i in range(256))
    for align in range(18):
        for n in range(101):
            data = buf[align : align + n]
            assert impl.mask_bytes(data, key) == xor(data, key), (align, n)


def test_mask_bytes_buffer_views(impl: types.ModuleType) -> None:
    """If mask_bytes takes any buffer, unaligned views must work as well."""
    buf = bytearray((i * 13) & 0xFF for i in range(160))
    try:
        impl.mask_bytes(memoryview(buf)[1:9], KEY)
    except TypeError:
        pytest.skip("mask_bytes accepts bytes only")
    for align in range(18):
        for n in range(101):
            view = memoryview(buf)[align : align + n]
            assert bytes(impl.mask_bytes(view, KEY)) == xor(bytes(view), KEY), (align, n)


def test_mask_bytes_roundtrip_long(impl: types.ModuleType) -> None:
    data = bytes(range(256)) * 300 + b"tail"
    masked = impl.mask_bytes(data, KEY)
    assert masked == xor(data, KEY)
    assert impl.mask_bytes(masked, KEY) == data


def test_unmask_in_parser_every_alignment(impl: types.ModuleType) -> None:
    """Payloads at every offset of the fed buffer and every length are unmasked right."""
    buf = bytes((i * 91 + 5) & 0xFF for i in range(128))
    for align in range(18):
        lead = mframe(OP_PONG, b"p" * align, mask=b"\x10\x20\x30\x40")
        for n in range(101):
            payload = buf[:n]
            key = bytes([n, 255 - n, align, 0x5A])
            data = lead + mframe(OP_BINARY, payload, mask=key)
            got = impl.FrameParser().feed(data)
            assert got == [("pong", b"p" * align), ("binary", payload)], (align, n)

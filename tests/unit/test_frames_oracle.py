"""Hypothesis: the Cython frame parser against the pure-Python reference decoder.

Streams of frames (valid messages, fragmented messages with interleaved control frames,
random masks, all three length forms, and injected invalid frames) are encoded with
``refcodec``, cut at random points and fed chunk by chunk to both parsers. The events must be
identical feed by feed; an error must carry the same close code, come after the same events,
and be reported within the window the oracle allows (see ``refcodec.RefParser``): anywhere up
to the end of the bad frame's header for header errors, within the close frame for close
payload errors, and exactly at the offending byte for UTF-8 errors in text messages.

Run with ``pytest tests/unit/test_frames_oracle.py`` (``XYRA_ORACLE_EXAMPLES=5000`` for a deeper
run); the ``refcodec`` parametrisation runs the
oracle against itself (checks the generators and the oracle's agreement with the model).
"""

from __future__ import annotations

import itertools
import os
import random
import types
from dataclasses import dataclass
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit import refcodec
from kit.refcodec import (
    OP_BINARY,
    OP_CLOSE,
    OP_CONT,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    Event,
    LengthForm,
    RefParser,
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

# XYRA_ORACLE_EXAMPLES=5000 for a deeper (slow) run; 200 keeps the suite fast
SETTINGS = settings(
    max_examples=int(os.environ.get("XYRA_ORACLE_EXAMPLES", "200")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


@pytest.fixture(params=IMPLS, scope="module")
def impl(request: pytest.FixtureRequest) -> types.ModuleType:
    mod: types.ModuleType = request.param
    return mod


# --------------------------------------------------------------------------- comparison


def _norm(ev: Event) -> Event:
    return ("error", ev[1]) if ev and ev[0] == "error" else ev


def _feed_of(cum: list[int], offset: int) -> int:
    """Index of the chunk that delivers stream byte number ``offset`` (1-based)."""
    for i, end in enumerate(cum):
        if end >= offset:
            return i
    return len(cum) - 1


def check_against_oracle(impl: types.ModuleType, chunks: list[bytes], **opts: Any) -> list[Event]:
    """Feed ``chunks`` to the oracle and to ``impl``; fail with a precise report on mismatch.

    Returns the oracle's events (flattened).
    """
    oracle = RefParser(**opts)
    exp: list[tuple[int, Event]] = []
    for i, c in enumerate(chunks):
        exp += [(i, ev) for ev in oracle.feed(c)]
    parser = impl.FrameParser(**opts)
    got: list[tuple[int, Event]] = []
    crash: BaseException | None = None
    for i, c in enumerate(chunks):
        try:
            out = parser.feed(c)
        except Exception as e:  # the core must never raise
            crash = e
            break
        assert isinstance(out, list), f"feed returned {type(out)}"
        got += [(i, ev) for ev in out]

    cum: list[int] = []
    total = 0
    for c in chunks:
        total += len(c)
        cum.append(total)

    def report(why: str) -> str:
        return (
            f"{why}\n  opts: {opts}\n  stream: {b''.join(chunks).hex()}\n"
            f"  chunks: {[c.hex() for c in chunks]}\n"
            f"  expected (feed, event): {exp}\n  got (feed, event): {got}\n"
            f"  oracle error window (stream offsets): {oracle.error_window}"
        )

    assert crash is None, report(f"feed raised {crash!r}")
    for _, ev in got:
        assert isinstance(ev, tuple), report("event is not a tuple")
        if ev[0] == "error":
            assert len(ev) == 3 and isinstance(ev[1], int) and isinstance(ev[2], str), report(
                "malformed error event"
            )

    err_idx = next((k for k, (_, ev) in enumerate(exp) if ev[0] == "error"), None)
    if err_idx is None:
        assert [(i, _norm(ev)) for i, ev in got] == [(i, _norm(ev)) for i, ev in exp], report(
            "event mismatch"
        )
        return [ev for _, ev in exp]

    assert [(i, _norm(ev)) for i, ev in got[:err_idx]] == exp[:err_idx], report(
        "events before the error differ"
    )
    rest = got[err_idx:]
    assert oracle.error_window is not None
    lo, hi = oracle.error_window
    if not rest and hi is None:
        return [ev for _, ev in exp]  # the bad header is cut short: reporting is optional
    assert rest, report(f"expected error {exp[err_idx][1][1]}, got no error")
    feed_idx, ev = rest[0]
    assert _norm(ev) == _norm(exp[err_idx][1]), report("wrong event / close code at the error")
    assert len(rest) == 1, report("events after the error")
    lo_feed = _feed_of(cum, lo)
    hi_feed = len(chunks) - 1 if hi is None else _feed_of(cum, hi)
    assert lo_feed <= feed_idx <= hi_feed, report(
        f"error reported in feed {feed_idx}, allowed feeds {lo_feed}..{hi_feed}"
    )
    return [ev for _, ev in exp]


# --------------------------------------------------------------------------- generators


@dataclass(frozen=True)
class Frame:
    opcode: int
    payload: bytes
    fin: bool = True
    mask: bytes | None = None
    form: LengthForm = "auto"
    rsv1: bool = False
    rsv2: bool = False
    rsv3: bool = False
    declared_length: int | None = None

    def encode(self) -> bytes:
        return refcodec.encode_frame(
            self.opcode,
            self.payload,
            fin=self.fin,
            rsv1=self.rsv1,
            rsv2=self.rsv2,
            rsv3=self.rsv3,
            mask=self.mask,
            length_form=self.form,
            declared_length=self.declared_length,
        )


@dataclass
class Stream:
    frames: list[Frame]
    in_message: list[bool]  # before frame i, is a fragmented message in progress?
    events: list[Event]  # the model's expected events (valid streams only)

    def encode(self) -> bytes:
        return b"".join(f.encode() for f in self.frames)


masks = st.binary(min_size=4, max_size=4)


@st.composite
def mask_for(draw: st.DrawFn, require_mask: bool) -> bytes | None:
    if require_mask:
        return draw(masks)
    return draw(st.none() | masks)


@st.composite
def data_form(draw: st.DrawFn, n: int) -> LengthForm:
    forms: list[LengthForm] = ["auto", "auto", "64"]
    if n <= 0xFFFF:
        forms.append("16")
    return draw(st.sampled_from(forms))


def _big_bytes(n: int, seed: int) -> bytes:
    return random.Random(seed).randbytes(n)


big_binary = st.builds(_big_bytes, st.integers(126, 70_000), st.integers(0, 2**32))
big_text = st.builds(
    lambda n, seed: "".join(random.Random(seed).choice("aé€𝄞") for _ in range(n)).encode(),
    st.integers(40, 20_000),
    st.integers(0, 2**32),
)


@st.composite
def payload_for(draw: st.DrawFn, kind: str) -> bytes:
    big = draw(st.integers(0, 15)) == 0
    if kind == "text":
        if big:
            return draw(big_text)
        return draw(st.text(st.characters(codec="utf-8"), max_size=30)).encode()
    if big:
        return draw(big_binary)
    return draw(st.binary(max_size=40))


@st.composite
def control_frame(draw: st.DrawFn, require_mask: bool) -> tuple[Frame, Event]:
    op = draw(st.sampled_from([OP_PING, OP_PONG]))
    payload = draw(st.binary(max_size=12) | st.binary(min_size=120, max_size=125))
    name = "ping" if op == OP_PING else "pong"
    return Frame(op, payload, mask=draw(mask_for(require_mask))), (name, payload)


@st.composite
def message(
    draw: st.DrawFn, require_mask: bool, kind: str | None = None, payload: bytes | None = None
) -> Stream:
    """A data message in 1-4 fragments (cut anywhere, also inside code points), with
    ping/pong frames between the fragments."""
    if kind is None:
        kind = draw(st.sampled_from(["text", "binary"]))
    if payload is None:
        payload = draw(payload_for(kind))
    nfrag = draw(st.integers(1, 4))
    cuts = sorted(
        draw(st.lists(st.integers(0, len(payload)), min_size=nfrag - 1, max_size=nfrag - 1))
    )
    bounds = [0, *cuts, len(payload)]
    pieces = [payload[a:b] for a, b in itertools.pairwise(bounds)]
    frames: list[Frame] = []
    in_msg: list[bool] = []
    events: list[Event] = []
    for i, piece in enumerate(pieces):
        opcode = (OP_TEXT if kind == "text" else OP_BINARY) if i == 0 else OP_CONT
        fin = i == len(pieces) - 1
        frames.append(
            Frame(opcode, piece, fin, draw(mask_for(require_mask)), draw(data_form(len(piece))))
        )
        in_msg.append(i > 0)
        if not fin:
            for _ in range(draw(st.integers(0, 2))):
                ctrl, ev = draw(control_frame(require_mask))
                frames.append(ctrl)
                in_msg.append(True)
                events.append(ev)
    if kind == "text":
        events.append(("text", payload.decode("utf-8", "replace")))  # decoded only if valid
    else:
        events.append(("binary", payload))
    return Stream(frames, in_msg, events)


VALID_CODES = [1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 3000, 3999, 4000, 4999]


@st.composite
def close_frame(draw: st.DrawFn, require_mask: bool) -> tuple[Frame, Event]:
    code = draw(st.none() | st.sampled_from(VALID_CODES) | st.integers(3000, 4999))
    if code is None:
        return Frame(OP_CLOSE, b"", mask=draw(mask_for(require_mask))), ("close", 1005, "")
    reason = draw(st.text(st.characters(codec="utf-8"), max_size=20))
    raw = reason.encode()[:123]
    reason = raw.decode("utf-8", "ignore")
    raw = reason.encode()
    payload = code.to_bytes(2, "big") + raw
    return Frame(OP_CLOSE, payload, mask=draw(mask_for(require_mask))), ("close", code, reason)


@st.composite
def valid_stream(draw: st.DrawFn, require_mask: bool = True) -> Stream:
    out = Stream([], [], [])
    for _ in range(draw(st.integers(0, 5))):
        if draw(st.integers(0, 3)) == 0:
            ctrl, ev = draw(control_frame(require_mask))
            out.frames.append(ctrl)
            out.in_message.append(False)
            out.events.append(ev)
        else:
            m = draw(message(require_mask))
            out.frames += m.frames
            out.in_message += m.in_message
            out.events += m.events
    if draw(st.booleans()):
        close, ev = draw(close_frame(require_mask))
        out.frames.append(close)
        out.in_message.append(False)
        out.events.append(ev)
        # anything after the close is ignored
        if draw(st.booleans()):
            m = draw(message(require_mask))
            out.frames += m.frames
            out.in_message += [False] * len(m.frames)
    return out


@st.composite
def chunked(draw: st.DrawFn, data: bytes) -> list[bytes]:
    """Cut ``data`` at random points (empty chunks included), sometimes byte by byte."""
    if len(data) <= 3000 and draw(st.integers(0, 9)) == 0:
        return [data[i : i + 1] for i in range(len(data))]
    cuts = sorted(draw(st.lists(st.integers(0, len(data)), max_size=12)))
    bounds = [0, *cuts, len(data)]
    return [data[a:b] for a, b in itertools.pairwise(bounds)]


INVALID_UTF8_SEQS = [
    b"\x80",
    b"\xbf",
    b"\xc0\xaf",
    b"\xc1\x81",
    b"\xe0\x80\xaf",
    b"\xe0\x9f\xbf",
    b"\xed\xa0\x80",
    b"\xed\xbf\xbf",
    b"\xf0\x8f\xbf\xbf",
    b"\xf4\x90\x80\x80",
    b"\xf5\x80\x80\x80",
    b"\xf8\x88\x80\x80\x80",
    b"\xfe",
    b"\xff",
    b"\xc2",  # truncated: invalid at the next byte or at the message end
    b"\xe2\x82",
    b"\xf0\x9f\x98",
]

INVALID_KINDS = [
    "rsv",
    "opcode",
    "unmasked",
    "frag_control",
    "big_control",
    "orphan_cont",
    "nested_data",
    "top_bit",
    "too_big",
    "close_len1",
    "close_code",
    "close_reason",
    "bad_text",
    "random_text",
]


def _invalid_close_code() -> st.SearchStrategy[int]:
    return (
        st.integers(0, 999)
        | st.sampled_from([1004, 1005, 1006, 1012, 1013, 1014, 1015, 1016, 2999])
        | st.integers(1012, 2999)
        | st.integers(5000, 65535)
    )


@st.composite
def invalid_frames(
    draw: st.DrawFn, kind: str, in_message: bool, require_mask: bool, max_len: int
) -> list[Frame]:
    """One violation (or a text message that is bad UTF-8) fitting the context."""
    mask = draw(mask_for(require_mask))
    data_op = OP_CONT if in_message else draw(st.sampled_from([OP_TEXT, OP_BINARY]))
    small = draw(st.binary(max_size=20))
    ascii_small = draw(st.text("abc xyz", max_size=20)).encode()
    if kind == "rsv":
        bits = draw(st.sampled_from([(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (1, 1, 1)]))
        op = draw(st.sampled_from([data_op, OP_PING, OP_PONG]))
        rsv1, rsv2, rsv3 = (bool(b) for b in bits)
        return [Frame(op, ascii_small, draw(st.booleans()) if op < 8 else True, mask,
                      rsv1=rsv1, rsv2=rsv2, rsv3=rsv3)]  # fmt: skip
    if kind == "opcode":
        op = draw(st.sampled_from([3, 4, 5, 6, 7, 11, 12, 13, 14, 15]))
        return [Frame(op, small, draw(st.booleans()), mask)]
    if kind == "unmasked":
        op = draw(st.sampled_from([data_op, OP_PING, OP_PONG]))
        return [Frame(op, ascii_small, True, None)]
    if kind == "frag_control":
        op = draw(st.sampled_from([OP_PING, OP_PONG, OP_CLOSE]))
        payload = b"\x03\xe8" if op == OP_CLOSE else ascii_small
        return [Frame(op, payload, False, mask)]
    if kind == "big_control":
        op = draw(st.sampled_from([OP_PING, OP_PONG, OP_CLOSE]))
        n = draw(st.integers(126, 300))
        payload = (b"\x03\xe8" + b"r" * (n - 2)) if op == OP_CLOSE else b"p" * n
        return [Frame(op, payload, True, mask, draw(st.sampled_from(["auto", "64"])))]
    if kind == "orphan_cont":
        return [Frame(OP_CONT, ascii_small, draw(st.booleans()), mask)]
    if kind == "nested_data":
        return [Frame(draw(st.sampled_from([OP_TEXT, OP_BINARY])), ascii_small, True, mask)]
    if kind == "top_bit":
        declared = (1 << 63) + draw(st.integers(0, (1 << 63) - 1))
        return [Frame(data_op, small, draw(st.booleans()), mask, "64", declared_length=declared)]
    if kind == "too_big":
        declared = max_len + draw(st.integers(1, 1 << 20))
        forms: list[LengthForm] = ["64"]
        if declared <= 0xFFFF:
            forms.append("16")
        form = draw(st.sampled_from(forms))
        return [Frame(data_op, small, draw(st.booleans()), mask, form, declared_length=declared)]
    if kind == "close_len1":
        return [Frame(OP_CLOSE, draw(st.binary(min_size=1, max_size=1)), True, mask)]
    if kind == "close_code":
        code = draw(_invalid_close_code())
        return [Frame(OP_CLOSE, code.to_bytes(2, "big") + ascii_small, True, mask)]
    if kind == "close_reason":
        code = draw(st.sampled_from(VALID_CODES))
        bad = ascii_small[:5] + draw(st.sampled_from(INVALID_UTF8_SEQS)) + ascii_small[5:]
        return [Frame(OP_CLOSE, code.to_bytes(2, "big") + bad, True, mask)]
    if kind == "bad_text":
        prefix = draw(st.text(st.characters(codec="utf-8"), max_size=10)).encode()
        suffix = draw(st.text(st.characters(codec="utf-8"), max_size=10)).encode()
        bad = prefix + draw(st.sampled_from(INVALID_UTF8_SEQS)) + suffix
        return draw(message(require_mask, "text", bad)).frames
    if kind == "random_text":
        return draw(message(require_mask, "text", draw(st.binary(min_size=1, max_size=30)))).frames
    raise AssertionError(kind)


@st.composite
def invalid_case(draw: st.DrawFn) -> tuple[list[bytes], dict[str, Any]]:
    require_mask = draw(st.booleans())
    max_len = draw(st.sampled_from([125, 1000, 1 << 16, 1 << 20]))
    base = draw(valid_stream(require_mask))
    k = draw(st.integers(0, len(base.frames)))
    in_message = base.in_message[k] if k < len(base.frames) else False
    kinds = [
        kd
        for kd in INVALID_KINDS
        if not (kd == "unmasked" and not require_mask)
        and not (kd == "orphan_cont" and in_message)
        and not (kd == "nested_data" and not in_message)
        and not (kd in ("bad_text", "random_text") and in_message)
    ]
    kind = draw(st.sampled_from(kinds))
    bad = draw(invalid_frames(kind, in_message, require_mask, max_len))
    frames = base.frames[:k] + bad + base.frames[k:]
    data = b"".join(f.encode() for f in frames)
    opts = {"require_mask": require_mask, "max_payload_length": max_len}
    return draw(chunked(data)), opts


# --------------------------------------------------------------------------- tests


@SETTINGS
@given(data=st.data())
def test_valid_streams(impl: types.ModuleType, data: st.DataObject) -> None:
    stream = data.draw(valid_stream(require_mask=True))
    chunks = data.draw(chunked(stream.encode()))
    events = check_against_oracle(impl, chunks)
    assert events == stream.events, "the oracle disagrees with the generator's model"


@SETTINGS
@given(data=st.data())
def test_valid_streams_mask_optional(impl: types.ModuleType, data: st.DataObject) -> None:
    stream = data.draw(valid_stream(require_mask=False))
    chunks = data.draw(chunked(stream.encode()))
    events = check_against_oracle(impl, chunks, require_mask=False)
    assert events == stream.events, "the oracle disagrees with the generator's model"


@SETTINGS
@given(case=invalid_case())
def test_streams_with_an_invalid_frame(
    impl: types.ModuleType, case: tuple[list[bytes], dict[str, Any]]
) -> None:
    chunks, opts = case
    check_against_oracle(impl, chunks, **opts)


@SETTINGS
@given(data=st.data())
def test_random_text_payloads(impl: types.ModuleType, data: st.DataObject) -> None:
    """Arbitrary bytes as a fragmented text message: valid iff UTF-8, fail-fast otherwise."""
    raw = data.draw(
        st.binary(max_size=40)
        | st.lists(
            st.sampled_from(
                [b"a", b"\xc3\xa9", b"\xe2\x82\xac", b"\xf0\x9d\x84\x9e", *INVALID_UTF8_SEQS]
            ),
            max_size=12,
        ).map(b"".join)
    )
    msg = data.draw(message(True, "text", raw))
    chunks = data.draw(chunked(b"".join(f.encode() for f in msg.frames)))
    events = check_against_oracle(impl, chunks)
    if refcodec.validate_utf8(raw):
        assert events == msg.events
    else:
        assert events[-1][:2] == ("error", 1007)


@SETTINGS
@given(data=st.data())
def test_fail_fast_utf8_in_third_fragment(impl: types.ModuleType, data: st.DataObject) -> None:
    """The third fragment holds the offending byte: 1007 comes with exactly that byte, although
    neither the frame nor the message is complete."""
    text = st.text(st.characters(codec="utf-8"), max_size=8).map(str.encode)
    whole_ok = data.draw(text) + data.draw(text) + data.draw(text)
    # fragments 1 and 2 are valid as a prefix (code points may straddle their boundaries)
    c1, c2 = sorted(data.draw(st.lists(st.integers(0, len(whole_ok)), min_size=2, max_size=2)))
    f1, f2, rest = whole_ok[:c1], whole_ok[c1:c2], whole_ok[c2:]
    bad = data.draw(st.sampled_from(INVALID_UTF8_SEQS[:14]))  # not the truncated ones
    f3 = rest + bad + data.draw(text) + b"tail"
    mask = data.draw(masks)
    p = impl.FrameParser()
    assert p.feed(refcodec.encode_frame(OP_TEXT, f1, fin=False, mask=mask)) == []
    assert p.feed(refcodec.encode_frame(OP_CONT, f2, fin=False, mask=mask)) == []
    third = refcodec.encode_frame(OP_CONT, f3, fin=data.draw(st.booleans()), mask=mask)
    header = len(third) - len(f3)
    at = refcodec.utf8_error_offset(f1 + f2 + f3)
    assert at is not None and len(f1 + f2) < at <= len(f1 + f2 + rest + bad)
    stop = header + at - len(f1 + f2)  # bytes of the third frame that make the text invalid
    for i in range(stop - 1):
        assert p.feed(third[i : i + 1]) == [], (
            f"error before the offending byte: frames {f1.hex()} {f2.hex()} {third.hex()}, "
            f"after {i + 1} bytes of the third frame"
        )
    got = p.feed(third[stop - 1 : stop])
    assert [_norm(ev) for ev in got] == [("error", 1007)], (
        f"expected 1007 after {stop} bytes of the third frame {third.hex()} "
        f"(fragments {f1.hex()} | {f2.hex()} | {f3.hex()}), got {got}"
    )
    assert p.feed(third[stop:]) == []


def test_fail_fast_third_fragment_fixed(impl: types.ModuleType) -> None:
    key = bytes.fromhex("37fa213d")
    p = impl.FrameParser()
    assert p.feed(refcodec.encode_frame(OP_TEXT, b"Hello, ", fin=False, mask=key)) == []
    assert p.feed(refcodec.encode_frame(OP_CONT, b"\xce", fin=False, mask=key)) == []  # half
    third = refcodec.encode_frame(OP_CONT, b"\xba and \xed\xa0\x80 more", mask=key)
    assert p.feed(third[:12]) == []  # header + "\xba and "
    assert p.feed(third[12:13]) == []  # ED alone may still become valid
    assert [_norm(ev) for ev in p.feed(third[13:14])] == [("error", 1007)]  # ED A0: surrogate
    assert p.feed(third[14:]) == []


@SETTINGS
@given(data=st.data())
def test_valid_prefix_then_garbage(impl: types.ModuleType, data: st.DataObject) -> None:
    """Random bytes after a valid stream: the parser must not crash and must agree with the
    oracle. Garbage headers mixing a 1009 length with another violation are ambiguous, so the
    garbage gets a sane length byte when it would announce a too-big payload."""
    stream = data.draw(valid_stream(require_mask=True))
    garbage = bytearray(data.draw(st.binary(min_size=1, max_size=40)))
    if garbage[0] & 0x0F == OP_CLOSE:  # bad code + bad reason would be ambiguous
        garbage[0] ^= 0x01
    if len(garbage) >= 2:
        garbage[1] = (garbage[1] & 0x80) | min(garbage[1] & 0x7F, 125)
    frames = stream.frames
    # drop the close (and what follows it) so the garbage is actually parsed
    cut = next((i for i, f in enumerate(frames) if f.opcode == OP_CLOSE), len(frames))
    head = b"".join(f.encode() for f in frames[:cut])
    chunks = data.draw(chunked(head + bytes(garbage)))
    check_against_oracle(impl, chunks)


@pytest.mark.parametrize("form", ["16", "64"])
def test_big_messages_in_odd_chunks(impl: types.ModuleType, form: LengthForm) -> None:
    payload = _big_bytes(70_000 if form == "64" else 65_535, 7)
    key = b"\x01\x02\x03\x04"
    frames = [
        Frame(OP_BINARY, payload[:30_000], False, key, form),
        Frame(OP_PING, b"between", True, key),
        Frame(OP_CONT, payload[30_000:], True, key, form),
    ]
    data = b"".join(f.encode() for f in frames)
    for step in (1, 3, 4096, 65_537):
        chunks = [data[i : i + step] for i in range(0, len(data), step)]
        if step == 1:
            chunks = [*chunks[:200], b"".join(chunks[200:])]
        assert check_against_oracle(impl, chunks) == [("ping", b"between"), ("binary", payload)]

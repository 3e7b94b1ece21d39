"""Atheris harness: big frames (up to ~330 KB) split across reads, for the in-place path.

``fuzz_frames.py`` checks against the byte-by-byte oracle, so its payloads stay under
17 KB: it never completes a binary frame of DIRECT_MIN (64 KiB) or more, the frames that
``Parser.get_buffer_view`` reads into a bytes object at offset 0 and ``_take_buffer`` hands
over as the message. Here the harness builds 1-3 frames itself (so it knows the expected
events without an oracle), splits the stream at fuzz-chosen points and checks:

* the events equal the expected ones (payload, type ``bytes``/``str``, and ``hash``),
  up to and including the first error (close code 1002 / 1009 as the model says), nothing
  after an error or a close; a "wild" last frame (raw header bytes) only needs the events
  before it to match and every event to be well-formed;
* ``feed`` never raises; after every feed ``capacity <= 2 * fed + 128 KiB`` (``4 * fed``
  when the input holds a fragmented message: the message buffer doubles on its own, see
  ``check``) and ``buffered <= max_payload_length + 14 + 125``;
* payloads already returned are not changed by later feeds (a handed-over buffer the
  parser still wrote into), checked again at the end.

Input layout (every byte string is valid; missing bytes read as 0):

* byte 0: bit 0 ``require_mask``, bit 1 ``allow_rsv1``, bit 2 call ``release_input()``
  after every feed (the server does when idle), bits 3-5 ``max_payload_length`` from
  ``MAX_LENGTHS``;
* byte 1: bits 0-1 number of frames - 1 (3 -> 3), bits 2-3 chunking (0 cycled chunk
  sizes, 1 cuts anchored at frame starts/payload starts/ends +- a delta, 2 random cuts,
  3 anchored cuts each split again by cycled sizes);
* per frame: kind byte (``(k & 15) % 12``: 0-3 binary, 4 text, 5 fragmented binary, 6 fragmented
  text, 7 fragmented binary with a ping between, 8 ping/pong, 9 invalid header, 10 wild raw
  header, 11 close; bit 4 masked, bit 5 RSV1, bit 6 64-bit length form), size mode byte and
  two size bytes (see ``_size``), content seed byte, split byte (fragments / garbage kind);
* then the chunking parameters (see ``chunks_of``).

Run: ``XYRA_FUZZ_TREE=<fuzz build> python tests/fuzz/fuzz_frames_big.py -max_len=256 CORPUS``.
"""

from __future__ import annotations

import itertools
import os
import random
import sys
from typing import Any

from _common import Mismatch, feed_checked, fuzz
from kit.refcodec import encode_frame

MAX_LENGTHS = (1 << 20, 1 << 20, 400_000, 300_000, 200_000, 100_000, 65_536, 65_535)
CONTROL_SLACK = 14 + 125
MAX_FEEDS = 600
TEXT_PATTERN = "aé€😀bc\u07ff\U0010ffffz"

frames: Any = None


def load(frames_module: Any = None) -> None:
    global frames
    if frames_module is None:
        from xyra._core import frames as frames_module
    frames = frames_module


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        if self.pos >= len(self.data):
            self.pos += 1
            return 0
        self.pos += 1
        return self.data[self.pos - 1]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def left(self) -> bool:
        return self.pos < len(self.data)


def encode(
    first: int,
    payload: bytes,
    key: bytes | None,
    long_form: bool = False,
    declared: int | None = None,
) -> bytes:
    """One frame from its first byte (FIN, RSV bits, opcode), by the reference codec."""
    return encode_frame(
        first & 0x0F,
        payload,
        fin=bool(first & 0x80),
        rsv1=bool(first & 0x40),
        rsv2=bool(first & 0x20),
        rsv3=bool(first & 0x10),
        mask=key,
        length_form="64" if long_form else "auto",
        declared_length=declared,
    )


def _size(r: _Reader) -> int:
    mode, s1, s2 = r.byte(), r.byte(), r.byte()
    s = (s1 << 8) | s2
    m = mode % 4
    if m == 0:  # around DIRECT_MIN
        return 65536 + (s % 64) - 32
    if m == 1:  # anything up to ~330 KB
        return s * 5
    if m == 2:  # small and medium
        return s
    # around the GROW_OWN steps (64, 128, 192, 256 KiB)
    return 65536 * (1 + s1 % 4) + s2 - 128


def _content(seed: int, n: int) -> bytes:
    if seed & 1:
        return bytes([seed]) * n
    return random.Random(seed).randbytes(n)


def _text(seed: int, n: int) -> bytes:
    """Valid UTF-8 of about n bytes (multi-byte characters included)."""
    rot = seed % len(TEXT_PATTERN)
    pat = TEXT_PATTERN[rot:] + TEXT_PATTERN[:rot]
    per = len(pat.encode())
    s = pat * (n // per + 1)
    out = s.encode()[:n]
    while True:  # cut back to a character boundary
        try:
            out.decode()
            return out
        except UnicodeDecodeError:
            out = out[:-1]


def build(data: bytes) -> tuple[dict[str, Any], bool, bytes, list[Any], bool, list[int], _Reader]:
    """Return (opts, release, stream, expected events, wild_tail, anchors, reader)."""
    r = _Reader(data)
    b0 = r.byte()
    opts = {
        "require_mask": bool(b0 & 1),
        "allow_rsv1": bool(b0 & 2),
        "max_payload_length": MAX_LENGTHS[(b0 >> 3) & 7],
    }
    release = bool(b0 & 4)
    b1 = r.byte()
    nframes = min(3, (b1 & 3) + 1)
    limit = opts["max_payload_length"]
    stream = bytearray()
    exp: list[Any] = []
    anchors: list[int] = [0]
    wild = False
    done = False

    def key_for(masked: bool, seed: int) -> bytes | None:
        if masked or opts["require_mask"]:
            return bytes([seed, seed ^ 0x5A, 0xA5, seed ^ 0xFF])
        return None

    def add(frame: bytes, hdr_len_hint: int) -> None:
        anchors.append(len(stream))
        anchors.append(len(stream) + hdr_len_hint)
        stream.extend(frame)
        anchors.append(len(stream))

    def hlen(frame_len: int, payload_len: int) -> int:
        return frame_len - payload_len

    for _ in range(nframes):
        if done:
            break
        k = r.byte()
        kind = (k & 0x0F) % 12
        masked = bool(k & 0x10)
        rsv1 = bool(k & 0x20)
        long_form = bool(k & 0x40)
        n = _size(r)
        seed = r.byte()
        split = r.byte()
        key = key_for(masked, seed)
        if kind <= 4:  # a whole data frame
            op = 2 if kind < 4 else 1
            payload = _content(seed, n) if op == 2 else _text(seed, n)
            first = 0x80 | (0x40 if rsv1 else 0) | op
            frame = encode(first, payload, key, long_form)
            add(frame, hlen(len(frame), len(payload)))
            if rsv1 and not opts["allow_rsv1"]:
                exp.append(("error", 1002))
                done = True
            elif len(payload) > limit:
                exp.append(("error", 1009))
                done = True
            elif op == 2:
                exp.append(("binary", payload))
            else:
                exp.append(("text", payload if rsv1 else payload.decode()))
        elif kind in (5, 6, 7):  # a fragmented message, 2 or 3 fragments
            op = 2 if kind != 6 else 1
            payload = _content(seed, n) if op == 2 else _text(seed, n)
            c1 = len(payload) * (split & 0x7F) // 127
            parts = [payload[:c1], payload[c1:]]
            if split & 0x80:
                c2 = c1 + (len(payload) - c1) // 2
                parts = [payload[:c1], payload[c1:c2], payload[c2:]]
            total = 0
            failed = False
            for i, part in enumerate(parts):
                first = (0x80 if i == len(parts) - 1 else 0) | (op if i == 0 else 0)
                if i == 0 and rsv1:
                    first |= 0x40
                frame = encode(first, part, key, long_form)
                add(frame, hlen(len(frame), len(part)))
                if i == 0 and rsv1 and not opts["allow_rsv1"]:
                    exp.append(("error", 1002))
                    failed = True
                    break
                total += len(part)
                if total > limit:
                    exp.append(("error", 1009))
                    failed = True
                    break
                if kind == 7 and i == 0:
                    ping = bytes([seed]) * (seed % 126)
                    frame = encode(0x89, ping, key)
                    add(frame, hlen(len(frame), len(ping)))
                    exp.append(("ping", ping))
            if failed:
                done = True
            elif op == 2:
                exp.append(("binary", payload))
            else:
                exp.append(("text", payload if rsv1 else payload.decode()))
        elif kind == 8:  # ping / pong
            op = 0x9 if seed & 1 else 0xA
            payload = _content(seed, n % 126)
            frame = encode(0x80 | op, payload, key, long_form)
            add(frame, hlen(len(frame), len(payload)))
            exp.append(("ping" if op == 0x9 else "pong", payload))
        elif kind == 9:  # a header the parser must refuse
            g = split % 8
            code = 1002
            if g == 0:
                frame = encode(0x80 | (3 + seed % 5), b"", key)
            elif g == 1:
                frame = encode(0x82 | (0x20 if seed & 1 else 0x10), b"x" * (n % 200), key)
            elif g == 2 and opts["require_mask"]:
                frame = encode(0x82, b"y" * (n % 200), None)
            elif g == 3:
                frame = encode(0x89, b"p" * 126, key)
            elif g == 4:
                frame = encode(0x80, b"c" * (n % 200), key)  # continuation, nothing in progress
            elif g == 5:
                hdr = bytes([0x82, (0x80 if key else 0) | 127, 0x80 | seed]) + bytes(7)
                frame = hdr + (key or b"")
            elif g == 6 and not opts["allow_rsv1"]:
                frame = encode(0xC2, b"r" * (n % 200), key)
            else:  # longer than the limit (declared only: the error comes at the header)
                frame = encode(0x82, b"", key, True, declared=limit + 1 + (n % 3))
                code = 1009
            add(frame, len(frame))
            exp.append(("error", code))
            done = True
        elif kind == 10:  # raw header bytes, then a big payload: anything may happen
            hdr = r.take(2 + split % 13)
            frame = hdr + _content(seed, n % 70_000)
            add(frame, len(hdr))
            wild = True
            done = True
        else:  # close
            payload = (1000 + (seed % 4) * (seed % 2 == 0)).to_bytes(2, "big") + b"bye"
            code = int.from_bytes(payload[:2], "big")
            if code == 1003 or code == 1002 or code == 1001 or code == 1000:
                frame = encode(0x88, payload, key)
                add(frame, hlen(len(frame), len(payload)))
                exp.append(("close", code, "bye"))
            done = True
    anchors.append(len(stream))
    return opts, release, bytes(stream), exp, wild, anchors, r


def _sizes(r: _Reader, count: int) -> list[int]:
    out = []
    for _ in range(count):
        a, b = r.byte(), r.byte()
        scale = (1 << 6, 1 << 12, 70_000, 300_000)[a & 3]
        out.append(1 + (((a >> 2) << 8) | b) % scale)
    return out


def _cycle_split(seg: bytes, sizes: list[int], out: list[bytes]) -> None:
    pos, i = 0, 0
    while pos < len(seg):
        size = sizes[i % len(sizes)]
        if len(out) >= MAX_FEEDS:
            size = len(seg) - pos
        out.append(seg[pos : pos + size])
        pos += size
        i += 1


def _anchored(r: _Reader, stream: bytes, anchors: list[int]) -> list[int]:
    cuts = []
    for _ in range(1 + r.byte() % 8):
        a, d = r.byte(), r.byte()
        base = anchors[a % len(anchors)]
        delta = (d & 0x3F) - 32
        if d & 0x40:
            delta *= 997
        if d & 0x80:
            delta *= 3
        cuts.append(min(max(base + delta, 0), len(stream)))
    return sorted(cuts)


def chunks_of(mode: int, r: _Reader, stream: bytes, anchors: list[int]) -> list[bytes]:
    out: list[bytes] = []
    if mode == 0:
        _cycle_split(stream, _sizes(r, 1 + r.byte() % 4), out)
        return out or [b""]
    if mode == 2:
        rng = random.Random(r.byte() << 8 | r.byte())
        cuts = sorted(rng.randint(0, len(stream)) for _ in range(rng.randint(1, 24)))
    else:
        cuts = _anchored(r, stream, anchors)
    bounds = [0, *cuts, len(stream)]
    segs = [stream[a:b] for a, b in itertools.pairwise(bounds)]
    if mode != 3:
        return segs
    sizes = _sizes(r, 1 + r.byte() % 3)
    for seg in segs:
        if not seg:
            out.append(seg)
        else:
            _cycle_split(seg, sizes, out)
    return out


def _brief(ev: Any) -> Any:
    """An event with its payload shown as a length."""
    if len(ev) > 1 and isinstance(ev[1], (bytes, str)):
        return (ev[0], len(ev[1]))
    return (ev[0], *ev[1:])


def _well_formed(ev: Any, limit: int) -> bool:
    if not isinstance(ev, tuple) or not ev:
        return False
    kind = ev[0]
    if kind in ("text", "binary"):
        return len(ev) == 2 and type(ev[1]) in (str, bytes) and len(ev[1]) <= limit
    if kind in ("ping", "pong"):
        return len(ev) == 2 and type(ev[1]) is bytes and len(ev[1]) <= 125
    if kind == "close":
        return len(ev) == 3 and isinstance(ev[1], int) and isinstance(ev[2], str)
    if kind == "error":
        return len(ev) == 3 and ev[1] in (1002, 1007, 1009) and isinstance(ev[2], str)
    return False


def _same(got: Any, want: Any) -> bool:
    if got[0] == "error" or want[0] == "error":
        return got[:2] == want[:2]
    if got[0] != want[0] or len(got) != len(want):
        return False
    for g, w in zip(got[1:], want[1:], strict=True):
        if type(g) is not type(w) or g != w:
            return False
        if isinstance(g, bytes) and hash(g) != hash(bytes(w)):
            return False
    return True


def _has_fragments(data: bytes) -> bool:
    """Whether build() made a fragmented message (a frame kind of 5, 6 or 7) or a wild one."""
    r = _Reader(data)
    r.byte()
    nframes = min(3, (r.byte() & 3) + 1)
    for _ in range(nframes):
        k = (r.byte() & 0x0F) % 12
        r.take(5)
        if k in (5, 6, 7, 10):
            return True
        if k == 10 or k == 9 or k == 11:
            break
    return False


def check(data: bytes) -> None:
    opts, release, stream, exp, wild, anchors, r = build(data)
    fragmented = _has_fragments(data)
    mode = (data[1] >> 2) & 3 if len(data) > 1 else 0
    chunks = chunks_of(mode, r, stream, anchors)
    assert b"".join(chunks) == stream
    parser = frames.FrameParser(**opts)
    limit = opts["max_payload_length"]
    got: list[Any] = []
    fed = 0

    def report(why: str) -> str:
        return (
            f"{why}\n  opts: {opts} release_input: {release} wild: {wild}\n"
            f"  stream: {len(stream)} bytes, head {stream[:40].hex()}\n"
            f"  chunks ({len(chunks)}): {[len(c) for c in chunks][:60]}\n"
            f"  anchors: {anchors}\n"
            f"  expected: {[_brief(e) for e in exp]}\n"
            f"  got: {[_brief(e) for e in got]}"
        )

    for i, c in enumerate(chunks):
        out = feed_checked(parser, c, i, report)
        fed += len(c)
        for ev in out:
            if not _well_formed(ev, limit):
                raise Mismatch(report(f"malformed event {ev!r:.200}"))
        got += out
        if release:
            parser.release_input()
        cap = parser.capacity
        # A fragmented message may hold its input buffer (about what arrived) plus the
        # message buffer, which doubles (_append_msg): up to ~3x, older than the in-place
        # path. Whole frames only: the input buffer grows at most 2x what arrived.
        bound = (4 if fragmented else 2) * fed + 128 * 1024
        if cap > bound:
            raise Mismatch(report(f"capacity {cap} > {bound} after feed {i} ({fed} bytes fed)"))
        held = parser.buffered
        if not 0 <= held <= limit + CONTROL_SLACK:
            raise Mismatch(report(f"buffered = {held} after feed {i}"))

    # the expected prefix (a wild tail only needs what came before it)
    n_check = len(exp)
    if len(got) < n_check:
        raise Mismatch(report("too few events"))
    for g, w in zip(got[:n_check], exp, strict=False):
        if not _same(g, w):
            raise Mismatch(report(f"event mismatch: got {g!r:.120} want {w!r:.120}"))
    extra = got[n_check:]
    if not wild and extra:
        raise Mismatch(report(f"events after the expected ones: {extra!r:.200}"))
    if exp and exp[-1][0] in ("error", "close"):
        if extra:
            raise Mismatch(report("events after an error/close"))
        if parser.feed(b"\x82\x00") != []:
            raise Mismatch(report("events after an error/close (later feed)"))
    # nothing the parser handed over changed afterwards
    for g, w in zip(got[:n_check], exp, strict=False):
        if not _same(g, w):
            raise Mismatch(report(f"a delivered payload changed later: {g[0]}"))


def test_one_input(data: bytes) -> None:
    check(data)


def main() -> None:
    fuzz("frames", load, test_one_input)


if __name__ == "__main__":
    if os.environ.get("XYRA_BIG_PLAIN") == "1":  # replay on the importable build, no atheris
        load()
        for p in sys.argv[1:]:
            check(open(p, "rb").read())
        print("ok")
    else:
        main()

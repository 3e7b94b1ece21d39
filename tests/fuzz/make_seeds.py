"""Write the seed corpora in tests/fuzz/corpus/ (``python tests/fuzz/make_seeds.py``).

Each seed is a small valid (or deliberately invalid) input in the harness's layout; see the
docstrings of fuzz_frames.py and fuzz_inflate.py. The files are committed: rerun this only to
change them.
"""

from __future__ import annotations

import sys
import zlib
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))  # the test kit

from kit.refcodec import encode_frame as ef  # noqa: E402

K = bytes.fromhex("37fa213d")  # RFC 6455 5.7's key
KOSME = "κόσμε".encode()


def fopt(max_index: int, mask: bool = True, rsv1: bool = False, structured: bool = False) -> int:
    return (max_index << 4) | int(mask) | (2 if rsv1 else 0) | (4 if structured else 0)


def frame_seeds() -> dict[str, bytes]:
    s: dict[str, bytes] = {}
    s["rfc-masked-hello"] = bytes([fopt(15), 0, 0]) + ef(1, b"Hello", mask=K)
    s["fragmented-text-ping-bytewise"] = (
        bytes([fopt(15), 3, 0])
        + ef(1, b"Hel", fin=False, mask=K)
        + ef(9, b"ping", mask=K)
        + ef(0, b"lo " + KOSME, mask=K)
    )
    s["close-1000-reason"] = bytes([fopt(15), 0, 0]) + ef(8, b"\x03\xe8bye", mask=K)
    s["binary-16bit-chunks7"] = bytes([fopt(11), 1, 6]) + ef(2, bytes(range(256)), mask=K)
    s["binary-64bit-cuts"] = bytes([fopt(15), 2, 42]) + ef(
        2, b"abcdefghij" * 20, mask=K, length_form="64"
    )
    s["unmasked-ping-pong-text"] = (
        bytes([fopt(9, mask=False), 0, 0]) + ef(9, b"") + ef(10, b"p") + ef(1, b"hi")
    )
    # RFC 7692 7.2.3.1: "Hello" compressed, RSV1 set
    s["rsv1-compressed-hello"] = bytes([fopt(15, rsv1=True), 0, 0]) + ef(
        1, bytes.fromhex("f248cdc9c90700"), rsv1=True, mask=K
    )
    s["text-bad-utf8"] = bytes([fopt(15), 0, 0]) + ef(1, b"ok \xed\xa0\x80", mask=K)
    s["too-big"] = bytes([fopt(5), 0, 0]) + ef(2, b"x" * 126, mask=K)
    spec = bytearray()
    spec += bytes([0x01, 0x80 | 3]) + K + b"abc"  # text, not final
    spec += bytes([0x89, 0x80 | 2]) + K + b"pi"  # ping in between
    spec += bytes([0x80, 0x80 | 2]) + K + b"de"  # final continuation
    spec += bytes([0x82, 0x80 | 0x20 | 31, 3]) + K + b"0123456789abcdef"  # 201 bytes, 16-bit
    spec += bytes([0x88, 0x80 | 4]) + K + b"\x03\xe8ok"  # close
    s["structured-mix"] = bytes([fopt(15, structured=True), 2, 7]) + bytes(spec)
    # structured: a 64-bit declared length with the top bit set
    s["structured-top-bit"] = (
        bytes([fopt(15, structured=True), 0, 0, 0x82, 0x80 | 0x60 | 1]) + b"\x80" + bytes(7) + K
    ) + b"z"
    return s


def pmd(data: bytes, bits: int = 15, final: bool = False) -> bytes:
    """A peer's permessage-deflate payload (tail removed), or one ending in a final block."""
    c = zlib.compressobj(wbits=-bits)
    if final:
        return c.compress(data) + c.flush(zlib.Z_FINISH)
    out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
    return out[:-4]


def iopt(bits: int = 15, no_context: bool = False, round_trip: bool = False, level: int = 0) -> int:
    return (bits - 8) | (8 if no_context else 0) | (16 if round_trip else 0) | (level << 5)


def inflate_seeds() -> dict[str, bytes]:
    s: dict[str, bytes] = {}
    s["hello"] = bytes([iopt(), 15, 0]) + bytes.fromhex("f248cdc9c90700")
    s["hello-max7"] = bytes([iopt(), 3, 0]) + pmd(b"Hello")
    s["too-big-max63"] = bytes([iopt(), 4, 0]) + pmd(b"a" * 1000)
    # RFC 7692 7.2.3.4-style: a final (BFINAL) block, then more data
    s["bfinal-then-more"] = bytes([iopt(), 15, 0]) + pmd(b"Hello", final=True) + b"\x00"
    # two messages of one peer stream (b2 = 1: two messages, the first length-prefixed)
    peer = zlib.compressobj(wbits=-9)
    one = (peer.compress(b"Hello Hello") + peer.flush(zlib.Z_SYNC_FLUSH))[:-4]
    two = (peer.compress(b"Hello again Hello") + peer.flush(zlib.Z_SYNC_FLUSH))[:-4]
    s["two-messages-window9"] = bytes([iopt(9), 15, 1]) + len(one).to_bytes(2, "big") + one + two
    s["garbage"] = bytes([iopt(), 15, 0]) + b"\xff\xff\xff\xff"
    text = b"the quick brown fox " * 5
    s["round-trip-text"] = bytes([iopt(round_trip=True), 0x40, 1, 0, 40]) + text
    s["round-trip-window8-nct"] = bytes([iopt(8, True, True, 6), 0x90, 0]) + bytes(range(200))
    return s


def handshake_seeds() -> dict[str, bytes]:
    """fuzz_handshake.py's layout: options, two cut bytes, then raw or structured input."""
    from kit.upgrade_oracle import canonical_headers, upgrade_request

    raw = upgrade_request("/", canonical_headers())
    browser = upgrade_request(
        "/chat?room=1",
        [
            *canonical_headers(),
            ("Origin", "http://example.com"),
            ("Sec-WebSocket-Protocol", "x, chat"),
            ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ],
    )
    s: dict[str, bytes] = {}
    s["canonical"] = bytes([0, 0, 0]) + raw
    s["canonical-and-a-frame"] = bytes([0, 0, 0]) + raw + ef(1, b"hi", mask=K)
    s["browser-chat"] = bytes([0, 0, 0]) + browser
    s["compressed-route"] = bytes([0, 0, 0]) + browser.replace(b"/chat", b"/z", 1)
    s["split-in-two"] = bytes([0x10, 100, 0]) + raw
    s["every-7-bytes"] = bytes([0x30, 0, 0]) + raw
    s["small-limits"] = bytes([3, 0, 0]) + raw
    s["lf-only"] = bytes([0, 0, 0]) + raw.replace(b"\r\n", b"\n")
    s["http-route"] = bytes([0, 0, 0]) + b"GET /http HTTP/1.1\r\nHost: x\r\n\r\n"
    # structured: path "/chat" (1), GET, HTTP/1.1, CRLF, a key, 2 edits, a frame behind
    s["structured-chat"] = (
        bytes([4, 0, 0, 1, 0, 0, 0]) + bytes(range(16)) + bytes([2, 0, 5, 11, 0, 3, 1, 1, 0, 1])
    )
    s["structured-origin-no-eof"] = (
        bytes([12, 0, 0, 0, 0, 0, 0]) + bytes(16) + bytes([1, 0, 7, 7, 2])
    )
    return s


def main() -> None:
    """Write every corpus, or only those named on the command line."""
    corpora = {"frames": frame_seeds, "inflate": inflate_seeds, "handshake": handshake_seeds}
    for name in sys.argv[1:] or corpora:
        seeds = corpora[name]()
        folder = HERE / "corpus" / name
        folder.mkdir(parents=True, exist_ok=True)
        for old in folder.iterdir():
            old.unlink()
        for key, data in seeds.items():
            (folder / key).write_bytes(data)
        print(f"{len(seeds)} seeds in {folder}")


if __name__ == "__main__":
    main()

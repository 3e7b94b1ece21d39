"""Atheris harness: the opening handshake's fast path against the general path.

Run it through tests/fuzz/run.sh (which builds the XYRA_FUZZ=1 extensions); directly:
``XYRA_FUZZ_TREE=<fuzz build> python tests/fuzz/fuzz_handshake.py [libFuzzer flags] [corpus]``.

On uvloop every connection starts as a WebSocket whose first read goes through the
compiled scanner of protocol.pyx/upgrade.h; what it does not take goes to httptools and
xyra/handshake.py. ``kit.upgrade_oracle.compare`` plays one connection of a server with the
fast path on and off, over a recording transport, and the two must do the same thing:
the same bytes written (the 101 or the refusal, byte for byte, and any echo of frames sent
behind the head), the same close or abort, the same handler events, the same log lines,
and nothing left registered after ``connection_lost``.

Input layout (every byte string is a valid input):

* byte 0, options: bits 0-1 pick the server limits (``LIMITS``: max_head_size,
  max_headers), bit 2 structured mode, bit 3 no EOF after the reads, bits 4-5 the
  reads: 0 one read, 1 two reads cut at byte 1, 2 three reads (cuts at bytes 1 and
  2 of the input, scaled), 3 one read per 7 bytes;
* byte 1, 2: the cut positions;
* the rest: raw request bytes, or in structured mode a request built from choices
  (``structured``): the path, method, version, line ends, a key, up to 8 header edits
  (add, drop, repeat, change the value or the case, pad with spaces), bytes behind the
  head, and one byte to change.
"""

from __future__ import annotations

import sys
from typing import Any

oracle: Any = None


def load(protocol_module: Any = None) -> None:
    """Bind the oracle (the fuzz build is imported by then, or the importable one)."""
    global oracle
    from kit import upgrade_oracle

    oracle = upgrade_oracle


NAMES = (
    "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin", "Content-Length",
    "Transfer-Encoding", "Expect", "Proxy-Connection", "X-Other", "upgrade", "HOST",
    "Sec-Websocket-Key",
)  # fmt: skip
VALUES = (
    "websocket", "Upgrade", "keep-alive, Upgrade", "13", "8", "example.com", "a.example",
    "http://example.com", "http://a.example", "HTTP://EXAMPLE.COM", "null", "chat",
    "superchat, chat", "permessage-deflate", "permessage-deflate; client_max_window_bits",
    "permessage-deflate; bogus", "0", "5", "chunked", "100-continue", "", " ", "\t",
    "dGhlIHNhbXBsZSBub25jZQ==", "AAAAAAAAAAAAAAAAAAAAAA==", "AAAA", "h2c, websocket",
    "[::1]:80", "example.com:80", "upgrade,", ",", "x" * 40,
)  # fmt: skip
PATHS = (
    "/", "/chat", "/z", "/o", "/any", "/u", "/p/7", "/http", "/nothing", "/?a=b",
    "/p/7?x", "/a b", "/#x", "*", "/%2F", "/chat?",
)  # fmt: skip
TAILS = (b"", b"\x81\x82abcd\x09\x0b", b"\x88\x82abcdb\x02", b"\x81", b"GET / HTTP/1.1\r\n\r\n")


class Choices:
    """Reads choices from the input, then zeros."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def byte(self) -> int:
        b = self.data[self.pos] if self.pos < len(self.data) else 0
        self.pos += 1
        return b

    def pick(self, options: tuple[Any, ...]) -> Any:
        return options[self.byte() % len(options)]

    def take(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out


def structured(data: bytes) -> bytes:
    c = Choices(data)
    path = c.pick(PATHS)
    method = c.pick(("GET", "GET", "GET", "POST", "get", "HEAD"))
    version = c.pick(("HTTP/1.1", "HTTP/1.1", "HTTP/1.1", "HTTP/1.0", "HTTP/1.2"))
    eol = c.pick(("\r\n", "\r\n", "\r\n", "\n", "\r"))
    headers = oracle.canonical_headers(oracle.random_key(c.take(16)))
    for _ in range(c.byte() % 9):
        op, name, value = c.byte() % 7, c.pick(NAMES), c.pick(VALUES)
        i = c.byte() % len(headers) if headers else 0
        if op == 0 or not headers:
            headers.insert(i, (name, value))
        elif op == 1:
            del headers[i]
        elif op == 2:
            headers.insert(i, headers[i])
        elif op == 3:
            headers[i] = (headers[i][0], value)
        elif op == 4:
            headers[i] = (headers[i][0].swapcase(), headers[i][1])
        elif op == 5:
            headers[i] = (headers[i][0], c.pick((" ", "\t", "  ")) + headers[i][1] + " ")
        else:
            headers[i] = (name, headers[i][1])
    out = oracle.upgrade_request(path, headers, method=method, version=version, eol=eol)
    out += c.pick(TAILS)
    edit = c.byte()
    if edit & 1:
        at = c.byte() * len(out) // 256
        new = bytes([c.byte()]) if edit & 2 else b""
        out = out[:at] + new + out[at + (0 if edit & 4 else 1) :]
    return out


def reads_of(data: bytes, mode: int, a: int, b: int) -> list[bytes]:
    n = len(data)
    if mode == 0 or n < 2:
        return [data]
    if mode == 1:
        cut = 1 + a * (n - 1) // 256
        return [data[:cut], data[cut:]]
    if mode == 2:
        x, y = sorted((1 + a * (n - 1) // 256, 1 + b * (n - 1) // 256))
        return [data[:x], data[x:y], data[y:]]
    return [data[i : i + 7] for i in range(0, n, 7)]


def test_one_input(data: bytes) -> None:
    if oracle is None:
        load()
    head = data[:3].ljust(3, b"\0")
    limits = oracle.LIMITS[head[0] & 3]
    body = structured(data[3:]) if head[0] & 4 else data[3:]
    reads = reads_of(body, (head[0] >> 4) & 3, head[1], head[2])
    oracle.compare(reads, limits, eof=not head[0] & 8)


def main() -> None:
    from _common import fuzz

    fuzz("protocol", load, test_one_input)


if __name__ == "__main__":
    sys.exit(main())

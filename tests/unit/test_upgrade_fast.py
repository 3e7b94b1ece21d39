"""The compiled fast path of the opening handshake (protocol.pyx, upgrade.h), socket-free.

* SHA-1 and the accept value against hashlib / xyra.handshake (the RFC 6455 vector, the
  FIPS 180-4 vectors, every length over a few blocks, random keys);
* the scanner on the requests real clients send (they must take the fast path);
* the oracle (kit.upgrade_oracle): for requests Hypothesis builds and mutates, the
  server with the fast path writes, logs and reports exactly what it does without it.
"""

from __future__ import annotations

import base64
import gc
import hashlib
import logging
import os
import random

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from kit import client_frame
from kit.upgrade_oracle import (
    KEY,
    LIMITS,
    ORIGIN_ALLOWED,
    PATHS,
    Loop,
    Transport,
    build_app,
    canonical_headers,
    compare,
    random_key,
    upgrade_request,
)

from xyra._core import protocol
from xyra._core.connection import WebSocket
from xyra._core.protocol import ServerContext
from xyra._core.pubsub import Hub
from xyra.handshake import accept_key

# -- SHA-1 and the accept value -------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "digest"),
    [  # FIPS 180-4 examples (NIST CSRC "SHA1.pdf")
        (b"abc", "a9993e364706816aba3e25717850c26c9cd0d89d"),
        (b"", "da39a3ee5e6b4b0d3255bfef95601890afd80709"),
        (
            b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq",
            "84983e441c3bd26ebaae4aa1f95129e5e54670f1",
        ),
        (b"a" * 1_000_000, "34aa973cd4c4daa4f61eeb2bdbad27316534016f"),
    ],
)
def test_sha1_fips_vectors(message: bytes, digest: str) -> None:
    assert protocol._sha1(message).hex() == digest


def test_sha1_every_length_across_block_edges() -> None:
    rng = random.Random(6455)
    for n in range(300):
        data = bytes(rng.randrange(256) for _ in range(n))
        assert protocol._sha1(data) == hashlib.sha1(data).digest(), n


@given(st.binary(max_size=2000))
def test_sha1_matches_hashlib(data: bytes) -> None:
    assert protocol._sha1(data) == hashlib.sha1(data).digest()


def test_rfc6455_accept_vector() -> None:
    assert protocol._accept_value(KEY.encode()) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


@given(st.binary(min_size=16, max_size=16))
def test_accept_matches_handshake_py(raw: bytes) -> None:
    key = base64.b64encode(raw)
    assert protocol._accept_value(key) == accept_key(key)


# -- the scanner ----------------------------------------------------------------------------

# What real clients send (header sets and order as captured from each; keys vary).
CLIENTS = {
    "websockets": [
        ("Host", "127.0.0.1:8000"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
        ("User-Agent", "Python/3.11 websockets/15.0"),
    ],
    "aiohttp": [
        ("Host", "127.0.0.1:8000"),
        ("Upgrade", "websocket"),
        ("Connection", "Upgrade"),
        ("Sec-WebSocket-Version", "13"),
        ("Sec-WebSocket-Key", KEY),
        ("Accept", "*/*"),
        ("Accept-Encoding", "gzip, deflate"),
        ("User-Agent", "Python/3.11 aiohttp/3.9.5"),
    ],
    "chromium": [
        ("Host", "127.0.0.1:8000"),
        ("Connection", "Upgrade"),
        ("Pragma", "no-cache"),
        ("Cache-Control", "no-cache"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 Chrome/120.0"),
        ("Upgrade", "websocket"),
        ("Origin", "http://127.0.0.1:8000"),
        ("Sec-WebSocket-Version", "13"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Accept-Language", "en-US,en;q=0.9"),
        ("Sec-WebSocket-Key", KEY),
        ("Sec-WebSocket-Extensions", "permessage-deflate; client_max_window_bits"),
    ],
    "firefox": [
        ("Host", "127.0.0.1:8000"),
        ("User-Agent", "Mozilla/5.0 (X11; Linux x86_64; rv:121.0) Gecko/20100101 Firefox/121.0"),
        ("Accept", "*/*"),
        ("Accept-Language", "en-US,en;q=0.5"),
        ("Accept-Encoding", "gzip, deflate, br"),
        ("Sec-WebSocket-Version", "13"),
        ("Origin", "http://127.0.0.1:8000"),
        ("Sec-WebSocket-Extensions", "permessage-deflate"),
        ("Sec-WebSocket-Key", KEY),
        ("Connection", "keep-alive, Upgrade"),
        ("Sec-Fetch-Dest", "empty"),
        ("Sec-Fetch-Mode", "websocket"),
        ("Sec-Fetch-Site", "same-origin"),
        ("Pragma", "no-cache"),
        ("Cache-Control", "no-cache"),
        ("Upgrade", "websocket"),
    ],
    "bench": canonical_headers(),
}


@pytest.mark.parametrize("client", sorted(CLIENTS))
def test_real_clients_requests_scan(client: str) -> None:
    data = upgrade_request("/chat?room=1", CLIENTS[client])
    scanned = protocol._scan(data)
    assert scanned is not None
    assert scanned["head_len"] == len(data)
    assert scanned["target"] == b"/chat?room=1" and scanned["path"] == b"/chat"
    assert scanned["sec-websocket-key"] == KEY.encode()
    assert scanned["headers"] == len(CLIENTS[client])


@pytest.mark.parametrize("client", sorted(CLIENTS))
@pytest.mark.parametrize("path", ["/", "/z", "/any", "/p/7?x=y"])
def test_real_clients_take_the_fast_path(client: str, path: str) -> None:
    headers = [
        (k, "http://example.com" if k == "Origin" else "example.com" if k == "Host" else v)
        for k, v in CLIENTS[client]
    ]
    outcome = compare([upgrade_request(path, headers)])
    assert outcome.written.startswith(b"HTTP/1.1 101 "), outcome.written
    assert outcome.fast == 1


@pytest.mark.parametrize(
    ("path", "origin", "host", "fast"),
    [
        ("/", "http://example.com", "example.com", True),  # exactly the Host: decided in C
        ("/", "HTTP://Example.com:80/", "example.com", True),  # the same origin, spelt otherwise
        ("/", "http://example.com", "example.com:80", True),
        ("/", "https://example.com", "example.com", False),  # refused: the general path says so
        ("/", "http://evil.example", "example.com", False),
        ("/o", ORIGIN_ALLOWED, "example.com", True),  # in the route's allowed_origins
        ("/o", ORIGIN_ALLOWED + ":80", "example.com", True),
        ("/o", "http://example.com", "example.com", False),
        ("/any", "null", "example.com", True),
    ],
)
def test_origin_policies_in_the_fast_path(path: str, origin: str, host: str, fast: bool) -> None:
    headers = [("Host", host), *canonical_headers()[1:], ("Origin", origin)]
    outcome = compare([upgrade_request(path, headers)])
    assert outcome.fast == fast
    assert outcome.written.startswith(b"HTTP/1.1 101 " if fast else b"HTTP/1.1 403 ")


def test_the_scanner_keeps_values_as_llhttp_does() -> None:
    data = upgrade_request("/", [*canonical_headers(), ("Origin", "\t http://x.y \t")])
    assert protocol._scan(data)["origin"] == b"http://x.y \t"


@pytest.mark.parametrize(
    ("head", "why"),
    [
        (upgrade_request("/", eol="\n"), "bare LF line ends"),
        (upgrade_request("/", method="POST"), "not GET"),
        (upgrade_request("/", version="HTTP/1.0"), "HTTP/1.0"),
        (upgrade_request("/a#b"), "a fragment in the target"),
        (upgrade_request("*"), "not origin-form"),
        (upgrade_request("/", extra=[("Content-Length", "0")]), "a body"),
        (upgrade_request("/", extra=[("Transfer-Encoding", "chunked")]), "a body"),
        (upgrade_request("/", extra=[("Expect", "100-continue")]), "Expect"),
        (upgrade_request("/", extra=[("Proxy-Connection", "close")]), "Proxy-Connection"),
        (upgrade_request("/", extra=[("Upgrade", "websocket")]), "a repeated Upgrade"),
        (upgrade_request("/", extra=[("X", "caf\xe9")]), "a byte over 0x7E"),
        (upgrade_request("/", extra=[("X", "a\x01b")]), "a control byte"),
        (upgrade_request("/", extra=[("X Y", "z")]), "a name that is not a token"),
        (upgrade_request("/", extra=[("", "z")]), "an empty name"),
        (upgrade_request("/", canonical_headers("AAAA")), "a short key"),
        (upgrade_request("/", [*canonical_headers()[:4], ("Sec-WebSocket-Version", "8")]), "v8"),
        (upgrade_request("/")[:-1], "incomplete"),
        (upgrade_request("/").replace(b"Host:", b" Host:"), "a folded line"),
    ],
)
def test_the_scanner_leaves_the_rest_to_the_general_path(head: bytes, why: str) -> None:
    assert protocol._scan(head) is None, why
    compare([head])


def test_open_and_close_cost_one_write_each_and_no_protocol_switch() -> None:
    """The 101 leaves in one write, the answer to a close frame in one more; the
    WebSocket stays the transport's protocol from the start."""
    outcome = compare([upgrade_request("/"), client_frame(8, b"\x03\xe8")])
    assert outcome.fast == 1
    assert outcome.written.endswith(b"\r\n\r\n\x88\x02\x03\xe8")
    assert outcome.extra == {"protocol_changes": 0, "writes": 2}
    assert outcome.closed and not outcome.aborted


def test_limits_go_to_the_general_path() -> None:
    head = upgrade_request("/")
    assert protocol._scan(head, max_head=len(head)) is not None
    assert protocol._scan(head, max_head=len(head) - 1) is None
    assert protocol._scan(head, max_headers=5) is not None
    assert protocol._scan(head, max_headers=4) is None


# -- the oracle, on requests Hypothesis builds ------------------------------------------------

NAMES = (
    "Host", "Upgrade", "Connection", "Sec-WebSocket-Key", "Sec-WebSocket-Version",
    "Sec-WebSocket-Protocol", "Sec-WebSocket-Extensions", "Origin", "Content-Length",
    "Transfer-Encoding", "Expect", "Proxy-Connection", "X-Other", "Cookie",
)  # fmt: skip
VALUES = {
    "Host": ("example.com", "EXAMPLE.com:80", "a.example", "", "exa mple.com", "[::1]:8000"),
    "Upgrade": ("websocket", "WebSocket", "h2c", "websocket, h2c", "h2c,websocket", "", "web"),
    "Connection": ("Upgrade", "upgrade", "keep-alive, Upgrade", "close", "upgrade2", ",upgrade,"),
    "Sec-WebSocket-Key": (KEY, "AAAA", "not base64!!", KEY[:-1], KEY + "=", "x" * 22 + "==="),
    "Sec-WebSocket-Version": ("13", "8", "13, 8", "013", ""),
    "Sec-WebSocket-Protocol": ("chat", "superchat, chat", "x, y", "", " , chat", "chat,,x"),
    "Sec-WebSocket-Extensions": (
        "permessage-deflate",
        "permessage-deflate; client_max_window_bits",
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; bogus",
        "x-other",
        "",
    ),
    "Origin": (
        "http://example.com",
        "HTTP://Example.COM",
        ORIGIN_ALLOWED,
        "http://evil.example",
        "null",
        "https://example.com",
        "http://example.com/",
        "",
    ),
    "Content-Length": ("0", "5"),
    "Transfer-Encoding": ("chunked",),
    "Expect": ("100-continue",),
    "Proxy-Connection": ("keep-alive", "upgrade"),
    "X-Other": ("1", "a b", "\tx"),
    "Cookie": ("a=b; c=d",),
}
SPACES = ("", " ", "\t", "  ")


@st.composite
def requests(draw: st.DrawFn) -> tuple[list[bytes], tuple[int, int]]:
    """A request head (mostly canonical, then edited), maybe frames behind it, cut into reads."""
    headers = canonical_headers(random_key(draw(st.binary(min_size=16, max_size=16))))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(("add", "drop", "dup", "value", "case", "space", "move")))
        if op == "add" or not headers:
            name = draw(st.sampled_from(NAMES))
            headers.append((name, draw(st.sampled_from(VALUES[name]))))
            continue
        i = draw(st.integers(0, len(headers) - 1))
        name, value = headers[i]
        if op == "drop":
            del headers[i]
        elif op == "dup":
            headers.insert(draw(st.integers(0, len(headers))), (name, value))
        elif op == "value":
            headers[i] = (name, draw(st.sampled_from(VALUES.get(name, ("x",)))))
        elif op == "case":
            headers[i] = (draw(st.sampled_from((name.lower(), name.upper(), name))), value)
        elif op == "space":
            headers[i] = (
                name,
                draw(st.sampled_from(SPACES)) + value + draw(st.sampled_from(SPACES)),
            )
        else:
            headers.insert(draw(st.integers(0, len(headers) - 1)), headers.pop(i))
    path = draw(
        st.sampled_from(PATHS)
        | st.sampled_from(("/?a=b", "/chat?x", "/p/7?q=1&r", "/a b", "/%41", "/a#b", "*", "/\x7f"))
    )
    data = upgrade_request(
        path,
        headers,
        method=draw(st.sampled_from(("GET",) * 6 + ("POST", "get", "HEAD"))),
        version=draw(st.sampled_from(("HTTP/1.1",) * 6 + ("HTTP/1.0", "HTTP/2"))),
        eol=draw(st.sampled_from(("\r\n",) * 8 + ("\n",))),
    )
    data += draw(
        st.sampled_from(
            (b"", b"", b"", client_frame(1, b"hi"), client_frame(8, b"\x03\xe8"), b"\x81", b"GET")
        )
    )
    if draw(st.booleans()) and draw(st.booleans()):  # one byte changed, added or removed
        at = draw(st.integers(0, len(data)))
        byte = bytes([draw(st.integers(0, 255))])
        data = data[:at] + draw(st.sampled_from((byte, b""))) + data[at + 1 :]
    cuts = sorted(draw(st.lists(st.integers(1, max(1, len(data) - 1)), max_size=2)))
    reads = [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)], strict=True)]
    return reads, draw(st.sampled_from(LIMITS))


# XYRA_ORACLE_EXAMPLES (as for the frame oracle) scales the two oracle tests: 400 and 200.
EXAMPLES = int(os.environ.get("XYRA_ORACLE_EXAMPLES", "200"))


@settings(max_examples=2 * EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), st.booleans())
def test_fast_path_agrees_with_the_general_path(
    case: tuple[list[bytes], tuple[int, int]], eof: bool
) -> None:
    reads, limits = case
    compare(reads, limits, eof)


@settings(max_examples=EXAMPLES, deadline=None)
@given(st.binary(max_size=400), st.sampled_from(LIMITS))
def test_fast_path_agrees_on_random_bytes(data: bytes, limits: tuple[int, int]) -> None:
    compare([data], limits)
    compare([b"GET / HTTP/1.1\r\n" + data], limits)


def test_a_connection_is_one_websocket_of_256_bytes_and_no_extras() -> None:
    """Per connection, the fast path makes the WebSocket and nothing else that outlives the
    upgrade: no HTTP-phase protocol, no Extras for a plain route, not even after a message
    and a close handshake with no reason (the struct stays 256 bytes)."""
    assert WebSocket.__basicsize__ == 256
    loop = Loop()
    hub = Hub(loop, logging.getLogger("xyra.test"))
    ctx = ServerContext(hub, build_app(LIMITS[0], []).config())
    ctx.switch_protocol = True
    transport = Transport()
    ws = transport.protocol = ctx()
    ws.connection_made(transport)
    for data in (upgrade_request("/"), client_frame(1, b"hi"), client_frame(8, b"\x03\xe8")):
        view = ws.get_buffer(len(data))
        view[: len(data)] = data
        ws.buffer_updated(len(data))
        loop.run_ready()
    assert type(ws) is WebSocket and transport.protocol is ws and transport.protocol_changes == 0
    assert transport.closed and transport.written.endswith(b"\x81\x02hi\x88\x02\x03\xe8")
    kinds = {type(o).__name__ for o in gc.get_referents(ws)}
    assert not kinds & {"Extras", "WsExtras", "ServerProtocol"}, kinds
    ws.connection_lost(None)

"""The permessage-deflate engine (xyra._core.deflate) against Python's zlib.

Python's zlib stands in for the peer: what a Deflater produces must decode with
``zlib.decompressobj(-bits)`` once the 00 00 ff ff tail is put back, and what a
peer's ``zlib.compressobj(wbits=-bits)`` produces (tail removed) must decode with
an Inflater (RFC 7692 7.2.1 and 7.2.2).
"""

from __future__ import annotations

import random
import tracemalloc
import zlib

import pytest

deflate = pytest.importorskip("xyra._core.deflate")
Deflater = deflate.Deflater
Inflater = deflate.Inflater
DecompressionError = deflate.DecompressionError

TAIL = b"\x00\x00\xff\xff"
MiB = 1 << 20


def sample(n: int, seed: int = 0) -> bytes:
    """Compressible, not trivial: words with random numbers (about 1 MiB/s made)."""
    rnd = random.Random(seed)
    words = b"the quick brown fox jumps over a lazy dog while websocket frames fly".split()
    base = b" ".join(
        rnd.choice(words) + str(rnd.randrange(10**6)).encode() for _ in range(min(n, 2000))
    )
    # Longer samples: the same text at shifting offsets, still far from trivial.
    chunks = [base[i % 997 :] for i in range(n // max(len(base) - 997, 1) + 1)]
    return b"".join(chunks)[:n]


def messages(count: int = 40) -> list[bytes]:
    rnd = random.Random(1)
    return [sample(rnd.randrange(1, 3000), seed=i) for i in range(count)]


class Peer:
    """The other end, per RFC 7692, written with Python's zlib."""

    def __init__(self, bits: int = 15, no_context_takeover: bool = False) -> None:
        self.bits = bits
        self.no_context = no_context_takeover
        # Python's zlib, like zlib itself, refuses to deflate with 8 bits.
        self.encoder = zlib.compressobj(wbits=-max(bits, 9))
        self.decoder = zlib.decompressobj(-bits)

    def compress(self, data: bytes) -> bytes:
        if self.no_context:
            self.encoder = zlib.compressobj(wbits=-max(self.bits, 9))
        out = self.encoder.compress(data) + self.encoder.flush(zlib.Z_SYNC_FLUSH)
        assert out.endswith(TAIL)
        return out[:-4]

    def decompress(self, payload: bytes) -> bytes:
        if self.no_context:
            self.decoder = zlib.decompressobj(-self.bits)
        return self.decoder.decompress(payload + TAIL)


def inflate(inflater, payload: bytes, max_size: int | None = None) -> bytes:
    return inflater.decompress_bytes(payload, max_size)


# ---------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("bits", range(9, 16))
@pytest.mark.parametrize("no_context", [False, True])
def test_deflater_output_decodes_with_zlib(bits: int, no_context: bool) -> None:
    deflater = Deflater(bits, no_context)
    peer = Peer(bits, no_context)
    for message in messages():
        assert peer.decompress(deflater.compress_bytes(message)) == message


@pytest.mark.parametrize("bits", range(9, 16))
@pytest.mark.parametrize("no_context", [False, True])
def test_inflater_decodes_zlib_output(bits: int, no_context: bool) -> None:
    inflater = Inflater(bits, no_context)
    peer = Peer(bits, no_context)
    for message in messages():
        assert inflate(inflater, peer.compress(message)) == message


@pytest.mark.parametrize("level", [0, 1, 6, 9])
@pytest.mark.parametrize("mem_level", [1, 5, 9])
def test_levels_round_trip(level: int, mem_level: int) -> None:
    deflater = Deflater(15, False, level, mem_level)
    inflater = Inflater(15)
    for message in messages(10):
        assert inflate(inflater, deflater.compress_bytes(message)) == message


def test_context_takeover_shrinks_repeats() -> None:
    message = sample(2000)
    keep = Deflater(15, no_context_takeover=False)
    fresh = Deflater(15, no_context_takeover=True)
    first = keep.compress_bytes(message)
    second = keep.compress_bytes(message)
    assert len(second) < 40 < len(first)  # a few 258-byte matches into the window
    assert fresh.compress_bytes(message) == fresh.compress_bytes(message) == first
    # The second payload only decodes with the first message in the window.
    with pytest.raises(zlib.error):
        zlib.decompressobj(-15).decompress(second + TAIL)
    inflater = Inflater(15)
    assert inflate(inflater, first) == message
    assert inflate(inflater, second) == message


def test_no_context_inflater_serves_many_peers() -> None:
    # Peers without context takeover: one Inflater, messages interleaved.
    shared = Inflater(15, no_context_takeover=True)
    peers = [Peer(bits, no_context_takeover=True) for bits in (9, 12, 15)]
    for index, message in enumerate(messages(30)):
        assert inflate(shared, peers[index % 3].compress(message)) == message


def test_empty_message() -> None:
    deflater = Deflater()
    peer = Peer()
    assert deflater.compress_bytes(b"") == b"\x00"  # one empty stored block
    assert peer.decompress(b"\x00") == b""
    # Empty messages between others leave both windows in step.
    for message in [b"abc" * 50, b"", b"abc" * 50, b""]:
        assert peer.decompress(deflater.compress_bytes(message)) == message
    inflater = Inflater()
    for payload in (b"\x00", b"\x02\x00", b"", peer.compress(b"")):
        assert inflate(inflater, payload) == b""
    assert inflate(inflater, peer.compress(b"xyz" * 40)) == b"xyz" * 40


def test_large_message_both_ways() -> None:
    message = sample(16 * MiB, seed=7)
    payload = Deflater().compress_bytes(message)
    assert len(payload) < len(message) // 2
    assert zlib.decompressobj(-15).decompress(payload + TAIL) == message
    assert inflate(Inflater(), payload, 16 * MiB) == message
    assert inflate(Inflater(), Peer().compress(message), 16 * MiB) == message


def test_incompressible_message() -> None:
    message = random.Random(3).randbytes(200_000)
    deflater = Deflater()
    payload = deflater.compress_bytes(message)
    # Stored blocks: 5 bytes per 2048-symbol block at memLevel 5.
    assert len(message) < len(payload) < len(message) * 1.005
    assert inflate(Inflater(), payload, MiB) == message


def test_only_if_smaller_rolls_back_context() -> None:
    deflater = Deflater(15, no_context_takeover=False)
    peer = Peer()
    noise = random.Random(4).randbytes(500)
    text = sample(800)
    assert peer.decompress(deflater.compress_bytes(text, True)) == text
    # Not smaller: None, and the peer never sees it (it goes out uncompressed)...
    assert deflater.compress_bytes(noise, True) is None
    assert deflater.compress_bytes(b"", True) is None
    # ...so what follows must not refer to it.
    follow = noise[:200] + text
    assert peer.decompress(deflater.compress_bytes(follow, True)) == follow


def test_reset_and_release_keep_the_peer_in_step() -> None:
    # A fresh stream refers to nothing the peer lacks: a peer keeping its window
    # still decodes everything after reset() or release().
    deflater = Deflater()
    peer = Peer()
    message = sample(1000)
    dropped = deflater.compress_bytes(message)  # pretend it was not sent
    deflater.reset()
    payload = deflater.compress_bytes(message)
    assert len(payload) == len(dropped)  # no reference to the dropped message
    assert peer.decompress(payload) == message
    assert len(peer_payload := deflater.compress_bytes(message)) < 40
    assert peer.decompress(peer_payload) == message
    deflater.release()
    assert deflater.memory == 0
    assert peer.decompress(deflater.compress_bytes(message)) == message


def test_inflater_release_between_independent_messages() -> None:
    inflater = Inflater(15, no_context_takeover=True)
    peer = Peer(no_context_takeover=True)
    for message in messages(5):
        assert inflate(inflater, peer.compress(message)) == message
        inflater.release()
        assert inflater.memory == 0


# ---------------------------------------------------------------------------
# RFC 7692 section 7.2.3 examples


def test_rfc_examples() -> None:
    hello = bytes.fromhex("f248cdc9c90700")
    assert Deflater().compress_bytes(b"Hello") == hello  # 7.2.3.1
    inflater = Inflater()
    assert inflate(inflater, hello) == b"Hello"
    assert inflate(inflater, bytes.fromhex("f200110000")) == b"Hello"  # 7.2.3.2
    for example in (
        "0005 00faff 48656c6c6f 00",  # 7.2.3.3 stored block
        "f348cdc9c90700 00",  # 7.2.3.4 BFINAL set, then a 00 byte
        "f348cdc9c90700",  # 7.2.3.4 without the 00 byte: ends on the final block
        "f248050000 00ffff cac9c90700",  # 7.2.3.5 two blocks
    ):
        payload = bytes.fromhex(example.replace(" ", ""))
        assert inflate(Inflater(), payload) == b"Hello"


def test_final_block_keeps_window() -> None:
    # A peer that ends messages with BFINAL and still takes context over.
    first = b"Hello, world! " * 3
    encoder = zlib.compressobj(wbits=-15)
    final = encoder.compress(first) + encoder.flush(zlib.Z_FINISH)
    follower = zlib.compressobj(wbits=-15, zdict=first)
    second = follower.compress(first) + follower.flush(zlib.Z_SYNC_FLUSH)
    inflater = Inflater()
    assert inflate(inflater, final) == first
    assert inflate(inflater, second[:-4]) == first
    with pytest.raises(DecompressionError):  # it did refer back to the first
        inflate(Inflater(), second[:-4])


# ---------------------------------------------------------------------------
# Limits and corrupt input


def test_max_size_boundary() -> None:
    message = sample(100_000)
    payload = Deflater().compress_bytes(message)
    assert inflate(Inflater(), payload, len(message)) == message
    with pytest.raises(DecompressionError) as info:
        inflate(Inflater(), payload, len(message) - 1)
    assert info.value.code == 1009
    assert inflate(Inflater(), payload, None) == message


@pytest.fixture(scope="module")
def bomb() -> bytes:
    """1 GiB of zeros as one compressed message of about 1 MiB.

    Compressing 16 MiB of zeros with a full flush gives a byte-aligned piece that
    refers to nothing before it, so 64 copies of it are a valid stream: the test
    never holds the 1 GiB, and it does not spend seconds deflating it either.
    """
    encoder = zlib.compressobj(6, zlib.DEFLATED, -15)
    piece = encoder.compress(bytes(16 * MiB)) + encoder.flush(zlib.Z_FULL_FLUSH)
    assert piece.endswith(TAIL)
    payload = (piece * 64)[:-4]
    assert len(payload) < 1.1 * MiB
    assert len(zlib.decompressobj(-15).decompress(payload + TAIL, 64 * MiB)) == 64 * MiB
    return payload


def test_compression_bomb_stops_at_max_size(bomb: bytes) -> None:
    inflater = Inflater()
    tracemalloc.start()
    try:
        with pytest.raises(DecompressionError) as info:
            inflater.decompress_bytes(bomb, MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    # Output buffer capped at max_size + 1, plus zlib's state and window.
    assert peak < MiB + 128 * 1024
    assert deflate.zlib_memory() < 1 * MiB
    # The Inflater stays usable after refusing (it was reset).
    assert inflate(inflater, Deflater().compress_bytes(b"ok" * 100)) == b"ok" * 100


def test_compression_bomb_work_stops_at_max_size() -> None:
    """The inflater stops once the output passes max_size; it does not go on inflating
    (into a buffer it throws away, say) to the end of the input.

    The input is 2 MiB of zeros and then corrupt data: inflating past the first 2 MiB of
    output would reach the corrupt block and answer 1007. 1009 means the work stopped
    within those 2 MiB of output, however long the rest of the input is.
    """
    encoder = zlib.compressobj(6, zlib.DEFLATED, -15)
    head = encoder.compress(bytes(2 * MiB)) + encoder.flush(zlib.Z_FULL_FLUSH)
    corrupt = b"\xff" * 20  # a final block of the reserved type 11
    with pytest.raises(DecompressionError) as info:
        inflate(Inflater(), head + corrupt)
    assert info.value.code == 1007, "the poisoned input must be invalid as a whole"
    for max_size in (MiB, 2 * MiB - 1024):
        with pytest.raises(DecompressionError) as info:
            inflate(Inflater(), head + corrupt + bytes(1000), max_size)
        assert info.value.code == 1009, f"inflated past {max_size} bytes of output"


@pytest.mark.parametrize(
    "payload",
    [
        b"\xff" * 20,  # reserved block type 11
        bytes.fromhex("0005 00 0000 48656c6c6f".replace(" ", "")),  # LEN/NLEN mismatch
        bytes.fromhex("f248cdc9"),  # ends inside a block
        bytes.fromhex("f348cdc9c90700 ffff"),  # garbage after a final block
        random.Random(5).randbytes(64),
    ],
)
def test_corrupt_data_is_1007(payload: bytes) -> None:
    inflater = Inflater()
    with pytest.raises(DecompressionError) as info:
        inflate(inflater, payload)
    assert info.value.code == 1007
    assert inflate(inflater, Peer().compress(b"after")) == b"after"


# ---------------------------------------------------------------------------
# Window bits 8


def test_window_bits_8() -> None:
    # zlib refuses raw windowBits 8 for deflate; Deflater(8) uses only distance-1
    # matches, which an 8-bit window decodes whatever zlib's internals do.
    rnd = random.Random(8)
    block = rnd.randbytes(200)
    message = b"".join(block + b"a" * rnd.randrange(50) for _ in range(40))
    deflater = Deflater(8)
    assert deflater.window_bits == 8
    peer = Peer(8)
    inflater = Inflater(8)
    for _ in range(3):
        payload = deflater.compress_bytes(message)
        assert peer.decompress(payload) == message
        assert inflate(inflater, payload) == message
    assert len(deflater.compress_bytes(b"a" * 10_000)) < 100  # runs still compress


# ---------------------------------------------------------------------------
# Memory accounting


def test_memory_is_lazy_counted_and_released() -> None:
    base = deflate.zlib_memory()
    deflater, inflater = Deflater(), Inflater()
    assert deflater.memory == inflater.memory == 0
    inflate(inflater, deflater.compress_bytes(sample(5000)))
    # zlib's formula: 2**(15+2) + 2**(5+9) = 144 KiB, plus the ~6 KiB state.
    assert 144 * 1024 < deflater.memory < 160 * 1024
    # 32 KiB window plus the ~7 KiB inflate state.
    assert 32 * 1024 < inflater.memory < 48 * 1024
    assert deflate.zlib_memory() == base + deflater.memory + inflater.memory
    deflater.release()
    inflater.release()
    assert deflater.memory == inflater.memory == 0
    assert deflate.zlib_memory() == base
    # Released engines start again on the next message.
    assert inflate(inflater, deflater.compress_bytes(b"again" * 20)) == b"again" * 20
    del deflater, inflater
    assert deflate.zlib_memory() == base


@pytest.mark.parametrize(("bits", "mem_level", "limit"), [(15, 8, 270), (12, 5, 40), (9, 1, 12)])
def test_memory_follows_zlib_formula(bits: int, mem_level: int, limit: int) -> None:
    deflater = Deflater(bits, False, 6, mem_level)
    deflater.compress_bytes(b"x")
    formula = (1 << (bits + 2)) + (1 << (mem_level + 9))
    assert formula <= deflater.memory < limit * 1024


def test_invalid_arguments() -> None:
    for bad in (7, 16):
        with pytest.raises(ValueError):
            Deflater(bad)
        with pytest.raises(ValueError):
            Inflater(bad)
    with pytest.raises(ValueError):
        Deflater(15, False, 10)
    with pytest.raises(ValueError):
        Deflater(15, False, 6, 0)

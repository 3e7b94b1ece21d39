"""Realistic messages for the compression workloads, and the client's deflate helpers.

The messages are JSON as a Python server writes it (``json.dumps`` with its default
separators): a chat channel's presence update, the kind of state push a WebSocket
application fans out. Every message differs (ids, statuses, times and counters are
drawn from a seeded generator), so a compressor sees fresh data each time, yet keys
and vocabulary repeat as they do in real traffic: on its own, without any context
from earlier messages, a 1 KiB message deflates about 3x.
"""

from __future__ import annotations

import json
import random
import zlib

STATUSES = ("online", "online", "online", "away", "busy", "offline")
ROLES = ("member", "member", "member", "moderator", "admin")
NAMES = (
    "alice bob carol dave erin frank grace heidi ivan judy "
    "mallory niaj olivia peggy rupert sybil trent victor walter yvonne"
).split()
CHANNELS = ("general", "random", "engineering", "support", "announcements", "design")
# The tail permessage-deflate strips from every compressed message (RFC 7692 7.2.1).
TAIL = b"\x00\x00\xff\xff"


def _iso(seconds: int) -> str:
    minutes, s = divmod(seconds, 60)
    hours, m = divmod(minutes, 60)
    return f"2026-11-25T{hours % 24:02d}:{m:02d}:{s:02d}Z"


def presence_update(rng: random.Random, seq: int, members: int) -> bytes:
    """One message: a channel and ``members`` member records (about 150 bytes each)."""
    now = 9 * 3600 + seq
    names = (
        rng.sample(NAMES, members)
        if members <= len(NAMES)
        else [rng.choice(NAMES) for _ in range(members)]
    )
    doc = {
        "type": "presence_update",
        "seq": seq,
        "sent_at": _iso(now),
        "channel": {
            "id": f"C{rng.randrange(100_000):05d}",
            "name": rng.choice(CHANNELS),
            "topic": "weekly planning and release status",
            "member_count": rng.randrange(8, 400),
        },
        "members": [
            {
                "user_id": f"U{rng.randrange(100_000):05d}",
                "display_name": name,
                "status": rng.choice(STATUSES),
                "role": rng.choice(ROLES),
                "typing": rng.random() < 0.1,
                "last_seen": _iso(now - rng.randrange(3600)),
                "unread": rng.randrange(50),
            }
            for name in names
        ],
    }
    return json.dumps(doc).encode()


def json_messages(count: int, size: int = 1124, seed: int = 7692) -> list[bytes]:
    """``count`` different messages of about ``size`` bytes each (1124: 6 members)."""
    members = max(1, round((size - 200) / 154))
    rng = random.Random(seed)
    return [presence_update(rng, seq, members) for seq in range(count)]


def deflate_message(message: bytes) -> bytes:
    """``message`` as one permessage-deflate payload, compressed on its own.

    A client may always compress a message without reference to earlier ones, so
    these pre-built payloads are valid on any connection, in any order.
    """
    c = zlib.compressobj(zlib.Z_DEFAULT_COMPRESSION, zlib.DEFLATED, -15)
    data = c.compress(message) + c.flush(zlib.Z_SYNC_FLUSH)
    assert data.endswith(TAIL)
    return data[: -len(TAIL)]


def inflate_message(payload: bytes) -> bytes:
    """A permessage-deflate payload (a whole message, no context) decompressed."""
    return zlib.decompressobj(-15).decompress(payload + TAIL)


def deflated_size(message: bytes) -> int:
    """The size of ``message`` deflated on its own (as a shared compressor sends it)."""
    return len(deflate_message(message))

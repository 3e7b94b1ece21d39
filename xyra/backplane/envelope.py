"""The Redis envelope: how a publish travels on a Redis channel.

Channel: ``<prefix><topic>`` (prefix ``xyra:`` by default), one channel per topic.

Payload, either

* **bare**: any bytes that do not start with ``MAGIC``. Subscribers get it as TEXT if
  it is valid UTF-8, else as BINARY. This is what ``redis-cli PUBLISH xyra:chat hi``
  or another service sends; or
* **an envelope** (what Xyra's workers send)::

      MAGIC (4 bytes: 00 58 59 01) | origin (8 bytes) | message+
      message = flags (1 byte) | length (4 bytes, big-endian) | payload

  ``origin`` names the publishing worker (it drops its own echoes); flags hold the
  opcode in the low 4 bits (1 TEXT, 2 BINARY) and 0x80 for "compress for clients that
  negotiated permessage-deflate". Several messages published on one topic in one event
  loop iteration share one envelope, in publish order.
"""

from __future__ import annotations

import struct
from typing import Any

MAGIC = b"\x00XY\x01"
ORIGIN_SIZE = 8
HEADER = len(MAGIC) + ORIGIN_SIZE
COMPRESS = 0x80
OP_TEXT = 1
OP_BINARY = 2
DEFAULT_PREFIX = "xyra:"
#: The origin of envelopes built by ``publish`` (a service that is no worker).
EXTERNAL = bytes(ORIGIN_SIZE)

_item = struct.Struct(">BI")


def item(flags: int, payload: bytes) -> bytes:
    """One message of an envelope."""
    return _item.pack(flags, len(payload)) + payload


def encode(origin: bytes, items: list[bytes]) -> bytes:
    """An envelope from ``item(...)`` parts."""
    return MAGIC + origin + b"".join(items)


def decode(payload: bytes) -> list[tuple[int, bytes]]:
    """The (flags, payload) messages of an envelope (the header is checked by the caller).

    Raises ValueError on a truncated envelope.
    """
    out = []
    pos, end = HEADER, len(payload)
    unpack = _item.unpack_from
    while pos < end:
        if end - pos < 5:
            raise ValueError("truncated envelope")
        flags, n = unpack(payload, pos)
        pos += 5
        if pos + n > end:
            raise ValueError("truncated envelope")
        out.append((flags, payload[pos : pos + n]))
        pos += n
    return out


def publish(
    redis_client: Any,
    topic: str,
    message: str | bytes,
    *,
    compress: bool = False,
    prefix: str = DEFAULT_PREFIX,
) -> Any:
    """Publish ``message`` to the Xyra subscribers of ``topic`` from any program.

    ``redis_client`` is a redis-py client (``redis.Redis`` or ``redis.asyncio.Redis``):
    the result is what its ``publish`` returns (the number of Xyra workers that got it;
    await it with the asyncio client). ``str`` arrives as TEXT and bytes as BINARY, as
    with ``app.publish``. A plain string goes as a bare payload, so the message is
    readable in ``redis-cli MONITOR``; bytes (and the rare string that starts like an
    envelope) go in an envelope, which keeps the opcode exact.
    """
    channel = prefix + topic
    if isinstance(message, str):
        data = message.encode("utf-8")
        if not compress and not data.startswith(MAGIC):
            return redis_client.publish(channel, data)
        flags = OP_TEXT
    else:
        data = bytes(message)
        flags = OP_BINARY
    if compress:
        flags |= COMPRESS
    return redis_client.publish(channel, encode(EXTERNAL, [item(flags, data)]))

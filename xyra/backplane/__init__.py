"""Backplanes: pub/sub between the workers of one machine and across machines.

``--workers N`` alone links the workers of one machine with the embedded relay
(``relay.RelayBackplane``); ``--backplane redis://...`` links every worker of every
machine through Redis pub/sub (``redis.RedisBackplane``, which needs hiredis). Both
implement ``Backplane`` (see ``base``). docs/scaling.md tells the guarantees.

``publish(redis_client, topic, message)`` sends to Xyra's subscribers from any program
that has a redis-py client (a Django view, a Celery task).
"""

from __future__ import annotations

from typing import Any

from xyra.backplane.base import QUEUE_BYTES, QUEUE_MESSAGES, Backplane, BackplaneEvent
from xyra.backplane.envelope import DEFAULT_PREFIX, publish

__all__ = [
    "DEFAULT_PREFIX",
    "QUEUE_BYTES",
    "QUEUE_MESSAGES",
    "Backplane",
    "BackplaneEvent",
    "create",
    "publish",
]


def create(spec: str | Backplane, **options: Any) -> Backplane:
    """A backplane from a URL (``redis://``, ``rediss://``) or an instance (returned)."""
    if isinstance(spec, Backplane):
        return spec
    if not isinstance(spec, str):
        raise TypeError(f"a backplane is a URL or a Backplane, not {type(spec).__name__}")
    scheme = spec.partition("://")[0].lower()
    if scheme in ("redis", "rediss"):
        from xyra.backplane.redis import RedisBackplane

        return RedisBackplane(spec, **options)
    raise ValueError(f"unknown backplane {spec!r}: use redis://host:port or rediss://host:port")

"""Live stats: the snapshot ``App.stats()`` returns, built from the counters kept in C.

The core counts in a C struct per server (``xyra/_core/stats.pxd``; one add per event,
no Python object). This module reads them (``Hub.counters()``, ``Hub.top_topics()``)
and builds one plain dict with a stable schema, documented key by key in
docs/observability.md. ``SCHEMA`` changes when a key changes meaning or goes away;
new keys may be added without changing it.

Every value is a JSON type (dict keys are strings), so a snapshot crosses a process
boundary unchanged: with workers, ``App.cluster_stats()`` gathers one per worker.
"""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from xyra._core.endpoint import LAG_BUCKETS, Outbox
from xyra._version import __version__

if TYPE_CHECKING:
    from xyra._core.connection import RouteConfig
    from xyra.server import Server

#: The version of the snapshot's schema (the ``schema`` key).
SCHEMA = 1
#: How many topics a snapshot lists by default (by subscribers, and by deliveries).
TOP_TOPICS = 10


def _zero() -> dict[str, Any]:
    """The counters of a server that counted nothing (the schema without a server)."""
    return Outbox(lambda callback: None, logging.getLogger("xyra")).counters()


def _add(into: dict[str, Any], other: dict[str, Any]) -> None:
    """Add ``other``'s counters into ``into`` (same shape; missing keys count as 0)."""
    for key, value in other.items():
        mine = into.get(key)
        if isinstance(value, dict):
            if mine is None:
                mine = into[key] = {}
            _add(mine, value)
        elif isinstance(value, list):
            if mine is None:
                into[key] = list(value)
            elif key == "recent":
                mine.extend(value)
            else:
                for i, v in enumerate(value):
                    mine[i] += v
        elif key == "max":
            into[key] = max(mine or 0, value)
        else:
            into[key] = (mine or 0) + value


def percentile(sorted_values: list[float], q: float) -> float:
    """The nearest-rank ``q`` quantile (0 < q <= 1) of sorted values; 0.0 if there are none."""
    if not sorted_values:
        return 0.0
    rank = max(1, -(-len(sorted_values) * q // 1))  # ceil(n * q), at least 1
    return sorted_values[int(rank) - 1]


def _routes(servers: Iterable[Server]) -> list[RouteConfig]:
    seen: dict[int, RouteConfig] = {}
    for server in servers:
        for route in [*server.context.routes.values(), *server.context.patterns]:
            seen.setdefault(id(route), route)
    return list(seen.values())


def _lag(raw: dict[str, Any]) -> dict[str, Any]:
    from xyra.server import LAG_INTERVAL

    recent = sorted(raw["recent"])
    buckets: dict[str, int] = {}
    total = 0
    for bound, count in zip((*LAG_BUCKETS, None), raw["counts"], strict=True):
        total += count
        buckets["+Inf" if bound is None else repr(float(bound))] = total
    return {
        "interval": LAG_INTERVAL,
        "count": raw["count"],
        "sum": raw["sum"],
        "max": raw["max"],
        "buckets": buckets,
        "window": len(recent),
        "p50": percentile(recent, 0.5),
        "p99": percentile(recent, 0.99),
    }


def _top(per_server: list[dict[str, tuple[int, int, int]]], n: int) -> list[dict[str, Any]]:
    merged: dict[str, list[int]] = {}
    for rows in per_server:
        for name, row in rows.items():
            acc = merged.setdefault(name, [0, 0, 0])
            for i in range(3):
                acc[i] += row[i]
    if len(per_server) > 1:  # one server chose its top n already
        chosen = sorted(merged, key=lambda t: merged[t][0], reverse=True)[:n]
        chosen += sorted(merged, key=lambda t: merged[t][2], reverse=True)[:n]
        merged = {name: merged[name] for name in chosen}
    ordered = sorted(merged.items(), key=lambda item: (-item[1][0], -item[1][2], item[0]))
    return [
        {"topic": name, "subscribers": s, "publishes": p, "deliveries": d}
        for name, (s, p, d) in ordered
    ]


def snapshot(servers: list[Server], worker: int, top_topics: int = TOP_TOPICS) -> dict[str, Any]:
    """The live stats of ``servers`` (one process's), summed: the ``App.stats()`` schema."""
    raw = _zero()
    for server in servers:
        _add(raw, server.hub.counters())
    pubsub = raw["pubsub"]
    pubsub["topics"] = sum(server.hub.topic_count() for server in servers)
    pubsub["top_topics"] = _top([s.hub.top_topics(top_topics) for s in servers], top_topics)
    now = time.time()
    started = min((s.started_at for s in servers if s.started_at), default=0.0)
    return {
        "schema": SCHEMA,
        "worker": worker,
        "pid": os.getpid(),
        "version": __version__,
        "time": now,
        "started": started,
        "uptime_seconds": now - started if started else 0.0,
        "connections": {
            "open": sum(len(s.hub.sockets) for s in servers),
            "handshaking": sum(len(s.hub.handshaking) for s in servers),
            "routes": {
                route.path: {"open": route.connections, "accepted": route.accepted}
                for route in _routes(servers)
            },
        },
        "handshakes": raw["handshakes"],
        "closes": raw["closes"],
        "messages": raw["messages"],
        "bytes": raw["bytes"],
        "backpressure": raw["backpressure"],
        "compression": raw["compression"],
        "pubsub": pubsub,
        "rate_limit": raw["rate_limit"],
        "loop_lag": _lag(raw["loop_lag"]),
    }

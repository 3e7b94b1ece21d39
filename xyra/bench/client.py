"""The load process: drives one workload against one server and prints the result.

Started by the runner as ``python -m xyra.bench.client SPEC_JSON`` pinned to the
client core; prints one JSON object on stdout. It measures the window itself
(messages, wall time, its own CPU time and the server's from /proc), so nothing
outside the two pinned processes sits between the marks.
"""

from __future__ import annotations

import asyncio
import json
import math
import os
import re
import resource
import shutil
import subprocess
import sys
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from xyra.bench import payloads
from xyra.bench import workloads as wl
from xyra.bench._drivers.loadgen import (
    ECHO,
    HANDSHAKE_KEY,
    IDLE,
    PUBLISHER,
    SUBSCRIBER,
    Connection,
    Stats,
    TopicPacer,
    masked_frame,
)
from xyra.bench._drivers.sockload import ConnectDriver, EchoDriver, PubSubDriver
from xyra.bench.procs import cpu_seconds, raise_nofile, rss_bytes

HOST = "127.0.0.1"
# How many handshakes may be in progress at once while opening connections: more
# overflows small accept backlogs, and refused SYNs cost whole seconds.
OPEN_CONCURRENCY = 128
MASK_KEY = os.urandom(4)
# A topic with messages in flight and no delivery for this long has lost them.
STALL_PERIOD = 2.0
# How long closing connections may take before the rest are dropped.
CLOSE_WAIT = 5.0
# The longest one connect-upgrade-close cycle may take.
CYCLE_TIMEOUT = 5.0
# How many different JSON messages a publisher sends in turn ("json" payloads).
JSON_VARIANTS = 64
# Quiet time before reading the server's RSS (Xyra frees an idle connection's input
# buffer after 0.5 s).
MEMORY_SETTLE = 2.0


@dataclass
class Spec:
    """What the runner asks for (see ``xyra.bench.runner.client_spec``)."""

    workload: dict[str, Any]
    port: int
    server_pid: int
    raw: bool  # no HTTP upgrade: the raw TCP echo server
    warmup: float
    duration: float
    timeout: float  # for each setup phase (opening, draining, closing)


@dataclass
class Mark:
    """One end of the measured window."""

    wall: float
    count: int
    server_cpu: float
    client_cpu: float

    @classmethod
    def now(cls, count: int, server_pid: int) -> Mark:
        usage = resource.getrusage(resource.RUSAGE_SELF)
        return cls(
            time.perf_counter(), count, cpu_seconds(server_pid), usage.ru_utime + usage.ru_stime
        )


def window_result(a: Mark, b: Mark) -> dict[str, Any]:
    """The figures of a measured window [a, b]."""
    wall = b.wall - a.wall
    count = b.count - a.count
    server_cpu = b.server_cpu - a.server_cpu
    return {
        "value": count / wall,
        "count": count,
        "seconds": wall,
        "server_cpu": server_cpu / wall,
        "per_server_cpu_s": count / server_cpu if server_cpu > 0 else None,
        "client_cpu": (b.client_cpu - a.client_cpu) / wall,
    }


async def wait_until(cond: Callable[[], bool], timeout: float, step: float = 0.01) -> bool:
    """Poll ``cond`` until it holds or ``timeout`` passes; whether it held."""
    deadline = time.monotonic() + timeout
    while not cond():
        if time.monotonic() > deadline:
            return False
        await asyncio.sleep(step)
    return True


async def wait_quiet(
    cond: Callable[[], bool], progress: Callable[[], int], timeout: float, quiet: float = 1.0
) -> bool:
    """Wait until ``cond`` holds, or ``progress`` stops moving for ``quiet`` seconds."""
    deadline = time.monotonic() + timeout
    last, since = progress(), time.monotonic()
    while not cond():
        now = time.monotonic()
        if now > deadline:
            return False
        if progress() != last:
            last, since = progress(), now
        elif now - since > quiet:
            return False
        await asyncio.sleep(0.01)
    return True


async def open_many(
    port: int, factories: list[Callable[[], Connection]], timeout: float, *, must_all: bool = True
) -> list[Connection]:
    """Open one connection per factory to ``port``, ``OPEN_CONCURRENCY`` at a time."""
    loop = asyncio.get_running_loop()
    gate = asyncio.Semaphore(OPEN_CONCURRENCY)
    opened: list[Connection | None] = [None] * len(factories)
    errors: list[str] = []

    async def one(i: int, factory: Callable[[], Connection]) -> None:
        async with gate:
            try:
                _, conn = await asyncio.wait_for(
                    loop.create_connection(factory, HOST, port), timeout
                )
                await asyncio.wait_for(asyncio.shield(conn.opened), timeout)
                opened[i] = conn
            except (OSError, asyncio.TimeoutError) as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    await asyncio.gather(*(one(i, f) for i, f in enumerate(factories)))
    conns = [c for c in opened if c is not None]
    if errors and must_all:
        for c in conns:
            c.abort()
        raise ConnectionError(
            f"{len(errors)} of {len(factories)} connections failed, first: {errors[0]}"
        )
    return conns


async def close_all(conns: list[Connection], timeout: float) -> None:
    """Close handshake everywhere, then drop whatever has not gone within ``timeout``."""
    for c in conns:
        c.close()
    await wait_until(lambda: all(c.lost for c in conns), min(timeout, CLOSE_WAIT))
    for c in conns:
        c.abort()


def payload_frame(w: wl.Workload) -> bytes:
    """The one pre-masked frame a workload's connections send, over and over."""
    payload = (b"\xa5" if w.binary else b"x") * w.size
    return masked_frame(payload, 2 if w.binary else 1, MASK_KEY)


def json_frames(messages: list[bytes], compress: bool) -> list[bytes]:
    """Pre-masked TEXT frames of ``messages``, each deflated on its own with RSV1 set
    if ``compress``."""
    frames = []
    for m in messages:
        if compress:
            frame = masked_frame(payloads.deflate_message(m), 1, MASK_KEY)
            frames.append(bytes([frame[0] | 0x40]) + frame[1:])
        else:
            frames.append(masked_frame(m, 1, MASK_KEY))
    return frames


def mean(total: float, count: int) -> float | None:
    return total / count if count else None


def upgrade_request(path: bytes, extensions: bytes | None = None) -> bytes:
    """The load client's WebSocket upgrade request for ``path`` on ``HOST``."""
    return (
        b"GET "
        + path
        + b" HTTP/1.1\r\nHost: "
        + HOST.encode()
        + b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "
        + HANDSHAKE_KEY
        + b"\r\nSec-WebSocket-Version: 13\r\n"
        + (b"Sec-WebSocket-Extensions: " + extensions + b"\r\n" if extensions else b"")
        + b"\r\n"
    )


async def upgrade(
    port: int, path: str, extensions: bytes | None
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A plain asyncio WebSocket client handshake: reader, writer and the response head."""
    reader, writer = await asyncio.open_connection(HOST, port)
    writer.write(upgrade_request(path.encode(), extensions))
    head = await reader.readuntil(b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        writer.close()
        raise ConnectionError(f"upgrade refused: {head.splitlines()[0]!r}")
    return reader, writer, head


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    """One unmasked server frame: its first byte (FIN, RSV, opcode) and its payload."""
    b0, b1 = await reader.readexactly(2)
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    if b1 & 0x80:
        raise ValueError("masked frame from the server")
    return b0, await reader.readexactly(n)


async def check_inflate(port: int, route: str, message: bytes, timeout: float) -> dict[str, Any]:
    """Publish ``message`` to a subscriber that offers permessage-deflate, inflate what
    arrives and compare: the proof that the counted frames carry the real data.

    On its own topic, before the measurement (a Python client, slow but exact).
    """
    path = f"{route}?topic=inflate-check"
    result: dict[str, Any] = {"negotiated": False, "rsv1": False, "inflated": False}
    sub_r, sub_w, head = await upgrade(port, path, wl.OFFER)
    try:
        _, pub_w, _ = await upgrade(port, path, None)
    except BaseException:
        sub_w.close()
        raise
    try:
        for line in head.lower().split(b"\r\n"):
            if line.startswith(b"sec-websocket-extensions:") and b"permessage-deflate" in line:
                result["negotiated"] = True
        frame = masked_frame(message, 1, MASK_KEY)
        deadline = time.monotonic() + timeout
        got: tuple[int, bytes] | None = None
        while got is None and time.monotonic() < deadline:
            # Resent until it arrives: the server may subscribe after the 101.
            pub_w.write(frame)
            try:
                got = await asyncio.wait_for(read_frame(sub_r), 0.5)
            except asyncio.TimeoutError:
                continue
        if got is None:
            raise TimeoutError("the inflate check message never arrived")
        first, payload = got
        result["rsv1"] = bool(first & 0x40)
        result["wire_bytes"] = len(payload)
        result["message_bytes"] = len(message)
        data = payloads.inflate_message(payload) if first & 0x40 else payload
        result["inflated"] = data == message
    finally:
        for w in (sub_w, pub_w):
            w.close()
    return result


def drive_window(
    driver: EchoDriver | ConnectDriver, count: Callable[[], int], spec: Spec
) -> tuple[Mark, Mark]:
    """Run ``driver`` through the warm-up, then the measured window: its two marks."""
    driver.run(spec.warmup)
    a = Mark.now(count(), spec.server_pid)
    driver.run(spec.duration)
    return a, Mark.now(count(), spec.server_pid)


def drive_until(driver: EchoDriver, cond: Callable[[], bool], timeout: float) -> bool:
    """Serve ``driver`` until ``cond`` holds, or no reply came for a second, or
    ``timeout`` passed; whether it held."""
    deadline = time.monotonic() + timeout
    last, since = driver.messages, time.monotonic()
    while not cond():
        now = time.monotonic()
        if now > deadline or now - since > 1.0:
            return False
        driver.run(0.01)
        if driver.messages != last:
            last, since = driver.messages, time.monotonic()
    return True


def measure(
    driver: EchoDriver,
    spec: Spec,
    drained: Callable[[], bool],
    checks: Callable[[], dict[str, Any]],
) -> dict[str, Any]:
    """Start ``driver``, measure its window, stop it and let it drain until ``drained``:
    the result, with the workload's ``checks`` (read after the drain) and the counters
    every socket driver keeps."""
    driver.start()
    a, b = drive_window(driver, lambda: driver.messages, spec)
    driver.stop()
    done = drive_until(driver, drained, spec.timeout)
    result = window_result(a, b)
    result["checks"] = checks() | {
        "mismatched": driver.mismatched,
        "lost": driver.lost,
        "first_error": driver.first_error,
        "drained": done,
        "reads": driver.reads,
    }
    return result


async def run_echo(spec: Spec, w: wl.Workload) -> dict[str, Any]:
    # The raw echo returns the client's own frames: masked, same length and opcode.
    driver = EchoDriver(
        spec.port,
        w.connections,
        payload_frame(w),
        w.window,
        request=None if spec.raw else upgrade_request((w.route or "/").encode()),
        expect_length=w.size,
        expect_opcode=2 if w.binary else 1,
        host=HOST,
        timeout=spec.timeout,
    )
    try:
        return measure(
            driver,
            spec,
            lambda: driver.in_flight == 0,
            lambda: {"sent": driver.sent, "received": driver.received},
        )
    finally:
        driver.close()


def all_received(members: list[Connection]) -> bool:
    """Whether every connection in ``members`` has received a message."""
    return all(s.received for s in members)


async def all_subscribed(
    topics: list[TopicPacer],
    publishers: list[Connection],
    subs: list[list[Connection]],
    stats: Stats,
    timeout: float,
) -> bool:
    """Publish probes until every subscriber has received one, then wait for quiet.

    A handshake can complete before a server has run the subscribe, so this is
    the barrier that makes "every subscriber gets every message" checkable.
    """
    deadline = time.monotonic() + timeout
    for pub, members in zip(publishers, subs, strict=True):
        while not all_received(members):
            if time.monotonic() > deadline:
                return False
            pub.send_messages(1)
            await wait_until(partial(all_received, members), 0.2)
    # Let the last probes land before the counters start over.
    last = -1
    while stats.messages != last and time.monotonic() < deadline:
        last = stats.messages
        await asyncio.sleep(0.1)
    return True


def topic_paths(w: wl.Workload) -> list[bytes]:
    """One path per topic: the adapters subscribe by the query string."""
    route = (w.route or "/pubsub").encode()
    return [route + b"?topic=t%d" % i for i in range(w.topics)]


def reached(driver: PubSubDriver, topic: int) -> bool:
    """Whether every live subscriber of ``topic`` has received a message."""
    return driver.unreached(topic) == 0


def subscribe_barrier(driver: PubSubDriver, topics: int, timeout: float) -> bool:
    """``all_subscribed`` for the socket driver: probes until every subscriber has
    received one, then quiet."""
    deadline = time.monotonic() + timeout
    for topic in range(topics):
        while driver.unreached(topic):
            if time.monotonic() > deadline:
                return False
            driver.probe(topic)
            drive_until(driver, partial(reached, driver, topic), 0.2)
    # Let the last probes land before the counters start over.
    last = -1
    while driver.messages != last and time.monotonic() < deadline:
        last = driver.messages
        driver.run(0.1)
    return True


async def run_pubsub_sockets(spec: Spec, w: wl.Workload) -> dict[str, Any]:
    """Plain pub/sub on the socket driver: one message, pre-masked, no compression."""
    driver = PubSubDriver(
        spec.port,
        [upgrade_request(path) for path in topic_paths(w)],
        w.subscribers,
        payload_frame(w),
        w.window,
        expect_length=w.size,
        expect_opcode=2 if w.binary else 1,
        stall_period=STALL_PERIOD,
        host=HOST,
        timeout=spec.timeout,
    )
    try:
        if not subscribe_barrier(driver, w.topics, spec.timeout):
            raise TimeoutError("subscribers did not all receive a probe message")
        driver.reset()
        return measure(
            driver,
            spec,
            lambda: driver.delivered >= driver.expected,
            lambda: {
                "subscribers": w.topics * w.subscribers,
                "published": driver.published,
                "delivered": driver.delivered,
                "expected": driver.expected,
                "stalls": driver.stalls,
            },
        )
    finally:
        driver.close()


async def run_pubsub(spec: Spec, w: wl.Workload) -> dict[str, Any]:
    if w.payload != "json" and not w.deflate and w.client != "loop":
        return await run_pubsub_sockets(spec, w)
    loop = asyncio.get_running_loop()
    opcode = 2 if w.binary else 1
    probe_stats = Stats()
    topics = [TopicPacer(w.subscribers, w.window) for _ in range(w.topics)]
    paths = topic_paths(w)
    messages: list[bytes] = []
    frame: bytes | None = None
    frames: list[bytes] | None = None
    inflate: dict[str, Any] | None = None
    if w.payload == "json":
        # Different messages in turn, each sent plain: the server compresses them.
        messages = payloads.json_messages(JSON_VARIANTS, w.size)
        frames = json_frames(messages, compress=False)
        if w.deflate:
            inflate = await check_inflate(
                spec.port, w.route or "/pubsub", messages[0], spec.timeout
            )
    else:
        frame = payload_frame(w)
    expect_length = -1 if messages else w.size
    extensions = wl.OFFER if w.deflate else None

    def subscriber(i: int) -> Callable[[], Connection]:
        return lambda: Connection(
            loop,
            probe_stats,
            path=paths[i],
            role=SUBSCRIBER,
            topic=topics[i],
            mask_key=MASK_KEY,
            expect_length=expect_length,
            expect_opcode=opcode,
            extensions=extensions,
        )

    def publisher(i: int) -> Callable[[], Connection]:
        return lambda: Connection(
            loop,
            probe_stats,
            path=paths[i],
            role=PUBLISHER,
            frame=frame,
            frames=frames,
            window=w.window,
            mask_key=MASK_KEY,
        )

    subs = [
        await open_many(spec.port, [subscriber(i)] * w.subscribers, spec.timeout)
        for i in range(w.topics)
    ]
    pubs = await open_many(spec.port, [publisher(i) for i in range(w.topics)], spec.timeout)
    everyone = [c for group in subs for c in group] + pubs
    try:
        if not await all_subscribed(topics, pubs, subs, probe_stats, spec.timeout):
            raise TimeoutError("subscribers did not all receive a probe message")
        # Count from zero: a fresh Stats and fresh TopicPacers, same connections.
        stats = Stats()
        topics = [TopicPacer(w.subscribers, w.window) for _ in range(w.topics)]
        for i, (pub, group) in enumerate(zip(pubs, subs, strict=True)):
            topics[i].set_publisher(pub)
            for s in group:
                s.rebind(stats, topics[i])
        for t in topics:
            t.start()

        async def unstick() -> None:
            # Only a topic that got nothing for a whole period counts as stalled: a
            # slow server can leave one topic waiting while it works through others.
            while True:
                await asyncio.sleep(STALL_PERIOD)
                for t in topics:
                    t.unstick()

        watchdog = asyncio.create_task(unstick())
        await asyncio.sleep(spec.warmup)
        a = Mark.now(stats.messages, spec.server_pid)
        await asyncio.sleep(spec.duration)
        b = Mark.now(stats.messages, spec.server_pid)
        for t in topics:
            t.stop()
        watchdog.cancel()
        drained = await wait_quiet(
            lambda: all(t.delivered >= t.published * t.subscribers for t in topics),
            lambda: stats.messages,
            spec.timeout,
        )
        result = window_result(a, b)
        result["checks"] = {
            "subscribers": w.topics * w.subscribers,
            "published": sum(t.published for t in topics),
            "delivered": sum(t.delivered for t in topics),
            "expected": sum(t.published * t.subscribers for t in topics),
            "stalls": sum(t.stalls for t in topics),
            "mismatched": sum(c.parser.mismatched for c in everyone),
            "lost": stats.lost + probe_stats.lost,
            "drained": drained,
            "reads": stats.reads,
        }
        if messages:
            result["checks"].update(compression_checks(subs, messages, inflate))
        return result
    finally:
        await close_all(everyone, spec.timeout)


def compression_checks(
    groups: list[list[Connection]], messages: list[bytes], inflate: dict[str, Any] | None
) -> dict[str, Any]:
    """What the receivers of "json" messages saw: how many negotiated permessage-deflate,
    how many messages arrived compressed, their mean size on the wire (every message
    received, probes included) against the mean size of the messages sent."""
    receivers = [c for group in groups for c in group]
    received = sum(c.parser.messages for c in receivers)
    checks: dict[str, Any] = {
        "negotiated": sum(c.deflate for c in receivers),
        "received_messages": received,
        "compressed": sum(c.parser.compressed for c in receivers),
        "wire_bytes": mean(sum(c.parser.payload_bytes for c in receivers), received),
        "message_bytes": mean(sum(len(m) for m in messages), len(messages)),
    }
    if inflate is not None:
        checks["inflate_check"] = inflate
    return checks


async def run_connect(spec: Spec, w: wl.Workload) -> dict[str, Any]:
    driver = ConnectDriver(
        spec.port,
        w.connections,
        upgrade_request(b"/"),
        masked_frame(b"\x03\xe8", 8, MASK_KEY),
        host=HOST,
        timeout=CYCLE_TIMEOUT,
    )
    try:
        a, b = drive_window(driver, lambda: driver.completed, spec)
    finally:
        driver.drain(spec.timeout)
    result = window_result(a, b)
    result["checks"] = {
        "opened": driver.opened,
        "completed": driver.completed,
        "errors": driver.errors,
        "first_error": driver.first_error,
    }
    return result


def memory_result(
    w: wl.Workload, conns: list[Connection], before: int, after: int, **checks: Any
) -> dict[str, Any]:
    """A memory sample: the server's VmRSS growth per connection opened (no rate, no CPU)."""
    return {
        "value": (after - before) / max(1, len(conns)),
        "count": len(conns),
        "seconds": None,
        "server_cpu": None,
        "per_server_cpu_s": None,
        "client_cpu": None,
        "checks": {
            "requested": w.connections,
            "opened": len(conns),
            **checks,
            "rss_before": before,
            "rss_after": after,
        },
    }


async def run_idle(spec: Spec, w: wl.Workload) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    stats = Stats()

    # Raw echo connections are plain TCP connections, open once connected.
    path = None if spec.raw else b"/"

    def factory() -> Connection:
        return Connection(loop, stats, path=path, role=IDLE, mask_key=MASK_KEY)

    # A few connections first, so one-time costs (imports, first buffers) land in
    # the baseline and not in the per-connection figure.
    warm = await open_many(spec.port, [factory] * 100, spec.timeout)
    await asyncio.sleep(0.5)
    before = rss_bytes(spec.server_pid)
    conns = await open_many(spec.port, [factory] * w.connections, spec.timeout * 4, must_all=False)
    await asyncio.sleep(max(1.0, spec.warmup))
    after = rss_bytes(spec.server_pid)
    result = memory_result(w, conns, before, after, lost=stats.lost)
    await close_all(warm + conns, spec.timeout)
    return result


async def run_memory(spec: Spec, w: wl.Workload) -> dict[str, Any]:
    """Server memory per connection once every connection has exchanged messages.

    Each connection sends ``w.messages`` different JSON messages (compressed, each on
    its own, when the workload offers permessage-deflate) and receives them back; the
    figure is the server's VmRSS growth over ``w.connections`` such connections.
    """
    loop = asyncio.get_running_loop()
    stats = Stats()
    messages = payloads.json_messages(w.messages, w.size)
    frames = json_frames(messages, compress=w.deflate)
    extensions = wl.OFFER if w.deflate else None
    path = (w.route or "/").encode()

    def factory() -> Connection:
        return Connection(
            loop,
            stats,
            path=path,
            role=ECHO,
            frames=frames,
            window=len(frames),
            mask_key=MASK_KEY,
            extensions=extensions,
        )

    async def exchange(conns: list[Connection]) -> bool:
        # Not started: each reply is counted and sends nothing more.
        for c in conns:
            c.send_messages(len(frames))
        return await wait_quiet(
            lambda: all(c.received >= c.sent or c.lost for c in conns),
            lambda: stats.messages,
            spec.timeout,
        )

    # As for idle_10k: one-time costs (here the first compressors too) go to the baseline.
    warm = await open_many(spec.port, [factory] * 100, spec.timeout)
    await exchange(warm)
    await asyncio.sleep(MEMORY_SETTLE)
    before = rss_bytes(spec.server_pid)
    conns = await open_many(spec.port, [factory] * w.connections, spec.timeout * 4, must_all=False)
    drained = await exchange(conns)
    await asyncio.sleep(max(MEMORY_SETTLE, spec.warmup))
    after = rss_bytes(spec.server_pid)
    result = memory_result(
        w,
        conns,
        before,
        after,
        sent=sum(c.sent for c in conns),
        received=sum(c.received for c in conns),
        lost=stats.lost,
        drained=drained,
        **compression_checks([conns], messages, None),
    )
    await close_all(warm + conns, spec.timeout)
    return result


# The HTTP load generator: wrk (Debian's package `wrk`), one thread on the client core.
WRK = "wrk"
_WRK_COUNT = re.compile(r"(\d+) requests in ([\d.]+)(us|ms|s|m)\b")
_WRK_SOCKET = re.compile(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)")
_WRK_NON2XX = re.compile(r"Non-2xx or 3xx responses: (\d+)")
_UNITS = {"us": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0}


def wrk(url: str, connections: int, seconds: float) -> dict[str, Any]:
    """One wrk run (whole seconds, at least 1): requests, seconds and errors it reports."""
    duration = max(1, math.ceil(seconds))
    argv = [WRK, "-t1", f"-c{connections}", f"-d{duration}s", "--timeout", "5s", url]
    # A sanitizer build's LD_PRELOAD is for Xyra's processes; wrk (LuaJIT) is not built for it.
    env = {k: v for k, v in os.environ.items() if k != "LD_PRELOAD"}
    out = subprocess.run(
        argv, capture_output=True, text=True, timeout=duration + 30, check=False, env=env
    )
    found = _WRK_COUNT.search(out.stdout)
    if out.returncode or found is None:
        raise RuntimeError(
            f"wrk failed (exit {out.returncode}): {(out.stderr or out.stdout)[-300:]}"
        )
    sockets = _WRK_SOCKET.search(out.stdout)
    non2xx = _WRK_NON2XX.search(out.stdout)
    return {
        "requests": int(found.group(1)),
        "seconds": float(found.group(2)) * _UNITS[found.group(3)],
        "socket_errors": sum(int(g) for g in sockets.groups()) if sockets else 0,
        "non_2xx": int(non2xx.group(1)) if non2xx else 0,
    }


async def run_http(spec: Spec, w: wl.Workload) -> dict[str, Any]:
    """Keep-alive GETs from wrk: checked once by hand, warmed up, then the measured run."""
    if shutil.which(WRK) is None:
        raise RuntimeError("wrk is not installed (Debian: apt-get install wrk)")
    url = f"http://{HOST}:{spec.port}{w.route or '/'}"
    with urllib.request.urlopen(url, timeout=spec.timeout) as response:
        body = response.read()
        status = response.status
    if status != 200 or not body:
        raise RuntimeError(f"GET {url}: {status}, {len(body)} bytes")
    if spec.warmup > 0:
        wrk(url, w.connections, spec.warmup)

    def children_cpu() -> float:
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        return usage.ru_utime + usage.ru_stime

    a = Mark(time.perf_counter(), 0, cpu_seconds(spec.server_pid), children_cpu())
    run = wrk(url, w.connections, spec.duration)
    b = Mark(time.perf_counter(), 0, cpu_seconds(spec.server_pid), children_cpu())
    wall = b.wall - a.wall
    server_cpu = b.server_cpu - a.server_cpu
    return {
        "value": run["requests"] / run["seconds"],
        "count": run["requests"],
        "seconds": run["seconds"],
        "server_cpu": server_cpu / wall,
        "per_server_cpu_s": run["requests"] / server_cpu if server_cpu > 0 else None,
        "client_cpu": (b.client_cpu - a.client_cpu) / wall,
        "checks": {
            "status": status,
            "body_bytes": len(body),
            "errors": run["socket_errors"] + run["non_2xx"],
            "socket_errors": run["socket_errors"],
            "non_2xx": run["non_2xx"],
        },
    }


RUNNERS = {
    wl.HTTP: run_http,
    wl.ECHO: run_echo,
    wl.PUBSUB: run_pubsub,
    wl.CONNECT: run_connect,
    wl.IDLE: run_idle,
    wl.MEMORY: run_memory,
}


async def run(spec: Spec) -> dict[str, Any]:
    w = wl.Workload(**spec.workload)
    return await RUNNERS[w.kind](spec, w)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    spec = Spec(**json.loads(args[0]))
    raise_nofile()
    import uvloop

    try:
        result = uvloop.run(run(spec))
    except Exception as exc:  # reported to the runner, which shows it in the table
        result = {"error": f"{type(exc).__name__}: {exc}"}
    sys.stdout.write(json.dumps(result) + "\n")
    sys.stdout.flush()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

"""``xyra bench crossproc``: cross-process pub/sub through the backplanes, Redis and the relay.

    xyra bench crossproc [--messages N] [--correctness N] [--clients] [--json F]

Everything runs on 127.0.0.1 and stops by itself. For each backplane (Redis, then the
relay) it serves this module's ``app`` with
``xyra run xyra.bench.crossproc:app --workers 2`` and
connects *publishers* to worker 0 and *subscribers* to worker 1 (the kernel spreads
connections; the server's hello names the worker). Each publisher frame is one
``ws.publish`` on worker 0, so the Redis batching is what a real load gives: all the
publishes of one loop iteration in one write. Pinning, as ``xyra bench`` does on 2 cores:
worker 0 and redis-server on cpu 0, worker 1 and this load client on cpu 1.

* throughput: ``--messages`` frames from the publishers, windowed (at most two windows in
  flight, so neither Redis nor a queue drops anything); deliveries/s = messages received
  by the subscribers on worker 1 / time;
* latency: 10,000 msg/s for ``--latency-seconds``; each payload carries its send time
  (CLOCK_MONOTONIC is one clock for every process); p50/p99 at one subscriber;
* messages per Redis write: worker 0's ``backplane_stats()`` after the throughput run;
* correctness (Redis only): ``--correctness`` messages (1,000,000 by default), each
  numbered; one subscriber checks that none is lost and none out of order;
* ``--clients``: the measurement that chose the Redis client: redis-py's asyncio pipeline
  and PubSub against raw RESP on uvloop parsed by ``hiredis.Reader``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import re
import shutil
import signal
import socket
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from xyra import App, WebSocket
from xyra.bench import procs

# The directory that holds this checkout's (or installation's) xyra package.
ROOT = Path(__file__).resolve().parents[2]
TOPIC = "bench"
PAYLOAD = struct.Struct(">QQ")  # publisher << 56 | its sequence number, send time (ns)
FRAME = 2 + PAYLOAD.size  # a server frame of a 16-byte BINARY message
RECORD = struct.Struct(">BBQQ")  # that frame as the subscriber reads it

# -- the app under test (served by `xyra run xyra.bench.crossproc:app --workers 2`) ----------

app = App()


def _open(ws: WebSocket) -> None:
    ws.send(json.dumps({"worker": app.worker_id, "pid": os.getpid()}))
    if ws.path.startswith("/ws/sub"):
        ws.subscribe(TOPIC)


def _message(ws: WebSocket, message: str | bytes, opcode: int) -> None:
    # Sync: an async handler would run one message per connection per loop iteration.
    if isinstance(message, bytes):
        ws.publish(TOPIC, message)
        return
    cmd = json.loads(message)
    if cmd["op"] == "stats":
        ws.send(json.dumps({"stats": app.backplane_stats()}))
    elif cmd["op"] == "count":
        task = asyncio.get_running_loop().create_task(_count(ws))
        _tasks.add(task)
        task.add_done_callback(_tasks.discard)


_tasks: set[asyncio.Task[None]] = set()


async def _count(ws: WebSocket) -> None:
    ws.send(json.dumps({"count": await app.cluster_subscribers(TOPIC)}))


app.websocket("/ws/pub", {"open": _open, "message": _message}, max_backpressure=1 << 26)
app.websocket("/ws/sub", {"open": _open, "message": _message}, max_backpressure=1 << 26)


# -- a raw WebSocket client -------------------------------------------------------------------


async def _ws(port: int, path: str) -> tuple[socket.socket, dict[str, Any], bytes]:
    """Connect, upgrade, read the hello; the socket, the hello and bytes read past it."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setblocking(False)
    # Without it Nagle holds a publisher's next small write until the server's delayed
    # ACK (the server never answers on that connection): 40 ms latency tails.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    await loop.sock_connect(sock, ("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    await loop.sock_sendall(
        sock,
        (
            f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
            f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
        ).encode(),
    )
    buf = b""
    while True:
        if b"\r\n\r\n" in buf:
            head, _, rest = buf.partition(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                raise ConnectionError(f"upgrade refused: {head!r}")
            if len(rest) >= 2 and len(rest) >= 2 + (rest[1] & 0x7F):
                break  # the hello (under 126 bytes) is complete
        chunk = await loop.sock_recv(sock, 65536)
        if not chunk:
            raise ConnectionError("closed during the handshake")
        buf += chunk
    n = rest[1] & 0x7F
    return sock, json.loads(rest[2 : 2 + n]), rest[2 + n :]


def _frame(payload: bytes) -> bytes:
    """A client BINARY frame with the zero mask (legal, and the payload needs no masking)."""
    return bytes([0x82, 0x80 | len(payload)]) + b"\0\0\0\0" + payload


async def _command(sock: socket.socket, cmd: dict[str, Any]) -> dict[str, Any]:
    loop = asyncio.get_running_loop()
    data = json.dumps(cmd).encode()
    await loop.sock_sendall(sock, bytes([0x81, 0x80 | len(data)]) + b"\0\0\0\0" + data)
    buf = b""
    while len(buf) < 2 or len(buf) < _frame_len(buf):
        buf += await loop.sock_recv(sock, 65536)
    n, hl = _frame_len(buf) - _head_len(buf), _head_len(buf)
    return json.loads(buf[hl : hl + n])  # type: ignore[no-any-return]


def _head_len(buf: bytes) -> int:
    return {126: 4, 127: 10}.get(buf[1] & 0x7F, 2)


def _frame_len(buf: bytes) -> int:
    n = buf[1] & 0x7F
    if n == 126:
        return 4 + int.from_bytes(buf[2:4], "big") if len(buf) >= 4 else 1 << 30
    return 2 + n


class Subscriber:
    """Reads and counts the frames of one subscriber connection (fixed size: 18 bytes).

    ``parse``: check every message's number (per publisher connection: the order that
    the backplane keeps is per publishing worker, and the worker sees the connections'
    frames in the order it reads them) and/or record its latency.
    """

    def __init__(self, sock: socket.socket, rest: bytes) -> None:
        self.sock = sock
        self.bytes = len(rest)
        self.tail = rest
        self.check = False
        self.latency = False
        self.expected: dict[int, int] = {}
        self.lost = 0
        self.reordered = 0
        self.latencies: list[int] = []
        self.skip = 0
        self.task = asyncio.get_running_loop().create_task(self._read())

    @property
    def messages(self) -> int:
        return self.bytes // FRAME

    def parse(self, check: bool = False, latency: bool = False) -> None:
        """From now on (at a frame boundary: every frame here has the same size)."""
        self.check, self.latency = check, latency
        self.skip = -self.bytes % FRAME
        self.tail = b""
        self.expected.clear()
        self.latencies = []
        self.lost = self.reordered = 0

    async def _read(self) -> None:
        loop = asyncio.get_running_loop()
        recv = loop.sock_recv
        while True:
            chunk = await recv(self.sock, 1 << 20)
            if not chunk:
                return
            if self.check or self.latency:
                self._parse(chunk)
            self.bytes += len(chunk)

    def _parse(self, chunk: bytes) -> None:
        if self.skip:
            skipped = chunk[: self.skip]
            chunk = chunk[self.skip :]
            self.skip -= len(skipped)
        data = self.tail + chunk if self.tail else chunk
        whole = len(data) - len(data) % FRAME
        self.tail = data[whole:]
        now = time.monotonic_ns()
        expected = self.expected
        for _, _, seq, sent in RECORD.iter_unpack(memoryview(data)[:whole]):
            if self.latency:
                self.latencies.append(now - sent)
            if self.check:
                pub, n = seq >> 56, seq & 0xFFFFFFFFFFFFFF
                want = expected.get(pub, 0)
                if n == want:
                    expected[pub] = n + 1
                elif n > want:
                    self.lost += n - want
                    expected[pub] = n + 1
                else:
                    self.reordered += 1

    def close(self) -> None:
        self.task.cancel()
        self.sock.close()


# -- the runs ---------------------------------------------------------------------------------


def _pin(pid: int, cpu: int | None) -> None:
    if cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(pid, {cpu})


class Setup:
    """One `xyra run --workers 2` with publishers on worker 0 and subscribers on worker 1."""

    def __init__(self, backplane: str | None, args: argparse.Namespace) -> None:
        self.backplane = backplane
        self.args = args
        self.log = tempfile.NamedTemporaryFile(prefix="xyra-backplane-bench-", suffix=".log")
        cmd = [
            sys.executable,
            "-m",
            "xyra",
            "run",
            "xyra.bench.crossproc:app",
            "--port",
            "0",
            "--workers",
            "2",
        ]
        if backplane:
            cmd += ["--backplane", backplane]
        env = dict(os.environ, PYTHONPATH=str(ROOT))
        self.proc = subprocess.Popen(
            cmd, stdout=self.log, stderr=subprocess.STDOUT, env=env, start_new_session=True
        )
        deadline = time.monotonic() + 30
        while not (m := re.search(r"workers serving on [^:]+:(\d+)", self._text())):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"xyra run did not start:\n{self._text()}")
            time.sleep(0.05)
        self.port = int(m.group(1))
        self.pubs: list[socket.socket] = []
        self.subs: list[tuple[socket.socket, bytes]] = []
        self.readers: list[Subscriber] = []
        self.sequence: list[int] = []
        self.control: socket.socket | None = None
        self.pids: dict[int, int] = {}

    def _text(self) -> str:
        return Path(self.log.name).read_text(errors="replace")

    async def connect(self) -> None:
        a = self.args
        for _ in range(40 * (a.publishers + a.subscribers + 1)):
            if (
                len(self.pubs) >= a.publishers
                and len(self.subs) >= a.subscribers
                and self.control is not None
            ):
                break
            want_pub = len(self.pubs) < a.publishers or self.control is None
            sock, hello, rest = await _ws(self.port, "/ws/pub" if want_pub else "/ws/sub")
            self.pids[hello["worker"]] = hello["pid"]
            if want_pub and hello["worker"] == 0:
                if self.control is None:
                    self.control = sock
                else:
                    self.pubs.append(sock)
            elif not want_pub and hello["worker"] == 1:
                self.subs.append((sock, rest))
            else:
                sock.close()
        else:
            raise RuntimeError("could not place the connections on both workers")
        _pin(self.pids[0], a.server_cpu)
        _pin(self.pids[1], a.client_cpu)
        self.readers = [Subscriber(sock, rest) for sock, rest in self.subs]
        self.sequence = [0] * len(self.pubs)
        assert self.control is not None
        deadline = time.monotonic() + 10
        while (await _command(self.control, {"op": "count"}))["count"] != a.subscribers:
            if time.monotonic() > deadline:
                raise RuntimeError("the subscriptions did not reach worker 0")
            await asyncio.sleep(0.05)

    async def stats(self) -> dict[str, Any]:
        assert self.control is not None
        return (await _command(self.control, {"op": "stats"}))["stats"]  # type: ignore[no-any-return]

    def close(self) -> None:
        for reader in self.readers:
            reader.close()
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


async def _send(setup: Setup, count: int, pubs: int | None = None) -> None:
    """``count`` frames, spread over the publishers (``pubs``: the first few only).

    A frame's number is its publisher's index << 56 | that publisher's sequence number.
    """
    loop = asyncio.get_running_loop()
    socks = setup.pubs[: pubs or len(setup.pubs)]
    per, extra = divmod(count, len(socks))
    writes = []
    now = time.monotonic_ns()
    for i, sock in enumerate(socks):
        k = per + (i < extra)
        if k:
            first = setup.sequence[i]
            setup.sequence[i] += k
            base = i << 56
            data = b"".join(_frame(PAYLOAD.pack(base | n, now)) for n in range(first, first + k))
            writes.append(loop.sock_sendall(sock, data))
    await asyncio.gather(*writes)


async def throughput(setup: Setup, total: int, window: int, check: bool) -> dict[str, Any]:
    """Windowed: the next window goes once the previous-but-one arrived everywhere."""
    subs = setup.readers
    if check:
        subs[0].parse(check=True)
    base = [s.messages for s in subs]

    def arrived() -> int:
        return min(s.messages - b for s, b in zip(subs, base, strict=True))

    before = await setup.stats()
    started = time.perf_counter()
    sent = 0
    while sent < total:
        count = min(window, total - sent)
        while arrived() < sent - window:
            await asyncio.sleep(0.0005)
        await _send(setup, count)
        sent += count
    deadline = time.monotonic() + 30
    while arrived() < total and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    elapsed = time.perf_counter() - started
    after = await setup.stats()
    got = sum(s.messages - b for s, b in zip(subs, base, strict=True))
    result: dict[str, Any] = {
        "messages": total,
        "subscribers": len(subs),
        "deliveries": got,
        "deliveries_per_s": got / elapsed,
        "messages_per_s": arrived() / elapsed,
        "seconds": elapsed,
    }
    writes = after.get("writes", 0) - before.get("writes", 0)
    if writes:
        result["messages_per_write"] = (after["published"] - before["published"]) / writes
    if check:
        s0 = subs[0]
        result["lost"] = s0.lost + total - sum(s0.expected.values())
        result["reordered"] = s0.reordered
        s0.parse()
    return result


async def latency(setup: Setup, rate: int, seconds: float) -> dict[str, Any]:
    """A fixed rate from one publisher in ticks of 1 ms; each payload carries its send time."""
    sub = setup.readers[0]
    sub.parse(latency=True)
    start_count = sub.messages
    loop = asyncio.get_running_loop()
    started = loop.time()
    total = int(rate * seconds)
    sent = 0
    while sent < total:
        due = min(total, int((loop.time() - started) * rate) + 1)
        if due > sent:
            await _send(setup, due - sent, pubs=1)
            sent = due
        await asyncio.sleep(0.001)
    deadline = time.monotonic() + 10
    while sub.messages - start_count < total and time.monotonic() < deadline:
        await asyncio.sleep(0.001)
    lat = sorted(sub.latencies[len(sub.latencies) // 10 :])  # the first tenth warms up
    received = sub.messages - start_count
    sub.parse()
    if not lat:
        return {"rate": rate, "received": received}
    return {
        "rate": rate,
        "received": received,
        "p50_ms": lat[len(lat) // 2] / 1e6,
        "p99_ms": lat[int(len(lat) * 0.99)] / 1e6,
        "max_ms": lat[-1] / 1e6,
    }


async def run_backplane(name: str, url: str | None, args: argparse.Namespace) -> dict[str, Any]:
    setup = Setup(url, args)
    try:
        await setup.connect()
        out: dict[str, Any] = {"backplane": name}
        out["throughput"] = await throughput(setup, args.messages, args.window, check=False)
        out["latency"] = await latency(setup, args.rate, args.latency_seconds)
        return out
    finally:
        setup.close()


async def correctness(url: str, args: argparse.Namespace) -> dict[str, Any]:
    setup = Setup(url, args)
    try:
        await setup.connect()
        return await throughput(setup, args.correctness, args.window, check=True)
    finally:
        setup.close()


# -- the client library comparison ------------------------------------------------------------


async def compare_clients(port: int, n: int) -> dict[str, float]:
    import hiredis
    import redis.asyncio as aredis

    channel = b"xyra:cmp"
    payload = b"x" * 64
    one = b"*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n" % (
        len(channel),
        channel,
        len(payload),
        payload,
    )

    async def raw_publish(count: int) -> float:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        parser = hiredis.Reader()
        started = time.perf_counter()
        for _ in range(0, count, 200):
            writer.write(one * 200)
            need = 200
            while need:
                parser.feed(await reader.read(65536))
                while parser.gets() is not False:
                    need -= 1
        elapsed = time.perf_counter() - started
        writer.close()
        return count / elapsed

    async def redispy_publish(count: int) -> float:
        client = aredis.Redis(port=port)
        started = time.perf_counter()
        for _ in range(0, count, 200):
            pipe = client.pipeline(transaction=False)
            for _ in range(200):
                pipe.publish(channel, payload)
            await pipe.execute()
        elapsed = time.perf_counter() - started
        await client.aclose()
        return count / elapsed

    class RawSub(asyncio.Protocol):
        def __init__(self, done: asyncio.Future[float]) -> None:
            self.parser = hiredis.Reader()
            self.got = 0
            self.done = done

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            transport.write(b"*2\r\n$9\r\nSUBSCRIBE\r\n$%d\r\n%s\r\n" % (len(channel), channel))  # type: ignore[attr-defined]

        def data_received(self, data: bytes) -> None:
            self.parser.feed(data)
            while (reply := self.parser.gets()) is not False:
                if isinstance(reply, list) and reply[0] == b"message":
                    self.got += 1
                    if self.got == n and not self.done.done():
                        self.done.set_result(time.perf_counter())

    async def raw_subscribe() -> float:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[float] = loop.create_future()
        transport, _ = await loop.create_connection(lambda: RawSub(done), "127.0.0.1", port)
        await asyncio.sleep(0.2)
        started = time.perf_counter()
        publisher = loop.create_task(raw_publish(n))
        end = await done
        await publisher
        transport.close()
        return n / (end - started)

    async def redispy_subscribe() -> float:
        client = aredis.Redis(port=port)
        pubsub = client.pubsub()
        await pubsub.subscribe(channel)
        await pubsub.get_message(timeout=1)
        started = time.perf_counter()
        publisher = asyncio.get_running_loop().create_task(raw_publish(n))
        got = 0
        while got < n:
            message = await pubsub.get_message(timeout=5)
            if message and message["type"] == "message":
                got += 1
        end = time.perf_counter()
        await publisher
        await pubsub.aclose()
        await client.aclose()
        return n / (end - started)

    return {
        "raw_resp_publish_per_s": await raw_publish(n),
        "redis_py_publish_per_s": await redispy_publish(n),
        "raw_resp_subscribe_per_s": await raw_subscribe(),
        "redis_py_subscribe_per_s": await redispy_subscribe(),
    }


# -- main -------------------------------------------------------------------------------------


def _redis(args: argparse.Namespace) -> tuple[subprocess.Popen[bytes] | None, str, int]:
    if args.redis:
        port = int(re.search(r":(\d+)", args.redis.split("//", 1)[1]).group(1))  # type: ignore[union-attr]
        return None, args.redis, port
    if shutil.which("redis-server") is None:
        raise SystemExit("redis-server is needed (apt-get install redis-server), or --redis URL")
    port = procs.free_port()
    proc = subprocess.Popen(
        procs.redis_command(port, "--loglevel", "warning"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _pin(proc.pid, args.server_cpu)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), 0.2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise SystemExit("redis-server did not start")
        time.sleep(0.02)
    return proc, f"redis://127.0.0.1:{port}/0", port


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="xyra bench crossproc", description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    p.add_argument("--messages", type=int, default=300_000, help="throughput run (messages)")
    p.add_argument("--window", type=int, default=5_000, help="messages per window")
    p.add_argument("--publishers", type=int, default=4)
    p.add_argument("--subscribers", type=int, default=10)
    p.add_argument("--rate", type=int, default=10_000, help="latency run: messages/s")
    p.add_argument("--latency-seconds", type=float, default=5.0)
    p.add_argument(
        "--correctness",
        type=int,
        default=1_000_000,
        help="numbered messages checked for loss and order (0: skip)",
    )
    p.add_argument("--clients", action="store_true", help="also compare the Redis clients")
    p.add_argument("--clients-messages", type=int, default=200_000)
    p.add_argument("--only", choices=["redis", "relay"], default=None)
    p.add_argument("--redis", default=None, help="use this Redis (default: start one)")
    p.add_argument("--server-cpu", type=int, default=0, help="worker 0 and redis (-1: any)")
    p.add_argument("--client-cpu", type=int, default=1, help="worker 1 and this client (-1: any)")
    p.add_argument("--json", default=None, help="write the results to this file")
    args = p.parse_args(argv)
    for name in ("server_cpu", "client_cpu"):
        if getattr(args, name) < 0 or getattr(args, name) not in os.sched_getaffinity(0):
            setattr(args, name, None)
    _pin(0, args.client_cpu)

    import uvloop

    redis_proc, url, port = _redis(args)
    results: dict[str, Any] = {"args": vars(args)}
    try:

        async def all_runs() -> None:
            for name, bp in (("redis", url), ("relay", None)):
                if args.only in (None, name):
                    results[name] = await run_backplane(name, bp, args)
                    print(json.dumps(results[name]), flush=True)
            if args.correctness and args.only in (None, "redis"):
                results["correctness"] = await correctness(url, args)
                print(json.dumps({"correctness": results["correctness"]}), flush=True)
            if args.clients:
                results["clients"] = await compare_clients(port, args.clients_messages)
                print(json.dumps({"clients": results["clients"]}), flush=True)

        uvloop.run(all_runs())
    finally:
        if redis_proc is not None:
            redis_proc.kill()
            redis_proc.wait()
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())

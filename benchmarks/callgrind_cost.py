"""User-space instructions per connection and per publish, counted by callgrind.

Wall-clock rates on a shared machine move with whatever else runs; instruction counts
do not. This runs a bench adapter (``xyra.bench.servers.xyra_server`` by default)
under ``valgrind --tool=callgrind``, warms it up, zeroes the counters
(``callgrind_control -z``), drives a fixed workload from this process, dumps the
counters (``callgrind_control -d``) and prints the instructions per unit of work:

* ``connect N``: N sequential cycles of TCP connect, upgrade, close handshake, close
  (the bench's ``connect`` cycle, one at a time);
* ``http N``: N plain HTTP requests, one connection each, answered 404 (the
  general path: what a non-WebSocket connection costs);
* ``pingpong N``: N round trips of a 32-byte text message on one connection;
* ``pubsub N [SUBSCRIBERS]``: N publishes of a 32-byte text message to 1 topic with
  SUBSCRIBERS (default 1000) subscribers, in rounds of 16 sent in one write (the
  server reads a round at once), each round read by every subscriber before the next.

Only user space is counted (the kernel's share is the same system calls for every
server built on uvloop). Run: ``python benchmarks/callgrind_cost.py connect 2000``;
``--server MODULE`` picks another adapter, ``--pythonpath PATH`` another checkout
(A/B), ``--annotate`` prints ``callgrind_annotate``'s top functions.
"""

from __future__ import annotations

import argparse
import os
import re
import select
import socket
import subprocess
import sys
import tempfile
import time

MASK = b"abcd"


def masked(payload: bytes, opcode: int) -> bytes:
    """A masked client frame (payloads under 126 bytes)."""
    body = bytes(b ^ MASK[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + MASK + body


def request(path: bytes) -> bytes:
    return (
        b"GET " + path + b" HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n"
        b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
        b"Sec-WebSocket-Version: 13\r\n\r\n"
    )


def read_until(sock: socket.socket, marker: bytes, have: bytes = b"") -> bytes:
    while marker not in have:
        chunk = sock.recv(65536)
        if not chunk:
            raise ConnectionError(f"closed before {marker!r}: {have[-200:]!r}")
        have += chunk
    return have


def open_ws(port: int, path: bytes) -> socket.socket:
    s = socket.create_connection(("127.0.0.1", port))
    s.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    s.sendall(request(path))
    head = read_until(s, b"\r\n\r\n")
    if not head.startswith(b"HTTP/1.1 101"):
        raise ConnectionError(head[:200].decode("latin-1"))
    return s


def connect_cycles(port: int, n: int) -> None:
    close = masked(b"\x03\xe8", 8)
    for _ in range(n):
        s = open_ws(port, b"/")
        s.sendall(close)
        got = b""
        while True:
            chunk = s.recv(4096)
            if not chunk:
                break
            got += chunk
        if not got.startswith(b"\x88\x02\x03\xe8"):
            raise ConnectionError(f"bad close answer {got!r}")
        s.close()


def http_cycles(port: int, n: int) -> None:
    """n plain HTTP requests, one per connection, answered 404 (the general path)."""
    for _ in range(n):
        s = socket.create_connection(("127.0.0.1", port))
        s.sendall(b"GET /nothing HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        got = b""
        while chunk := s.recv(4096):
            got += chunk
        if not got.startswith(b"HTTP/1.1 404"):
            raise ConnectionError(got[:100])
        s.close()


def pingpong(sock: socket.socket, n: int) -> None:
    frame = masked(b"x" * 32, 1)
    for _ in range(n):
        sock.sendall(frame)
        read_until(sock, b"x" * 32)


class PubSub:
    def __init__(self, port: int, subscribers: int) -> None:
        self.subs = [open_ws(port, b"/pubsub?topic=t") for _ in range(subscribers)]
        self.pub = open_ws(port, b"/pubsub?topic=t")
        self.poll = select.epoll()
        self.fds = {s.fileno(): s for s in self.subs}
        for s in self.subs:
            s.setblocking(False)
            self.poll.register(s.fileno(), select.EPOLLIN)
        self.frame = masked(b"x" * 32, 1)
        self.per_message = 2 + 32

    def run(self, n: int, window: int = 16) -> None:
        """Publish n messages in rounds of `window`, each round one write (so the server
        reads it at once), waiting until every subscriber has the round before the next:
        every run makes the server do the same work."""
        for start in range(0, n, window):
            k = min(window, n - start)
            self.pub.sendall(self.frame * k)
            want = k * self.per_message
            got = dict.fromkeys(self.fds, 0)
            waiting = len(self.subs)
            while waiting:
                for fd, _ in self.poll.poll(5.0):
                    try:
                        got[fd] += len(self.fds[fd].recv(1 << 20))
                    except BlockingIOError:
                        continue
                    if got[fd] == want:
                        waiting -= 1
                    elif got[fd] > want:
                        raise RuntimeError("more than a round arrived")

    def settle(self) -> None:
        """Wait for a probe to reach everyone (the subscriptions are all in place)."""
        self.run(1, 1)


def parse_total(path: str) -> int:
    with open(path) as f:
        text = f.read()
    m = re.search(r"^(?:summary|totals):\s*(\d+)", text, re.M)
    if not m:
        raise RuntimeError(f"no totals in {path}")
    return int(m.group(1))


def wait_port(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError("server exited")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        except OSError:
            time.sleep(0.2)
    raise TimeoutError("server did not listen")


def control(*args: str) -> None:
    subprocess.run(["callgrind_control", *args], check=True, capture_output=True, timeout=120)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("workload", choices=("connect", "pubsub", "pingpong", "http"))
    ap.add_argument("n", type=int)
    ap.add_argument("subscribers", type=int, nargs="?", default=1000)
    ap.add_argument("--server", default="xyra.bench.servers.xyra_server")
    ap.add_argument("--pythonpath", default=None)
    ap.add_argument("--annotate", type=int, default=0, help="print the top N functions")
    args = ap.parse_args()
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    sock.close()
    out = tempfile.mkdtemp(prefix="xyra-cg-")
    env = dict(os.environ)
    if args.pythonpath:
        env["PYTHONPATH"] = args.pythonpath
    env["PYTHONMALLOC"] = "malloc"  # the same allocator every run: counts repeat
    prefix = os.path.join(out, "cg")
    proc = subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={prefix}.%p",
            sys.executable,
            "-m",
            args.server,
            str(port),
        ],
        env=env,
        # `python -m` puts the working folder first on sys.path: the checkout's own.
        cwd=args.pythonpath or None,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_port(port, proc, 300)
        if args.workload == "connect":
            connect_cycles(port, 50)  # warm: imports, first buffers
            control("-z", str(proc.pid))
            connect_cycles(port, args.n)
        elif args.workload == "http":
            http_cycles(port, 50)
            control("-z", str(proc.pid))
            http_cycles(port, args.n)
        elif args.workload == "pingpong":
            ws = open_ws(port, b"/")
            pingpong(ws, 50)
            control("-z", str(proc.pid))
            pingpong(ws, args.n)
        else:
            ps = PubSub(port, args.subscribers)
            ps.settle()
            ps.run(50)
            control("-z", str(proc.pid))
            ps.run(args.n)
        control("-d", str(proc.pid))
    finally:
        proc.terminate()
        proc.wait(120)
    dumps = sorted(
        (f for f in os.listdir(out) if re.fullmatch(r"cg\.\d+\.\d+", f)),
        key=lambda f: int(f.rsplit(".", 1)[1]),
    )
    path = os.path.join(out, dumps[-1])
    total = parse_total(path)
    print(f"{args.workload} x {args.n}: {total:,} instructions, {total / args.n:,.0f} per unit")
    if args.annotate:
        ann = subprocess.run(
            ["callgrind_annotate", "--inclusive=no", path],
            capture_output=True,
            text=True,
            check=False,
        ).stdout
        lines = [ln for ln in ann.splitlines() if re.match(r"^\s*[\d,]+ \(", ln)]
        for ln in lines[: args.annotate]:
            print(ln[:160])
    print(f"callgrind file: {path}")


if __name__ == "__main__":
    main()

"""How much each layer of a uvloop WebSocket server costs per connection.

The profile behind the ``connect`` row of docs/benchmarks.md: the same load
(``xyra bench``'s connect driver: 16 parallel loops of connect, upgrade, close
handshake) against servers that do more and more of the work, server on cpu 0,
this process on cpu 1:

* ``floor``: ``xyra.bench.servers.raw_echo``, the raw row of ``xyra bench``: a
  constant 101 and a close frame, nothing parsed;
* ``+httptools``: the same, parsing the request head with httptools and
  collecting the headers as Xyra does;
* ``+handshake``: the same, then Xyra's RFC 6455 checks (``process_request``,
  ``check_origin``) build the 101;
* ``xyra`` and ``socketify``: the bench adapters.

Run: ``python benchmarks/connect_floor.py [seconds]`` (about 30 s).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time

SECONDS = float(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1] != "serve" else 3.0


def serve(port: int, level: int) -> None:
    """The floor server plus httptools (``level`` 1) and the handshake checks (2)."""
    import httptools
    import uvloop

    from xyra.bench.servers.raw_echo import CLOSE_1000, UPGRADED
    from xyra.handshake import Accepted, check_origin, process_request

    class Floor(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.open = False
            self.headers: list[tuple[str, str]] = []
            self.http = httptools.HttpRequestParser(self)

        def on_header(self, name: bytes, value: bytes) -> None:
            self.headers.append((name.decode("latin-1").lower(), value.decode("latin-1")))

        def data_received(self, data: bytes) -> None:
            if self.open:
                self.transport.write(CLOSE_1000)
                self.transport.close()
                return
            self.open = True
            response = UPGRADED
            try:
                self.http.feed_data(data)
            except httptools.HttpParserUpgrade:
                pass
            if level >= 2:
                result = process_request("GET", self.headers)
                assert isinstance(result, Accepted)
                check_origin(self.headers, None)
                response = result.response
            self.transport.write(response)

    async def main() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(Floor, "127.0.0.1", port, backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(main())


def measure(argv: list[str], port: int) -> tuple[float, float, float]:
    """Rate, server CPU share and client CPU share of one run against ``argv``."""
    from xyra.bench import procs
    from xyra.bench._drivers.loadgen import masked_frame
    from xyra.bench._drivers.sockload import ConnectDriver
    from xyra.bench.client import upgrade_request

    server = procs.spawn(argv, 0)
    try:
        procs.wait_listening(port, server, 30.0)
        close = masked_frame(b"\x03\xe8", 8, b"abcd")
        driver = ConnectDriver(port, 16, upgrade_request(b"/"), close)
        driver.run(1.0)
        n0, c0, s0 = driver.completed, os.times(), procs.cpu_seconds(server.pid)
        t0 = time.perf_counter()
        driver.run(SECONDS)
        t1, c1, s1 = time.perf_counter(), os.times(), procs.cpu_seconds(server.pid)
        driver.drain(5.0)
        if driver.errors:
            raise RuntimeError(driver.first_error)
        wall = t1 - t0
        client = (c1.user + c1.system - c0.user - c0.system) / wall
        return (driver.completed - n0) / wall, (s1 - s0) / wall, client
    finally:
        procs.kill(server)


def main() -> None:
    from xyra.bench import procs

    os.sched_setaffinity(0, {1})
    here = os.path.abspath(__file__)
    rows = [
        ("floor", [sys.executable, "-m", "xyra.bench.servers.raw_echo", "{port}"]),
        ("+httptools", [sys.executable, here, "serve", "{port}", "1"]),
        ("+handshake", [sys.executable, here, "serve", "{port}", "2"]),
        ("xyra", [sys.executable, "-m", "xyra.bench.servers.xyra_server", "{port}"]),
        ("socketify", [sys.executable, "-m", "xyra.bench.servers.socketify_server", "{port}"]),
    ]
    print(f"{'server':<12} {'conn/s':>8} {'server CPU':>10} {'us/conn':>8} {'client CPU':>10}")
    for name, argv in rows:
        port = procs.free_port()
        try:
            rate, server_cpu, client_cpu = measure([a.format(port=port) for a in argv], port)
        except Exception as exc:  # a peer not installed, for one
            print(f"{name:<12} skipped: {exc}")
            continue
        print(
            f"{name:<12} {rate:>8.0f} {server_cpu:>10.0%} {server_cpu / rate * 1e6:>8.1f}"
            f" {client_cpu:>10.0%}"
        )


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "serve":
        serve(int(sys.argv[2]), int(sys.argv[3]))
    else:
        main()

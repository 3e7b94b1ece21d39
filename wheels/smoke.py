"""Smoke test of an installed Xyra wheel; wheels/check.sh runs it inside a fresh venv.

usage: python smoke.py SOURCE_ROOT

1. ``import xyra`` resolves to the venv (not to SOURCE_ROOT), ``xyra --version``
   (the console script) prints the package's version, ``xyra bench --help`` works;
2. an App with an echo route served by ``await app.start()`` on 127.0.0.1 (port 0)
   answers a handshake and one masked text frame sent with plain asyncio streams,
   then completes the close handshake;
3. ``examples/simple_handler.py PORT`` run as a script, and the same app through
   ``xyra run simple_handler:app --app-dir examples``, greet a client with
   "Connected!" and exit 0 on SIGTERM.

Only the standard library and the installed wheel are used.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


def check(cond: bool, what: str) -> None:
    if not cond:
        raise SystemExit(f"smoke: FAILED: {what}")


def masked(opcode: int, payload: bytes) -> bytes:
    """One client frame (FIN set, masked), for payloads under 126 bytes."""
    assert len(payload) < 126
    key = os.urandom(4)
    body = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
    return bytes([0x80 | opcode, 0x80 | len(payload)]) + key + body


async def handshake(port: int, path: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    key = base64.b64encode(os.urandom(16))
    writer.write(
        b"GET " + path.encode() + b" HTTP/1.1\r\n"
        b"Host: 127.0.0.1:" + str(port).encode() + b"\r\n"
        b"Upgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: " + key + b"\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    lines = head.decode("latin-1").split("\r\n")
    check(lines[0].startswith("HTTP/1.1 101"), f"101 response, got {lines[0]!r}")
    headers = {}
    for line in lines[1:]:
        if ":" in line:
            name, value = line.split(":", 1)
            headers[name.strip().lower()] = value.strip()
    accept = base64.b64encode(hashlib.sha1(key + GUID).digest()).decode()
    check(headers.get("sec-websocket-accept") == accept, "Sec-WebSocket-Accept")
    return reader, writer


async def read_frame(reader: asyncio.StreamReader) -> tuple[int, bytes]:
    b0, b1 = await asyncio.wait_for(reader.readexactly(2), 10)
    check(not b1 & 0x80, "server frames are unmasked")
    n = b1 & 0x7F
    if n == 126:
        n = int.from_bytes(await reader.readexactly(2), "big")
    elif n == 127:
        n = int.from_bytes(await reader.readexactly(8), "big")
    return b0 & 0x0F, await asyncio.wait_for(reader.readexactly(n), 10)


async def echo_check() -> None:
    import xyra

    app = xyra.App()

    def on_message(ws: xyra.WebSocket, message: str | bytes, opcode: xyra.OpCode) -> None:
        ws.send(message)

    app.websocket("/echo", {"message": on_message})
    server = await app.start(0)
    try:
        reader, writer = await handshake(server.port, "/echo")
        payload = "héllo, xyra ✓".encode()
        writer.write(masked(0x1, payload))
        opcode, body = await read_frame(reader)
        check((opcode, body) == (0x1, payload), f"echo of a text frame, got {opcode} {body!r}")
        writer.write(masked(0x8, (1000).to_bytes(2, "big") + b"bye"))
        opcode, body = await read_frame(reader)
        check(opcode == 0x8 and body[:2] == (1000).to_bytes(2, "big"), "close frame echoed")
        check(await asyncio.wait_for(reader.read(), 10) == b"", "server closes TCP after close")
        writer.close()
    finally:
        await server.stop()
    print(f"smoke: echo over 127.0.0.1:{server.port} ok")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def greeting(port: int, deadline: float) -> bytes:
    while True:
        try:
            reader, writer = await handshake(port, "/ws")
            break
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
    opcode, body = await read_frame(reader)
    check(opcode == 0x1, "a text greeting")
    writer.close()
    return body


def serve_check(cmd: list[str], port: int, cwd: Path) -> None:
    proc = subprocess.Popen(cmd, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        try:
            body = asyncio.run(greeting(port, time.monotonic() + 30))
        except OSError:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise SystemExit(
                f"smoke: FAILED: {cmd} did not serve (exit {proc.returncode}):\n{err.decode()}"
            ) from None
        check(body == b"Connected!", f"'Connected!' from {cmd}, got {body!r}")
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        check(
            proc.returncode == 0,
            f"{cmd} exits 0 on SIGTERM, got {proc.returncode}:\n{err.decode()}",
        )
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    print(f"smoke: {' '.join(Path(c).name if os.sep in c else c for c in cmd)} ok")


def main(argv: list[str]) -> int:
    source = Path(argv[1]).resolve()
    import xyra

    where = Path(xyra.__file__).resolve()
    check(source not in where.parents, f"xyra imported from the venv, not from {where}")
    check(Path(sys.prefix) in where.parents, f"xyra imported from {sys.prefix}, not {where}")
    bindir = Path(sys.executable).parent
    out = subprocess.run([bindir / "xyra", "--version"], capture_output=True, text=True)
    check(out.stdout.strip() == f"xyra {xyra.__version__}", f"xyra --version: {out.stdout!r}")
    out = subprocess.run([bindir / "xyra", "bench", "--help"], capture_output=True, text=True)
    check(out.returncode == 0 and "usage: xyra bench" in out.stdout, f"xyra bench --help: {out}")
    print(f"smoke: xyra {xyra.__version__} from {where.parent}; xyra bench --help ok")
    asyncio.run(echo_check())
    examples = source / "examples"
    work = Path.cwd()
    port = free_port()
    serve_check([sys.executable, str(examples / "simple_handler.py"), str(port)], port, work)
    port = free_port()
    serve_check(
        [
            str(bindir / "xyra"),
            "run",
            "simple_handler:app",
            "--app-dir",
            str(examples),
            "--port",
            str(port),
        ],
        port,
        work,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))

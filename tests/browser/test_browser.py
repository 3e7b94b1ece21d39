"""The browser examples, and the origin policy, in a real headless Chromium.

* chat: two pages join; a message typed in one appears in the other, once, and is not
  echoed back to the sender;
* reconnection: the chat server process is stopped and started again on the same port;
  both pages reconnect by themselves and a message typed during the outage is delivered
  after reconnection;
* dashboard: the page shows values that keep updating;
* origin: a page from another origin is refused by a WebSocket route's default origin
  policy and let in by a route that lists it in ``allowed_origins``.

The browser client's own behaviour (queue, back-off, when it stops) is in test_client_js.py.

The examples run as they are (``python examples/X/app.py PORT``) in a subprocess. A
screenshot of each example is saved to artifacts/screenshots/. Chromium is Debian's
(``apt-get install chromium``), driven through Playwright's Python package; nothing is
downloaded. Without them the tests skip, unless XYRA_REQUIRE_BROWSER is set (the fixtures
are in conftest.py).
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from kit import free_port

from xyra import App, WebSocket

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES = ROOT / "examples"
SCREENSHOTS = ROOT / "artifacts" / "screenshots"
START_TIMEOUT = 20.0


def expect(target: Any) -> Any:
    from playwright.sync_api import expect as pw_expect

    return pw_expect(target)


def screenshot(page: Any, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"))


# -- running the examples -------------------------------------------------------------------


def wait_for_port(port: int, proc: subprocess.Popen[str] | None = None) -> None:
    deadline = time.monotonic() + START_TIMEOUT
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.5):
            return
        time.sleep(0.05)
    raise TimeoutError(f"nothing listening on port {port} after {START_TIMEOUT}s")


class Example:
    """``python examples/<name>/app.py PORT`` in a subprocess, its output collected."""

    def __init__(self, name: str, port: int | None = None, **env: str) -> None:
        self.name = name
        self.port = port or free_port()
        self.lines: list[str] = []
        self.proc = subprocess.Popen(
            [sys.executable, str(EXAMPLES / name / "app.py"), str(self.port)],
            cwd=ROOT,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        try:
            wait_for_port(self.port, self.proc)
        except BaseException:
            self.stop()
            raise

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def output(self) -> str:
        return "\n".join(self.lines)

    def stop(self) -> None:
        """SIGTERM (graceful: WebSockets get 1001), then SIGKILL if it lingers."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self._reader.join(5)


@contextlib.contextmanager
def example(name: str, port: int | None = None, **env: str) -> Iterator[Example]:
    ex = Example(name, port, **env)
    try:
        yield ex
    finally:
        ex.stop()


class Gate:
    """A TCP forwarder to ``upstream`` that can be shut: while shut, connections are
    accepted and closed at once, as a dead server's would be refused.

    The reconnection test loads one page through it, to decide which page gets back to the
    restarted server first.
    """

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.open = threading.Event()
        self.open.set()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self.listener.getsockname()[1])
        self._conns: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open.is_set():
                client.close()
                continue
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream), 5)
            except OSError:
                client.close()
                continue
            self._conns += [client, server]
            for src, dst in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):  # one side gone: the whole connection is
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.listener.close()
        for s in self._conns:
            with contextlib.suppress(OSError):
                s.close()


# -- chat ---------------------------------------------------------------------------------


def join_chat(page: Any, url: str) -> None:
    page.goto(url)
    expect(page.locator("#status")).to_have_text("connected")


def say(page: Any, text: str) -> None:
    page.fill("#messageInput", text)
    page.press("#messageInput", "Enter")


def lines_of(page: Any) -> list[str]:
    return [str(t) for t in page.locator("#messages div").all_inner_texts()]


def test_chat_message_reaches_the_other_page_once(pages: Any) -> None:
    with example("chat") as server:
        alice, bob = pages(), pages()
        join_chat(alice, server.url)
        join_chat(bob, server.url)
        say(alice, "hello from alice")
        expect(bob.locator("#messages")).to_contain_text("User: hello from alice")
        # A barrier: bob's reply reaches alice after any (wrong) echo of her own message would.
        say(bob, "hi alice")
        expect(alice.locator("#messages")).to_contain_text("User: hi alice")
        mine = [line for line in lines_of(alice) if "hello from alice" in line]
        assert mine == ["You: hello from alice"], lines_of(alice)
        theirs = [line for line in lines_of(bob) if "hello from alice" in line]
        assert theirs == ["User: hello from alice"], lines_of(bob)
        assert "Welcome to chat room!" in lines_of(alice)
        screenshot(alice, "chat")
    assert "Received: hello from alice" in server.output()


def test_chat_reconnects_after_a_server_restart(pages: Any) -> None:
    port = free_port()
    server = Example("chat", port)
    gate = Gate(port)
    try:
        alice, bob = pages(), pages()
        join_chat(alice, gate.url)  # alice's connections go through the gate
        join_chat(bob, server.url)
        say(alice, "before the restart")
        expect(bob.locator("#messages")).to_contain_text("User: before the restart")

        gate.open.clear()  # alice stays cut off until bob is back (see below)
        server.stop()
        for page in (alice, bob):
            expect(page.locator("#status")).to_contain_text("reconnecting")
        say(alice, "sent during the outage")
        expect(alice.locator("#queued")).to_contain_text("1 message")
        assert alice.evaluate("window.chat.queued") == 1

        server = Example("chat", port)  # the same port, a new process
        # Bob must be subscribed again before alice's queued message reaches the server,
        # or the message would be published to nobody: let alice through only then.
        expect(bob.locator("#status")).to_have_text("connected")
        expect(bob.locator("#messages")).to_contain_text("Reconnected.")
        gate.open.set()
        expect(alice.locator("#status")).to_have_text("connected")
        expect(bob.locator("#messages")).to_contain_text("User: sent during the outage")
        expect(alice.locator("#queued")).to_have_text("")
        assert alice.evaluate("window.chat.queued") == 0
        outage = [line for line in lines_of(alice) if "sent during the outage" in line]
        assert outage == ["You: sent during the outage"]
        # and the chat goes on both ways
        say(bob, "welcome back")
        expect(alice.locator("#messages")).to_contain_text("User: welcome back")
        screenshot(bob, "chat-reconnected")
        assert "Received: sent during the outage" in server.output()
    finally:
        gate.close()
        server.stop()


# -- dashboard ----------------------------------------------------------------------------


def test_dashboard_values_update(pages: Any) -> None:
    with example("dashboard", METRICS_INTERVAL="0.5") as server:
        page = pages()
        page.goto(server.url)
        expect(page.locator("#status")).to_have_text("connected")
        page.wait_for_function("Number(document.getElementById('samples').textContent) >= 1")
        first = page.inner_text("#updated")
        page.wait_for_function("Number(document.getElementById('samples').textContent) >= 4")
        assert page.inner_text("#updated") != first
        cpu = page.inner_text("#cpu")
        assert cpu.endswith("%") and 0.0 <= float(cpu[:-1]) <= 100.0, cpu
        assert page.inner_text("#clients") == "1"
        assert page.evaluate("points.length") >= 4
        # the canvas has something drawn on it
        assert page.evaluate(
            "(() => { const c = document.getElementById('chart');"
            " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
            " for (let i = 3; i < d.length; i += 4) if (d[i]) return true; return false; })()"
        )
        screenshot(page, "dashboard")


# -- origin policy --------------------------------------------------------------------------

PROBE_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>probe</title></head><body>
<p>A page from another origin that tries the app's WebSocket routes.</p>
<script>
window.probe = (url) => new Promise((resolve) => {
  const ws = new WebSocket(url);
  ws.onopen = () => ws.send("ping");
  ws.onmessage = (event) => { resolve("open:" + event.data); ws.close(); };
  ws.onclose = (event) => resolve("closed:" + event.code);
});
</script></body></html>
"""


def test_cross_origin_page_refused_by_default_allowed_when_listed(
    pages: Any, serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    class Page(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            body = PROBE_PAGE.encode()
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    other = ThreadingHTTPServer(("127.0.0.1", 0), Page)
    threading.Thread(target=other.serve_forever, daemon=True).start()
    other_origin = f"http://127.0.0.1:{other.server_address[1]}"

    def echo(ws: WebSocket, message: str | bytes, opcode: int) -> None:
        ws.send(message)

    app = App()
    app.websocket("/ws", {"message": echo})  # the default policy
    app.websocket("/ws-listed", {"message": echo}, allowed_origins=[other_origin])
    app.get("/", lambda: PROBE_PAGE)  # the same probe, same-origin
    caplog.set_level("INFO", logger="xyra")
    server = serve(app)
    try:
        ws_base = f"ws://127.0.0.1:{server.port}"
        cross = pages()
        cross.goto(other_origin + "/")
        assert cross.evaluate(f"probe({ws_base + '/ws'!r})") == "closed:1006"
        assert cross.evaluate(f"probe({ws_base + '/ws-listed'!r})") == "open:ping"
        same = pages()
        same.goto(f"http://127.0.0.1:{server.port}/")
        assert same.evaluate(f"probe({ws_base + '/ws'!r})") == "open:ping"
    finally:
        other.shutdown()
        other.server_close()
    refused = [r.getMessage() for r in caplog.records if "403" in r.getMessage()]
    assert refused and other_origin in refused[0], caplog.text

"""xyra.js (``XyraSocket``) in a real headless Chromium, against a real Xyra server.

* the send queue, JSON events, back-off with and without jitter, ``close()``;
* when it stops: the server closes with 4000-4999 or 1008 -> no second attempt, a
  ``giveup`` event says why; 1001, 1011 or a dropped connection (1006) -> it reconnects;
  ``shouldReconnect`` overrides the rule; ``connect()`` after a giveup starts afresh;
* a refused handshake (HTTP 403 from an ``upgrade`` handler): the page only sees 1006, so
  the client retries with back-off, until ``maxRetries``;
* ``minUptime``: a server that accepts and closes at once gets growing delays.

Connection attempts are counted on the server. "Exactly one attempt" is checked after the
client reports ``giveup`` and ``stopped`` (no socket and no retry timer): from then on
nothing can open a connection but an explicit ``connect()``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from kit import free_port

from xyra import App, Server, WebSocket
from xyra.http import Request, Response

pytestmark = pytest.mark.browser

WAIT = 10.0  # s, for anything the server should see

CLIENT_PAGE = """<!DOCTYPE html>
<html><head><meta charset="utf-8"><title>xyra.js</title></head><body>
<script src="/xyra.js"></script>
<script>
// Every event of socket `s` as [type, fields...] in window.log; window.asked holds what
// shouldReconnect was called with (when the test passes `ask: true`).
window.watch = (url, options, ask) => {
  window.log = [];
  window.asked = [];
  options = Object.assign({}, options || {});
  if (ask) {
    const rule = options.shouldReconnect || XyraSocket.defaultShouldReconnect;
    options.shouldReconnect = (ev) => {
      window.asked.push({code: ev.code, reason: ev.reason, wasClean: ev.wasClean,
                         opened: ev.opened, attempt: ev.attempt, type: ev.type});
      return rule(ev);
    };
  }
  const s = window.s = new XyraSocket(url, options);
  s.on("open", (ev) => log.push(["open", ev.attempt, ev.reconnected]));
  s.on("close", (ev) => log.push(["close", ev.code, ev.reason, ev.wasClean, ev.opened,
                                  ev.willReconnect]));
  s.on("reconnecting", (ev) => log.push(["reconnecting", ev.attempt, ev.delay]));
  s.on("giveup", (ev) => log.push(["giveup", ev.cause, ev.code, ev.reason, ev.opened,
                                   ev.attempt]));
  s.on("error", (ev) => { if (ev.error instanceof Error) log.push(["error", ev.error.message]); });
  s.on("message", (ev) => { if (ev.data === "echo") s.send("echo"); });
  return true;
};
window.events = (type) => window.log.filter((e) => e[0] === type);
</script></body></html>
"""

FAST = {"minDelay": 20, "maxDelay": 100, "factor": 2, "jitter": 0}


class Count:
    """A counter the server's handlers bump and the test waits on."""

    def __init__(self) -> None:
        self._n = 0
        self._cond = threading.Condition()

    def add(self) -> None:
        with self._cond:
            self._n += 1
            self._cond.notify_all()

    @property
    def value(self) -> int:
        with self._cond:
            return self._n

    def wait_for(self, n: int, timeout: float = WAIT) -> None:
        with self._cond:
            if not self._cond.wait_for(lambda: self._n >= n, timeout):
                raise AssertionError(f"expected {n} connection attempts, saw {self._n}")


def closing_route(app: App, path: str, count: Count, code: int | None, reason: str = "") -> None:
    """A route that accepts, counts, then closes with ``code``.

    ``code=None`` drops TCP without a close frame (the page sees 1006) once the page has
    answered a first message: a ``terminate()`` in ``open`` would also drop the handshake
    response, which is a refused handshake, not a lost connection.
    """

    def on_open(ws: WebSocket) -> None:
        count.add()
        if code is None:
            ws.send("echo")
        else:
            ws.close(code, reason)

    def on_message(ws: WebSocket, message: str | bytes, opcode: int) -> None:
        ws.terminate()

    app.websocket(path, {"open": on_open, "message": on_message})


def client_app() -> App:
    app = App()
    app.enable_client_js()
    app.get("/", lambda: CLIENT_PAGE)
    return app


@pytest.fixture
def page_on(pages: Any, serve: Callable[[App], Server]) -> Callable[[App], Any]:
    """``page = page_on(app)``: serve ``app`` and open a tab on its ``/`` (xyra.js loaded)."""

    def open_page(app: App) -> Any:
        server = serve(app)
        page = pages()
        page.goto(f"http://127.0.0.1:{server.port}/")
        return page

    return open_page


# -- when it stops ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "reason"),
    [
        (4401, "login required"),
        (4403, "forbidden"),
        (4000, ""),
        (4999, "x"),
        (1008, "policy violation"),
    ],
)
def test_application_close_codes_stop_after_one_attempt(
    page_on: Any, code: int, reason: str
) -> None:
    count = Count()
    app = client_app()
    closing_route(app, "/no", count, code, reason)
    page = page_on(app)
    page.evaluate(f"watch('/no', {FAST}, true)")
    page.wait_for_function("window.events('giveup').length === 1")
    assert page.evaluate("window.s.stopped") is True
    assert count.value == 1
    assert page.evaluate("window.log") == [
        ["open", 0, False],
        ["close", code, reason, True, True, False],
        ["giveup", "shouldReconnect", code, reason, True, 0],
    ]
    assert page.evaluate("window.asked") == [
        {
            "code": code,
            "reason": reason,
            "wasClean": True,
            "opened": True,
            "attempt": 0,
            "type": "close",
        }
    ]
    assert page.evaluate("window.s.readyState") == 3


@pytest.mark.parametrize(("code", "label"), [(1001, "going away"), (1011, "oops"), (None, "")])
def test_other_close_codes_reconnect(page_on: Any, code: int | None, label: str) -> None:
    count = Count()
    app = client_app()
    closing_route(app, "/flaky", count, code, label)
    page = page_on(app)
    page.evaluate(f"watch('/flaky', {FAST}, true)")
    count.wait_for(3)
    page.wait_for_function("window.events('reconnecting').length >= 2")
    page.evaluate("window.s.close()")
    page.wait_for_function("window.s.stopped")
    assert page.evaluate("window.events('giveup')") == []
    first_close = page.evaluate("window.events('close')[0]")
    if code is None:  # TCP dropped without a close frame
        assert first_close == ["close", 1006, "", False, True, True]
    else:
        assert first_close == ["close", code, label, True, True, True]
    asked = page.evaluate("window.asked")
    assert len(asked) >= 2 and all(a["opened"] for a in asked)


def test_custom_should_reconnect_overrides_the_default(page_on: Any) -> None:
    stop, keep = Count(), Count()
    app = client_app()
    closing_route(app, "/4401", keep, 4401, "login required")
    closing_route(app, "/1011", stop, 1011, "oops")
    page = page_on(app)

    # Retry a 4401 that the default would stop on.
    page.evaluate(f"watch('/4401', {{...{FAST}, shouldReconnect: (ev) => true}})")
    keep.wait_for(3)
    page.wait_for_function("window.events('reconnecting').length >= 2")
    page.evaluate("window.s.close()")
    page.wait_for_function("window.s.stopped")
    assert page.evaluate("window.events('giveup')") == []

    # Stop on a 1011 that the default would retry; the rule sees the close.
    page.evaluate(f"watch('/1011', {{...{FAST}, shouldReconnect: (ev) => ev.code !== 1011}}, true)")
    page.wait_for_function("window.events('giveup').length === 1")
    assert page.evaluate("window.s.stopped") is True
    assert stop.value == 1
    assert page.evaluate("window.events('giveup')") == [
        ["giveup", "shouldReconnect", 1011, "oops", True, 0]
    ]
    assert page.evaluate("window.asked") == [
        {
            "code": 1011,
            "reason": "oops",
            "wasClean": True,
            "opened": True,
            "attempt": 0,
            "type": "close",
        }
    ]

    # A rule that throws is reported, and the default decides (4401: stop).
    before = keep.value
    page.evaluate(
        f"watch('/4401', {{...{FAST}, shouldReconnect: () => {{ throw new Error('bug'); }}}})"
    )
    page.wait_for_function("window.events('giveup').length === 1")
    assert page.evaluate("window.events('error')") == [["error", "bug"]]
    assert page.evaluate("window.s.stopped") is True
    assert keep.value == before + 1


def test_close_by_the_page_does_not_ask_should_reconnect(page_on: Any) -> None:
    app = client_app()
    app.websocket("/ok", {"open": lambda ws: ws.send("hi")})
    page = page_on(app)
    page.evaluate("watch('/ok', {}, true)")
    page.wait_for_function("window.s.connected")
    page.evaluate("window.s.close(4000, 'bye')")
    page.wait_for_function("window.s.stopped")
    assert page.evaluate("window.asked") == []
    assert page.evaluate("window.events('giveup')") == []
    # (the close event carries the server's answer: Xyra echoes the code, not the reason)
    closes = page.evaluate("window.events('close').map((e) => [e[1], e[5]])")
    assert closes == [[4000, False]]


def test_connect_after_giveup_starts_afresh(page_on: Any) -> None:
    """The login flow: 4401 stops the client; once the user logs in, connect() again."""
    allowed = threading.Event()
    attempts = Count()

    def on_open(ws: WebSocket) -> None:
        attempts.add()
        if allowed.is_set():
            ws.send("welcome")
        else:
            ws.close(4401, "login required")

    app = client_app()
    app.websocket("/dash", {"open": on_open})
    page = page_on(app)
    page.evaluate(f"watch('/dash', {FAST})")
    page.wait_for_function("window.events('giveup').length === 1")
    assert attempts.value == 1
    allowed.set()
    page.evaluate("window.s.connect()")
    page.wait_for_function("window.s.connected")
    assert attempts.value == 2
    assert page.evaluate("window.events('open')") == [["open", 0, False], ["open", 0, True]]
    assert page.evaluate("window.s.attempt") == 0


# -- a refused handshake --------------------------------------------------------------------


def refusing_app(count: Count) -> App:
    def upgrade(request: Request) -> Response:
        count.add()
        return Response("go away", status=403)

    app = client_app()
    app.websocket("/refused", {"upgrade": upgrade, "open": lambda ws: None})
    return app


def test_refused_handshake_is_1006_and_retried_with_back_off(page_on: Any) -> None:
    count = Count()
    page = page_on(refusing_app(count))
    page.evaluate(f"watch('/refused', {FAST}, true)")
    count.wait_for(4)
    page.wait_for_function("window.events('reconnecting').length >= 3")
    page.evaluate("window.s.close()")
    page.wait_for_function("window.s.stopped")
    closes = page.evaluate("window.events('close')")
    # The 403 is invisible to the page: an abnormal closure, the handshake never completed.
    assert closes[0] == ["close", 1006, "", False, False, True]
    assert page.evaluate("window.events('open')") == []
    delays = [e[2] for e in page.evaluate("window.events('reconnecting')")]
    assert delays[:3] == [20, 40, 80]
    assert page.evaluate("window.asked")[0] == {
        "code": 1006,
        "reason": "",
        "wasClean": False,
        "opened": False,
        "attempt": 0,
        "type": "close",
    }


def test_refused_handshake_gives_up_after_max_retries(page_on: Any) -> None:
    count = Count()
    page = page_on(refusing_app(count))
    page.evaluate(f"watch('/refused', {{...{FAST}, maxRetries: 2}})")
    page.wait_for_function("window.events('giveup').length === 1")
    assert page.evaluate("window.s.stopped") is True
    assert count.value == 3  # the first attempt and two retries
    assert page.evaluate("window.events('giveup')") == [
        ["giveup", "maxRetries", 1006, "", False, 2]
    ]
    assert [e[1] for e in page.evaluate("window.events('reconnecting')")] == [1, 2]


# -- minUptime --------------------------------------------------------------------------------


@pytest.mark.parametrize(("min_uptime", "expected"), [(None, [20, 40, 80]), (0, [20, 20, 20])])
def test_connections_closed_at_once_back_off_unless_min_uptime_is_0(
    page_on: Any, min_uptime: int | None, expected: list[int]
) -> None:
    count = Count()
    app = client_app()
    closing_route(app, "/crash", count, 1011, "crash in open")
    page = page_on(app)
    options = dict(FAST) if min_uptime is None else {**FAST, "minUptime": min_uptime}
    page.evaluate(f"watch('/crash', {options})")
    page.wait_for_function("window.events('reconnecting').length >= 3")
    page.evaluate("window.s.close()")
    delays = [e[2] for e in page.evaluate("window.events('reconnecting')")]
    assert delays[:3] == expected


# -- the queue, JSON, back-off and close() ----------------------------------------------------


def test_client_js_queue_order_json_backoff_and_close(page_on: Any) -> None:
    received: list[str] = []
    five = Count()

    def on_message(ws: WebSocket, message: str | bytes, opcode: int) -> None:
        received.append(message if isinstance(message, str) else message.decode())
        five.add()
        if message == "talk":
            ws.send('{"a": 1}')
            ws.send("not json")
            ws.send(b"\x01\x02")

    app = client_app()
    app.websocket("/rec", {"message": on_message})
    page = page_on(app)
    port = page.evaluate("location.port")
    # Queued while not connected; what an open listener sends goes first; then the
    # queue in order.
    page.evaluate("""() => {
        window.events = [];
        const s = window.s = new XyraSocket("/rec", {autoConnect: false});
        s.on("open", (ev) => { s.send("from-open"); window.events.push("open"); });
        s.on("message", (ev) => window.events.push(typeof ev.data === "string"
            ? "message:" + ev.data : "binary:" + ev.data.byteLength));
        s.on("json", (ev) => window.events.push("json:" + JSON.stringify(ev.data)));
        window.queuedNow = [s.send("1"), s.send("2"), s.sendJSON({n: 3}), s.queued,
                            s.stopped];
        s.connect();
    }""")
    assert page.evaluate("window.queuedNow") == [False, False, False, 3, True]
    page.wait_for_function("window.s.connected && window.s.queued === 0")
    page.evaluate("window.s.send('talk')")
    page.wait_for_function("window.events.length >= 5")
    five.wait_for(5)
    assert received == ["from-open", "1", "2", '{"n":3}', "talk"]
    assert page.evaluate("window.events") == [
        "open",
        'message:{"a": 1}',
        'json:{"a":1}',
        "message:not json",
        "binary:2",
    ]
    assert page.evaluate("window.s.url") == f"ws://127.0.0.1:{port}/rec"

    # Back-off without jitter: min, x2, capped at max; close() stops it.
    dead = free_port()
    page.evaluate(f"""() => {{
        window.delays = [];
        const d = window.d = new XyraSocket("ws://127.0.0.1:{dead}/x",
            {{minDelay: 40, maxDelay: 200, factor: 2, jitter: 0}});
        d.on("reconnecting", (ev) => window.delays.push([ev.attempt, ev.delay]));
    }}""")
    page.wait_for_function("window.delays.length >= 5")
    page.evaluate("window.d.close()")
    page.wait_for_function("window.d.stopped")
    delays = page.evaluate("window.delays")
    assert delays[:5] == [[1, 40], [2, 80], [3, 160], [4, 200], [5, 200]]
    assert page.evaluate("window.d.readyState") == 3

    # Jitter keeps every delay within [d * (1 - jitter), d].
    page.evaluate(f"""() => {{
        window.jittered = [];
        const j = window.j = new XyraSocket("ws://127.0.0.1:{dead}/x",
            {{minDelay: 100, maxDelay: 100, jitter: 0.5}});
        j.on("reconnecting", (ev) => window.jittered.push(ev.delay));
    }}""")
    page.wait_for_function("window.jittered.length >= 4")
    page.evaluate("window.j.close()")
    assert all(50 <= d <= 100 for d in page.evaluate("window.jittered"))

    # close() on a live socket: a clean 1000 close, no reconnection.
    page.evaluate("""() => {
        window.closes = [];
        window.s.on("close", (ev) => window.closes.push([ev.code, ev.willReconnect]));
        window.s.close();
    }""")
    page.wait_for_function("window.closes.length === 1")
    assert page.evaluate("window.closes") == [[1000, False]]
    assert page.evaluate("window.s.stopped") is True

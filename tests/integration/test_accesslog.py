"""The access log: one line per handshake on ``xyra.access``, never the query string.

On with ``access_log=True`` (``xyra run``'s default) while the logger logs INFO; off with
``access_log=False`` (``--no-access-log``) or with the logger above INFO, when the server's
cached flag is off and nothing is formatted.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import websockets
from kit import (
    START_TIMEOUT,
    TIMEOUT,
    RawClient,
    free_port,
    recv,
    upgrade_request,
    wait_for_condition,
)
from websockets.exceptions import InvalidStatus

from xyra import App
from xyra.accesslog import extensions_of, path_of, remote

ROOT = Path(__file__).resolve().parents[2]


def chat_app() -> App:
    app = App()
    app.websocket(
        "/chat",
        {"message": lambda ws, m, op: ws.send(m)},
        subprotocols=["chat.v1"],
        compression="shared",
    )
    return app


def access_records(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "xyra.access"]


async def test_one_line_per_handshake_without_the_query(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xyra.access")
    server = await serve(chat_app(), access_log=True)
    url = f"ws://127.0.0.1:{server.port}"
    async with websockets.connect(
        f"{url}/chat?token=s3cret", subprotocols=["chat.v1"], open_timeout=TIMEOUT
    ) as client:
        await client.send("hi")
        assert await recv(client) == "hi"
        local = client.local_address
    with pytest.raises(InvalidStatus):
        await websockets.connect(f"{url}/missing?token=s3cret", open_timeout=TIMEOUT)

    await wait_for_condition(lambda: len(access_records(caplog)) == 2)
    accepted, refused = access_records(caplog)
    assert accepted.remote == f"{local[0]}:{local[1]}"  # type: ignore[attr-defined]
    assert accepted.path == "/chat" and accepted.status == 101  # type: ignore[attr-defined]
    assert accepted.subprotocol == "chat.v1"  # type: ignore[attr-defined]
    assert accepted.extensions.startswith("permessage-deflate")  # type: ignore[attr-defined]
    assert accepted.duration >= 0  # type: ignore[attr-defined]
    line = accepted.getMessage()
    assert line.startswith(f'{local[0]}:{local[1]} - "/chat" 101 subprotocol=chat.v1 ')
    assert 'extensions="permessage-deflate' in line and line.endswith("ms")
    assert refused.status == 404 and refused.path == "/missing"  # type: ignore[attr-defined]
    assert '"/missing" 404 subprotocol=- extensions=- ' in refused.getMessage()
    for record in access_records(caplog):
        assert "s3cret" not in record.getMessage() and "token" not in record.getMessage()


async def test_refusals_of_the_http_phase_are_logged(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xyra.access")
    server = await serve(chat_app(), access_log=True)
    raw = await RawClient.connect(server)
    await raw.send(upgrade_request("/chat?token=s3cret", version="8"))
    assert (await raw.recv_response()).status == 426
    raw.close()
    await wait_for_condition(lambda: len(access_records(caplog)) == 1)
    assert access_records(caplog)[0].getMessage().split(" - ")[1].startswith('"/chat" 426 ')


async def test_off_by_default_and_when_the_logger_is_quiet(
    serve: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="xyra.access")
    server = await serve(chat_app())  # access_log=False
    assert server.context.access_log is False
    async with websockets.connect(f"ws://127.0.0.1:{server.port}/chat", open_timeout=TIMEOUT):
        pass

    caplog.set_level(logging.WARNING, logger="xyra.access")
    quiet = await serve(chat_app(), access_log=True)
    assert quiet.context.access_log is False  # the cached flag follows the logger's level
    async with websockets.connect(f"ws://127.0.0.1:{quiet.port}/chat", open_timeout=TIMEOUT):
        pass
    assert access_records(caplog) == []

    caplog.set_level(logging.INFO, logger="xyra.access")  # the next tick turns it on
    await wait_for_condition(lambda: quiet.context.access_log is True)


def test_helpers() -> None:
    assert remote(("::1", 80, 0, 0)) == "[::1]:80"
    assert remote(None) == "-"
    assert path_of(b"/a/b?x=1") == "/a/b" and path_of(None) == "-"
    response = b"HTTP/1.1 101 OK\r\nSec-WebSocket-Extensions: permessage-deflate\r\n\r\n"
    assert extensions_of(response) == "permessage-deflate"
    assert extensions_of(b"HTTP/1.1 101 OK\r\n\r\n") is None


@pytest.mark.parametrize("flag", [None, "--no-access-log"])
async def test_xyra_run_logs_handshakes_unless_told_not_to(
    tmp_path: Path, flag: str | None
) -> None:
    (tmp_path / "logged_app.py").write_text(
        textwrap.dedent(
            """
            from xyra import App

            app = App()
            app.websocket("/ws", {"open": lambda ws: ws.send("hello")})
            """
        )
    )
    port = free_port()
    cmd = [sys.executable, "-m", "xyra", "run", "logged_app:app", "--port", str(port)]
    cmd += ["--app-dir", str(tmp_path), *([flag] if flag else [])]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:

        async def greeted() -> bool:
            try:
                async with websockets.connect(
                    f"ws://127.0.0.1:{port}/ws?token=s3cret", open_timeout=TIMEOUT
                ) as client:
                    return bool(await recv(client) == "hello")
            except OSError:
                return False

        await wait_for_condition(greeted, timeout=START_TIMEOUT)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    assert proc.returncode == 0, err
    logged = '"/ws" 101 subprotocol=- extensions=' in err
    assert logged == (flag is None), err
    assert "s3cret" not in err

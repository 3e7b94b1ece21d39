"""ASGI lifespan on Xyra's lifecycle, and ``xyra run`` serving ASGI apps (real processes)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import websockets
from kit import START_TIMEOUT, TIMEOUT, free_port, http_url, recv, served, wait_for_condition

from xyra import App
from xyra.asgi import LifespanFailed

fastapi = pytest.importorskip("fastapi")
httpx = pytest.importorskip("httpx")

from fastapi import FastAPI, Request  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def lifespan_app(log: list[str]) -> FastAPI:
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[dict[str, Any]]:
        log.append("startup")
        yield {"greeting": "hello from the lifespan state"}
        log.append("shutdown")

    api = FastAPI(lifespan=lifespan)

    @api.get("/state")
    async def state(request: Request) -> dict[str, str]:
        return {"greeting": request.state.greeting}

    return api


async def test_startup_and_shutdown_follow_the_server() -> None:
    log: list[str] = []
    app = App()
    app.on_startup(lambda: log.append("xyra startup"))
    app.mount("/", lifespan_app(log))
    app.on_shutdown(lambda: log.append("xyra shutdown"))
    async with served(app) as server:
        assert log == ["xyra startup", "startup"]
        async with httpx.AsyncClient() as client:
            r = await client.get(http_url(server, "/state"))
        assert r.json() == {"greeting": "hello from the lifespan state"}
    assert log == ["xyra startup", "startup", "shutdown", "xyra shutdown"]


async def test_failed_startup_stops_the_server() -> None:
    async def app_(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "lifespan"
        await receive()
        await send({"type": "lifespan.startup.failed", "message": "no database"})

    app = App()
    app.mount("/", app_)
    with pytest.raises(LifespanFailed, match="no database"):
        await app.start(0)


async def test_app_without_lifespan_is_served_quietly(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="xyra")

    async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
        assert scope["type"] == "http", "http only"
        await send({"type": "http.response.start", "status": 200, "headers": []})
        await send({"type": "http.response.body", "body": b"plain"})

    app = App()
    app.mount("/", plain)
    async with served(app) as server, httpx.AsyncClient() as client:
        assert (await client.get(http_url(server))).text == "plain"
    assert not [r for r in caplog.records if r.levelname in ("ERROR", "CRITICAL")]
    assert any("does not support lifespan" in r.getMessage() for r in caplog.records)


async def test_lifespan_on_requires_it() -> None:
    async def plain(scope: dict[str, Any], receive: Any, send: Any) -> None:
        raise RuntimeError("http only")

    app = App()
    app.mount("/", plain, lifespan="on")
    with pytest.raises(LifespanFailed):
        await app.start(0)


# -- xyra run ----------------------------------------------------------------------------------

MODULE = """
import contextlib
from fastapi import FastAPI, Request, WebSocket

@contextlib.asynccontextmanager
async def lifespan(app):
    print("lifespan startup", flush=True)
    yield
    print("lifespan shutdown", flush=True)

app = FastAPI(lifespan=lifespan)

@app.get("/where")
async def where(request: Request):
    return {"url": str(request.url_for("where")), "client": request.client.host,
            "scheme": request.url.scheme}

@app.websocket("/ws")
async def ws(websocket: WebSocket):
    await websocket.accept()
    text = await websocket.receive_text()
    await websocket.send_text(text.upper())

def make():
    return app
"""

FAILING = """
async def app(scope, receive, send):
    await receive()
    await send({"type": "lifespan.startup.failed", "message": "cannot reach the database"})
"""


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), e.get("PYTHONPATH")]))
    return e


def get_json(url: str, headers: dict[str, str] | None = None) -> Any:
    request = urllib.request.Request(url, headers=headers or {})
    with urllib.request.urlopen(request, timeout=TIMEOUT) as response:
        return json.loads(response.read())


@pytest.mark.parametrize("spec", ["asgi_main:app", "asgi_main:make --factory"])
async def test_xyra_run_serves_a_fastapi_app(tmp_path: Path, spec: str) -> None:
    (tmp_path / "asgi_main.py").write_text(MODULE)
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "xyra",
            "run",
            *spec.split(),
            "--port",
            str(port),
            "--root-path",
            "/prefix",
            "--forwarded-allow-ips",
            "127.0.0.1",
            "--log-level",
            "warning",
        ],
        cwd=tmp_path,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        base = f"http://127.0.0.1:{port}"

        def up() -> bool:
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=1):
                    return True
            except OSError:
                return False

        await wait_for_condition(up, timeout=START_TIMEOUT)
        data = get_json(base + "/where")
        assert data["url"] == f"{base}/prefix/where"
        data = get_json(
            base + "/where", {"X-Forwarded-For": "198.51.100.4", "X-Forwarded-Proto": "https"}
        )
        assert data["client"] == "198.51.100.4" and data["scheme"] == "https"
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT) as ws:
            await ws.send("shout")
            assert await recv(ws) == "SHOUT"
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, err
    assert "lifespan startup" in out and "lifespan shutdown" in out


@pytest.mark.parametrize(
    "workers",
    [
        [],
        pytest.param(
            ["--workers", "2"],
            marks=pytest.mark.skipif(not hasattr(os, "fork"), reason="workers need fork()"),
        ),
    ],
    ids=["one-process", "two-workers"],
)
def test_xyra_run_failed_startup_exits_with_3(tmp_path: Path, workers: list[str]) -> None:
    (tmp_path / "failing_main.py").write_text(FAILING)
    port = str(free_port())
    out = subprocess.run(
        [sys.executable, "-m", "xyra", "run", "failing_main:app", "--port", port, *workers],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert out.returncode == 3
    assert "startup failed: cannot reach the database" in out.stderr


def test_asgi_options_refused_for_a_xyra_app(tmp_path: Path) -> None:
    (tmp_path / "native_main.py").write_text("from xyra import App\napp = App()\n")
    out = subprocess.run(
        [sys.executable, "-m", "xyra", "run", "native_main:app", "--ws-max-size", "10"],
        cwd=tmp_path,
        env=env(),
        capture_output=True,
        text=True,
        timeout=START_TIMEOUT,
    )
    assert out.returncode == 1
    assert "--ws-max-size: for an ASGI application only" in out.stderr

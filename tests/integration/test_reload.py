"""``xyra run --reload``: an edited handler is served by a new process, seen by a real client.

And the options around it: refused with ``--workers > 1``, which files restart
(uvicorn's include and exclude patterns).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import websockets
from kit import START_TIMEOUT, TIMEOUT, free_port, recv, wait_for_condition

from xyra.__main__ import main
from xyra.reload import FileFilter

ROOT = Path(__file__).resolve().parents[2]

APP = textwrap.dedent(
    """
    from xyra import App

    app = App()
    app.websocket("/ws", {{"open": lambda ws: ws.send("{greeting}")}})
    """
)


async def greeting(port: int) -> str | None:
    """What a new connection is told first, or None while nothing listens."""
    try:
        async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT) as ws:
            return str(await recv(ws))
    except OSError:
        return None


async def test_an_edit_is_served_by_a_restarted_server(tmp_path: Path) -> None:
    source = tmp_path / "reload_app.py"
    source.write_text(APP.format(greeting="v1"))
    port = free_port()
    cmd = [sys.executable, "-m", "xyra", "run", "reload_app:app", "--reload"]
    cmd += ["--app-dir", str(tmp_path), "--port", str(port)]
    proc = subprocess.Popen(
        cmd,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # the reloader and its server: one group to clean up
    )
    try:
        seen: list[str | None] = []

        async def says(expected: str) -> bool:
            seen.append(await greeting(port))
            return seen[-1] == expected

        await wait_for_condition(lambda: says("v1"), timeout=START_TIMEOUT)
        (tmp_path / "notes.txt").write_text("not a source file")  # no restart for this
        source.write_text(APP.format(greeting="v2"))  # the same size as v1
        await wait_for_condition(
            lambda: says("v2"), timeout=START_TIMEOUT, message=lambda: f"seen {seen[-5:]}"
        )
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    assert proc.returncode == 0, err
    assert "development only" in err
    assert "reload_app.py changed; restarting" in err and "notes.txt" not in err
    assert await greeting(port) is None  # the server went with the reloader


def test_reload_refuses_workers(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "some:app", "--reload", "--workers", "2"]) == 2
    err = capsys.readouterr().err
    assert "--reload" in err and "--workers 2" in err and "development" in err
    assert main(["run", "some:app", "--reload-dir", "."]) == 2
    assert "need --reload" in capsys.readouterr().err


def test_file_filter_follows_uvicorns_patterns(tmp_path: Path) -> None:
    default = FileFilter()
    assert default(None, str(tmp_path / "app.py"))
    assert default(None, str(tmp_path / "pkg" / "handlers.py"))
    assert not default(None, str(tmp_path / "notes.txt"))
    assert not default(None, str(tmp_path / ".hidden.py"))  # ".*"
    assert not default(None, str(tmp_path / "__pycache__" / "app.py"))
    assert not default(None, str(tmp_path / ".venv" / "lib" / "x.py"))

    (tmp_path / "templates").mkdir()
    (tmp_path / "vendor").mkdir()
    chosen = FileFilter(includes=["*.html", ".*"], excludes=["*_test.py", str(tmp_path / "vendor")])
    assert chosen(None, str(tmp_path / "templates" / "index.html"))
    assert chosen(None, str(tmp_path / "app.py"))  # the default include stays
    assert chosen(None, str(tmp_path / ".env.py"))  # ".*" included: no longer excluded
    assert not chosen(None, str(tmp_path / "app_test.py"))
    assert not chosen(None, str(tmp_path / "vendor" / "lib.py"))  # an excluded directory
    assert not FileFilter(excludes=["*.py"])(None, str(tmp_path / "app.py"))

"""The ``xyra`` command: ``--version``, ``run module:app`` (a real server), ``bench``."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import websockets
from kit import START_TIMEOUT, TIMEOUT, free_port, recv, wait_for_condition

import xyra
from xyra.__main__ import AppSpecError, load_app, main

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).parent / "xyra"


def commands() -> list[list[str]]:
    """The console script next to this interpreter (if installed) and ``python -m xyra``."""
    found = [[str(SCRIPT)]] if SCRIPT.exists() else []
    if not found and shutil.which("xyra"):
        found = [[shutil.which("xyra") or "xyra"]]
    return [*found, [sys.executable, "-m", "xyra"]]


COMMANDS = pytest.mark.parametrize(
    "cmd", commands(), ids=lambda c: "python-m-xyra" if "-m" in c else "console-script"
)


def env() -> dict[str, str]:
    # The subprocess must find the module through `xyra run` itself (cwd on sys.path),
    # not through an inherited PYTHONPATH.
    e = dict(os.environ)
    e.pop("PYTHONPATH", None)
    return e


@COMMANDS
def test_version(cmd: list[str]) -> None:
    out = subprocess.run(
        [*cmd, "--version"], capture_output=True, text=True, timeout=30, env=env(), cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == f"xyra {xyra.__version__}"


def test_version_has_one_source() -> None:
    from xyra._version import __version__

    assert xyra.__version__ == __version__
    if sys.version_info >= (3, 11):
        import tomllib

        meta = tomllib.loads((ROOT / "pyproject.toml").read_text())
        assert "version" in meta["project"]["dynamic"]
        assert meta["tool"]["setuptools"]["dynamic"]["version"] == {
            "attr": "xyra._version.__version__"
        }


async def _first_message(port: int) -> str | bytes:
    """The first message of a connection to the started server, once it listens."""
    received: list[str | bytes] = []

    async def listening_and_received() -> bool:
        try:
            async with websockets.connect(f"ws://127.0.0.1:{port}/ws", open_timeout=TIMEOUT) as ws:
                received.append(await recv(ws))
        except OSError:
            return False  # not listening yet
        return True

    await wait_for_condition(listening_and_received, timeout=START_TIMEOUT)
    return received[0]


@COMMANDS
async def test_run_example_app(cmd: list[str]) -> None:
    assert (ROOT / "examples" / "simple_handler.py").exists()
    port = free_port()
    proc = subprocess.Popen(
        [*cmd, "run", "examples.simple_handler:app", "--port", str(port)],
        cwd=ROOT,
        env=env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        try:
            message = await _first_message(port)
        except AssertionError:
            proc.kill()
            _, err = proc.communicate(timeout=10)
            pytest.fail(f"xyra run did not serve on {port}; exit {proc.returncode}:\n{err}")
        assert message == "Connected!"
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
        assert proc.returncode == 0, err
        assert "listening on" in err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=10)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("examples.simple_handler", "<module>:<attribute>"),
        (":app", "<module>:<attribute>"),
        ("examples.simple_handler:", "<module>:<attribute>"),
        ("no_such_module_xyra_test:app", "could not import module 'no_such_module_xyra_test'"),
        ("examples.no_such_module:app", "could not import module 'examples.no_such_module'"),
        ("examples.simple_handler:nope", "has no attribute 'nope'"),
        ("examples.simple_handler:sys", "is a module, not a xyra.App"),
        ("examples.simple_handler:App", "pass --factory"),
    ],
)
def test_bad_app_specs(spec: str, message: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    with pytest.raises(AppSpecError, match=message.replace(".", r"\.").replace("(", r"\(")):
        load_app(spec, str(ROOT))


def test_bad_spec_exit_status(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    assert main(["run", "--app-dir", str(ROOT), "examples.simple_handler:nope"]) == 1
    assert "xyra: error: module 'examples.simple_handler' has no attribute 'nope'" in (
        capsys.readouterr().err
    )


def test_import_error_inside_the_module_propagates(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "broken_xyra_app.py").write_text("import not_installed_xyra_dep\n")
    with pytest.raises(ModuleNotFoundError, match="not_installed_xyra_dep"):
        load_app("broken_xyra_app:app", str(tmp_path))


def test_factory_and_dotted_attribute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "factory_xyra_app.py").write_text(
        "from xyra import App\nclass holder:\n    app = App()\ndef make():\n    return holder.app\n"
    )
    import_dir = str(tmp_path)
    made = load_app("factory_xyra_app:make", import_dir, factory=True)
    assert made is load_app("factory_xyra_app:holder.app", import_dir)
    assert isinstance(made, xyra.App)


def test_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    assert main([]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["run", "--port", "70000", "a:b"])
    assert exc.value.code == 2
    assert "--port" in capsys.readouterr().err


def test_bench_dispatch(monkeypatch: pytest.MonkeyPatch) -> None:
    import xyra.bench

    seen: list[list[str] | None] = []

    def fake(argv: list[str] | None = None) -> int:
        seen.append(argv)
        return 7

    monkeypatch.setattr(xyra.bench, "main", fake)
    assert main(["bench", "--quick", "--workloads", "echo"]) == 7
    assert seen == [["--quick", "--workloads", "echo"]]

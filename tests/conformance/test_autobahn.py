"""Autobahn TestSuite conformance of Xyra's echo server (see run_autobahn.py).

wstest lives in a Python 2.7 venv made by `bash .ci/autobahn-venv.sh` (found through
XYRA_AUTOBAHN_WSTEST, else XYRA_AUTOBAHN_VENV, else /opt/xyra-autobahn). Without it these tests
skip, unless XYRA_REQUIRE_AUTOBAHN is set (CI sets it), where a missing wstest is a failure.
The compression cases (12.*, 13.*) take about 11 minutes: they run only with
XYRA_AUTOBAHN_COMPRESSION=1.
"""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "run_autobahn.py"
ECHO_SERVER = HERE / "echo_server.py"
# The same echo as a raw ASGI app served by Xyra's ASGI adapter (docs/asgi.md).
ASGI_ECHO_SERVER = HERE / "asgi_echo_server.py"

# Loaded by path so this works under any pytest import mode (tests/ has no packages).
_spec = importlib.util.spec_from_file_location("xyra_run_autobahn", RUNNER)
assert _spec is not None and _spec.loader is not None
run_autobahn = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(run_autobahn)

pytestmark = pytest.mark.conformance


def wstest_or_skip() -> Path:
    wstest: Path = run_autobahn.default_wstest()
    if os.access(wstest, os.X_OK):
        return wstest
    message = f"Autobahn wstest not found at {wstest}; create it with `bash .ci/autobahn-venv.sh`"
    if os.environ.get("XYRA_REQUIRE_AUTOBAHN"):
        pytest.fail(f"{message} (XYRA_REQUIRE_AUTOBAHN is set)")
    pytest.skip(f"{message} (set XYRA_REQUIRE_AUTOBAHN=1 to fail instead)")


def server_env() -> dict[str, str]:
    """The echo server must import the same xyra as this test session (an in-place build in
    the checkout, or the installed wheel), whatever the server's own sys.path would find."""
    env = dict(os.environ)
    spec = importlib.util.find_spec("xyra")
    if spec is not None and spec.origin is not None:
        root = str(Path(spec.origin).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [root, env.get("PYTHONPATH")]))
    return env


def run_conformance(
    outdir: Path, cases: str, timeout: float, *server_args: str, server: Path = ECHO_SERVER
) -> None:
    wstest = wstest_or_skip()
    command = [
        sys.executable,
        str(RUNNER),
        f"--cases={cases}",
        f"--outdir={outdir}",
        f"--wstest={wstest}",
        f"--timeout={timeout}",
        "--",
        sys.executable,
        str(server),
        "{port}",
        *server_args,
    ]
    # The runner enforces its own timeouts; this outer one only guards against a hung runner.
    proc = subprocess.run(
        command, capture_output=True, text=True, timeout=timeout + 120, env=server_env()
    )
    assert proc.returncode == 0, (
        f"Autobahn cases {cases} failed (exit {proc.returncode}); reports in {outdir}\n"
        f"{proc.stdout}\n{proc.stderr}"
    )


@pytest.mark.timeout(900)
def test_autobahn_core_cases(tmp_path: Path) -> None:
    run_conformance(tmp_path / "autobahn", run_autobahn.DEFAULT_CASES, 600)


@pytest.mark.timeout(900)
def test_autobahn_core_cases_through_asgi(tmp_path: Path) -> None:
    """Cases 1-10 against a raw ASGI echo app: the ASGI path must not weaken conformance."""
    run_conformance(tmp_path / "autobahn", run_autobahn.DEFAULT_CASES, 600, server=ASGI_ECHO_SERVER)


@pytest.mark.slow_conformance
@pytest.mark.timeout(3600)
@pytest.mark.skipif(
    os.environ.get("XYRA_AUTOBAHN_COMPRESSION") != "1",
    reason="compression cases 12.*/13.* take ~11 min: set XYRA_AUTOBAHN_COMPRESSION=1",
)
def test_autobahn_compression_cases(tmp_path: Path) -> None:
    run_conformance(tmp_path / "autobahn", "12.*,13.*", 3000, "--compression", "shared")

"""``xyra bench --baseline PATH``: the peer that runs another checkout's xyra adapter.

No sockets: the baseline is a copy of this checkout's ``xyra`` package in a temporary
folder (with a version of its own, so a test can tell the two apart), and what the
server would import is checked by starting Python with the peer's environment.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import xyra
from xyra.bench import main, report
from xyra.bench.peers import BASELINE, PEERS, baseline_peer, checkout_ref
from xyra.bench.workloads import WORKLOADS

# The folder `import xyra` came from: a checkout, or site-packages for an installed wheel.
HERE = Path(xyra.__file__).resolve().parent.parent
OLD_VERSION = "0.0.1+baseline-test"
# `xyra bench` itself (pinning, /proc) runs on Linux only; the peer works anywhere.
LINUX_ONLY = pytest.mark.skipif(sys.platform != "linux", reason="xyra bench is Linux-only")


def copy_checkout(dest: Path, *, built: bool = True) -> Path:
    """A checkout-like folder holding this xyra package (without the compiled modules
    unless ``built``), its version changed to ``OLD_VERSION``."""
    skip = ["__pycache__"] + ([] if built else ["*.so", "*.pyd"])
    shutil.copytree(HERE / "xyra", dest / "xyra", ignore=shutil.ignore_patterns(*skip))
    (dest / "xyra" / "_version.py").write_text(f'__version__ = "{OLD_VERSION}"\n')
    return dest


def imported_from(env: dict[str, str], cwd: Path) -> str:
    """Where ``import xyra`` finds the package for a process started with ``env``."""
    out = subprocess.run(
        [sys.executable, "-c", "import xyra; print(xyra.__file__)"],
        env=env,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    return out.stdout.strip()


def test_baseline_peer_runs_the_other_checkout(tmp_path: Path) -> None:
    old = copy_checkout(tmp_path / "old-xyra")
    peer = baseline_peer(old)
    assert peer.name == BASELINE and peer.checkout == old
    assert peer.command(4321) == [sys.executable, "-m", "xyra.bench.servers.xyra_server", "4321"]
    env = peer.env()
    assert env["PYTHONPATH"] == str(old)
    # What the server process imports: the baseline's package, not this one.
    elsewhere = tmp_path / "cwd"
    elsewhere.mkdir()
    assert Path(imported_from(env, elsewhere)).resolve() == old / "xyra" / "__init__.py"
    assert peer.unavailable() is None
    assert peer.version() == OLD_VERSION != xyra.__version__
    # Not a git checkout: the label names the folder.
    assert peer.title(peer.version()) == f"xyra {OLD_VERSION} (baseline old-xyra)"
    # The load process stays this checkout's, whatever the baseline is.
    assert Path(PEERS["xyra"].env()["PYTHONPATH"]).resolve() == HERE


def test_baseline_serves_what_the_xyra_adapter_serves(tmp_path: Path) -> None:
    peer = baseline_peer(copy_checkout(tmp_path / "old"))
    for w in WORKLOADS.values():
        assert peer.supports(w) == PEERS["xyra"].supports(w), w.name
    # ... which includes the routes only some adapters have (socketify has no memory one).
    assert peer.supports(WORKLOADS["dedicated_memory"]) is None
    assert PEERS["socketify"].supports(WORKLOADS["dedicated_memory"]) is not None


@pytest.mark.skipif(shutil.which("git") is None, reason="no git")
def test_label_names_the_commit_of_a_git_checkout(tmp_path: Path) -> None:
    old = copy_checkout(tmp_path / "repo")
    git = ["git", "-C", str(old), "-c", "user.name=t", "-c", "user.email=t@example.invalid"]
    env = {**os.environ, "GIT_CONFIG_GLOBAL": os.devnull, "GIT_CONFIG_NOSYSTEM": "1"}
    subprocess.run([*git, "init", "-q"], check=True, env=env, timeout=60)
    subprocess.run([*git, "add", "xyra"], check=True, env=env, timeout=60)
    subprocess.run([*git, "commit", "-q", "-m", "old"], check=True, env=env, timeout=60)
    short = subprocess.run(
        [*git, "rev-parse", "--short", "HEAD"],
        check=True,
        env=env,
        timeout=60,
        capture_output=True,
        text=True,
    ).stdout.strip()
    assert checkout_ref(old) == short
    assert baseline_peer(old).title("0.1") == f"xyra 0.1 (baseline {short})"
    # A modified tracked file is flagged: the figures are not that commit's.
    (old / "xyra" / "_version.py").write_text('__version__ = "changed"\n')
    assert checkout_ref(old) == short + "+"
    # A folder inside some repository is named, not given the repository's commit.
    assert checkout_ref(old / "xyra") == "xyra"


@LINUX_ONLY
def test_a_checkout_that_is_not_built_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    old = copy_checkout(tmp_path / "unbuilt", built=False)
    why = baseline_peer(old).unavailable()
    assert why is not None and "build_ext --inplace" in why
    argv = ["--quick", "--peers", "raw", "--workloads", "pingpong", "--baseline", str(old)]
    assert main(argv) == 2
    assert "build_ext --inplace" in capsys.readouterr().err


@LINUX_ONLY
def test_a_folder_without_the_adapter_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(ValueError, match=r"xyra_server\.py"):
        baseline_peer(tmp_path)
    assert main(["--quick", "--peers", "raw", "--baseline", str(tmp_path)]) == 2
    assert "not a checkout of Xyra" in capsys.readouterr().err


def row(workload: str, peer: str, median: float | None, per_cpu: float | None) -> dict[str, Any]:
    """A result row as ``report.summarize`` makes it (the fields the figures read)."""
    w = WORKLOADS[workload]
    return {
        "workload": workload,
        "peer": peer,
        "label": peer,
        "unit": w.unit,
        "higher_is_better": w.higher_is_better,
        "median": median,
        "per_server_cpu_s": per_cpu,
        "samples": [],
    }


def test_report_compares_xyra_with_its_baseline_per_workload() -> None:
    rows = [
        row("echo_small", "xyra", 1.3e6, 1.3e6),
        row("echo_small", BASELINE, 1.0e6, 1.25e6),
        row("echo_small", "socketify", 2.0e6, 2.0e6),
        row("idle_10k", "xyra", 1400, None),
        row("idle_10k", BASELINE, 1750, None),
        row("pingpong", "xyra", 10e3, 20e3),  # no baseline figure: no line
        row("pingpong", BASELINE, None, None),
        row("connect", "xyra", 7e3, 7e3),  # baseline not run: no line
    ]
    assert report.baseline_figures(rows) == [
        "  echo_small: 1.3 M vs 1 M msg/s = 1.30x (per server CPU-s 1.04x)",
        "  idle_10k: 1.4 k vs 1.75 k bytes/conn (lower is better) = 0.80x",
    ]

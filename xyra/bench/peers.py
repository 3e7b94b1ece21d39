"""The servers compared: how to start each one, what it can run, whether it is here.

Every peer but one runs in this interpreter's environment. xyra 0.2.7 (the
original, uWebSockets through CFFI) is also named ``xyra`` on PyPI, so it lives
in a venv of its own that ``--setup-peers`` creates.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import os
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from xyra.bench import workloads as wl

SERVERS = Path(__file__).resolve().parent / "servers"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xyra-bench"
VENV_027 = CACHE / "venv-xyra027"
PYTHON_027 = VENV_027 / "bin" / "python"


@dataclass(frozen=True)
class Peer:
    """One server under test."""

    name: str
    label: str  # "{v}" stands for the version
    module: str  # adapter module in xyra.bench.servers
    distribution: str | None = None  # what must be installed (None: nothing beyond xyra)
    raw: bool = False  # a raw TCP echo, no WebSocket
    skips: dict[str, str] = field(default_factory=dict)  # workload -> why it cannot run

    def title(self, version: str | None) -> str:
        """The label with the version filled in."""
        return self.label.replace("{v}", version or "").replace("  ", " ")

    def supports(self, w: wl.Workload) -> str | None:
        """None if the peer can run ``w``, else why not."""
        if self.raw and not w.raw_serves:
            return "raw uvloop server: echo, connect and idle workloads only"
        if w.peers and self.name not in w.peers:
            who = " and ".join(w.peers)
            return f"its route is served only by the {who} adapter{'s' if len(w.peers) > 1 else ''}"
        return self.skips.get(w.name)

    def command(self, port: int) -> list[str]:
        """The argv that starts this peer's adapter on ``port``."""
        if self.name == "xyra027":
            # By path, so `import xyra` inside finds 0.2.7 in its venv.
            return [str(PYTHON_027), str(SERVERS / "xyra027_server.py"), str(port)]
        return [sys.executable, "-m", f"xyra.bench.servers.{self.module}", str(port)]

    def env(self) -> dict[str, str]:
        """The adapter's environment: this checkout of xyra importable, or kept out (0.2.7)."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if self.name != "xyra027":
            env["PYTHONPATH"] = str(Path(importlib.import_module("xyra").__path__[0]).parent)
        return env

    def unavailable(self) -> str | None:
        """None if the peer can be started here, else a note saying why not."""
        if self.name == "xyra027":
            if not PYTHON_027.exists():
                return f"not installed: run `xyra bench --setup-peers` (venv at {VENV_027})"
            return None
        if self.name == "xyra":
            try:
                importlib.import_module("xyra").App  # noqa: B018 - the check itself
            except (ImportError, AttributeError) as exc:
                return f"xyra.App not importable ({exc}); build it first"
            return None
        if self.distribution and importlib.util.find_spec(self.distribution) is None:
            return f"not installed: pip install {self.distribution}"
        return None

    def version(self) -> str:
        """The peer's version, for the report."""
        try:
            if self.name == "xyra":
                from xyra._version import __version__

                return __version__
            if self.name == "xyra027":
                out = subprocess.run(
                    [
                        str(PYTHON_027),
                        "-c",
                        "import importlib.metadata as m;print(m.version('xyra'))",
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                    cwd=str(CACHE),
                    check=True,
                )
                return out.stdout.strip()
            return importlib.metadata.version(self.distribution or "uvloop")
        except Exception:
            return "?"


PAYLOAD_027 = (
    "0.2.7's C API leaves uWS maxPayloadLength at its 16 KiB default: larger messages close"
)

PEERS: dict[str, Peer] = {
    p.name: p
    for p in (
        Peer("xyra", "xyra {v}", "xyra_server"),
        Peer("socketify", "socketify {v}", "socketify_server", "socketify"),
        Peer("picows", "picows {v}", "picows_server", "picows"),
        Peer("websockets", "websockets {v}", "websockets_server", "websockets"),
        Peer("aiohttp", "aiohttp {v}", "aiohttp_server", "aiohttp"),
        Peer(
            "xyra027",
            "xyra {v} (PyPI, uWS)",
            "xyra027_server",
            skips={"large_64k": PAYLOAD_027, "large_1m": PAYLOAD_027},
        ),
        Peer("raw", "raw echo, uvloop {v} (limit)", "raw_echo", "uvloop", raw=True),
    )
}


def parse_peers(text: str | None) -> list[Peer]:
    """``a,b`` -> the named peers (all of them for None)."""
    if not text:
        return list(PEERS.values())
    names = [n.strip() for n in text.split(",") if n.strip()]
    unknown = [n for n in names if n not in PEERS]
    if unknown:
        raise ValueError(f"unknown peer(s): {', '.join(unknown)}; choose from {', '.join(PEERS)}")
    return [PEERS[n] for n in names]


def setup_peers() -> int:
    """Create the xyra 0.2.7 venv (and say what else is missing); 0 on success."""
    CACHE.mkdir(parents=True, exist_ok=True)
    status = 0
    if not PYTHON_027.exists():
        print(f"creating {VENV_027} with xyra==0.2.7 ...", flush=True)
        try:
            subprocess.run([sys.executable, "-m", "venv", str(VENV_027)], check=True, timeout=300)
            subprocess.run(
                [str(PYTHON_027), "-m", "pip", "install", "--quiet", "xyra==0.2.7"],
                check=True,
                timeout=900,
            )
        except (subprocess.SubprocessError, OSError) as exc:
            print(f"  failed: {exc}", file=sys.stderr)
            status = 1
    print(f"xyra 0.2.7: {PEERS['xyra027'].unavailable() or 'ready'}")
    missing = [
        p.distribution
        for p in PEERS.values()
        if p.distribution and p.name != "xyra027" and p.unavailable()
    ]
    if missing:
        print(
            "not installed in this environment (install to compare): pip install "
            + " ".join(sorted(set(missing)))
        )
    return status

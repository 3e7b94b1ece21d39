"""The servers compared: how to start each one, what it can run, whether it is here.

Every peer but one runs in this interpreter's environment. xyra 0.2.7 (the
original, uWebSockets through CFFI) is also named ``xyra`` on PyPI, so it lives
in a venv of its own that ``--setup-peers`` creates.

``--baseline PATH`` adds one more: another checkout of Xyra (an older commit, built in
place), whose own ``xyra.bench.servers.xyra_server`` adapter runs with ``PYTHONPATH=PATH``
next to this checkout's, so a change's before and after come from one run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from xyra.bench import workloads as wl

SERVERS = Path(__file__).resolve().parent / "servers"
CACHE = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "xyra-bench"
VENV_027 = CACHE / "venv-xyra027"
PYTHON_027 = VENV_027 / "bin" / "python"
BASELINE = "xyra-base"  # the name of the --baseline peer
ADAPTER = Path("xyra", "bench", "servers", "xyra_server.py")  # what a baseline must have


@dataclass(frozen=True)
class Peer:
    """One server under test."""

    name: str
    label: str  # "{v}" stands for the version
    module: str  # adapter module in xyra.bench.servers
    distribution: str | None = None  # what must be installed (None: nothing beyond xyra)
    raw: bool = False  # a raw TCP echo, no WebSocket
    skips: dict[str, str] = field(default_factory=dict)  # workload -> why it cannot run
    checkout: Path | None = None  # --baseline: the other Xyra checkout it runs from
    backplane: bool = False  # served with a Redis backplane (the runner starts redis-server)
    asgi: bool = False  # an ASGI server: serves the asgi_* workloads only
    requires: tuple[str, ...] = ()  # more modules it needs than its distribution

    def title(self, version: str | None) -> str:
        """The label with the version filled in."""
        return self.label.replace("{v}", version or "").replace("  ", " ")

    def supports(self, w: wl.Workload) -> str | None:
        """None if the peer can run ``w``, else why not."""
        if self.raw and not w.raw_serves:
            return "raw uvloop server: echo, connect and idle workloads only"
        if self.backplane and w.kind != wl.PUBSUB:
            return "the backplane row: pub/sub workloads only"
        if self.asgi and not w.asgi:
            return "an ASGI server: the asgi_* workloads only"
        # A baseline serves whatever routes the xyra adapter serves.
        if w.peers and ("xyra" if self.checkout else self.name) not in w.peers:
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
        """The adapter's environment: this checkout of xyra importable, or the baseline's,
        or neither (0.2.7)."""
        env = dict(os.environ)
        env.pop("PYTHONPATH", None)
        if self.checkout is not None:
            env["PYTHONPATH"] = str(self.checkout)
        elif self.name != "xyra027":
            env["PYTHONPATH"] = str(Path(importlib.import_module("xyra").__path__[0]).parent)
        return env

    def unavailable(self) -> str | None:
        """None if the peer can be started here, else a note saying why not."""
        if self.checkout is not None:
            probe = probe_checkout(self.checkout)
            return probe if isinstance(probe, str) else None
        if self.name == "xyra027":
            if not PYTHON_027.exists():
                return f"not installed: run `xyra bench --setup-peers` (venv at {VENV_027})"
            return None
        if self.backplane and shutil.which("redis-server") is None:
            return "redis-server not found (Debian: apt-get install redis-server)"
        if self.name in ("xyra", "xyra-redis"):
            try:
                importlib.import_module("xyra").App  # noqa: B018 - the check itself
            except (ImportError, AttributeError) as exc:
                return f"xyra.App not importable ({exc}); build it first"
            return None
        for module in (self.distribution, *self.requires):
            if module and importlib.util.find_spec(module) is None:
                return f"not installed: pip install {module}"
        return None

    def version(self) -> str:
        """The peer's version, for the report."""
        try:
            if self.checkout is not None:
                probe = probe_checkout(self.checkout)
                return "?" if isinstance(probe, str) else probe["version"]
            if self.name in ("xyra", "xyra-redis", "xyra-asgi"):
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
        # The same server with --backplane redis://: each publish is also forwarded to
        # Redis (one pipelined write per loop iteration); its echo comes back and is dropped.
        Peer("xyra-redis", "xyra {v} + Redis backplane", "xyra_server", backplane=True),
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
        Peer(
            "xyra-asgi", "xyra {v} (ASGI)", "xyra_asgi_server", asgi=True, requires=("starlette",)
        ),
        Peer(
            "uvicorn",
            "uvicorn {v} websockets",
            "uvicorn_server",
            "uvicorn",
            asgi=True,
            requires=("websockets", "httptools", "starlette"),
        ),
        Peer(
            "uvicorn-wsproto",
            "uvicorn {v} wsproto",
            "uvicorn_wsproto_server",
            "uvicorn",
            asgi=True,
            requires=("wsproto", "httptools", "starlette"),
        ),
        Peer(
            "granian",
            "granian {v}",
            "granian_server",
            "granian",
            asgi=True,
            requires=("starlette",),
        ),
    )
}


# What a baseline checkout must import: the adapter, and through it the compiled core.
_PROBE = """
import json
import xyra, xyra.bench.servers.xyra_server
try:
    from xyra._version import __version__ as v
except ImportError:
    v = getattr(xyra, "__version__", "?")
print(json.dumps({"file": xyra.__file__, "version": v}))
"""
_probes: dict[Path, dict[str, str] | str] = {}


def probe_checkout(path: Path) -> dict[str, str] | str:
    """Import the baseline's adapter the way its server will (``PYTHONPATH=path``, in a
    fresh interpreter): ``{"version", "file"}``, or why it cannot run. Cached."""
    if path in _probes:
        return _probes[path]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(path)
    result: dict[str, str] | str
    try:
        out = subprocess.run(
            [sys.executable, "-c", _PROBE],
            capture_output=True,
            text=True,
            env=env,
            cwd=str(path),
            timeout=60,
            check=False,
        )
    except (OSError, subprocess.SubprocessError) as exc:
        result = f"cannot start Python for it: {exc}"
    else:
        lines = out.stderr.strip().splitlines()
        if out.returncode:
            result = (
                f"its xyra adapter does not import ({lines[-1] if lines else out.returncode});"
                f" build it first: cd {path} && python setup.py build_ext --inplace"
            )
        else:
            try:
                found = json.loads(out.stdout.strip().splitlines()[-1])
            except (IndexError, ValueError):
                found = {"file": f"nothing readable ({out.stdout.strip()[-200:]!r})"}
            if not Path(found["file"]).resolve().is_relative_to(path):
                result = f"`import xyra` there loads {found['file']}, not the checkout's"
            else:
                result = found
    _probes[path] = result
    return result


def _git(path: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "-C", str(path), *args],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def checkout_ref(path: Path) -> str:
    """What the label calls a checkout: its short commit (``+`` if tracked files are
    modified), or the folder's name if it is not a git checkout."""
    if _git(path, "rev-parse", "--show-toplevel") not in (str(path), None):
        # A folder inside some other repository: its commit would not describe it.
        return path.name
    commit = _git(path, "rev-parse", "--short", "HEAD")
    if not commit:
        return path.name
    return commit + ("+" if _git(path, "status", "--porcelain", "--untracked-files=no") else "")


def baseline_peer(path: str | Path) -> Peer:
    """The ``--baseline PATH`` peer: that checkout's xyra adapter on ``PYTHONPATH=PATH``.

    Raises ValueError if ``path`` holds no ``xyra/bench/servers/xyra_server.py``.
    """
    root = Path(path).expanduser().resolve()
    if not (root / ADAPTER).is_file():
        raise ValueError(
            f"--baseline {path}: not a checkout of Xyra with the bench's xyra adapter"
            f" (no {ADAPTER} there)"
        )
    return Peer(
        BASELINE, f"xyra {{v}} (baseline {checkout_ref(root)})", "xyra_server", checkout=root
    )


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

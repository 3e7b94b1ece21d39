"""Child processes and what /proc says about them.

Every server and load process is started here, pinned to its core, in its own
process group, and recorded in ``LIVE`` so that ``kill_all`` can end whatever is
left (on errors, Ctrl-C or SIGTERM).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import resource
import signal
import socket
import subprocess
import time
from collections.abc import Sequence
from typing import IO

LIVE: set[subprocess.Popen[bytes]] = set()
CLK_TCK = os.sysconf("SC_CLK_TCK")
PR_SET_PDEATHSIG = 1


def _load_libc() -> ctypes.CDLL | None:
    """libc for prctl, loaded here and not in the forked child (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl  # noqa: B018 - raises AttributeError where there is none
    except (OSError, AttributeError):
        return None
    return libc


_libc = _load_libc()


def raise_nofile() -> int:
    """Raise this process's open-file limit to its hard limit; returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft < hard:
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def spawn(
    argv: Sequence[str],
    cpu: int | None,
    *,
    env: dict[str, str] | None = None,
    cwd: str | None = None,
    capture: bool = False,
    stderr: IO[bytes] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``argv`` pinned to ``cpu`` with a raised file limit, in a new session.

    ``capture`` pipes stdout and stderr (read them with ``communicate``); otherwise
    stderr goes to the ``stderr`` file, never to a pipe nobody drains.
    """

    def prepare() -> None:  # runs in the child, before exec
        if cpu is not None:
            os.sched_setaffinity(0, {cpu})
        raise_nofile()
        # Die with the bench even if it is killed outright (SIGKILL skips cleanup).
        if _libc is not None:
            _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE if capture else subprocess.DEVNULL,
        stderr=subprocess.PIPE if capture else (stderr or subprocess.DEVNULL),
        env=env,
        cwd=cwd,
        preexec_fn=prepare,  # the parent is single-threaded: safe
        start_new_session=True,
    )
    LIVE.add(proc)
    return proc


def kill(proc: subprocess.Popen[bytes], grace: float = 2.0) -> None:
    """SIGTERM the process group, SIGKILL it after ``grace`` seconds, reap it."""
    try:
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(grace)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(5)
        else:
            # The leader is gone; anything it left in its group goes too.
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(proc.pid, signal.SIGKILL)
    finally:
        LIVE.discard(proc)


def kill_all() -> None:
    """End every child still running."""
    for proc in list(LIVE):
        kill(proc, grace=0.5)


def redis_command(port: int, *extra: str) -> list[str]:
    """A throwaway redis-server on 127.0.0.1:``port``: no persistence, nothing on disk."""
    return [
        "redis-server",
        "--port",
        str(port),
        "--bind",
        "127.0.0.1",
        "--save",
        "",
        "--appendonly",
        "no",
        *extra,
    ]


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_listening(port: int, proc: subprocess.Popen[bytes], timeout: float) -> None:
    """Return once 127.0.0.1:``port`` accepts connections.

    Raises if the process exits first or ``timeout`` passes.
    """
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with code {proc.returncode} before listening")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise TimeoutError(f"server not listening on port {port} after {timeout:.0f} s")
        time.sleep(0.05)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) and of its live
    descendants (a server that forks its worker, as granian does), in seconds."""
    with open(f"/proc/{pid}/stat", "rb") as f:
        stat = f.read()
    # The command name may hold spaces and parentheses: fields start after the last ')'.
    fields = stat[stat.rindex(b")") + 2 :].split()
    total = (int(fields[11]) + int(fields[12])) / CLK_TCK
    for child in _children(pid):
        with contextlib.suppress(OSError, ValueError):
            total += cpu_seconds(child)
    return total


def _children(pid: int) -> list[int]:
    found: list[int] = []
    with contextlib.suppress(OSError):
        for tid in os.listdir(f"/proc/{pid}/task"):
            with contextlib.suppress(OSError), open(f"/proc/{pid}/task/{tid}/children") as f:
                found += [int(p) for p in f.read().split()]
    return found


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (VmRSS), in bytes."""
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def tail(f: IO[bytes], limit: int = 400) -> str:
    """The last ``limit`` bytes written to a log file, as text."""
    with contextlib.suppress(OSError, ValueError):
        f.flush()
        size = f.seek(0, os.SEEK_END)
        f.seek(max(0, size - limit))
        return f.read().decode(errors="replace").strip()
    return ""

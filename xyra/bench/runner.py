"""Runs the matrix: reps x workloads x peers, one fresh server per measurement.

A fresh server for every (peer, workload) keeps one workload's leftovers (heap
growth, a wedged connection) out of the next one's figures, and a crash costs one
cell, not the run. Each rep shuffles the peer order so that slow drift of the
machine (thermal, neighbours) does not always favour the same peer.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from xyra.bench import procs
from xyra.bench import workloads as wl
from xyra.bench.peers import CACHE, Peer


@dataclass
class Settings:
    """How to measure (from the command line)."""

    duration: float = 3.0
    warmup: float = 1.0
    reps: int = 3
    server_cpu: int | None = 0
    client_cpu: int | None = 1
    quick: bool = False
    seed: int | None = None
    setup_timeout: float = 30.0  # per setup phase inside the client (open, drain, close)
    start_timeout: float = 30.0  # for a server to start listening


@dataclass
class Cell:
    """Every sample of one (workload, peer)."""

    workload: wl.Workload
    peer: Peer
    samples: list[dict[str, Any]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: str | None = None


Progress = Callable[[str], None]


def client_spec(w: wl.Workload, peer: Peer, port: int, server_pid: int, s: Settings) -> str:
    return json.dumps(
        {
            "workload": w.to_json(),
            "port": port,
            "server_pid": server_pid,
            "raw": peer.raw,
            "warmup": s.warmup,
            "duration": s.duration,
            "timeout": s.setup_timeout,
        }
    )


def hard_timeout(w: wl.Workload, s: Settings) -> float:
    """The longest a load process may live before it is killed."""
    setup = {
        wl.IDLE: 6 * s.setup_timeout,
        wl.MEMORY: 6 * s.setup_timeout,
        wl.PUBSUB: 4 * s.setup_timeout,
    }.get(w.kind, 3 * s.setup_timeout)
    return s.warmup + s.duration + setup + 10


def measure(w: wl.Workload, peer: Peer, s: Settings) -> dict[str, Any]:
    """One sample: start the server, run the load process, stop both (always)."""
    port = procs.free_port()
    CACHE.mkdir(parents=True, exist_ok=True)
    log = tempfile.TemporaryFile(dir=CACHE)
    env = peer.env()
    redis = None
    if peer.backplane:
        # Redis shares the load client's core: the server's core measures the server.
        redis_port = procs.free_port()
        redis = procs.spawn(procs.redis_command(redis_port), s.client_cpu, cwd=str(CACHE))
        try:
            procs.wait_listening(redis_port, redis, s.start_timeout)
        except BaseException:
            procs.kill(redis)
            log.close()
            raise
        env["XYRA_BENCH_BACKPLANE"] = f"redis://127.0.0.1:{redis_port}/0"
    server = procs.spawn(peer.command(port), s.server_cpu, env=env, cwd=str(CACHE), stderr=log)
    client = None
    try:
        try:
            procs.wait_listening(port, server, s.start_timeout)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}: {procs.tail(log)}") from None
        client = procs.spawn(
            [sys.executable, "-m", "xyra.bench.client", client_spec(w, peer, port, server.pid, s)],
            s.client_cpu,
            env=peer_env_for_client(),
            capture=True,
        )
        try:
            out, err = client.communicate(timeout=hard_timeout(w, s))
        except subprocess.TimeoutExpired:
            raise TimeoutError(f"load process killed after {hard_timeout(w, s):.0f} s") from None
        if server.poll() is not None:
            raise RuntimeError(f"server died (exit {server.returncode}): {procs.tail(log)}")
        lines = out.decode(errors="replace").strip().splitlines()
        if client.returncode or not lines:
            raise RuntimeError(
                f"load process failed (exit {client.returncode}): "
                f"{err.decode(errors='replace').strip()[-500:]}"
            )
        result: dict[str, Any] = json.loads(lines[-1])
        if "error" in result:
            died = f"; server died: {procs.tail(log)}" if server.poll() is not None else ""
            raise RuntimeError(result["error"] + died)
        return result
    finally:
        if client is not None:
            procs.kill(client)
        procs.kill(server)
        if redis is not None:
            procs.kill(redis)
        log.close()


def peer_env_for_client() -> dict[str, str]:
    """The load process imports this checkout's xyra like the xyra adapter does."""
    from xyra.bench.peers import PEERS

    return PEERS["xyra"].env()


def run_matrix(
    workloads: list[wl.Workload], peers: list[Peer], s: Settings, progress: Progress
) -> list[Cell]:
    """Measure every supported (workload, peer) ``s.reps`` times."""
    rng = random.Random(s.seed)
    cells = {(w.name, p.name): Cell(w, p) for w in workloads for p in peers}
    for cell in cells.values():
        cell.skipped = cell.peer.unavailable() or cell.peer.supports(cell.workload)
    total = sum(1 for c in cells.values() if not c.skipped) * s.reps
    done = 0
    for rep in range(1, s.reps + 1):
        order = peers[:]
        rng.shuffle(order)
        progress(f"rep {rep}/{s.reps}: peer order {', '.join(p.name for p in order)}")
        for w in workloads:
            for peer in order:
                cell = cells[(w.name, peer.name)]
                if cell.skipped:
                    continue
                done += 1
                prefix = f"[{done}/{total}] {w.name:<14} {peer.name:<10}"
                try:
                    sample = measure(w, peer, s)
                except (RuntimeError, TimeoutError, OSError, ValueError) as exc:
                    cell.errors.append(str(exc))
                    progress(f"{prefix} error: {exc}")
                    continue
                cell.samples.append(sample)
                progress(f"{prefix} {describe(w, sample)}")
    return list(cells.values())


def describe(w: wl.Workload, sample: dict[str, Any]) -> str:
    """A one-line progress report of one sample."""
    from xyra.bench.report import SATURATED, human

    text = f"{human(sample['value'])} {w.unit}"
    if sample.get("server_cpu") is not None:
        text += f"  server CPU {sample['server_cpu']:.0%}  client CPU {sample['client_cpu']:.0%}"
        if sample["client_cpu"] >= SATURATED:
            text += " (client core saturated: a lower bound)"
    checks = sample.get("checks", {})
    bad = [
        f"{k}={v}"
        for k, v in checks.items()
        if k in ("mismatched", "lost", "stalls", "errors") and v
    ]
    if w.payload == "json":
        compressed, received = checks.get("compressed"), checks.get("received_messages")
        if w.deflate and compressed != received:
            bad.append(f"compressed {compressed} of {received}")
        if not w.deflate and compressed:
            bad.append(f"{compressed} compressed without permessage-deflate")
        inflate = checks.get("inflate_check")
        if inflate is not None and not inflate.get("inflated"):
            bad.append("inflate check failed")
    if bad:
        text += "  (" + ", ".join(bad) + ")"
    return text

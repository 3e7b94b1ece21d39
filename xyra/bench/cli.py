"""``xyra bench`` / ``python -m xyra.bench``: the command line."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path
from typing import Any

from xyra.bench import chart, procs, report
from xyra.bench.peers import PEERS, baseline_peer, parse_peers, setup_peers
from xyra.bench.runner import Settings, run_matrix
from xyra.bench.workloads import WORKLOADS, parse_workloads


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="xyra bench",
        description="WebSocket server throughput benchmark: Xyra against its peers, "
        "server and load client pinned to separate cores, on 127.0.0.1 only.",
    )
    p.add_argument("--workloads", help=f"comma-separated, from: {', '.join(WORKLOADS)}")
    p.add_argument("--peers", help=f"comma-separated, from: {', '.join(PEERS)}")
    p.add_argument("--duration", type=float, help="measured seconds per run (default 3)")
    p.add_argument("--warmup", type=float, help="seconds of load before measuring (default 1)")
    p.add_argument("--reps", type=int, help="repetitions, peer order shuffled each (default 3)")
    p.add_argument(
        "--quick",
        action="store_true",
        help="about 1 s per workload, 1 rep, 1000 idle connections (CI smoke)",
    )
    p.add_argument("--server-cpu", type=int, default=0, help="core for the server (-1: any)")
    p.add_argument("--client-cpu", type=int, default=1, help="core for the load client (-1: any)")
    p.add_argument("--json", metavar="PATH", help="write every sample and summary as JSON")
    p.add_argument("--png", metavar="PATH", help="write a bar chart (needs matplotlib)")
    p.add_argument("--markdown", metavar="PATH", help="write the results as Markdown tables")
    p.add_argument(
        "--setup-peers",
        action="store_true",
        help="create the xyra 0.2.7 venv (~/.cache/xyra-bench) first",
    )
    p.add_argument("--seed", type=int, help="seed for the peer order shuffle")
    p.add_argument(
        "--baseline",
        metavar="PATH",
        help="also run the xyra adapter of another Xyra checkout built in place "
        "(e.g. a git worktree of an older commit), as the peer xyra-base",
    )
    return p


def settings(args: argparse.Namespace) -> Settings:
    quick = args.quick
    s = Settings(
        duration=args.duration if args.duration is not None else (1.0 if quick else 3.0),
        warmup=args.warmup if args.warmup is not None else (0.3 if quick else 1.0),
        reps=args.reps if args.reps is not None else (1 if quick else 3),
        server_cpu=None if args.server_cpu < 0 else args.server_cpu,
        client_cpu=None if args.client_cpu < 0 else args.client_cpu,
        quick=quick,
        seed=args.seed,
        setup_timeout=20.0 if quick else 30.0,
    )
    if s.duration <= 0 or s.warmup < 0 or s.reps < 1:
        raise ValueError("--duration must be > 0, --warmup >= 0, --reps >= 1")
    allowed = os.sched_getaffinity(0)
    for name, cpu in (("--server-cpu", s.server_cpu), ("--client-cpu", s.client_cpu)):
        if cpu is not None and cpu not in allowed:
            raise ValueError(f"{name} {cpu}: not one of this process's cores {sorted(allowed)}")
    return s


def _terminate(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark; the exit status is 0 if anything was measured."""
    args = parser().parse_args(argv)
    try:
        s = settings(args)
        workloads = [w.scaled(s.quick) for w in parse_workloads(args.workloads)]
        peers = parse_peers(args.peers)
        if args.baseline:
            base = baseline_peer(args.baseline)
            problem = base.unavailable()
            if problem:
                raise ValueError(f"--baseline {args.baseline}: {problem}")
            peers.append(base)
    except ValueError as exc:
        print(f"xyra bench: {exc}", file=sys.stderr)
        return 2
    if args.png and not chart.available():
        print(
            "note: matplotlib is not installed (pip install 'xyra[bench]'): no chart",
            file=sys.stderr,
        )
        args.png = None
    # Both end the run the same way (servers stopped); SIGINT explicitly too, since a
    # shell without job control starts background commands with SIGINT ignored.
    previous = {sig: signal.signal(sig, _terminate) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        if args.setup_peers and setup_peers():
            return 1
        return run(args, s, workloads, peers)
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped", file=sys.stderr)
        return 130
    finally:
        procs.kill_all()
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def run(args: argparse.Namespace, s: Settings, workloads: list[Any], peers: list[Any]) -> int:
    procs.raise_nofile()
    versions = {p.name: p.version() for p in peers if not p.unavailable()}
    m = report.machine()
    print(
        f"machine: {m['cpu']}, {m['cores']} cores, {m['os']}, {m['python']}, "
        f"load {m['load_average'][0]:.2f}"
    )
    print(
        f"server on cpu {s.server_cpu}, client on cpu {s.client_cpu}; "
        f"{s.reps} rep(s) x ({s.warmup:g} s warm-up + {s.duration:g} s)"
    )
    for p in peers:
        note = p.unavailable()
        where = f" from {p.checkout}" if p.checkout else ""
        print(
            f"  {p.name:<10} {versions.get(p.name, '') + where if not note else 'skipped: ' + note}"
        )
    start = time.monotonic()
    cells = run_matrix(workloads, peers, s, lambda line: print(line, flush=True))
    rows = [report.summarize(c, versions) for c in cells]
    print(f"\nresults ({time.monotonic() - start:.0f} s):\n")
    print(report.table(rows))
    doc = report.document(rows, peers, versions, s)
    if args.json:
        report.write_json(doc, args.json)
        print(f"wrote {args.json}")
    if args.markdown:
        Path(args.markdown).write_text(report.markdown(doc))
        print(f"wrote {args.markdown}")
    if args.png:
        try:
            chart.draw(rows, args.png, f"xyra bench: {m['cpu']}, {m['cores']} cores, {m['python']}")
            print(f"wrote {args.png}")
        except ValueError as exc:
            print(f"no chart: {exc}", file=sys.stderr)
    return 0 if any(r["median"] is not None for r in rows) else 1

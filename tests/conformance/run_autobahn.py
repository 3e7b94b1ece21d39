"""Run Autobahn TestSuite (wstest -m fuzzingclient) against a WebSocket echo server.

    python tests/conformance/run_autobahn.py [--cases '1.*,2.*'] [--outdir DIR] \\
        -- python tests/conformance/echo_server.py {port}

The server command gets a free 127.0.0.1 port in place of `{port}` (or as its last argument
when there is no `{port}`). The script waits until the port accepts, runs wstest with a hard
timeout, stops the server (SIGINT, then SIGKILL), and judges the run from `index.json`, because
wstest itself always exits 0.

Exit status: 0 when every case's behavior and behaviorClose is OK or INFORMATIONAL,
1 when some case is not (NON-STRICT and UNIMPLEMENTED count as failures),
2 when the harness could not produce a verdict (no wstest, server did not start, timeout, ...).
A machine-readable summary goes to `summary.json` in the output folder (or --summary-json).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

DEFAULT_CASES = ",".join(f"{n}.*" for n in range(1, 11))
PASSING = frozenset({"OK", "INFORMATIONAL"})
# Every value autobahntestsuite's Case class can report, so the summary always lists them all.
BEHAVIORS = (
    "OK",
    "NON-STRICT",
    "INFORMATIONAL",
    "UNIMPLEMENTED",
    "FAILED",
    "WRONG CODE",
    "UNCLEAN",
    "FAILED BY CLIENT",
)
EXIT_OK, EXIT_FAILED, EXIT_HARNESS = 0, 1, 2
DETAILED_FAILURES = 40  # failures printed in full; the rest get one line each

# Python 2 code run by wstest's own interpreter: the case ids the spec selects, resolved exactly
# as wstest does. wstest stops early and still writes index.json when the server goes away, so
# the report alone cannot tell a complete run from a truncated one.
LIST_CASES_PY2 = """
import json, sys
from autobahntestsuite import case
from autobahntestsuite.caseset import CaseSet
case_set = CaseSet(case.CaseSetname, case.CaseBasename, case.Cases, case.CaseCategories,
                   case.CaseSubCategories)
print(json.dumps(case_set.parseSpecCases(json.load(open(sys.argv[1])))))
"""


class HarnessError(Exception):
    """The run produced no trustworthy verdict (as opposed to failing cases)."""


def default_wstest() -> Path:
    """Where .ci/autobahn-venv.sh puts wstest, unless XYRA_AUTOBAHN_WSTEST names it directly."""
    if os.environ.get("XYRA_AUTOBAHN_WSTEST"):
        return Path(os.environ["XYRA_AUTOBAHN_WSTEST"])
    venv = os.environ.get("XYRA_AUTOBAHN_VENV") or "/opt/xyra-autobahn"
    return Path(venv) / "bin" / "wstest"


def free_port() -> int:
    # Bind to port 0 and let the kernel choose; the small race until the server binds it again
    # is acceptable on a test machine.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def server_command(template: list[str], port: int) -> list[str]:
    if any("{port}" in arg for arg in template):
        return [arg.replace("{port}", str(port)) for arg in template]
    return [*template, str(port)]


def wait_until_accepting(proc: subprocess.Popen[bytes], port: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise HarnessError(f"server exited with code {proc.returncode} before accepting")
        with contextlib.suppress(OSError):
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            return
        time.sleep(0.1)
    raise HarnessError(f"server did not accept on 127.0.0.1:{port} within {timeout:g} s")


def stop_process(proc: subprocess.Popen[bytes], grace: float) -> bool:
    """SIGINT first (Xyra's listen() shuts down gracefully on it), SIGKILL the group after.

    Returns True when SIGINT was not enough."""
    if proc.poll() is not None:
        return False
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGINT)
    try:
        proc.wait(timeout=grace)
        return False
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        return True


def write_spec(outdir: Path, port: int, agent: str, cases: list[str], exclude: list[str]) -> Path:
    spec = {
        "outdir": str(outdir / "reports"),
        "servers": [{"agent": agent, "url": f"ws://127.0.0.1:{port}"}],
        "cases": cases,
        "exclude-cases": exclude,
        "exclude-agent-cases": {},
    }
    path = outdir / "spec.json"
    path.write_text(json.dumps(spec, indent=2) + "\n")
    return path


def run_wstest(wstest: Path, spec: Path, outdir: Path, timeout: float) -> None:
    # wstest writes a progress line per case; keep it in a file, the summary is what matters.
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}  # silence Python 2 deprecation banners
    with open(outdir / "wstest.log", "wb") as log:
        proc = subprocess.Popen(
            [str(wstest), "-m", "fuzzingclient", "-s", str(spec)],
            cwd=outdir,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            stop_process(proc, grace=2)
            raise HarnessError(f"wstest did not finish within {timeout:g} s") from None


def expected_cases(wstest: Path, spec: Path) -> list[str]:
    shebang = wstest.read_text(errors="replace").splitlines()[0]
    if not shebang.startswith("#!"):
        raise HarnessError(f"{wstest} has no #! line naming its Python")
    python = shlex.split(shebang[2:])
    proc = subprocess.run(
        [*python, "-W", "ignore", "-c", LIST_CASES_PY2, str(spec)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if proc.returncode != 0:
        raise HarnessError(f"could not list the spec's cases: {proc.stderr.strip()}")
    cases: list[str] = json.loads(proc.stdout)
    if not cases:
        raise HarnessError(f"the case patterns in {spec} select no case")
    return cases


def case_key(case_id: str) -> tuple[int, ...]:
    return tuple(int(part) for part in case_id.split("."))


def short(text: Any, limit: int = 300) -> str:
    flat = re.sub(r"\s+", " ", str(text)).strip()
    return flat if len(flat) <= limit else flat[: limit - 3] + "..."


def counted(counter: Counter[str]) -> dict[str, int]:
    """All known behaviors (zeros included) first, then any value this wstest did not know."""
    extra = sorted(set(counter) - set(BEHAVIORS))
    return {b: counter.get(b, 0) for b in (*BEHAVIORS, *extra)}


def summarize(reports: Path, agent: str, expected: list[str]) -> dict[str, Any]:
    index_path = reports / "index.json"
    if not index_path.is_file():
        raise HarnessError(f"{index_path} was not written")
    index = json.loads(index_path.read_text())
    if agent not in index or not index[agent]:
        raise HarnessError(f"{index_path} has no results for agent {agent!r}")
    results: dict[str, dict[str, Any]] = index[agent]

    counts: dict[str, Counter[str]] = {"behavior": Counter(), "behaviorClose": Counter()}
    failures = []
    for case_id in sorted(results, key=case_key):
        entry = results[case_id]
        for field in counts:
            counts[field][entry[field]] += 1
        if entry["behavior"] in PASSING and entry["behaviorClose"] in PASSING:
            continue
        detail = json.loads((reports / entry["reportfile"]).read_text())
        failures.append(
            {
                "id": case_id,
                "behavior": entry["behavior"],
                "behaviorClose": entry["behaviorClose"],
                "description": short(detail.get("description", ""), 1000),
                "expectation": short(detail.get("expectation", ""), 1000),
                "result": short(detail.get("result", ""), 1000),
                "resultClose": short(detail.get("resultClose", ""), 1000),
                # What the client saw, trimmed: big payloads would drown the report.
                "received": short(detail.get("received", ""), 500),
                "remoteCloseCode": detail.get("remoteCloseCode"),
                "remoteCloseReason": detail.get("remoteCloseReason"),
                "wasClean": detail.get("wasClean"),
                "wasNotCleanReason": detail.get("wasNotCleanReason"),
                "reportfile": str(reports / entry["reportfile"]),
            }
        )
    missing = sorted(set(expected) - set(results), key=case_key)
    return {
        "agent": agent,
        "total": len(results),
        "expected": len(expected),
        "counts": {field: counted(counter) for field, counter in counts.items()},
        "failures": failures,
        "missing": missing,
        "passed": not failures and not missing,
    }


def print_summary(summary: dict[str, Any]) -> None:
    print(
        f"Autobahn fuzzingclient: {summary['total']} of {summary['expected']} cases run"
        f" against {summary['agent']!r}"
    )
    for field, counter in summary["counts"].items():
        shown = ", ".join(f"{b}={n}" for b, n in counter.items() if n or b in BEHAVIORS[:5])
        print(f"  {field:14s} {shown}")
    if summary["counts"]["behavior"]["UNIMPLEMENTED"]:
        # wstest's result text for these is its generic default, which hides the cause.
        print("  (UNIMPLEMENTED: the server did not negotiate the extension the case needs,")
        print("   for 12.*/13.* permessage-deflate)")
    for i, f in enumerate(summary["failures"]):
        closed = f"{f['remoteCloseCode']} {f['remoteCloseReason'] or ''}".rstrip()
        print(f"FAIL {f['id']}: behavior={f['behavior']} behaviorClose={f['behaviorClose']}")
        if i < DETAILED_FAILURES:
            print(f"    description: {short(f['description'])}")
            print(f"    result:      {short(f['result'])}")
            print(f"    resultClose: {short(f['resultClose'])}")
            print(f"    server closed with: {closed}")
        else:  # one line each: a systematic failure (say, no compression) hits 200+ cases
            print(f"    {short(f['result'], 120)} / {short(f['resultClose'], 80)} / close {closed}")
    if len(summary["failures"]) > DETAILED_FAILURES:
        print(f"(descriptions of the cases after the first {DETAILED_FAILURES}: summary JSON)")
    if summary["missing"]:
        missing = summary["missing"]
        more = f" ... ({len(missing)} in all)" if len(missing) > 20 else ""
        print(f"NOT RUN (wstest stopped early): {', '.join(missing[:20])}{more}")
    problems = len(summary["failures"]) + len(summary["missing"])
    verdict = "PASSED" if summary["passed"] else f"FAILED ({problems} cases)"
    print(f"Autobahn verdict: {verdict}")


def run(args: argparse.Namespace) -> dict[str, Any]:
    outdir: Path = args.outdir
    outdir.mkdir(parents=True, exist_ok=True)
    # A stale index.json from an earlier run in the same folder must never be read as this one's.
    shutil.rmtree(outdir / "reports", ignore_errors=True)
    if not os.access(args.wstest, os.X_OK):
        raise HarnessError(f"wstest not found at {args.wstest} (run .ci/autobahn-venv.sh)")
    if not args.server:
        raise HarnessError("no server command given (after --)")

    port = free_port()
    command = server_command(args.server, port)
    print(f"server: {shlex.join(command)}", flush=True)
    with open(outdir / "server.log", "wb") as server_log:
        server = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=server_log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, so stopping it stops its children
        )
        try:
            wait_until_accepting(server, port, args.startup_timeout)
            cases = [c.strip() for c in args.cases.split(",") if c.strip()]
            exclude = [c.strip() for c in args.exclude_cases.split(",") if c.strip()]
            spec = write_spec(outdir, port, args.agent, cases, exclude)
            expected = expected_cases(args.wstest, spec)
            print(f"wstest: {args.wstest} -m fuzzingclient -s {spec}", flush=True)
            started = time.monotonic()
            run_wstest(args.wstest, spec, outdir, args.timeout)
            elapsed = time.monotonic() - started
            # A server that died mid-run (a crash in the core) is a failure even if the
            # cases it left behind would look fine.
            crashed = server.poll()
        finally:
            killed = stop_process(server, grace=10)
    summary = summarize(outdir / "reports", args.agent, expected)
    summary.update(seconds=round(elapsed, 1), cases=cases, server_command=command)
    # Informational: a server that ignores SIGINT has a graceful-shutdown problem.
    summary["server_needed_sigkill"] = killed
    if crashed is not None:
        summary["passed"] = False
        summary["server_exit_code"] = crashed
    return summary


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cases", default=DEFAULT_CASES, help="comma-separated case patterns")
    parser.add_argument("--exclude-cases", default="", help="comma-separated case patterns")
    parser.add_argument("--agent", default="xyra", help="agent name in the reports")
    parser.add_argument("--outdir", type=Path, help="report folder (default: a new temp folder)")
    parser.add_argument("--summary-json", type=Path, help="default: OUTDIR/summary.json")
    parser.add_argument("--wstest", type=Path, default=default_wstest())
    parser.add_argument("--timeout", type=float, default=1800, help="hard limit for wstest, s")
    parser.add_argument("--startup-timeout", type=float, default=30, help="server start, s")
    parser.add_argument("server", nargs=argparse.REMAINDER, help="-- server command with {port}")
    args = parser.parse_args(argv)
    if args.server[:1] == ["--"]:
        args.server = args.server[1:]
    if args.outdir is None:
        args.outdir = Path(tempfile.mkdtemp(prefix="xyra-autobahn-"))
    args.outdir = args.outdir.resolve()  # wstest runs in another cwd
    if args.summary_json is None:
        args.summary_json = args.outdir / "summary.json"
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    try:
        summary = run(args)
    except HarnessError as exc:
        summary = {"passed": False, "error": str(exc), "outdir": str(args.outdir)}
        args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
        print(f"Autobahn harness error: {exc}", file=sys.stderr)
        for name in ("server.log", "wstest.log"):
            log = args.outdir / name
            if log.is_file():
                tail = log.read_text(errors="replace").splitlines()[-20:]
                print(f"--- last lines of {log}:", *tail, sep="\n", file=sys.stderr)
        return EXIT_HARNESS
    summary["outdir"] = str(args.outdir)
    args.summary_json.write_text(json.dumps(summary, indent=2) + "\n")
    print_summary(summary)
    if summary.get("server_needed_sigkill"):
        print("note: the server did not exit within 10 s of SIGINT and was killed")
    if "server_exit_code" in summary:
        print(f"server exited during the run with code {summary['server_exit_code']}")
    print(f"reports: {args.outdir / 'reports' / 'index.html'}; summary: {args.summary_json}")
    return EXIT_OK if summary["passed"] else EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())

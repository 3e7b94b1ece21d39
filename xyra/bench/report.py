"""Turning samples into figures: the terminal table and the JSON document."""

from __future__ import annotations

import json
import os
import platform
import statistics
import time
from pathlib import Path
from typing import Any

from xyra.bench.peers import BASELINE, Peer
from xyra.bench.runner import Cell, Settings

# A client process busy for this share of the window may be what limits the figure.
SATURATED = 0.95


def human(x: float | None) -> str:
    """1234567 -> '1.23 M'."""
    if x is None:
        return "-"
    for scale, suffix in ((1e9, " G"), (1e6, " M"), (1e3, " k")):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}" if abs(x) < 100 else f"{x:.0f}"


def median_of(samples: list[dict[str, Any]], key: str) -> float | None:
    values = [s[key] for s in samples if s.get(key) is not None]
    return statistics.median(values) if values else None


def summarize(cell: Cell, versions: dict[str, str]) -> dict[str, Any]:
    """One (workload, peer) as the JSON document and the table show it."""
    w, values = cell.workload, [s["value"] for s in cell.samples]
    client = median_of(cell.samples, "client_cpu")
    return {
        "workload": w.name,
        "peer": cell.peer.name,
        "label": cell.peer.title(versions.get(cell.peer.name)),
        "unit": w.unit,
        "higher_is_better": w.higher_is_better,
        "median": statistics.median(values) if values else None,
        "min": min(values) if values else None,
        "max": max(values) if values else None,
        "server_cpu": median_of(cell.samples, "server_cpu"),
        "per_server_cpu_s": median_of(cell.samples, "per_server_cpu_s"),
        "client_cpu": client,
        "client_saturated": client is not None and client >= SATURATED,
        "samples": cell.samples,
        "errors": cell.errors,
        "skipped": cell.skipped,
    }


def machine() -> dict[str, Any]:
    """Where the figures came from."""
    model = "?"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    os_name = platform.system()
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                os_name = line.split("=", 1)[1].strip('"')
    except OSError:
        pass
    return {
        "cpu": model,
        "cores": os.cpu_count(),
        "os": os_name,
        "kernel": platform.release(),
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "load_average": os.getloadavg(),
    }


def document(
    rows: list[dict[str, Any]], peers: list[Peer], versions: dict[str, str], s: Settings
) -> dict[str, Any]:
    return {
        "tool": "xyra bench",
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": machine(),
        "settings": vars(s),
        "peers": {
            p.name: {
                "label": p.title(versions.get(p.name)),
                "version": versions.get(p.name),
                "unavailable": p.unavailable(),
                **({"checkout": str(p.checkout)} if p.checkout else {}),
            }
            for p in peers
        },
        "results": rows,
    }


def write_json(doc: dict[str, Any], path: str) -> None:
    Path(path).write_text(json.dumps(doc, indent=2) + "\n")


def table(rows: list[dict[str, Any]]) -> str:
    """The results as text, one block per workload, best peer first."""
    from xyra.bench.workloads import WORKLOADS

    out: list[str] = []
    head = (
        f"  {'peer':<30} {'median':>9} {'min-max':>17} {'server CPU':>10} "
        f"{'per server CPU-s':>16} {'client CPU':>10}"
    )
    notes: set[str] = set()
    for name in dict.fromkeys(r["workload"] for r in rows):
        group = [r for r in rows if r["workload"] == name]
        w = WORKLOADS[name]
        better = "higher" if w.higher_is_better else "lower"
        out.append(f"{name}: {w.summary} [{w.unit}, {better} is better]")
        out.append(head)
        measured = [r for r in group if r["median"] is not None]
        measured.sort(key=lambda r: r["median"], reverse=w.higher_is_better)
        for r in measured:
            label = r["label"]
            flag = ""
            if r["client_saturated"]:
                flag = " !"
                notes.add("! the load client's core was saturated: the figure is a lower bound")
            if r["errors"]:
                flag += f" ({len(r['errors'])} failed)"
            span = f"{human(r['min'])}-{human(r['max'])}"
            cpu = "-" if r["server_cpu"] is None else f"{r['server_cpu']:.0%}"
            client = "-" if r["client_cpu"] is None else f"{r['client_cpu']:.0%}"
            out.append(
                f"  {label:<30} {human(r['median']):>9} {span:>17} {cpu:>10} "
                f"{human(r['per_server_cpu_s']):>16} {client:>10}{flag}"
            )
        for r in group:
            if r["median"] is None and r["errors"]:
                out.append(f"  {r['label']:<30} error: {r['errors'][-1][:200]}")
            elif r["skipped"]:
                out.append(f"  {r['label']:<30} skipped: {r['skipped']}")
        out.append("")
    compression = compression_figures(rows)
    if compression:
        out += ["permessage-deflate (each workload against its _off baseline):", *compression, ""]
    against = baseline_figures(rows)
    if against:
        out += ["xyra against its --baseline (this checkout / the baseline):", *against, ""]
    out.extend(sorted(notes))
    return "\n".join(out).rstrip() + "\n"


# A compression workload and its baseline: the same load without permessage-deflate.
COMPRESSION_PAIRS = (
    ("pubsub_deflate", "pubsub_deflate_off"),
    ("dedicated_memory", "dedicated_memory_off"),
)


def _check_median(r: dict[str, Any], key: str) -> float | None:
    values = [s["checks"][key] for s in r["samples"] if s.get("checks", {}).get(key) is not None]
    return statistics.median(values) if values else None


def _ratio(r: dict[str, Any], b: dict[str, Any]) -> str:
    """Row ``r``'s median over row ``b``'s, and the same per second of server CPU."""
    text = f"{r['median'] / b['median']:.2f}x"
    ours, theirs = r["per_server_cpu_s"], b["per_server_cpu_s"]
    if ours and theirs:
        text += f" (per server CPU-s {ours / theirs:.2f}x)"
    return text


def compression_figures(rows: list[dict[str, Any]]) -> list[str]:
    """One line per peer that ran a compression workload and its baseline: the rate
    ratio and wire size (pub/sub), or memory per connection with and without."""
    by = {(r["workload"], r["peer"]): r for r in rows}
    lines = []
    for name, base in COMPRESSION_PAIRS:
        for r in rows:
            b = by.get((base, r["peer"]))
            if r["workload"] != name or b is None or r["median"] is None or b["median"] is None:
                continue
            wire, size = _check_median(r, "wire_bytes"), _check_median(r, "message_bytes")
            if r["unit"] == "bytes/conn":
                lines.append(
                    f"  {name}, {r['label']}: {r['median'] / 1024:.0f} KiB per connection with"
                    f" compression, {b['median'] / 1024:.1f} KiB without:"
                    f" {(r['median'] - b['median']) / 1024:.0f} KiB for its compressor and"
                    " decompressor"
                )
                continue
            text = (
                f"  {name}, {r['label']}: {human(r['median'])} {r['unit']} compressed,"
                f" {human(b['median'])} uncompressed: {_ratio(r, b)}"
            )
            if wire and size:
                text += f"; {wire:.0f} bytes on the wire per {size:.0f}-byte message"
                text += f" ({size / wire:.2f}x smaller)"
            lines.append(text)
    return lines


def baseline_figures(rows: list[dict[str, Any]]) -> list[str]:
    """One line per workload that both ``xyra`` and the ``--baseline`` peer measured: this
    checkout's median over the baseline's, by rate and per second of server CPU."""
    by = {(r["workload"], r["peer"]): r for r in rows}
    lines = []
    for r in rows:
        b = by.get((r["workload"], BASELINE))
        if r["peer"] != "xyra" or b is None or not r["median"] or not b["median"]:
            continue
        better = "" if r["higher_is_better"] else " (lower is better)"
        lines.append(
            f"  {r['workload']}: {human(r['median'])} vs {human(b['median'])} {r['unit']}"
            f"{better} = {_ratio(r, b)}"
        )
    return lines


def markdown(doc: dict[str, Any]) -> str:
    """The results as Markdown: medians (min-max) and work per server CPU-second."""
    rows = doc["results"]
    m, s = doc["machine"], doc["settings"]
    names = list(dict.fromkeys(r["workload"] for r in rows))
    labels = list(dict.fromkeys(r["label"] for r in rows))
    cell = {(r["workload"], r["label"]): r for r in rows}
    lines = [
        f"Machine: {m['cpu']}, {m['cores']} cores, {m['os']} (kernel {m['kernel']}), "
        f"{m['python']}; load average {m['load_average'][0]:.2f} at the start.",
        f"Settings: {s['reps']} rep(s) x ({s['warmup']:g} s warm-up + {s['duration']:g} s), "
        f"server on cpu {s['server_cpu']}, client on cpu {s['client_cpu']}"
        + (", `--quick`" if s["quick"] else "")
        + f"; {doc['created']}.",
        "",
    ]

    def matrix(fmt: Any, names: list[str], per_cpu: bool = False) -> list[str]:
        heads = [
            f"{n}<br>({WORKLOAD_UNITS[n][0].removesuffix('/s')} per CPU-s)"
            if per_cpu
            else f"{n}<br>({', '.join(WORKLOAD_UNITS[n])})"
            for n in names
        ]
        out = ["| peer | " + " | ".join(heads) + " |", "|---|" + "---:|" * len(names)]
        for label in labels:
            cells = []
            for n in names:
                r = cell.get((n, label))
                if r is None or r["skipped"]:
                    cells.append("n/a")
                elif r["median"] is None:
                    cells.append("error")
                else:
                    cells.append(fmt(r))
            out.append(f"| {label} | " + " | ".join(cells) + " |")
        return out

    def figure(r: dict[str, Any]) -> str:
        text = human(r["median"])
        if len(r["samples"]) > 1:
            text += f" ({human(r['min'])}-{human(r['max'])})"
        return text + (" !" if r["client_saturated"] else "")

    timed = [n for n in names if any(r["per_server_cpu_s"] for r in rows if r["workload"] == n)]
    lines += ["Median (min-max over reps):", "", *matrix(figure, names), ""]
    lines += [
        "Work per second of server CPU time (median):",
        "",
        *matrix(lambda r: human(r["per_server_cpu_s"]), timed, per_cpu=True),
        "",
    ]
    if any(r["client_saturated"] for r in rows):
        lines.append("`!`: the load client's core was saturated; the figure is a lower bound.")
    for title, items in (
        ("permessage-deflate, against the `_off` baselines:", compression_figures(rows)),
        ("xyra against its `--baseline` (this checkout / the baseline):", baseline_figures(rows)),
    ):
        if items:
            if lines[-1]:
                lines.append("")
            lines += [title, "", *(f"* {line.strip()}" for line in items)]
    return "\n".join(lines).rstrip() + "\n"


def _units() -> dict[str, tuple[str, ...]]:
    from xyra.bench.workloads import WORKLOADS

    return {
        n: (w.unit,) if w.higher_is_better else (w.unit, "lower is better")
        for n, w in WORKLOADS.items()
    }


WORKLOAD_UNITS = _units()

"""Smoke test of ``xyra bench``: every workload for about a second, real processes.

Against Xyra (skipped only while ``xyra.App`` cannot be imported) and the raw
uvloop echo. No speed is asserted: only that messages really went through, were
counted, and that pub/sub delivered one copy per subscriber.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

pytest.importorskip("xyra.bench._drivers.loadgen", reason="the load client is not compiled")

from xyra.bench import workloads as wl
from xyra.bench.peers import PEERS
from xyra.bench.runner import Settings, measure


def xyra_missing() -> str | None:
    try:
        import xyra

        xyra.App  # noqa: B018
    except (ImportError, AttributeError) as exc:
        return f"xyra.App is not importable yet: {exc}"
    return None


CORES = sorted(os.sched_getaffinity(0))
SETTINGS = Settings(
    duration=1.0,
    warmup=0.3,
    reps=1,
    quick=True,
    # Pinned as the real tool runs when there are two cores; anywhere otherwise.
    server_cpu=CORES[0] if len(CORES) > 1 else None,
    client_cpu=CORES[1] if len(CORES) > 1 else None,
    setup_timeout=20.0,
)

# Xyra, and Xyra serving the ASGI workloads' app (the other ASGI servers are peers, not
# part of the smoke test); every workload each can run; and the backplane row (a Redis
# started by the runner, every delivery still checked) on the default pub/sub workloads.
CASES = (
    [
        (peer, w.name)
        for w in wl.WORKLOADS.values()
        for peer in ("xyra", "xyra-asgi")
        if PEERS[peer].supports(w) is None
    ]
    + [("raw", w.name) for w in wl.WORKLOADS.values() if w.raw_serves]
    + [("xyra-redis", w.name) for w in wl.WORKLOADS.values() if w.kind == wl.PUBSUB and w.default]
)


def check(w: wl.Workload, sample: dict) -> None:
    checks = sample["checks"]
    assert sample["value"] > 0, sample
    if w.kind == wl.ECHO:
        assert checks["received"] > 0
        assert checks["received"] == checks["sent"], "every message sent came back"
        assert checks["mismatched"] == 0, "replies had the length and opcode sent"
        assert checks["lost"] == 0 and checks["drained"]
        assert sample["count"] <= checks["received"]
    elif w.kind == wl.PUBSUB:
        assert checks["subscribers"] == w.topics * w.subscribers
        assert checks["published"] > 0
        assert checks["delivered"] == checks["expected"], "one copy per subscriber"
        assert checks["stalls"] == 0 and checks["lost"] == 0 and checks["mismatched"] == 0
        assert sample["count"] <= checks["delivered"]
    elif w.kind == wl.HTTP:
        assert checks["status"] == 200 and checks["body_bytes"] > 0
        assert checks["errors"] == 0, "no socket error, every response 2xx"
    elif w.kind == wl.CONNECT:
        assert checks["completed"] > 0 and checks["errors"] == 0
        assert checks["opened"] >= checks["completed"]
    elif w.kind == wl.IDLE:
        assert checks["opened"] == checks["requested"] == w.connections
        assert checks["lost"] == 0
    elif w.kind == wl.MEMORY:
        assert checks["opened"] == checks["requested"] == w.connections
        assert checks["sent"] == checks["received"] == w.connections * w.messages
        assert checks["lost"] == 0 and checks["drained"]
        assert checks["rss_after"] > checks["rss_before"]
    if w.payload == "json":
        check_compression(w, sample)
    if sample["server_cpu"] is not None:
        assert 0 < sample["server_cpu"] <= 1.5
        assert sample["per_server_cpu_s"] > 0


def check_compression(w: wl.Workload, sample: dict) -> None:
    """The compression workloads: negotiated (or not) everywhere, every message received
    compressed (or none), a plausible size on the wire and per connection."""
    checks = sample["checks"]
    receivers = w.topics * w.subscribers if w.kind == wl.PUBSUB else w.connections
    received = checks["received_messages"]
    assert received > 0
    assert checks["message_bytes"] == pytest.approx(w.size, rel=0.05)
    if w.deflate:
        assert checks["negotiated"] == receivers, "every handshake accepted permessage-deflate"
        assert checks["compressed"] == received, "every message arrived with RSV1 set"
        # The JSON deflates about 3x on its own (pub/sub), better with context (dedicated).
        assert checks["wire_bytes"] < checks["message_bytes"] / 2
    else:
        assert checks["negotiated"] == 0 and checks["compressed"] == 0
        assert checks["wire_bytes"] == pytest.approx(checks["message_bytes"], rel=0.05)
    if w.kind == wl.PUBSUB and w.deflate:
        inflate = checks["inflate_check"]
        assert inflate["negotiated"] and inflate["rsv1"] and inflate["inflated"], inflate
    if w.kind == wl.MEMORY:
        # A compressor and a decompressor with full windows cost about 190 KiB (zlib's
        # own figure); without compression a connection costs a few KiB.
        if w.deflate:
            assert 64 * 1024 < sample["value"] < 1024 * 1024, sample["value"]
        else:
            assert sample["value"] < 64 * 1024, sample["value"]


@pytest.mark.timeout(180)
@pytest.mark.parametrize(("peer", "name"), CASES)
def test_workload_runs_and_counts(peer: str, name: str) -> None:
    if peer.startswith("xyra") and (why := xyra_missing()):
        pytest.skip(why)
    if (why := PEERS[peer].unavailable()) is not None:
        pytest.skip(why)
    w = wl.WORKLOADS[name].scaled(quick=True)
    sample = measure(w, PEERS[peer], SETTINGS)
    check(w, sample)


@pytest.mark.timeout(180)
def test_cli_writes_table_json_and_chart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from xyra.bench import main
    from xyra.bench.chart import available

    out_json, out_png = tmp_path / "bench.json", tmp_path / "bench.png"
    argv = [
        "--quick",
        "--peers",
        "raw,xyra",
        "--workloads",
        "pingpong",
        "--json",
        str(out_json),
        "--png",
        str(out_png),
    ]
    if len(CORES) < 2:
        argv += ["--server-cpu", "-1", "--client-cpu", "-1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "pingpong" in text and "raw echo" in text
    doc = json.loads(out_json.read_text())
    rows = {r["peer"]: r for r in doc["results"]}
    assert rows["raw"]["median"] > 0 and len(rows["raw"]["samples"]) == 1
    assert rows["xyra"]["median"] is not None or rows["xyra"]["skipped"]
    assert doc["machine"]["cores"] >= 1
    if available():
        assert out_png.read_bytes().startswith(b"\x89PNG")


@pytest.mark.timeout(180)
def test_cli_baseline_measures_the_other_checkout_in_the_same_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--baseline`` pointed at this very checkout: one short workload, both peers."""
    if why := xyra_missing():
        pytest.skip(why)
    import xyra
    from xyra.bench import main

    here = Path(xyra.__file__).resolve().parent.parent
    out_json, out_md = tmp_path / "bench.json", tmp_path / "bench.md"
    argv = ["--quick", "--peers", "xyra", "--workloads", "pingpong", "--baseline", str(here)]
    argv += ["--json", str(out_json), "--markdown", str(out_md)]
    if len(CORES) < 2:
        argv += ["--server-cpu", "-1", "--client-cpu", "-1"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    doc = json.loads(out_json.read_text())
    rows = {r["peer"]: r for r in doc["results"]}
    assert set(rows) == {"xyra", "xyra-base"}
    for row in rows.values():
        assert row["median"] > 0 and len(row["samples"]) == 1, row
        check(wl.WORKLOADS["pingpong"], row["samples"][0])
    assert rows["xyra-base"]["label"].startswith(
        f"xyra {doc['peers']['xyra']['version']} (baseline "
    )
    assert doc["peers"]["xyra-base"]["checkout"] == str(here)
    assert f"xyra-base  {doc['peers']['xyra']['version']} from {here}" in text
    assert "xyra against its --baseline" in text and "pingpong:" in text
    assert "against its `--baseline`" in out_md.read_text()


@pytest.mark.timeout(180)
def test_crossproc_delivers_every_message_across_workers(tmp_path: Path) -> None:
    """``xyra bench crossproc`` at a small size: two workers, Redis and the relay."""
    import shutil
    import subprocess
    import sys

    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    out = tmp_path / "crossproc.json"
    args = ["--messages", "4000", "--window", "1000", "--correctness", "5000"]
    args += ["--rate", "2000", "--latency-seconds", "0.5", "--json", str(out)]
    done = subprocess.run(
        [sys.executable, "-m", "xyra", "bench", "crossproc", *args],
        capture_output=True,
        text=True,
        timeout=170,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    results = json.loads(out.read_text())
    for name in ("redis", "relay"):
        run = results[name]
        assert run["throughput"]["deliveries"] == 4000 * run["throughput"]["subscribers"]
        assert run["throughput"]["messages_per_write"] >= 1
        assert run["latency"]["received"] == 1000
        assert 0 < run["latency"]["p50_ms"] <= run["latency"]["p99_ms"]
    assert results["correctness"]["lost"] == 0 and results["correctness"]["reordered"] == 0

"""``xyra bench``: the throughput benchmark Xyra users run.

It measures Xyra next to other Python WebSocket servers (and a raw uvloop echo as
the limit) with a compiled load client (``xyra.bench._drivers.loadgen``), the server and
the client pinned to separate cores. See ``docs/benchmarks.md``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run ``xyra bench`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status."""
    from xyra.bench.cli import main as cli_main

    return cli_main(argv)


__all__ = ["main"]

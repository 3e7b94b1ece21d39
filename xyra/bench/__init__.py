"""``xyra bench``: the throughput benchmark Xyra users run.

It measures Xyra next to other Python WebSocket servers (and a raw uvloop echo as
the limit) with a compiled load client (``xyra.bench._drivers.loadgen``), the server and
the client pinned to separate cores. See ``docs/benchmarks.md``.
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """Run ``xyra bench`` with ``argv`` (default: ``sys.argv[1:]``); returns the exit status.

    ``xyra bench crossproc ...`` runs the cross-process pub/sub benchmark instead
    (``xyra.bench.crossproc``: workers and backplanes, latency and lost messages).
    """
    import sys

    args = sys.argv[1:] if argv is None else list(argv)
    if args[:1] == ["crossproc"]:
        from xyra.bench.crossproc import main as crossproc_main

        return crossproc_main(args[1:])
    from xyra.bench.cli import main as cli_main

    return cli_main(args)


__all__ = ["main"]

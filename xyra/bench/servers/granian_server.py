"""granian (Rust I/O, one worker, one runtime thread) serving the ASGI workloads' apps."""

from __future__ import annotations

from granian import Granian

from xyra.bench.servers.common import HOST, port_from_argv


def main() -> None:
    Granian(
        "xyra.bench.servers.asgi_apps:app",
        address=HOST,
        port=port_from_argv(),
        interface="asgi",  # type: ignore[arg-type]
        workers=1,
        runtime_threads=1,
        loop="uvloop",  # type: ignore[arg-type]
        websockets=True,
        backlog=4096,
        log_enabled=False,
    ).serve()


if __name__ == "__main__":
    main()

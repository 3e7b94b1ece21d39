"""uvicorn serving the ASGI workloads' apps: uvloop, httptools, and its ``websockets``
WebSocket implementation (``uvicorn_wsproto_server`` runs the ``wsproto`` one)."""

from __future__ import annotations

import uvicorn

from xyra.bench.servers.common import HOST, MAX_PAYLOAD, port_from_argv


def serve(ws: str) -> None:
    uvicorn.run(
        "xyra.bench.servers.asgi_apps:app",
        host=HOST,
        port=port_from_argv(),
        loop="uvloop",
        http="httptools",
        ws=ws,
        ws_max_size=MAX_PAYLOAD,
        log_level="warning",
        access_log=False,
        backlog=4096,
    )


def main() -> None:
    serve("websockets")


if __name__ == "__main__":
    main()

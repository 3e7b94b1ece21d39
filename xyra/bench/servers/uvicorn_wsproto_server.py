"""uvicorn with its ``wsproto`` WebSocket implementation (see uvicorn_server)."""

from __future__ import annotations

from xyra.bench.servers.uvicorn_server import serve


def main() -> None:
    serve("wsproto")


if __name__ == "__main__":
    main()

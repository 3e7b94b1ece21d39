"""Xyra serving the ASGI workloads' apps (``asgi_apps.app``) whole, as ``xyra run`` does."""

from __future__ import annotations

from xyra import App
from xyra.bench.servers.asgi_apps import app as asgi_app
from xyra.bench.servers.common import HOST, MAX_PAYLOAD, port_from_argv


def build_app() -> App:
    app = App()
    app.mount("/", asgi_app, max_payload_length=MAX_PAYLOAD, max_backpressure=MAX_PAYLOAD)
    return app


def main() -> None:
    build_app().listen(port_from_argv(), host=HOST)


if __name__ == "__main__":
    main()

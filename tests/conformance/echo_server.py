"""Autobahn TestSuite echo server, written against Xyra's public API only.

    python tests/conformance/echo_server.py PORT [--compression shared|dedicated|off]

Every message goes back with the opcode it came with. The payload limit is 16 MiB because the
9.* cases send messages that large. Serves 127.0.0.1 until SIGINT/SIGTERM.
"""

from __future__ import annotations

import argparse
from typing import Any

from xyra import App


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("port", type=int)
    parser.add_argument("--compression", choices=("shared", "dedicated", "off"), default="off")
    args = parser.parse_args()

    options: dict[str, Any] = {
        "max_payload_length": 16 * 1024 * 1024,
        "compression": args.compression,
    }
    compress = args.compression != "off"

    app = App()
    app.websocket(
        "/",
        {"message": lambda ws, message, opcode: ws.send(message, opcode, compress=compress)},
        **options,
    )
    app.listen(args.port)


if __name__ == "__main__":
    main()

"""Suite-wide setup: every async test runs on uvloop, as the server does in production."""

from __future__ import annotations

import uvloop


def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}

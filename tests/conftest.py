"""Suite-wide setup: the test kit on ``sys.path``, and every async test on uvloop.

Tests import their helpers from the kit (``from kit import ...``, tests/kit/). This folder
goes on ``sys.path`` here, so that holds in every folder of the suite whatever pytest's
import mode (the default "prepend" mode would put it there too; importlib mode would not).
"""

from __future__ import annotations

import sys
from pathlib import Path

import uvloop

HERE = str(Path(__file__).resolve().parent)
if HERE not in sys.path:
    sys.path.insert(0, HERE)


def pytest_asyncio_loop_factories(config, item):
    return {"uvloop": uvloop.new_event_loop}

"""Browser tests: real headless Chromium driven by Playwright (marker ``browser``).

They need Debian's ``chromium`` package and the ``playwright`` Python package (never
``playwright install``: the browser is the system one). Without them the tests are skipped,
unless ``XYRA_REQUIRE_BROWSER`` is set, in which case they fail.
"""

from __future__ import annotations

import pytest


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: real headless Chromium via Playwright (needs chromium + playwright)"
    )

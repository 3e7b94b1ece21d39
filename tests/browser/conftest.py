"""Browser tests: real headless Chromium driven by Playwright (marker ``browser``).

They need Debian's ``chromium`` package and the ``playwright`` Python package (never
``playwright install``: the browser is the system one). Without them the tests are skipped,
unless ``XYRA_REQUIRE_BROWSER`` is set, in which case they fail.

Fixtures shared by the modules here:

* ``browser``: one Chromium (a fresh profile folder) per module;
* ``pages``: ``pages()`` opens a tab, closed after the test;
* ``serve``: ``serve(app)`` starts an App on its own uvloop thread (the tests drive a sync
  browser from the main thread) and returns its ``Server``; stopped after the test.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import shutil
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from xyra import App, Server

START_TIMEOUT = 20.0
UI_TIMEOUT = 20_000  # ms, for anything the page should show
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "browser: real headless Chromium via Playwright (needs chromium + playwright)"
    )


def _missing() -> str | None:
    if importlib.util.find_spec("playwright") is None:
        return "the playwright Python package is not installed (pip install playwright)"
    if shutil.which("chromium") is None:
        return "Debian's chromium is not installed (apt-get install -y chromium)"
    return None


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """One Chromium (a fresh persistent-context folder) for the module's tests."""
    missing = _missing()
    if missing is not None:
        if os.environ.get("XYRA_REQUIRE_BROWSER"):
            pytest.fail(f"XYRA_REQUIRE_BROWSER is set but {missing}")
        pytest.skip(missing)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw, tempfile.TemporaryDirectory(prefix="xyra-chromium-") as profile:
        context = pw.chromium.launch_persistent_context(
            profile,
            executable_path=shutil.which("chromium"),
            headless=True,
            args=CHROMIUM_ARGS,
            viewport={"width": 1000, "height": 720},
        )
        context.set_default_timeout(UI_TIMEOUT)
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def pages(browser: Any) -> Iterator[Callable[[], Any]]:
    """``page = pages()``: a new tab, closed after the test."""
    opened: list[Any] = []

    def new_page() -> Any:
        page = browser.new_page()
        opened.append(page)
        return page

    yield new_page
    for page in opened:
        with contextlib.suppress(Exception):
            page.close()


class ThreadedServer:
    """An App served on its own uvloop thread."""

    def __init__(self, app: App) -> None:
        import uvloop

        self.loop = uvloop.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.server: Server = asyncio.run_coroutine_threadsafe(
            app.start(0, "127.0.0.1"), self.loop
        ).result(START_TIMEOUT)

    def stop(self) -> None:
        asyncio.run_coroutine_threadsafe(self.server.stop(timeout=2.0), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


@pytest.fixture
def serve() -> Iterator[Callable[[App], Server]]:
    """``server = serve(app)``: the App served on 127.0.0.1 (a free port) until the test ends."""
    running: list[ThreadedServer] = []

    def start(app: App) -> Server:
        running.append(ThreadedServer(app))
        return running[-1].server

    yield start
    for threaded in reversed(running):
        threaded.stop()

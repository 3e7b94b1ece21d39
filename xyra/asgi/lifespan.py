"""The ASGI ``lifespan`` scope, tied to the server's startup and shutdown hooks.

``startup`` runs when the server has bound its address and before it accepts a
connection; ``shutdown`` after every connection was closed. An app that sends
``lifespan.startup.failed`` stops the server: ``LifespanFailed`` carries its message.
An app that raises before answering ``lifespan.startup`` does not speak lifespan: it is
skipped with one log line, as uvicorn does (``lifespan="auto"``); with
``lifespan="on"`` that is a failure too.
"""

from __future__ import annotations

import asyncio
import logging
import sys
from typing import Any, Literal

from xyra.asgi.types import LIFESPAN_VERSION, ASGIApp, Message, ProtocolError

log = logging.getLogger("xyra")

LifespanMode = Literal["auto", "on", "off"]


class LifespanFailed(Exception):
    """The ASGI app's startup failed (``lifespan.startup.failed``): the server does not start."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message

    def report(self) -> int:
        """Say so on stderr as uvicorn does, and return uvicorn's exit status for it (3)."""
        print(f"xyra: ASGI application startup failed: {self.message}", file=sys.stderr)
        return 3


class Lifespan:
    """One run of an app's lifespan scope: ``await startup()``, later ``await shutdown()``."""

    def __init__(self, app: ASGIApp, state: dict[str, Any], mode: LifespanMode = "auto") -> None:
        self.app = app
        self.mode = mode
        self.state = state
        self.events: asyncio.Queue[Message] = asyncio.Queue()
        self.answer: asyncio.Future[Message] | None = None
        self.task: asyncio.Task[None] | None = None
        self.supported = True

    async def startup(self) -> None:
        """Send ``lifespan.startup``; returns once the app is ready, or raises LifespanFailed."""
        loop = asyncio.get_running_loop()
        self.answer = loop.create_future()
        scope = {"type": "lifespan", "asgi": LIFESPAN_VERSION, "state": self.state}
        self.task = loop.create_task(self._main(scope))
        await self.events.put({"type": "lifespan.startup"})
        message = await self.answer
        if message["type"] == "lifespan.startup.failed":
            raise LifespanFailed(str(message.get("message") or "no message given"))
        if message["type"] != "lifespan.startup.complete":
            raise LifespanFailed(f"unexpected answer to lifespan.startup: {message['type']!r}")

    async def shutdown(self) -> None:
        """Send ``lifespan.shutdown`` and wait for the answer (failures are logged)."""
        if not self.supported or self.task is None or self.task.done():
            return
        self.answer = asyncio.get_running_loop().create_future()
        await self.events.put({"type": "lifespan.shutdown"})
        message = await self.answer
        if message["type"] == "lifespan.shutdown.failed":
            log.error("xyra: ASGI lifespan shutdown failed: %s", message.get("message") or "")
        await asyncio.wait([self.task], timeout=5.0)

    async def _main(self, scope: dict[str, Any]) -> None:
        try:
            await self.app(scope, self.events.get, self._send)
        except Exception as exc:
            started = self.answer is not None and self.answer.done()
            if not started and self.mode == "auto":
                self.supported = False
                log.info(
                    "xyra: the ASGI app does not support lifespan (%s): skipped",
                    type(exc).__name__,
                )
                log.debug("xyra: lifespan error", exc_info=exc)
                self._answer({"type": "lifespan.startup.complete"})
                return
            log.error("xyra: ASGI lifespan failed", exc_info=exc)
            self._answer({"type": "lifespan.startup.failed", "message": f"{exc!r}"})
        else:
            if self.answer is not None and not self.answer.done():
                self.supported = False  # returned without a word: nothing to run
                self._answer({"type": "lifespan.startup.complete"})

    async def _send(self, message: Message) -> None:
        kind = message["type"]
        if kind not in (
            "lifespan.startup.complete",
            "lifespan.startup.failed",
            "lifespan.shutdown.complete",
            "lifespan.shutdown.failed",
        ):
            raise ProtocolError(f"unknown ASGI lifespan message {kind!r}")
        self._answer(message)

    def _answer(self, message: Message) -> None:
        if self.answer is not None and not self.answer.done():
            self.answer.set_result(message)

"""How long a test waits, and how it waits for something that has no event to await.

The one timeout policy of the suite: ``TIMEOUT`` bounds any single thing a test waits for
(a message, a close, a handshake, a condition). A wait on many things at once (a burst of
thousands of messages, a thousand connections) uses a stated multiple of it, and so does
the start of a subprocess (``START_TIMEOUT``). A timeout only turns a hang into a failure:
no test passes or fails because something took a given time.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

TIMEOUT = 10.0
START_TIMEOUT = 2 * TIMEOUT  # a subprocess (an example, `xyra run`) accepting connections
POLL_INTERVAL = 0.01  # how often wait_for_condition looks again


async def wait_for_condition(
    predicate: Callable[[], bool | Awaitable[bool]],
    *,
    timeout: float = TIMEOUT,
    message: str | Callable[[], str] = "",
) -> None:
    """Wait until ``predicate()`` is true; fail with ``message`` after ``timeout``.

    For state that nothing signals (a count of subscribers, a slot freed, a process
    listening). The predicate may be a coroutine function. Between looks the event loop runs
    (the server shares it in most tests), so the state can change. The loop of looks is
    bounded by ``timeout``; the interval is only how often to look, never what the test
    waits for.
    """

    async def poll() -> None:
        while True:
            result = predicate()
            if inspect.isawaitable(result):
                result = await result
            if result:
                return
            await asyncio.sleep(POLL_INTERVAL)

    try:
        await asyncio.wait_for(poll(), timeout)
    except asyncio.TimeoutError:
        what = message() if callable(message) else message
        raise AssertionError(
            f"condition not met within {timeout} s: {what or predicate!r}"
        ) from None


class Receiver(Protocol):
    """Anything with an awaitable ``recv()``: a websockets client, a RawClient's frames."""

    def recv(self) -> Awaitable[Any]: ...


async def recv(client: Receiver, timeout: float = TIMEOUT) -> Any:
    """The client's next message, within ``timeout``."""
    return await asyncio.wait_for(client.recv(), timeout)


async def recv_n(client: Receiver, n: int, timeout: float = TIMEOUT) -> list[Any]:
    """The client's next ``n`` messages, all within ``timeout``."""

    async def take() -> list[Any]:
        return [await client.recv() for _ in range(n)]

    return await asyncio.wait_for(take(), timeout)


async def closed_code(client: Any, timeout: float = TIMEOUT) -> tuple[int, str]:
    """The close code and reason a websockets client received (1006 if none)."""
    await asyncio.wait_for(client.wait_closed(), timeout)
    rcvd = client.protocol.close_rcvd
    return (rcvd.code, rcvd.reason) if rcvd else (1006, "")

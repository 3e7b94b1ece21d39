"""What the facade asks of a user's function: is it async, and can it take these arguments."""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

__all__ = ["describe", "is_async", "takes_positional"]


def is_async(handler: Callable[..., Any]) -> bool:
    """True for ``async def`` functions, and for objects whose ``__call__`` is one."""
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004 - we want the method itself
    return call is not None and inspect.iscoroutinefunction(call)


def takes_positional(func: Callable[..., Any], count: int) -> bool | None:
    """Whether ``func(a1, ..., a_count)`` binds; None if its signature cannot be read."""
    try:
        sig = inspect.signature(func)
    except (TypeError, ValueError):  # builtins and some C callables have none
        return None
    try:
        sig.bind(*range(count))
    except TypeError:
        return False
    return True


def describe(func: Callable[..., Any]) -> str:
    """``name(params)`` of a function, for error messages."""
    name = getattr(func, "__qualname__", None) or repr(func)
    try:
        return f"{name}{inspect.signature(func)}"
    except (TypeError, ValueError):
        return name

"""HTTP routes: path patterns, handlers and how they are called, and the ``Router``.

``Router.dispatch`` routes one complete request. It returns

* ``None`` when no route has the path (the app then tries its static folders);
* a ``Response`` (a sync handler's result, a 405, a 500, ...);
* or an awaitable resolving to a ``Response`` (async handlers).

Handler exceptions never escape: an ``HTTPError`` becomes its response, anything else is
logged with its traceback on the ``xyra`` logger and answered with a bare 500.

Calling convention (decided once, at registration, from the handler's signature):

* each ``{name}`` of the path is passed as the keyword argument ``name``;
* the ``Request`` is passed to the parameter called ``request`` if there is one, else to
  the first positional parameter that is not a path parameter and has no default
  (``def show(req, id)`` works, so does ``def index()`` which gets nothing);
* any other parameter without a default is an error at registration.

``PathPattern`` is shared with the WebSocket routes (``/room/{name}``).
"""

from __future__ import annotations

import inspect
import logging
import re
from collections.abc import Awaitable, Callable, Iterable
from typing import Any
from urllib.parse import unquote

from xyra.callables import is_async
from xyra.http import HTTPError, Request, Response, to_response

log = logging.getLogger("xyra")

__all__ = ["HTTPResult", "PathPattern", "Router", "check_methods", "segments"]

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_CONVERTERS = ("str", "int", "path")
_METHOD = re.compile(r"[A-Z0-9!#$%&'*+.^_`|~-]+")

HTTPResult = Response | Awaitable[Response] | None


def internal_error() -> Response:
    return Response("Internal Server Error\n", 500)


def segments(raw_path: str) -> list[str]:
    """The raw (still percent-encoded) segments of a path: "/a/b/" -> ["a", "b", ""]."""
    return raw_path[1:].split("/") if raw_path.startswith("/") else [raw_path]


def check_methods(methods: Iterable[str] | str) -> list[str]:
    """HTTP method names, upper-cased and checked."""
    if isinstance(methods, str):
        methods = [methods]
    wanted = [str(m).upper() for m in methods]
    if not wanted:
        raise ValueError("methods must name at least one HTTP method")
    for m in wanted:
        if not _METHOD.fullmatch(m):
            raise ValueError(f"invalid HTTP method {m!r}")
    return wanted


class PathPattern:
    """A route path, with ``{name}``, ``{name:int}`` or ``{name:path}`` segments."""

    __slots__ = ("param_names", "parts", "text")

    def __init__(self, pattern: str, kind: str = "an HTTP route") -> None:
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ValueError(f"{kind} path must start with '/', got {pattern!r}")
        self.text = pattern
        # (kind, value): ("lit", decoded text) or (converter, parameter name)
        self.parts: list[tuple[str, str]] = []
        names: list[str] = []
        segs = pattern[1:].split("/")
        for i, seg in enumerate(segs):
            m = _PARAM.fullmatch(seg)
            if m is None:
                if "{" in seg or "}" in seg:
                    raise ValueError(
                        f"bad path parameter in {pattern!r}: a parameter is a whole segment, "
                        "{name} or {name:str|int|path}"
                    )
                self.parts.append(("lit", seg))
                continue
            name, conv = m.group(1), m.group(2) or "str"
            if conv not in _CONVERTERS:
                raise ValueError(f"unknown converter {conv!r} in {pattern!r}; use {_CONVERTERS}")
            if name in names:
                raise ValueError(f"path parameter {name!r} appears twice in {pattern!r}")
            if conv == "path" and i != len(segs) - 1:
                raise ValueError(f"{{{name}:path}} must be the last segment of {pattern!r}")
            names.append(name)
            self.parts.append((conv, name))
        self.param_names = tuple(names)

    @property
    def is_static(self) -> bool:
        return not self.param_names

    def match(self, segs: list[str]) -> dict[str, Any] | None:
        """The path parameters if the raw segments match, else None."""
        params: dict[str, Any] = {}
        parts = self.parts
        n = len(segs)
        for i, (kind, value) in enumerate(parts):
            if kind == "path":
                params[value] = unquote("/".join(segs[i:]), errors="replace")
                return params
            if i >= n:
                return None
            text = unquote(segs[i], errors="replace")
            if kind == "lit":
                if text != value:
                    return None
            elif kind == "int":
                if not (text.isascii() and text.isdigit()):
                    return None
                params[value] = int(text)
            else:
                if not text:
                    return None
                params[value] = text
        return params if n == len(parts) else None

    def match_path(self, raw_path: str) -> dict[str, Any] | None:
        """``match`` on a raw path (no query string)."""
        return self.match(segments(raw_path))

    def __repr__(self) -> str:
        return f"PathPattern({self.text!r})"


class Handler:
    """One callable and how to call it."""

    __slots__ = ("func", "is_async", "name", "request_arg")

    def __init__(self, func: Callable[..., Any], path_params: tuple[str, ...]) -> None:
        if not callable(func):
            raise TypeError(f"an HTTP handler must be callable, not {type(func).__name__}")
        self.func = func
        self.is_async = is_async(func)
        self.name = getattr(func, "__qualname__", repr(func))
        # None: no request; "": the request positionally (a positional-only parameter);
        # otherwise the keyword to pass it as.
        self.request_arg: str | None = self._request_arg(func, path_params)

    def _request_arg(self, func: Callable[..., Any], path_params: tuple[str, ...]) -> str | None:
        try:
            sig = inspect.signature(func)
        except (TypeError, ValueError):  # a builtin without a signature: pass path params only
            return None
        params = sig.parameters
        kinds = inspect.Parameter
        var_kw = any(p.kind is kinds.VAR_KEYWORD for p in params.values())
        for name in path_params:
            param = params.get(name)
            if param is None and not var_kw:
                raise TypeError(
                    f"HTTP handler {self.name} has no parameter {name!r} for the path "
                    f"parameter {{{name}}}"
                )
            if param is not None and param.kind in (kinds.POSITIONAL_ONLY, kinds.VAR_POSITIONAL):
                raise TypeError(
                    f"HTTP handler {self.name}: the path parameter {name!r} is passed by "
                    "keyword, so it cannot be positional-only"
                )
        # The request goes to "request", else to the first non-path parameter if that
        # one is positional and has no default.
        chosen: inspect.Parameter | None = None
        if "request" in params and "request" not in path_params:
            chosen = params["request"]
        else:
            for p in params.values():
                if p.name in path_params:
                    continue
                positional = p.kind in (kinds.POSITIONAL_ONLY, kinds.POSITIONAL_OR_KEYWORD)
                if positional and p.default is p.empty:
                    chosen = p
                break
        for p in params.values():
            if p is chosen or p.name in path_params or p.default is not p.empty:
                continue
            if p.kind in (kinds.VAR_POSITIONAL, kinds.VAR_KEYWORD):
                continue
            raise TypeError(
                f"HTTP handler {self.name}: parameter {p.name!r} is neither a path parameter "
                "nor the request, and has no default"
            )
        if chosen is None:
            return None
        if chosen.kind is kinds.VAR_POSITIONAL:
            raise TypeError(f"HTTP handler {self.name}: 'request' cannot be *request")
        if chosen.kind is kinds.POSITIONAL_ONLY:
            if next(iter(params.values())) is not chosen:
                raise TypeError(
                    f"HTTP handler {self.name}: a positional-only request parameter must be first"
                )
            return ""
        return chosen.name

    def call(self, request: Request, params: dict[str, Any]) -> Any:
        arg = self.request_arg
        if arg is None:
            return self.func(**params)
        if arg == "":
            return self.func(request, **params)
        return self.func(**params, **{arg: request})


class Route:
    """A path pattern and its handler per method."""

    __slots__ = ("handlers", "pattern")

    def __init__(self, pattern: str) -> None:
        self.pattern = PathPattern(pattern)
        self.handlers: dict[str, Handler] = {}

    def allow(self) -> str:
        methods = set(self.handlers)
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))


class Router:
    """The HTTP routes of an app: registration and dispatch."""

    def __init__(self) -> None:
        self._routes: dict[str, Route] = {}  # pattern -> route
        self._exact: dict[str, Route] = {}  # routes without parameters, by path
        self._patterns: list[Route] = []  # routes with parameters, in order

    def __bool__(self) -> bool:
        return bool(self._routes)

    def add(self, path: str, func: Callable[..., Any], methods: list[str]) -> None:
        """Register ``func`` for ``methods`` at ``path`` (a duplicate method is an error)."""
        route = self._routes.get(path)
        new = route is None
        if route is None:
            route = Route(path)
        for method in methods:
            if method in route.handlers:
                raise ValueError(f"an HTTP {method} handler is already registered at {path!r}")
        handler = Handler(func, route.pattern.param_names)
        for method in methods:
            route.handlers[method] = handler
        if new:
            self._routes[path] = route
            if route.pattern.is_static:
                self._exact[path] = route
            else:
                self._patterns.append(route)

    def has_path(self, raw_path: str) -> bool:
        """Whether some route's path matches ``raw_path`` (whatever the method)."""
        if "%2f" not in raw_path.lower() and unquote(raw_path, errors="replace") in self._exact:
            return True
        segs = segments(raw_path)
        return any(route.pattern.match(segs) is not None for route in self._patterns)

    def dispatch(self, request: Request) -> HTTPResult:
        """Route one complete request; None if no route has its path."""
        method = request.method
        segs = segments(request.raw_path)
        candidates: list[tuple[Route, dict[str, Any]]] = []
        # Routes without parameters by dict lookup, unless an encoded slash makes the
        # decoded path's segments differ from the request's ("/a%2Fb" is one segment).
        raw = request.raw_path
        exact = None if "%2f" in raw.lower() else self._exact.get(request.path)
        if exact is not None:
            candidates.append((exact, {}))
            handler = exact.handlers.get(method)
            if handler is None and method == "HEAD":
                handler = exact.handlers.get("GET")
            if handler is not None:
                return call_handler(handler, request, {})
        for route in self._patterns:
            params = route.pattern.match(segs)
            if params is None:
                continue
            handler = route.handlers.get(method)
            if handler is None and method == "HEAD":
                handler = route.handlers.get("GET")
            if handler is not None:
                return call_handler(handler, request, params)
            candidates.append((route, params))
        if candidates:
            methods: set[str] = set()
            for route, _ in candidates:
                methods.update(m.strip() for m in route.allow().split(","))
            return Response(
                f"{method} is not allowed here\n", 405, {"Allow": ", ".join(sorted(methods))}
            )
        return None


def call_handler(handler: Handler, request: Request, params: dict[str, Any]) -> HTTPResult:
    request.path_params = params
    try:
        result = handler.call(request, params)
    except Exception as exc:
        return _handler_failed(handler, request, exc)
    if handler.is_async or inspect.isawaitable(result):
        return _await_handler(handler, request, result)
    return _finish(handler, request, result)


def _handler_failed(handler: Handler, request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPError):
        try:
            return exc.response()
        except Exception:
            log.exception("xyra: bad HTTPError raised by %s", handler.name)
            return internal_error()
    log.error(
        "xyra: HTTP handler %s failed on %s %s from %s",
        handler.name,
        request.method,
        request.raw_path,
        request.remote_address,
        exc_info=exc,
    )
    return internal_error()


def _finish(handler: Handler, request: Request, result: Any) -> Response:
    try:
        response = to_response(result)
        response.validate()
    except Exception as exc:
        return _handler_failed(handler, request, exc)
    return response


async def _await_handler(handler: Handler, request: Request, result: Any) -> Response:
    try:
        value = await result
    except Exception as exc:
        return _handler_failed(handler, request, exc)
    return _finish(handler, request, value)

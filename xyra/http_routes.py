"""HTTP routes and static files: the ``HTTPRoutes`` mixin that ``App`` inherits.

The protocol hands every complete non-upgrade request to ``_http_dispatch``. It returns

* ``None`` when no HTTP route and no static folder matches the path (the protocol then
  answers 426 if a WebSocket route lives there, 404 otherwise);
* a ``Response`` (a sync handler's result, a static file, a 405, a 500, ...);
* or an awaitable resolving to a ``Response`` (async handlers, large static files).

Handler exceptions never escape: an ``HTTPError`` becomes its response, anything else is
logged with its traceback on the ``xyra`` logger and answered with a bare 500.

Calling convention (decided once, at registration, from the handler's signature):

* each ``{name}`` of the path is passed as the keyword argument ``name``;
* the ``Request`` is passed to the parameter called ``request`` if there is one, else to
  the first positional parameter that is not a path parameter and has no default
  (``def show(req, id)`` works, so does ``def index()`` which gets nothing);
* any other parameter without a default is an error at registration.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import logging
import os
import re
import stat
from collections.abc import Awaitable, Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar, overload
from urllib.parse import unquote

from xyra.http import (
    MAX_FILE_SIZE,
    FileResponse,
    FileTooLarge,
    HTTPError,
    Request,
    Response,
    file_etag,
    http_date,
    to_response,
)
from xyra.routes import is_async

F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("xyra")

__all__ = ["CLIENT_JS", "HTTPRoutes"]

#: The browser client served by ``enable_client_js``.
CLIENT_JS = Path(__file__).resolve().parent / "static" / "xyra.js"

_PARAM = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)(?::([a-z]+))?\}")
_CONVERTERS = ("str", "int", "path")
_METHOD = re.compile(r"[A-Z0-9!#$%&'*+.^_`|~-]+")
# Files up to this size are read on the event loop; larger ones in a worker thread.
_INLINE_FILE = 256 * 1024

HTTPResult = Response | Awaitable[Response] | None


def _internal_error() -> Response:
    return Response("Internal Server Error\n", 500)


def _segments(raw_path: str) -> list[str]:
    """The raw (still percent-encoded) segments of a path: "/a/b/" -> ["a", "b", ""]."""
    return raw_path[1:].split("/") if raw_path.startswith("/") else [raw_path]


class _Handler:
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


class _Route:
    """A path pattern and its handler per method."""

    __slots__ = ("handlers", "param_names", "parts", "pattern")

    def __init__(self, pattern: str) -> None:
        if not isinstance(pattern, str) or not pattern.startswith("/"):
            raise ValueError(f"an HTTP route path must start with '/', got {pattern!r}")
        self.pattern = pattern
        self.handlers: dict[str, _Handler] = {}
        # (kind, value): ("lit", decoded text) or (converter, parameter name)
        self.parts: list[tuple[str, str]] = []
        names: list[str] = []
        segments = pattern[1:].split("/")
        for i, seg in enumerate(segments):
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
            if conv == "path" and i != len(segments) - 1:
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

    def allow(self) -> str:
        methods = set(self.handlers)
        if "GET" in methods:
            methods.add("HEAD")
        return ", ".join(sorted(methods))


class _Mount:
    """A static folder served under a URL prefix."""

    __slots__ = ("cache_control", "dotfiles", "index", "max_file_size", "prefix", "root")

    def __init__(
        self,
        prefix: str,
        directory: str | os.PathLike[str],
        index: str | None,
        max_file_size: int,
        dotfiles: bool,
        cache_control: str | None,
    ) -> None:
        if not isinstance(prefix, str) or not prefix.startswith("/"):
            raise ValueError(f"a static URL prefix must start with '/', got {prefix!r}")
        if "{" in prefix or "}" in prefix:
            raise ValueError(f"a static URL prefix cannot have path parameters: {prefix!r}")
        root = os.path.realpath(os.fspath(directory))
        if not os.path.isdir(root):
            raise ValueError(f"static directory {os.fspath(directory)!r} is not a directory")
        self.prefix = [seg for seg in prefix.split("/") if seg]
        self.root = root
        self.index = index
        self.max_file_size = int(max_file_size)
        self.dotfiles = dotfiles
        self.cache_control = cache_control

    def rest(self, segs: list[str]) -> list[str] | None:
        """The raw segments after the prefix, or None if the path is not under it."""
        k = len(self.prefix)
        if len(segs) < k:
            return None
        for seg, want in zip(segs, self.prefix, strict=False):
            if unquote(seg, errors="replace") != want:
                return None
        return segs[k:]


def _safe_parts(raw: list[str], dotfiles: bool) -> list[str] | None:
    """Decoded file-name parts, or None for anything that could leave the folder."""
    parts: list[str] = []
    seps = {"/", "\\", "\0", os.sep, *(os.altsep or "")}
    for seg in raw:
        if not seg:  # "//" or the trailing slash
            continue
        if "\\" in seg or "\0" in seg:
            return None
        try:
            name = unquote(seg, errors="strict")
        except UnicodeDecodeError:
            return None
        if name in (".", "..") or any(c in name for c in seps):
            return None
        if name.startswith(".") and not dotfiles:
            return None
        if os.name == "nt" and ":" in name:  # pragma: no cover - drive letters, streams
            return None
        parts.append(name)
    return parts


def _inside(root: str, path: str) -> bool:
    try:
        return os.path.commonpath([root, path]) == root
    except ValueError:  # different drives (Windows)
        return False


def not_modified(request: Request, etag: str, mtime: float) -> bool:
    """Whether a conditional GET/HEAD can be answered with 304 (RFC 9110 section 13.2.2)."""
    inm = request.headers.getall("if-none-match")
    if inm:
        tags = {t.strip().removeprefix("W/") for line in inm for t in line.split(",")}
        return "*" in tags or etag.removeprefix("W/") in tags
    ims = request.headers.get("if-modified-since")
    if ims:
        try:
            since = email.utils.parsedate_to_datetime(ims)
        except (TypeError, ValueError, IndexError):
            return False
        if since is None or since.tzinfo is None:
            return False
        return int(mtime) <= since.timestamp()
    return False


class HTTPRoutes:
    """HTTP routes, static folders and the bundled browser client; mixed into ``App``."""

    def __init__(self) -> None:
        self._http_routes: dict[str, _Route] = {}  # pattern -> route
        self._http_exact: dict[str, _Route] = {}  # routes without parameters, by path
        self._http_patterns: list[_Route] = []  # routes with parameters, in order
        self._static_mounts: list[_Mount] = []  # longest prefix first

    # -- registration ---------------------------------------------------------------------

    @overload
    def route(self, path: str, /, *, methods: Iterable[str] = ...) -> Callable[[F], F]: ...

    @overload
    def route(self, path: str, handler: F, /, *, methods: Iterable[str] = ...) -> F: ...

    def route(
        self,
        path: str,
        handler: F | None = None,
        /,
        *,
        methods: Iterable[str] = ("GET",),
    ) -> F | Callable[[F], F]:
        """Register an HTTP handler for ``methods`` (default GET) at ``path``.

        ``@app.route("/items", methods=["GET", "POST"])`` or
        ``app.route("/items", handler, methods=["GET", "POST"])``. ``path`` may hold
        ``{name}`` (one segment), ``{name:int}`` and ``{name:path}`` (the rest of the path).
        A GET handler also answers HEAD (the body is dropped).
        """
        if isinstance(methods, str):
            methods = [methods]
        wanted = [str(m).upper() for m in methods]
        if not wanted:
            raise ValueError("methods must name at least one HTTP method")
        for m in wanted:
            if not _METHOD.fullmatch(m):
                raise ValueError(f"invalid HTTP method {m!r}")
        if handler is None:

            def decorator(func: F) -> F:
                self._add_http_route(path, func, wanted)
                return func

            return decorator
        if not callable(handler):
            raise TypeError(
                f"route({path!r}, ...): the second argument is the handler; pass the methods "
                f"as methods=[...], not {handler!r}"
            )
        self._add_http_route(path, handler, wanted)
        return handler

    def _method_route(self, method: str, path: str, handler: F | None) -> F | Callable[[F], F]:
        if handler is None:
            return self.route(path, methods=[method])
        return self.route(path, handler, methods=[method])

    @overload
    def get(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def get(self, path: str, handler: F, /) -> F: ...
    def get(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.get(path)``: a GET (and HEAD) handler."""
        return self._method_route("GET", path, handler)

    @overload
    def post(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def post(self, path: str, handler: F, /) -> F: ...
    def post(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.post(path)``: a POST handler."""
        return self._method_route("POST", path, handler)

    @overload
    def put(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def put(self, path: str, handler: F, /) -> F: ...
    def put(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.put(path)``: a PUT handler."""
        return self._method_route("PUT", path, handler)

    @overload
    def delete(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def delete(self, path: str, handler: F, /) -> F: ...
    def delete(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.delete(path)``: a DELETE handler."""
        return self._method_route("DELETE", path, handler)

    @overload
    def patch(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def patch(self, path: str, handler: F, /) -> F: ...
    def patch(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.patch(path)``: a PATCH handler."""
        return self._method_route("PATCH", path, handler)

    @overload
    def head(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def head(self, path: str, handler: F, /) -> F: ...
    def head(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.head(path)``: an explicit HEAD handler (GET handlers answer HEAD already)."""
        return self._method_route("HEAD", path, handler)

    @overload
    def options(self, path: str, /) -> Callable[[F], F]: ...
    @overload
    def options(self, path: str, handler: F, /) -> F: ...
    def options(self, path: str, handler: F | None = None, /) -> F | Callable[[F], F]:
        """``@app.options(path)``: an OPTIONS handler."""
        return self._method_route("OPTIONS", path, handler)

    def _add_http_route(self, path: str, func: Callable[..., Any], methods: list[str]) -> None:
        route = self._http_routes.get(path)
        new = route is None
        if route is None:
            route = _Route(path)
        for method in methods:
            if method in route.handlers:
                raise ValueError(f"an HTTP {method} handler is already registered at {path!r}")
        handler = _Handler(func, route.param_names)
        for method in methods:
            route.handlers[method] = handler
        if new:
            self._http_routes[path] = route
            if route.is_static:
                self._http_exact[path] = route
            else:
                self._http_patterns.append(route)

    def static(
        self,
        url_prefix: str,
        directory: str | os.PathLike[str],
        *,
        index: str | None = "index.html",
        max_file_size: int = MAX_FILE_SIZE,
        dotfiles: bool = False,
        cache_control: str | None = None,
    ) -> None:
        """Serve the files of ``directory`` under ``url_prefix`` (GET and HEAD).

        Content-Type from the file name, ``ETag`` and ``Last-Modified`` with 304 answers to
        ``If-None-Match``/``If-Modified-Since``, ``index`` for a directory (a directory
        URL without its trailing slash is redirected to it; no listings). Files over
        ``max_file_size`` (64 MiB) are refused with 500 and a log line: files are read
        whole into memory. Names starting with "." are hidden unless ``dotfiles``.
        A path that would leave the folder (``..``, encoded slashes or dots, backslashes,
        NUL, symlinks pointing outside) gets 404. ``cache_control`` sets that header.
        """
        mount = _Mount(url_prefix, directory, index, max_file_size, dotfiles, cache_control)
        if any(m.prefix == mount.prefix for m in self._static_mounts):
            raise ValueError(f"a static folder is already served at {url_prefix!r}")
        self._static_mounts.append(mount)
        self._static_mounts.sort(key=lambda m: -len(m.prefix))

    def enable_client_js(self, path: str = "/xyra.js") -> None:
        """Serve the bundled browser client ``xyra/static/xyra.js`` (``XyraSocket``) at ``path``."""
        js = str(CLIENT_JS)

        def client_js(request: Request) -> HTTPResult:
            return _serve_file(request, js, None, MAX_FILE_SIZE)

        client_js.__qualname__ = "xyra_client_js"
        self.route(path, client_js, methods=["GET"])

    # -- dispatch (called by the protocol) ------------------------------------------------

    def _http_has_routes(self) -> bool:
        return bool(self._http_routes or self._static_mounts)

    def _http_dispatch(self, request: Request) -> HTTPResult:
        """Route one complete request; None if no HTTP route or static folder has its path."""
        method = request.method
        segs = _segments(request.raw_path)
        candidates: list[tuple[_Route, dict[str, Any]]] = []
        # Routes without parameters by dict lookup, unless an encoded slash makes the
        # decoded path's segments differ from the request's ("/a%2Fb" is one segment).
        raw = request.raw_path
        exact = None if "%2f" in raw.lower() else self._http_exact.get(request.path)
        if exact is not None:
            candidates.append((exact, {}))
            handler = exact.handlers.get(method)
            if handler is None and method == "HEAD":
                handler = exact.handlers.get("GET")
            if handler is not None:
                return self._http_call(handler, request, {})
        for route in self._http_patterns:
            params = route.match(segs)
            if params is None:
                continue
            handler = route.handlers.get(method)
            if handler is None and method == "HEAD":
                handler = route.handlers.get("GET")
            if handler is not None:
                return self._http_call(handler, request, params)
            candidates.append((route, params))
        if candidates:
            methods: set[str] = set()
            for route, _ in candidates:
                methods.update(m.strip() for m in route.allow().split(","))
            return Response(
                f"{method} is not allowed here\n", 405, {"Allow": ", ".join(sorted(methods))}
            )
        for mount in self._static_mounts:
            rest = mount.rest(segs)
            if rest is not None:
                return self._http_static(mount, rest, request)
        return None

    def _http_call(
        self, handler: _Handler, request: Request, params: dict[str, Any]
    ) -> HTTPResult:
        request.path_params = params
        try:
            result = handler.call(request, params)
        except Exception as exc:
            return _handler_failed(handler, request, exc)
        if handler.is_async or inspect.isawaitable(result):
            return _await_handler(handler, request, result)
        return _finish(handler, request, result)

    def _http_static(self, mount: _Mount, rest: list[str], request: Request) -> HTTPResult:
        if request.method not in ("GET", "HEAD"):
            return Response(
                f"{request.method} is not allowed here\n", 405, {"Allow": "GET, HEAD"}
            )
        parts = _safe_parts(rest, mount.dotfiles)
        if parts is None:
            log.info("xyra: refused static path %r from %s", request.raw_path,
                     request.remote_address)
            return _not_found()
        real = os.path.realpath(os.path.join(mount.root, *parts))
        if not _inside(mount.root, real):
            log.info("xyra: refused static path %r from %s (leaves the folder)",
                     request.raw_path, request.remote_address)
            return _not_found()
        try:
            st = os.stat(real)
        except OSError:
            return self._static_missing(request)
        if stat.S_ISDIR(st.st_mode):
            if mount.index is None:
                return _not_found()
            if not request.raw_path.endswith("/"):
                location = request.raw_path + "/"
                if request.query_string:
                    location += "?" + request.query_string
                return Response.redirect(location, 307)
            real = os.path.realpath(os.path.join(real, mount.index))
            if not _inside(mount.root, real):
                return _not_found()
        elif request.raw_path.endswith("/"):  # "file.txt/"
            return _not_found()
        return _serve_file(request, real, mount.cache_control, mount.max_file_size,
                           missing=lambda: self._static_missing(request))

    def _static_missing(self, request: Request) -> Response | None:
        # A WebSocket route at this very path: let the protocol answer 426 for a plain GET.
        ws_routes = getattr(self, "_routes", None)
        if isinstance(ws_routes, dict) and request.path in ws_routes:
            return None
        return _not_found()


def _not_found() -> Response:
    return Response("Not Found\n", 404)


def _serve_file(
    request: Request,
    real: str,
    cache_control: str | None,
    max_size: int,
    missing: Callable[[], Response | None] = _not_found,
) -> HTTPResult:
    """A file with validators: 304 if the request's validators match, the file otherwise."""
    try:
        st = os.stat(real)
    except OSError:
        return missing()
    if not stat.S_ISREG(st.st_mode):
        return missing()
    extra = [("X-Content-Type-Options", "nosniff")]
    if cache_control is not None:
        extra.append(("Cache-Control", cache_control))
    etag = file_etag(st)
    if not_modified(request, etag, st.st_mtime):
        return Response(
            b"", 304, [("ETag", etag), ("Last-Modified", http_date(st.st_mtime)), *extra]
        )
    if st.st_size > max_size:
        log.warning("xyra: static file %s is %d bytes, over the %d-byte limit; answered 500",
                    real, st.st_size, max_size)
        return _internal_error()

    def read() -> Response:
        try:
            return FileResponse(real, headers=extra, max_size=max_size)
        except FileTooLarge as exc:
            log.warning("xyra: %s; answered 500", exc)
            return _internal_error()
        except OSError:
            return missing() or _not_found()

    if st.st_size <= _INLINE_FILE:
        return read()

    async def read_in_thread() -> Response:
        return await asyncio.get_running_loop().run_in_executor(None, read)

    return read_in_thread()


def _handler_failed(handler: _Handler, request: Request, exc: Exception) -> Response:
    if isinstance(exc, HTTPError):
        try:
            return exc.response()
        except Exception:
            log.exception("xyra: bad HTTPError raised by %s", handler.name)
            return _internal_error()
    log.error(
        "xyra: HTTP handler %s failed on %s %s from %s",
        handler.name,
        request.method,
        request.raw_path,
        request.remote_address,
        exc_info=exc,
    )
    return _internal_error()


def _finish(handler: _Handler, request: Request, result: Any) -> Response:
    try:
        response = to_response(result)
        response.validate()
    except Exception as exc:
        return _handler_failed(handler, request, exc)
    return response


async def _await_handler(handler: _Handler, request: Request, result: Any) -> Response:
    try:
        value = await result
    except Exception as exc:
        return _handler_failed(handler, request, exc)
    return _finish(handler, request, value)

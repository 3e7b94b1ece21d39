"""Static files: folders served under URL prefixes, and the bundled browser client.

Paths that could leave a folder (``..``, encoded slashes or dots, backslashes, NUL,
symlinks pointing outside) get 404. Files have validators (``ETag``, ``Last-Modified``)
and conditional requests get 304.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import os
import stat
from collections.abc import Callable
from pathlib import Path
from urllib.parse import unquote

from xyra.http import (
    MAX_FILE_SIZE,
    FileResponse,
    FileTooLarge,
    Request,
    Response,
    file_etag,
    http_date,
)
from xyra.router import HTTPResult, internal_error, segments

log = logging.getLogger("xyra")

__all__ = ["CLIENT_JS", "Mount", "StaticFiles", "client_js_handler", "not_modified"]

#: The browser client served by ``App.enable_client_js``.
CLIENT_JS = Path(__file__).resolve().parent / "static" / "xyra.js"

# Files up to this size are read on the event loop; larger ones in a worker thread.
_INLINE_FILE = 256 * 1024


class Mount:
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


class StaticFiles:
    """The static folders of an app, longest URL prefix first.

    ``is_websocket_path(path)`` tells whether a WebSocket route lives at a path: a missing
    file there is left to the protocol (which answers 426 to a plain GET).
    """

    def __init__(self, is_websocket_path: Callable[[str], bool] = lambda path: False) -> None:
        self._mounts: list[Mount] = []
        self._is_websocket_path = is_websocket_path

    def __bool__(self) -> bool:
        return bool(self._mounts)

    def add(self, mount: Mount, url_prefix: str) -> None:
        if any(m.prefix == mount.prefix for m in self._mounts):
            raise ValueError(f"a static folder is already served at {url_prefix!r}")
        self._mounts.append(mount)
        self._mounts.sort(key=lambda m: -len(m.prefix))

    def claim(self, raw_path: str) -> int:
        """How many segments of ``raw_path`` the longest matching folder prefix has (-1: none)."""
        segs = segments(raw_path)
        for mount in self._mounts:
            if mount.rest(segs) is not None:
                return len(mount.prefix)
        return -1

    def dispatch(self, request: Request) -> HTTPResult:
        """A file (or 304, 404, 405, a redirect), or None if no folder has the path."""
        segs = segments(request.raw_path)
        for mount in self._mounts:
            rest = mount.rest(segs)
            if rest is not None:
                return self._serve(mount, rest, request)
        return None

    def _serve(self, mount: Mount, rest: list[str], request: Request) -> HTTPResult:
        if request.method not in ("GET", "HEAD"):
            return Response(f"{request.method} is not allowed here\n", 405, {"Allow": "GET, HEAD"})
        parts = _safe_parts(rest, mount.dotfiles)
        if parts is None:
            log.info(
                "xyra: refused static path %r from %s", request.raw_path, request.remote_address
            )
            return _not_found()
        real = os.path.realpath(os.path.join(mount.root, *parts))
        if not _inside(mount.root, real):
            log.info(
                "xyra: refused static path %r from %s (leaves the folder)",
                request.raw_path,
                request.remote_address,
            )
            return _not_found()
        try:
            st = os.stat(real)
        except OSError:
            return self._missing(request)
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
        return _serve_file(
            request,
            real,
            mount.cache_control,
            mount.max_file_size,
            missing=lambda: self._missing(request),
        )

    def _missing(self, request: Request) -> Response | None:
        # A WebSocket route at this very path: let the protocol answer 426 for a plain GET.
        if self._is_websocket_path(request.path):
            return None
        return _not_found()


def client_js_handler() -> Callable[[Request], HTTPResult]:
    """The HTTP handler that serves ``xyra/static/xyra.js``."""
    js = str(CLIENT_JS)

    def client_js(request: Request) -> HTTPResult:
        return _serve_file(request, js, None, MAX_FILE_SIZE)

    client_js.__qualname__ = "xyra_client_js"
    return client_js


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
        log.warning(
            "xyra: static file %s is %d bytes, over the %d-byte limit; answered 500",
            real,
            st.st_size,
            max_size,
        )
        return internal_error()

    def read() -> Response:
        try:
            return FileResponse(real, headers=extra, max_size=max_size)
        except FileTooLarge as exc:
            log.warning("xyra: %s; answered 500", exc)
            return internal_error()
        except OSError:
            return missing() or _not_found()

    if st.st_size <= _INLINE_FILE:
        return read()

    async def read_in_thread() -> Response:
        return await asyncio.get_running_loop().run_in_executor(None, read)

    return read_in_thread()

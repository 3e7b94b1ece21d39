"""HTTP requests and responses: what HTTP route handlers receive and return.

The protocol (``xyra/_core/protocol.pyx``) parses a request with httptools and builds a
``Request``; the router (``xyra/http_routes.py``) calls the handler and turns its return
value into a ``Response`` with ``to_response``; the protocol writes ``Response.encode()``.
Everything here is plain Python and does no I/O, except ``FileResponse``, which reads the
file it serves.
"""

from __future__ import annotations

import email.utils
import json
import mimetypes
import os
import stat
import time
from collections.abc import Iterable, Iterator, Mapping
from http import HTTPStatus
from typing import Any
from urllib.parse import parse_qsl, unquote

__all__ = [
    "MAX_FILE_SIZE",
    "FileResponse",
    "FileTooLarge",
    "HTTPError",
    "Headers",
    "InvalidJSON",
    "Request",
    "Response",
    "content_type_for",
    "http_date",
    "to_response",
]

#: Largest file a ``FileResponse`` reads into memory (64 MiB); larger ones raise ``FileTooLarge``.
MAX_FILE_SIZE = 64 << 20

# 1xx, 204 and 304 responses have no body, and neither Content-Length nor Content-Type.
_NO_BODY = frozenset({204, 304})
# Header names the encoder writes itself; a handler's own values for these are dropped.
_OWN_HEADERS = frozenset({"content-length", "connection", "transfer-encoding"})
_FORBIDDEN = ("\r", "\n", "\0")


class Headers:
    """A case-insensitive multi-dict of request headers, in the order they arrived.

    ``headers["name"]`` and ``get`` give the first value, ``getall`` every value;
    iteration, ``len``, ``keys``, ``values`` and ``items`` go over every header line
    (a name that occurs twice is there twice), like ``multidict``.
    """

    __slots__ = ("_index", "_items")

    def __init__(self, items: Iterable[tuple[str, str]] = ()) -> None:
        self._items: list[tuple[str, str]] = [(k.lower(), v) for k, v in items]
        self._index: dict[str, list[str]] = {}
        for key, value in self._items:
            self._index.setdefault(key, []).append(value)

    def get(self, name: str, default: str | None = None) -> str | None:
        values = self._index.get(name.lower())
        return values[0] if values else default

    def getall(self, name: str) -> list[str]:
        return list(self._index.get(name.lower(), ()))

    def __getitem__(self, name: str) -> str:
        values = self._index.get(name.lower())
        if not values:
            raise KeyError(name)
        return values[0]

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and name.lower() in self._index

    def items(self) -> list[tuple[str, str]]:
        return list(self._items)

    def keys(self) -> list[str]:
        return [k for k, _ in self._items]

    def values(self) -> list[str]:
        return [v for _, v in self._items]

    def __iter__(self) -> Iterator[str]:
        return iter(self.keys())

    def __len__(self) -> int:
        return len(self._items)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Headers):
            return self._items == other._items
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Headers({self._items!r})"


class HTTPError(Exception):
    """Raise in an HTTP handler to answer with ``status`` (no traceback is logged).

    ``raise HTTPError(404)``, ``raise HTTPError(403, "members only")``. ``detail`` is the
    plain-text body (default: the reason phrase); ``headers`` are added to the response.
    """

    def __init__(
        self,
        status: int,
        detail: str | None = None,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> None:
        self.status = int(status)
        self.detail = _reason(self.status) if detail is None else detail
        self.headers = headers
        super().__init__(self.status, self.detail)

    def response(self) -> Response:
        return Response(self.detail + "\n", self.status, self.headers)


class InvalidJSON(HTTPError, ValueError):
    """``Request.json()`` on a body that is not JSON: answered with 400 if not caught."""

    def __init__(self, reason: str) -> None:
        super().__init__(400, f"the request body is not valid JSON: {reason}")


def _split_target(target: str) -> tuple[str, str]:
    """(raw path, raw query) of a request target; absolute-form targets lose scheme and host."""
    target = target.split("#", 1)[0]
    if not target.startswith("/"):
        scheme, sep, rest = target.partition("://")
        if sep and scheme.lower() in ("http", "https", "ws", "wss"):
            slash = rest.find("/")
            qmark = rest.find("?")
            if slash < 0 or (0 <= qmark < slash):
                target = "/" + (rest[qmark:] if qmark >= 0 else "")
            else:
                target = rest[slash:]
    path, _, query = target.partition("?")
    return path, query


class Request:
    """One complete HTTP request, as an HTTP route handler (or ``upgrade``) receives it."""

    def __init__(
        self,
        method: str,
        target: str,
        headers: list[tuple[str, str]],
        body: bytes,
        remote_address: tuple[Any, ...] | None,
        scheme: str = "http",
    ) -> None:
        self.method = method.upper()
        self.target = target
        self.headers = Headers(headers)
        self.body = body
        self.remote_address = remote_address
        self.scheme = scheme
        #: Filled by the router from the route's ``{name}`` segments.
        self.path_params: dict[str, Any] = {}
        #: The application's per-request state (the WebSocket ``upgrade`` handler's data).
        self.data: dict[str, Any] = {}
        self.raw_path, self.query_string = _split_target(target)
        self._path: str | None = None
        self._query_params: dict[str, list[str]] | None = None
        self._query: dict[str, str] | None = None
        self._cookies: dict[str, str] | None = None

    @property
    def path(self) -> str:
        """The percent-decoded path, without the query (invalid UTF-8 becomes U+FFFD)."""
        if self._path is None:
            self._path = unquote(self.raw_path, errors="replace")
        return self._path

    @property
    def query_params(self) -> dict[str, list[str]]:
        """Every query parameter with all its values: ``?a=1&a=2`` -> ``{"a": ["1", "2"]}``."""
        if self._query_params is None:
            params: dict[str, list[str]] = {}
            for key, value in parse_qsl(
                self.query_string, keep_blank_values=True, errors="replace"
            ):
                params.setdefault(key, []).append(value)
            self._query_params = params
        return self._query_params

    @property
    def query(self) -> dict[str, str]:
        """One value per query parameter: the last one when a name repeats."""
        if self._query is None:
            self._query = {key: values[-1] for key, values in self.query_params.items()}
        return self._query

    @property
    def cookies(self) -> dict[str, str]:
        """The ``Cookie`` header(s) as a dict; the first of two cookies with one name wins.

        Parsed leniently (one malformed pair does not hide the others); values keep their
        bytes except for surrounding double quotes.
        """
        if self._cookies is None:
            cookies: dict[str, str] = {}
            for line in self.headers.getall("cookie"):
                for pair in line.split(";"):
                    name, sep, value = pair.partition("=")
                    name = name.strip()
                    if not sep or not name:
                        continue
                    value = value.strip()
                    if len(value) >= 2 and value[0] == value[-1] == '"':
                        value = value[1:-1]
                    cookies.setdefault(name, value)
            self._cookies = cookies
        return self._cookies

    @property
    def content_type(self) -> str:
        """The media type of the body, lowercased, without parameters ("" if none)."""
        value = self.headers.get("content-type") or ""
        return value.split(";", 1)[0].strip().lower()

    @property
    def charset(self) -> str | None:
        value = self.headers.get("content-type") or ""
        for param in value.split(";")[1:]:
            key, _, val = param.partition("=")
            if key.strip().lower() == "charset":
                return val.strip().strip('"') or None
        return None

    @property
    def host(self) -> str | None:
        return self.headers.get("host")

    @property
    def subprotocols(self) -> list[str]:
        """The subprotocols a WebSocket client offers (``Sec-WebSocket-Protocol``), in order."""
        return [
            token.strip()
            for line in self.headers.getall("sec-websocket-protocol")
            for token in line.split(",")
            if token.strip()
        ]

    def text(self) -> str:
        """The body decoded with the Content-Type's charset (default UTF-8; bad bytes: U+FFFD)."""
        charset = self.charset or "utf-8"
        try:
            return self.body.decode(charset, errors="replace")
        except LookupError:  # an unknown charset name
            return self.body.decode("utf-8", errors="replace")

    def json(self) -> Any:
        """The body parsed as JSON; ``InvalidJSON`` (a 400 ``HTTPError``) if it is not JSON."""
        try:
            return json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise InvalidJSON(str(exc)) from None

    def __repr__(self) -> str:
        return f"<Request {self.method} {self.target}>"


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


_date_cache: tuple[int, str] = (0, "")


def http_date(timestamp: float | None = None) -> str:
    """An IMF-fixdate (``Sun, 06 Nov 1994 08:49:37 GMT``); the current time by default."""
    global _date_cache
    if timestamp is not None:
        return email.utils.formatdate(timestamp, usegmt=True)
    now = int(time.time())
    if _date_cache[0] != now:
        _date_cache = (now, email.utils.formatdate(now, usegmt=True))
    return _date_cache[1]


def _check_header(name: str, value: str) -> None:
    if not name or any(c in name for c in (*_FORBIDDEN, ":", " ", "\t")):
        raise ValueError(f"invalid HTTP header name {name!r}")
    if any(c in value for c in _FORBIDDEN):
        raise ValueError(f"invalid HTTP header value for {name!r}: CR, LF and NUL are not allowed")
    try:
        name.encode("ascii")
        value.encode("latin-1")
    except UnicodeEncodeError:
        raise ValueError(f"HTTP header {name!r} must be ASCII (name) and latin-1 (value)") from None


class Response:
    """An HTTP response: body, status, headers.

    ``body`` is ``str`` (sent as UTF-8; default Content-Type ``text/plain; charset=utf-8``)
    or ``bytes`` (default ``application/octet-stream``). ``headers`` is a dict or a list of
    ``(name, value)`` pairs (a list may repeat a name, e.g. ``Set-Cookie``). A Content-Type
    in ``headers`` wins over ``content_type``. ``Content-Length``, ``Connection``, ``Date``
    and ``Server`` are written by ``encode``.
    """

    __slots__ = ("body", "headers", "status")

    def __init__(
        self,
        body: str | bytes = b"",
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = None,
    ) -> None:
        if not isinstance(status, int) or not 100 <= status <= 999:
            raise ValueError(f"an HTTP status is an int from 100 to 999, not {status!r}")
        self.status = status
        if isinstance(body, str):
            self.body = body.encode("utf-8")
            default_type = "text/plain; charset=utf-8"
        elif isinstance(body, (bytes, bytearray, memoryview)):
            self.body = bytes(body)
            default_type = "application/octet-stream"
        else:
            raise TypeError(f"a Response body is str or bytes, not {type(body).__name__}")
        pairs = list(headers.items() if isinstance(headers, Mapping) else headers or ())
        self.headers: list[tuple[str, str]] = []
        for name, value in pairs:
            self.add_header(name, value)
        if content_type is not None:
            _check_header("Content-Type", content_type)
        if not self.has_header("content-type") and (self.body or content_type):
            self.headers.append(("Content-Type", content_type or default_type))

    # -- headers ------------------------------------------------------------------------

    def add_header(self, name: str, value: str) -> None:
        """Add a header line (checked: no CR/LF/NUL, ASCII name, latin-1 value)."""
        value = str(value)
        _check_header(name, value)
        self.headers.append((name, value))

    def set_header(self, name: str, value: str) -> None:
        """Replace every header called ``name`` (any case) with one line."""
        self.remove_header(name)
        self.add_header(name, value)

    def remove_header(self, name: str) -> None:
        lower = name.lower()
        self.headers = [(k, v) for k, v in self.headers if k.lower() != lower]

    def has_header(self, name: str) -> bool:
        lower = name.lower()
        return any(k.lower() == lower for k, _ in self.headers)

    def get_header(self, name: str) -> str | None:
        lower = name.lower()
        return next((v for k, v in self.headers if k.lower() == lower), None)

    def validate(self) -> None:
        """Raise ``ValueError`` if a header was changed to something ``encode`` cannot send."""
        for name, value in self.headers:
            _check_header(name, value)

    # -- wire format ---------------------------------------------------------------------

    def encode(self, *, head: bool, keep_alive: bool) -> bytes:
        """The complete HTTP/1.1 response: status line, headers, and the body unless ``head``.

        For HEAD the Content-Length is the one a GET would get. 1xx, 204 and 304 responses
        carry no body, Content-Length nor Content-Type.
        """
        status = self.status
        lines = [f"HTTP/1.1 {status} {_reason(status)}"]
        bodiless = status in _NO_BODY or status < 200
        has_date = has_server = False
        for name, value in self.headers:
            lower = name.lower()
            if lower in _OWN_HEADERS or (bodiless and lower == "content-type"):
                continue
            has_date = has_date or lower == "date"
            has_server = has_server or lower == "server"
            lines.append(f"{name}: {value}")
        if not has_date:
            lines.append(f"Date: {http_date()}")
        if not has_server:
            lines.append("Server: xyra")
        if not bodiless:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("Connection: keep-alive" if keep_alive else "Connection: close")
        head_bytes = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        if head or bodiless or not self.body:
            return head_bytes
        return head_bytes + self.body

    # -- helpers -------------------------------------------------------------------------

    @classmethod
    def json(
        cls,
        obj: Any,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> Response:
        """``obj`` serialised as compact UTF-8 JSON, ``application/json``."""
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return cls(body, status, headers, content_type="application/json")

    @classmethod
    def html(
        cls,
        text: str,
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> Response:
        return cls(text, status, headers, content_type="text/html; charset=utf-8")

    @classmethod
    def redirect(
        cls,
        url: str,
        status: int = 307,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
    ) -> Response:
        """A redirect to ``url`` (307 keeps the method; 301, 302, 303 and 308 also allowed)."""
        if not 300 <= status <= 399:
            raise ValueError(f"a redirect status is 3xx, not {status}")
        response = cls(b"", status, headers)
        response.set_header("Location", url)
        return response

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.status} {len(self.body)} bytes>"


class FileTooLarge(ValueError):
    """A file over ``MAX_FILE_SIZE`` (or the ``max_size`` given), which is not read."""


def content_type_for(path: str) -> str:
    """The Content-Type for a file name: ``mimetypes``, text types in UTF-8."""
    guessed, encoding = mimetypes.guess_type(path, strict=False)
    if guessed is None or encoding is not None:  # .gz etc.: send the bytes as they are
        return "application/octet-stream"
    if guessed.startswith("text/") or guessed in (
        "application/javascript",
        "application/json",
        "application/xml",
        "image/svg+xml",
    ):
        return f"{guessed}; charset=utf-8"
    return guessed


def file_etag(st: os.stat_result) -> str:
    """A strong validator from size and modification time: ``"<size hex>-<mtime ns hex>"``."""
    return f'"{st.st_size:x}-{st.st_mtime_ns:x}"'


class FileResponse(Response):
    """A file read into memory, with Content-Type, ``ETag`` and ``Last-Modified``.

    ``FileResponse(path)`` reads the whole file now (so it suits files up to a few MiB);
    a file over ``max_size`` (default ``MAX_FILE_SIZE``, 64 MiB) raises ``FileTooLarge``,
    a missing one ``FileNotFoundError``, a directory or device ``IsADirectoryError``.
    """

    __slots__ = ("etag", "last_modified", "mtime", "path")

    def __init__(
        self,
        path: str | os.PathLike[str],
        status: int = 200,
        headers: Mapping[str, str] | Iterable[tuple[str, str]] | None = None,
        content_type: str | None = None,
        *,
        max_size: int = MAX_FILE_SIZE,
    ) -> None:
        self.path = os.fspath(path)
        with open(self.path, "rb") as f:
            st = os.fstat(f.fileno())
            if not stat.S_ISREG(st.st_mode):
                raise IsADirectoryError(f"not a regular file: {self.path}")
            if st.st_size > max_size:
                raise FileTooLarge(
                    f"{self.path} is {st.st_size} bytes, over the {max_size}-byte limit"
                )
            data = f.read(max_size + 1)
        if len(data) > max_size:  # it grew while we read it
            raise FileTooLarge(f"{self.path} is over the {max_size}-byte limit")
        super().__init__(data, status, headers, content_type or content_type_for(self.path))
        self.mtime = st.st_mtime
        self.etag = file_etag(st)
        self.last_modified = http_date(st.st_mtime)
        if not self.has_header("etag"):
            self.headers.append(("ETag", self.etag))
        if not self.has_header("last-modified"):
            self.headers.append(("Last-Modified", self.last_modified))


def to_response(result: Any) -> Response:
    """A handler's return value as a Response.

    ``Response`` as is; ``str`` -> ``text/html; charset=utf-8``; ``bytes`` ->
    ``application/octet-stream``; ``dict``/``list`` -> JSON; ``None`` -> 204 No Content.
    Anything else raises ``TypeError``.
    """
    if isinstance(result, Response):
        return result
    if isinstance(result, str):
        return Response(result, content_type="text/html; charset=utf-8")
    if isinstance(result, (bytes, bytearray, memoryview)):
        return Response(bytes(result), content_type="application/octet-stream")
    if isinstance(result, (dict, list)):
        return Response.json(result)
    if result is None:
        return Response(b"", 204)
    raise TypeError(
        f"an HTTP handler returns a Response, str, bytes, dict, list or None, "
        f"not {type(result).__name__}"
    )

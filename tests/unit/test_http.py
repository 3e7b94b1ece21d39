"""HTTP requests, responses, routing and static files, without sockets.

The router is exercised through ``App._http_dispatch``, the one call the protocol
makes; async results are awaited the way the protocol does.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json
import logging
import os
import re
import time
from pathlib import Path
from typing import Any

import pytest

from xyra import App
from xyra.http import (
    FileResponse,
    FileTooLarge,
    Headers,
    HTTPError,
    InvalidJSON,
    Request,
    Response,
    to_response,
)
from xyra.static import CLIENT_JS


def req(
    target: str = "/",
    method: str = "GET",
    headers: list[tuple[str, str]] | None = None,
    body: bytes = b"",
) -> Request:
    return Request(method, target, headers or [], body, ("127.0.0.1", 5555))


def parse(raw: bytes) -> tuple[int, dict[str, list[str]], bytes]:
    """(status, headers by lowercase name, body) of an encoded response."""
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ")[1])
    fields: dict[str, list[str]] = {}
    for line in lines[1:]:
        name, _, value = line.partition(": ")
        fields.setdefault(name.lower(), []).append(value)
    return status, fields, body


def resolve(result: Any) -> Response | None:
    """A dispatch result as the protocol sees it once awaited."""
    if inspect.isawaitable(result):
        return asyncio.run(_await(result))
    return result  # type: ignore[no-any-return]


async def _await(aw: Any) -> Any:
    return await aw


def dispatch(app: App, request: Request) -> Response | None:
    return resolve(app._http_dispatch(request))


# -- Headers -------------------------------------------------------------------------------


def test_headers_case_insensitive_multidict() -> None:
    h = Headers([("content-type", "text/plain"), ("x-a", "1"), ("X-A", "2")])
    assert h["Content-Type"] == "text/plain"
    assert h.get("CONTENT-TYPE") == "text/plain"
    assert h.get("missing") is None
    assert h.get("missing", "d") == "d"
    assert h["x-a"] == "1"
    assert h.getall("X-a") == ["1", "2"]
    assert h.getall("nope") == []
    assert "x-A" in h and "nope" not in h and 3 not in h
    assert h.items() == [("content-type", "text/plain"), ("x-a", "1"), ("x-a", "2")]
    assert list(h) == ["content-type", "x-a", "x-a"]
    assert len(h) == 3
    with pytest.raises(KeyError):
        h["nope"]


# -- Request ------------------------------------------------------------------------------


def test_request_path_and_query() -> None:
    r = req("/caf%C3%A9/a%20b?x=1&y=2&x=3&empty=&flag&sp=a+b%26c")
    assert r.target == "/caf%C3%A9/a%20b?x=1&y=2&x=3&empty=&flag&sp=a+b%26c"
    assert r.raw_path == "/caf%C3%A9/a%20b"
    assert r.path == "/café/a b"
    assert r.query_string == "x=1&y=2&x=3&empty=&flag&sp=a+b%26c"
    assert r.query == {"x": "3", "y": "2", "empty": "", "flag": "", "sp": "a b&c"}
    assert r.query_params == {
        "x": ["1", "3"],
        "y": ["2"],
        "empty": [""],
        "flag": [""],
        "sp": ["a b&c"],
    }


def test_request_odd_targets() -> None:
    assert req("/p#frag").path == "/p"
    absolute = req("http://example.com:8000/a/b?q=1")
    assert (absolute.path, absolute.query) == ("/a/b", {"q": "1"})
    assert req("http://example.com?q=1").path == "/"
    assert req("/%ff%fe").path == "/\ufffd\ufffd"  # invalid UTF-8 is replaced, not raised
    assert req("/x", method="post").method == "POST"


def test_request_fields() -> None:
    r = Request(
        "GET",
        "/",
        [
            ("sec-websocket-protocol", "chat, json"),
            ("sec-websocket-protocol", "v2"),
            ("host", "h:1"),
        ],
        b"",
        ("10.0.0.1", 9),
        scheme="https",
    )
    assert r.subprotocols == ["chat", "json", "v2"]
    assert r.remote_address == ("10.0.0.1", 9)
    assert r.scheme == "https"
    assert r.host == "h:1"
    assert r.path_params == {} and r.data == {}
    r.data["user"] = "ann"
    assert r.data == {"user": "ann"}
    assert req().subprotocols == []
    assert req().scheme == "http"


def test_cookies() -> None:
    r = req(
        headers=[("cookie", 'a=1; b="quoted value"; broken; =x; c=3=4'), ("cookie", "a=second; d=")]
    )
    assert r.cookies == {"a": "1", "b": "quoted value", "c": "3=4", "d": ""}
    assert req().cookies == {}


def test_body_text_and_json() -> None:
    r = req(
        method="POST",
        body='{"k": [1, "é"]}'.encode(),
        headers=[("content-type", "application/json; charset=utf-8")],
    )
    assert r.content_type == "application/json"
    assert r.charset == "utf-8"
    assert r.json() == {"k": [1, "é"]}
    assert r.text() == '{"k": [1, "é"]}'
    latin = req(
        body="é".encode("latin-1"), headers=[("content-type", "text/plain; charset=latin-1")]
    )
    assert latin.text() == "é"
    assert req(body=b"\xff").text() == "\ufffd"
    assert req(body=b"x", headers=[("content-type", "text/plain; charset=nope")]).text() == "x"


@pytest.mark.parametrize("body", [b"", b"{", b"\xff\xfe", b"nope"])
def test_bad_json_is_a_400(body: bytes) -> None:
    with pytest.raises(InvalidJSON) as info:
        req(body=body).json()
    assert isinstance(info.value, ValueError)
    assert info.value.status == 400
    assert info.value.response().status == 400


# -- Response -----------------------------------------------------------------------------


def test_encode_text_keep_alive() -> None:
    before = int(time.time())
    raw = Response("héllo").encode(head=False, keep_alive=True)
    after = time.time()
    assert raw.startswith(b"HTTP/1.1 200 OK\r\n")
    status, fields, body = parse(raw)
    assert status == 200
    assert body == "héllo".encode()
    assert fields["content-length"] == [str(len(body))]
    assert fields["content-type"] == ["text/plain; charset=utf-8"]
    assert fields["connection"] == ["keep-alive"]
    assert fields["server"] == ["xyra"]
    # the current time, in whole seconds: the clock read around the call brackets it
    date = email.utils.parsedate_to_datetime(fields["date"][0])
    assert before <= date.timestamp() <= after
    assert re.fullmatch(r"\w{3}, \d\d \w{3} \d{4} \d\d:\d\d:\d\d GMT", fields["date"][0])


def test_encode_bytes_close_and_head() -> None:
    response = Response(b"\x00\x01", 201, {"X-Thing": "1"})
    status, fields, body = parse(response.encode(head=False, keep_alive=False))
    assert (status, body) == (201, b"\x00\x01")
    assert fields["connection"] == ["close"]
    assert fields["content-type"] == ["application/octet-stream"]
    assert fields["x-thing"] == ["1"]
    raw = response.encode(head=True, keep_alive=True)
    assert raw.endswith(b"\r\n\r\n")
    status, fields, body = parse(raw)
    assert body == b"" and fields["content-length"] == ["2"]  # what GET would send


@pytest.mark.parametrize("status", [204, 304, 101])
def test_bodiless_statuses(status: int) -> None:
    raw = Response("ignored", status, {"ETag": '"x"'}).encode(head=False, keep_alive=True)
    code, fields, body = parse(raw)
    assert code == status and body == b""
    assert "content-length" not in fields and "content-type" not in fields
    assert fields["etag"] == ['"x"']


def test_header_rules() -> None:
    r = Response(
        "x",
        headers=[
            ("Set-Cookie", "a=1"),
            ("Set-Cookie", "b=2"),
            ("Content-Length", "999"),
            ("Connection", "upgrade"),
            ("Content-Type", "text/csv"),
            ("Server", "mine"),
        ],
        content_type="text/html",
    )
    _, fields, _ = parse(r.encode(head=False, keep_alive=True))
    assert fields["set-cookie"] == ["a=1", "b=2"]
    assert fields["content-length"] == ["1"]
    assert fields["connection"] == ["keep-alive"]
    assert fields["content-type"] == ["text/csv"]  # a header beats content_type=
    assert fields["server"] == ["mine"]
    empty = parse(Response().encode(head=False, keep_alive=True))[1]
    assert "content-type" not in empty and empty["content-length"] == ["0"]


@pytest.mark.parametrize(
    "name,value",
    [
        ("X-A", "v\r\nSet-Cookie: evil=1"),
        ("X-A", "v\n"),
        ("X-A", "v\0"),
        ("X A", "v"),
        ("X:A", "v"),
        ("", "v"),
        ("X-A", "snow ☃"),
    ],
)
def test_header_injection_is_refused(name: str, value: str) -> None:
    with pytest.raises(ValueError):
        Response("x", headers={name: value})
    with pytest.raises(ValueError):
        Response.redirect("/x\r\nSet-Cookie: a=b")
    ok = Response("x")
    ok.headers.append((name, value))
    with pytest.raises(ValueError):
        ok.validate()


def test_status_checks_and_reasons() -> None:
    assert (
        Response(status=404)
        .encode(head=False, keep_alive=True)
        .startswith(b"HTTP/1.1 404 Not Found\r\n")
    )
    assert (
        Response(status=599)
        .encode(head=False, keep_alive=True)
        .startswith(b"HTTP/1.1 599 Unknown\r\n")
    )
    for bad in (99, 1000, "200"):
        with pytest.raises(ValueError):
            Response(status=bad)  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        Response(123)  # type: ignore[arg-type]


def test_helpers() -> None:
    j = Response.json({"a": "é", "n": [1, 2]}, status=201)
    assert j.status == 201 and j.get_header("content-type") == "application/json"
    assert json.loads(j.body) == {"a": "é", "n": [1, 2]}
    h = Response.html("<b>x</b>")
    assert h.get_header("content-type") == "text/html; charset=utf-8"
    r = Response.redirect("/there?x=1")
    assert (r.status, r.get_header("location"), r.body) == (307, "/there?x=1", b"")
    assert Response.redirect("/p", 308).status == 308
    with pytest.raises(ValueError):
        Response.redirect("/p", 200)
    r.set_header("location", "/else")
    assert r.get_header("Location") == "/else" and r.has_header("LOCATION")
    r.remove_header("Location")
    assert not r.has_header("location")


def test_to_response() -> None:
    html = to_response("<p>hi</p>")
    assert html.get_header("content-type") == "text/html; charset=utf-8"
    assert html.body == b"<p>hi</p>"
    raw = to_response(b"\x01")
    assert raw.get_header("content-type") == "application/octet-stream"
    assert json.loads(to_response({"a": 1}).body) == {"a": 1}
    assert json.loads(to_response([1, 2]).body) == [1, 2]
    assert to_response([]).get_header("content-type") == "application/json"
    none = to_response(None)
    assert none.status == 204 and none.body == b""
    same = Response("x", 202)
    assert to_response(same) is same
    with pytest.raises(TypeError):
        to_response(42)


def test_file_response(tmp_path: Path) -> None:
    f = tmp_path / "page.html"
    f.write_text("<h1>x</h1>")
    os.utime(f, (1_700_000_000, 1_700_000_000))
    r = FileResponse(f)
    st = f.stat()
    assert r.body == b"<h1>x</h1>"
    assert r.get_header("content-type") == "text/html; charset=utf-8"
    assert r.get_header("etag") == f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
    assert r.get_header("last-modified") == "Tue, 14 Nov 2023 22:13:20 GMT"
    assert FileResponse(f, content_type="text/plain").get_header("content-type") == "text/plain"
    (tmp_path / "blob.unknownext").write_bytes(b"\0")
    assert (
        FileResponse(tmp_path / "blob.unknownext").get_header("content-type")
        == "application/octet-stream"
    )
    with pytest.raises(FileTooLarge):
        FileResponse(f, max_size=3)
    with pytest.raises(IsADirectoryError):
        FileResponse(tmp_path)
    with pytest.raises(FileNotFoundError):
        FileResponse(tmp_path / "missing")


# -- routing ------------------------------------------------------------------------------


def make_app() -> App:
    return App()


def test_routes_and_params() -> None:
    app = make_app()
    seen: dict[str, Any] = {}

    @app.get("/")
    def index() -> str:
        return "home"

    @app.get("/users/{id}")
    def user(id: str) -> dict[str, str]:
        return {"id": id}

    @app.get("/n/{num:int}")
    def num(request: Request, num: int) -> dict[str, Any]:
        seen["params"] = request.path_params
        return {"num": num, "type": type(num).__name__}

    @app.get("/files/{rest:path}")
    def files(rest: str) -> str:
        return f"rest={rest}"

    @app.get("/users/me")  # a literal route beats a parameter route, whatever the order
    def me() -> str:
        return "me"

    assert dispatch(app, req("/")).body == b"home"  # type: ignore[union-attr]
    assert json.loads(dispatch(app, req("/users/42")).body) == {"id": "42"}  # type: ignore[union-attr]
    assert json.loads(dispatch(app, req("/users/a%2Fb")).body) == {"id": "a/b"}  # type: ignore[union-attr]
    assert json.loads(dispatch(app, req("/users/%C3%A9?x=1")).body) == {"id": "é"}  # type: ignore[union-attr]
    assert dispatch(app, req("/users/me")).body == b"me"  # type: ignore[union-attr]
    assert json.loads(dispatch(app, req("/n/7")).body) == {"num": 7, "type": "int"}  # type: ignore[union-attr]
    assert seen["params"] == {"num": 7}
    assert dispatch(app, req("/files/a/b/c.txt")).body == b"rest=a/b/c.txt"  # type: ignore[union-attr]
    assert dispatch(app, req("/files/")).body == b"rest="  # type: ignore[union-attr]
    app.get("/a/b", lambda: "a/b")
    assert dispatch(app, req("/a/b")).body == b"a/b"  # type: ignore[union-attr]
    for miss in (
        "/n/x",
        "/n/-1",
        "/users",
        "/users/",
        "/users/1/2",
        "/nothing",
        "/USERS/me",
        "/a%2Fb",
        "/a%2fb",
    ):
        assert app._http_dispatch(req(miss)) is None, miss
    assert app.router
    assert not make_app().router


def test_405_allow_and_head() -> None:
    app = make_app()
    app.get("/thing", lambda: "got")
    app.post("/thing", lambda request: request.body)
    app.delete("/other/{id}", lambda id: None)
    r = dispatch(app, req("/thing", "PUT"))
    assert r is not None and r.status == 405
    assert r.get_header("allow") == "GET, HEAD, POST"
    head = dispatch(app, req("/thing", "HEAD"))
    assert head is not None and head.status == 200 and head.body == b"got"  # encode drops it
    assert dispatch(app, req("/thing", "POST", body=b"b")).body == b"b"  # type: ignore[union-attr]
    other = dispatch(app, req("/other/1", "GET"))
    assert other is not None and other.status == 405 and other.get_header("allow") == "DELETE"
    assert dispatch(app, req("/other/1", "DELETE")).status == 204  # type: ignore[union-attr]


def test_a_later_route_with_the_method_wins_over_405() -> None:
    app = make_app()
    app.get("/items/{id}", lambda id: "get")
    app.route("/items/{name}", lambda name: f"del {name}", methods=["DELETE"])
    assert dispatch(app, req("/items/3", "DELETE")).body == b"del 3"  # type: ignore[union-attr]
    r = dispatch(app, req("/items/3", "PATCH"))
    assert r is not None and r.get_header("allow") == "DELETE, GET, HEAD"


def test_registration_forms() -> None:
    app = make_app()

    @app.route("/multi", methods=["get", "POST"])
    def multi(request: Request) -> str:
        return request.method

    def direct() -> str:
        return "direct"

    assert app.put("/direct", direct) is direct
    app.patch("/p", direct)
    app.options("/p", direct)
    app.head("/h", direct)
    assert dispatch(app, req("/multi", "POST")).body == b"POST"  # type: ignore[union-attr]
    assert dispatch(app, req("/multi", "GET")).body == b"GET"  # type: ignore[union-attr]
    for method, path in (("PUT", "/direct"), ("PATCH", "/p"), ("OPTIONS", "/p"), ("HEAD", "/h")):
        assert dispatch(app, req(path, method)).body == b"direct"  # type: ignore[union-attr]
    assert dispatch(app, req("/h", "GET")).status == 405  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="already registered"):
        app.get("/multi", direct)
    with pytest.raises(TypeError, match="methods="):
        app.route("/x", ["GET"])  # type: ignore[call-overload]
    with pytest.raises(ValueError):
        app.route("/x", direct, methods=[])
    with pytest.raises(ValueError):
        app.route("/x", direct, methods=["GE T"])
    with pytest.raises(TypeError):
        app.get("/x", "not callable")  # type: ignore[call-overload]


@pytest.mark.parametrize(
    "pattern",
    ["nope", "/a/{id", "/a/x{id}", "/a/{id:float}", "/a/{id}/{id}", "/a/{rest:path}/b", "/a/{1x}"],
)
def test_bad_patterns(pattern: str) -> None:
    with pytest.raises(ValueError):
        make_app().get(pattern, lambda **kw: None)


def test_request_argument_rules() -> None:
    app = make_app()
    app.get("/a/{id}", lambda req, id: f"{req.method} {id}")  # first non-path positional
    app.get("/b/{id}", lambda id, request: f"{request.method} {id}")  # named request
    app.get("/c/{id}", lambda id, verbose=False: f"{id} {verbose}")  # defaults left alone
    app.get("/d/{id}", lambda **kw: str(kw))  # **kwargs takes the path params

    def positional_only(r: Request, /, id: str) -> str:
        return f"{r.method} {id}"

    app.get("/e/{id}", positional_only)
    assert dispatch(app, req("/a/1")).body == b"GET 1"  # type: ignore[union-attr]
    assert dispatch(app, req("/b/2")).body == b"GET 2"  # type: ignore[union-attr]
    assert dispatch(app, req("/c/3")).body == b"3 False"  # type: ignore[union-attr]
    assert dispatch(app, req("/d/4")).body == b"{'id': '4'}"  # type: ignore[union-attr]
    assert dispatch(app, req("/e/5")).body == b"GET 5"  # type: ignore[union-attr]
    with pytest.raises(TypeError, match="no parameter 'id'"):
        app.get("/f/{id}", lambda: None)
    with pytest.raises(TypeError, match="'extra'"):
        app.get("/g/{id}", lambda request, id, extra: None)
    with pytest.raises(TypeError, match="'b'"):
        app.get("/h", lambda a, b: None)


def test_handler_errors_are_500_with_a_logged_traceback(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()

    @app.get("/boom")
    def boom() -> str:
        raise RuntimeError("secret detail")

    @app.get("/bad-return")
    def bad_return() -> int:
        return 42

    @app.get("/bad-header")
    def bad_header() -> Response:
        r = Response("x")
        r.headers.append(("X", "a\r\nb"))
        return r

    @app.get("/teapot")
    def teapot() -> str:
        raise HTTPError(418, "short and stout", {"X-Why": "tea"})

    with caplog.at_level(logging.ERROR, logger="xyra"):
        r = dispatch(app, req("/boom"))
    assert r is not None and r.status == 500
    assert b"secret" not in r.encode(head=False, keep_alive=True)
    assert "RuntimeError: secret detail" in caplog.text and "Traceback" in caplog.text
    assert any(rec.name == "xyra" and rec.exc_info for rec in caplog.records)
    assert dispatch(app, req("/bad-return")).status == 500  # type: ignore[union-attr]
    assert dispatch(app, req("/bad-header")).status == 500  # type: ignore[union-attr]
    caplog.clear()
    t = dispatch(app, req("/teapot"))
    assert t is not None and t.status == 418 and t.body == b"short and stout\n"
    assert t.get_header("x-why") == "tea"
    assert caplog.text == ""


def test_async_handlers(caplog: pytest.LogCaptureFixture) -> None:
    app = make_app()

    @app.get("/a/{id:int}")
    async def a(id: int) -> dict[str, int]:
        await asyncio.sleep(0)
        return {"id": id}

    @app.get("/fail")
    async def fail() -> None:
        raise ValueError("async secret")

    @app.get("/forbidden")
    async def forbidden() -> None:
        raise HTTPError(403)

    async def coro() -> str:
        return "via a sync callable"

    app.get("/wrapped", lambda: coro())  # a sync callable returning an awaitable

    result = app._http_dispatch(req("/a/9"))
    assert inspect.isawaitable(result)
    assert json.loads(resolve(result).body) == {"id": 9}  # type: ignore[union-attr]
    with caplog.at_level(logging.ERROR, logger="xyra"):
        r = dispatch(app, req("/fail"))
    assert r is not None and r.status == 500 and b"secret" not in r.body
    assert "ValueError: async secret" in caplog.text
    assert dispatch(app, req("/forbidden")).status == 403  # type: ignore[union-attr]
    assert dispatch(app, req("/wrapped")).body == b"via a sync callable"  # type: ignore[union-attr]


# -- static files -------------------------------------------------------------------------


@pytest.fixture
def site(tmp_path: Path) -> Path:
    root = tmp_path / "site"
    (root / "sub").mkdir(parents=True)
    (root / "nodir").mkdir()
    (root / "index.html").write_text("<h1>home</h1>")
    (root / "style.css").write_text("body{}")
    (root / "app.js").write_text("1")
    (root / "data.json").write_text("{}")
    (root / "pic.png").write_bytes(b"\x89PNG")
    (root / "sub" / "index.html").write_text("sub index")
    (root / "sub" / "a b.txt").write_text("spaced")
    (root / ".env").write_text("SECRET=1")
    (tmp_path / "secret.txt").write_text("outside")
    (root / "escape").symlink_to(tmp_path / "secret.txt")
    (root / "escape_dir").symlink_to(tmp_path)
    (root / "inside").symlink_to(root / "style.css")
    return root


@pytest.fixture
def static_app(site: Path) -> App:
    app = make_app()
    app.static("/static", site)
    return app


@pytest.mark.parametrize(
    "path,ctype,body",
    [
        ("/static/index.html", "text/html; charset=utf-8", b"<h1>home</h1>"),
        ("/static/style.css", "text/css; charset=utf-8", b"body{}"),
        ("/static/app.js", "text/javascript; charset=utf-8", b"1"),
        ("/static/data.json", "application/json; charset=utf-8", b"{}"),
        ("/static/pic.png", "image/png", b"\x89PNG"),
        ("/static/sub/a%20b.txt", "text/plain; charset=utf-8", b"spaced"),
        ("/static/", "text/html; charset=utf-8", b"<h1>home</h1>"),
        ("/static/sub/", "text/html; charset=utf-8", b"sub index"),
        ("/static/inside", "text/css; charset=utf-8", b"body{}"),  # a symlink inside the tree
    ],
)
def test_static_serves(static_app: App, path: str, ctype: str, body: bytes) -> None:
    r = dispatch(static_app, req(path))
    assert r is not None and r.status == 200, path
    assert r.body == body
    assert r.get_header("content-type") == ctype
    assert r.get_header("etag") and r.get_header("last-modified")
    head = dispatch(static_app, req(path, "HEAD"))
    assert head is not None and head.status == 200
    _, fields, wire = parse(head.encode(head=True, keep_alive=True))
    assert wire == b"" and fields["content-length"] == [str(len(body))]


@pytest.mark.parametrize(
    "path",
    [
        "/static/../secret.txt",
        "/static/%2e%2e/secret.txt",
        "/static/%2E%2E/secret.txt",
        "/static/..%2fsecret.txt",
        "/static/%2e%2e%2fsecret.txt",
        "/static/sub/..%2f..%2fsecret.txt",
        "/static/..%5csecret.txt",
        "/static/..\\secret.txt",
        "/static/sub\\..\\..\\secret.txt",
        "/static/%00",
        "/static/index.html%00.png",
        "/static/./index.html",
        "/static/%2e/index.html",
        "/static/escape",
        "/static/escape_dir/secret.txt",
        "/static/.env",
        "/static/%2eenv",
        "/static/%ff",
        "/static/missing.txt",
        "/static/index.html/",
        "/static/nodir/",
    ],
)
def test_static_refuses(static_app: App, path: str) -> None:
    r = dispatch(static_app, req(path))
    assert r is not None and r.status == 404, path
    assert b"outside" not in r.body and b"SECRET" not in r.body


def test_static_dotfiles_option(site: Path) -> None:
    app = make_app()
    app.static("/", site, dotfiles=True)
    assert dispatch(app, req("/.env")).body == b"SECRET=1"  # type: ignore[union-attr]
    assert dispatch(app, req("/../secret.txt")).status == 404  # type: ignore[union-attr]


def test_static_directory_redirect_and_methods(static_app: App) -> None:
    r = dispatch(static_app, req("/static/sub?x=1"))
    assert r is not None and r.status == 307 and r.get_header("location") == "/static/sub/?x=1"
    top = dispatch(static_app, req("/static"))
    assert top is not None and top.get_header("location") == "/static/"
    post = dispatch(static_app, req("/static/style.css", "POST"))
    assert post is not None and post.status == 405 and post.get_header("allow") == "GET, HEAD"
    assert static_app._http_dispatch(req("/staticx/style.css")) is None  # segment boundary
    assert static_app._http_dispatch(req("/other")) is None


def test_static_conditional_requests(static_app: App, site: Path) -> None:
    first = dispatch(static_app, req("/static/style.css"))
    assert first is not None
    etag, modified = first.get_header("etag"), first.get_header("last-modified")
    assert etag is not None and modified is not None
    st = (site / "style.css").stat()
    assert etag == f'"{st.st_size:x}-{st.st_mtime_ns:x}"'
    for headers in (
        [("if-none-match", etag)],
        [("if-none-match", f'"nope", W/{etag}')],
        [("if-none-match", "*")],
        [("if-modified-since", modified)],
        [("if-modified-since", email.utils.formatdate(time.time() + 60, usegmt=True))],
    ):
        r = dispatch(static_app, req("/static/style.css", headers=headers))
        assert r is not None and r.status == 304, headers
        _, fields, body = parse(r.encode(head=False, keep_alive=True))
        assert body == b"" and fields["etag"] == [etag] and "content-length" not in fields
    for headers in (
        [("if-none-match", '"other"')],
        [("if-modified-since", "Mon, 01 Jan 2001 00:00:00 GMT")],
        [("if-modified-since", "garbage")],
        # If-None-Match wins over If-Modified-Since
        [("if-none-match", '"other"'), ("if-modified-since", modified)],
    ):
        r = dispatch(static_app, req("/static/style.css", headers=headers))
        assert r is not None and r.status == 200, headers
    (site / "style.css").write_text("body{color:red}")
    os.utime(site / "style.css", ns=(st.st_mtime_ns + 10**9, st.st_mtime_ns + 10**9))
    changed = dispatch(static_app, req("/static/style.css", headers=[("if-none-match", etag)]))
    assert changed is not None and changed.status == 200 and changed.get_header("etag") != etag


def test_static_limits_and_large_files(site: Path, caplog: pytest.LogCaptureFixture) -> None:
    big = os.urandom(300 * 1024)
    (site / "big.bin").write_bytes(big)
    app = make_app()
    app.static("/s", site, max_file_size=400 * 1024, cache_control="no-cache")
    result = app._http_dispatch(req("/s/big.bin"))
    assert inspect.isawaitable(result)  # read in a worker thread
    r = resolve(result)
    assert r is not None and r.body == big and r.get_header("cache-control") == "no-cache"
    small = make_app()
    small.static("/s", site, max_file_size=1024)
    with caplog.at_level(logging.WARNING, logger="xyra"):
        refused = dispatch(small, req("/s/big.bin"))
    assert refused is not None and refused.status == 500
    assert "over the 1024-byte limit" in caplog.text


def test_static_missing_file_at_a_websocket_path_is_left_to_the_protocol(site: Path) -> None:
    app = App()
    app.websocket("/ws", {"message": lambda ws, message, opcode: None})
    app.websocket("/rooms/{name}", {"message": lambda ws, message, opcode: None})
    app.static("/", site)
    assert app._http_dispatch(req("/rooms/lobby")) is None  # a parameterised route too
    assert app._http_dispatch(req("/ws")) is None  # the protocol answers 426
    assert dispatch(app, req("/nope")).status == 404  # type: ignore[union-attr]
    assert dispatch(app, req("/")).body == b"<h1>home</h1>"  # type: ignore[union-attr]


def test_routes_win_over_static(site: Path) -> None:
    app = make_app()
    app.static("/", site)
    app.get("/style.css", lambda: "from a route")
    assert dispatch(app, req("/style.css")).body == b"from a route"  # type: ignore[union-attr]
    assert dispatch(app, req("/app.js")).body == b"1"  # type: ignore[union-attr]


def test_static_registration_errors(site: Path) -> None:
    app = make_app()
    with pytest.raises(ValueError):
        app.static("static", site)
    with pytest.raises(ValueError):
        app.static("/s", site / "missing")
    with pytest.raises(ValueError):
        app.static("/s/{x}", site)
    app.static("/s", site)
    with pytest.raises(ValueError):
        app.static("/s/", site)


def test_client_js() -> None:
    app = make_app()
    app.enable_client_js()
    r = dispatch(app, req("/xyra.js"))
    assert r is not None and r.status == 200
    assert r.get_header("content-type") == "text/javascript; charset=utf-8"
    assert r.body == CLIENT_JS.read_bytes() and b"class XyraSocket" in r.body
    again = dispatch(app, req("/xyra.js", headers=[("if-none-match", r.get_header("etag") or "")]))
    assert again is not None and again.status == 304
    other = make_app()
    other.enable_client_js("/js/client.js")
    assert dispatch(other, req("/js/client.js")).status == 200  # type: ignore[union-attr]

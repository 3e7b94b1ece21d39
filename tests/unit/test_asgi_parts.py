"""The ASGI adapter's socket-free parts: proxy trust, mount prefixes, the CLI's choice."""

from __future__ import annotations

from typing import Any

import pytest

from xyra import App
from xyra.asgi.mount import PrefixPattern, check_prefix
from xyra.asgi.proxy import trusted_from


def test_forwarded_for_from_trusted_proxies_only() -> None:
    trust = trusted_from("127.0.0.1, 10.0.0.0/8")
    scope: dict[str, Any] = {"type": "http", "client": ("10.1.2.3", 5000), "scheme": "http"}
    headers = [(b"x-forwarded-for", b"203.0.113.9, 10.9.9.9"), (b"x-forwarded-proto", b"HTTPS")]
    trust.apply(scope, headers)
    # the right-most address that is not a trusted proxy
    assert scope["client"] == ("203.0.113.9", 0) and scope["scheme"] == "https"
    untrusted: dict[str, Any] = {"type": "http", "client": ("192.0.2.1", 5000), "scheme": "http"}
    trust.apply(untrusted, headers)
    assert untrusted == {"type": "http", "client": ("192.0.2.1", 5000), "scheme": "http"}


def test_forwarded_proto_for_a_websocket_and_star() -> None:
    trust = trusted_from("*")
    scope: dict[str, Any] = {"type": "websocket", "client": ("192.0.2.1", 1), "scheme": "ws"}
    trust.apply(
        scope, [(b"x-forwarded-for", b"198.51.100.1, 10.0.0.1"), (b"x-forwarded-proto", b"https")]
    )
    assert scope["scheme"] == "wss" and scope["client"] == ("198.51.100.1", 0)
    scope["scheme"] = "ws"
    trust.apply(scope, [(b"x-forwarded-proto", b"gopher")])
    assert scope["scheme"] == "ws"  # not a scheme: ignored


def test_forwarded_allow_ips_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FORWARDED_ALLOW_IPS", "192.0.2.0/24")
    assert trusted_from(None).trusts("192.0.2.77")
    assert not trusted_from(None).trusts("127.0.0.1")
    monkeypatch.delenv("FORWARDED_ALLOW_IPS")
    assert trusted_from(None).trusts("127.0.0.1")


def test_prefixes() -> None:
    assert check_prefix("/") == "" and check_prefix("/api/") == "/api"
    for bad in ("api", "/a/{x}", "/a?b"):
        with pytest.raises(ValueError):
            check_prefix(bad)
    api = PrefixPattern("/api")
    assert api.covers("/api") and api.covers("/api/x") and not api.covers("/apix")
    assert PrefixPattern("").covers("/anything")


def test_mount_checks_its_arguments() -> None:
    app = App()
    with pytest.raises(TypeError, match="ASGI application"):
        app.mount("/", "not an app")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="lifespan"):
        app.mount("/", lambda s, r, w: None, lifespan="sometimes")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="unknown WebSocket route option"):
        app.mount("/", lambda s, r, w: None, no_such_option=1)  # type: ignore[call-arg]
    app.mount("/api", lambda s, r, w: None)
    with pytest.raises(ValueError, match="already mounted"):
        app.mount("/api/", lambda s, r, w: None)


def test_the_cli_tells_an_asgi_app_from_a_factory(tmp_path: Any, monkeypatch: Any) -> None:
    import sys

    from xyra.__main__ import AppSpecError, load_app

    monkeypatch.setattr(sys, "path", list(sys.path))
    (tmp_path / "asgi_kinds.py").write_text(
        "async def app(scope, receive, send):\n    pass\n"
        "def make():\n    return app\n"
        "class Klass:\n    async def __call__(self, scope, receive, send):\n        pass\n"
        "instance = Klass()\n"
    )
    assert load_app("asgi_kinds:app", str(tmp_path)).__name__ == "app"  # type: ignore[union-attr]
    assert load_app("asgi_kinds:make", str(tmp_path), factory=True).__name__ == "app"  # type: ignore[union-attr]
    assert callable(load_app("asgi_kinds:instance", str(tmp_path)))
    with pytest.raises(AppSpecError, match="pass --factory"):
        load_app("asgi_kinds:make", str(tmp_path))

"""Security features and hostile clients (docs/security.md), over real sockets."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import ssl
import sys

import pytest
import trustme
import websockets
from kit import (
    START_TIMEOUT,
    TIMEOUT,
    RawClient,
    client_frame,
    echo,
    recv,
    served,
    upgrade_request,
    wait_for_condition,
    ws_url,
)
from kit.refcodec import OP_BINARY, OP_TEXT

from xyra import App, WebSocket


async def neighbour_ok(server) -> None:
    async with websockets.connect(ws_url(server)) as client:
        await client.send("fine")
        assert await recv(client) == "fine"


def rss_kib() -> int:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise AssertionError("no VmRSS")


# -- origin ------------------------------------------------------------------------------


async def _handshake_status(server, origin: str | None, host: str | None = None) -> int:
    raw = await RawClient.connect(server)
    headers = f"Origin: {origin}\r\n" if origin else ""
    await raw.send(upgrade_request(headers=headers, host=host or "127.0.0.1"))
    response = await raw.recv_response(head_only=True)
    raw.close()
    return response.status


async def test_default_origin_policy() -> None:
    app = App()
    app.websocket("/", {"message": echo})
    async with served(app) as server:
        host = f"127.0.0.1:{server.port}"
        assert await _handshake_status(server, None) == 101  # no Origin: not a browser
        assert await _handshake_status(server, f"http://{host}", host) == 101  # same origin
        assert await _handshake_status(server, "http://evil.example", host) == 403
        assert await _handshake_status(server, f"https://{host}", host) == 403  # other scheme


async def test_allowed_origins_list_and_star(caplog) -> None:
    caplog.set_level(logging.INFO, logger="xyra")
    app = App()
    app.websocket("/", {"message": echo}, allowed_origins=["https://app.example"])
    app.websocket("/any", {"message": echo}, allowed_origins="*")
    async with served(app) as server:
        assert await _handshake_status(server, "https://app.example") == 101
        assert await _handshake_status(server, "https://app.example:443") == 101
        assert await _handshake_status(server, "https://other.example") == 403
        raw = await RawClient.connect(server)
        await raw.send(upgrade_request("/any", headers="Origin: https://whatever.example\r\n"))
        assert (await raw.recv_head()).startswith(b"HTTP/1.1 101")
    assert any("allowed_origins" in r.getMessage() for r in caplog.records)


# -- rate limits ---------------------------------------------------------------------------


async def test_message_rate_limit_closes_1008() -> None:
    app = App()
    app.websocket("/", {"message": echo}, max_messages_per_second=20)
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        for i in range(20):  # one second of burst is allowed
            await client.send(str(i))
        for i in range(20):
            assert await asyncio.wait_for(client.recv(), TIMEOUT) == str(i)
        for _ in range(20):
            await client.send("flood")
        await asyncio.wait_for(client.wait_closed(), TIMEOUT)
        assert client.protocol.close_rcvd.code == 1008
        await neighbour_ok(server)


async def test_byte_rate_limit_drops_when_asked() -> None:
    app = App()
    app.websocket("/", {"message": echo}, max_bytes_per_second=1000, rate_limit_action="drop")
    async with served(app) as server, websockets.connect(ws_url(server)) as client:
        await client.send("a" * 900)
        await client.send("b" * 900)  # over the bucket: dropped, the connection stays
        await client.send("c" * 50)
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "a" * 900
        assert await asyncio.wait_for(client.recv(), TIMEOUT) == "c" * 50


# -- connection limits -----------------------------------------------------------------------


async def test_connection_limits_answer_503() -> None:
    app = App(max_connections=3)
    app.websocket("/", {"message": echo})
    async with served(app) as server:
        clients = [await websockets.connect(ws_url(server)) for _ in range(3)]
        raw = await RawClient.connect(server)
        response = await raw.recv_response()
        assert response.status == 503 and b"max_connections" in response.body
        for c in clients:
            await c.close()


async def test_per_ip_limit_answers_503() -> None:
    app = App(max_connections_per_ip=2)
    app.websocket("/", {"message": echo})
    async with served(app) as server:
        a = await websockets.connect(ws_url(server))
        b = await websockets.connect(ws_url(server))
        raw = await RawClient.connect(server)
        assert (await raw.recv_response()).status == 503
        await a.close()
        await asyncio.wait_for(a.wait_closed(), TIMEOUT)
        # the slot frees once the server saw the close
        await wait_for_condition(lambda: _accepted(server), message="per-IP slot never freed")
        await b.close()


async def _accepted(server) -> bool:
    raw = await RawClient.connect(server)
    await raw.send(upgrade_request())
    head = await raw.recv_head()
    raw.close()
    return head.startswith(b"HTTP/1.1 101")


# -- TLS ----------------------------------------------------------------------------------------


async def test_tls_wss() -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    app = App()
    app.websocket("/", {"message": echo})
    server = await app.start(0, ssl=server_ctx)
    try:
        async with websockets.connect(f"wss://127.0.0.1:{server.port}/", ssl=client_ctx) as c:
            await c.send("secret")
            assert await recv(c) == "secret"
            big = os.urandom(300_000)
            await c.send(big)
            assert await recv(c) == big
            # Through the TLS layer too, the reader switches between the shared buffer
            # and the in-place one: small and big messages keep coming back intact.
            for message in ("after", os.urandom(70_000), b"x", os.urandom(1 << 20)[:900_000]):
                await c.send(message)
                assert await recv(c) == message
    finally:
        await server.stop(timeout=1)


LISTEN_TLS_APP = """
import asyncio, sys
from xyra import App

app = App()
app.websocket("/", {"message": lambda ws, m, op: ws.send(m, op)})
tasks = set()


@app.on_startup
def start_a_task_nobody_stops() -> None:
    async def forever() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            print("background task cancelled", flush=True)
            raise

    tasks.add(asyncio.get_running_loop().create_task(forever()))


app.listen(int(sys.argv[1]), certfile=sys.argv[2], keyfile=sys.argv[3])
print("listen returned", flush=True)
"""


async def test_listen_serves_wss_from_cert_files_and_returns_on_sigterm(tmp_path) -> None:
    """``app.listen(certfile=, keyfile=)`` in its own process: wss:// works; SIGTERM shuts it
    down, cancelling a task the app left running, and listen returns."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    client_ctx = ssl.create_default_context()
    ca.configure_trust(client_ctx)
    script = tmp_path / "tls_app.py"
    script.write_text(LISTEN_TLS_APP)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        str(script),
        str(port),
        str(certfile),
        str(keyfile),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    try:

        async def echoes_over_wss() -> bool:
            try:
                async with websockets.connect(
                    f"wss://127.0.0.1:{port}/", ssl=client_ctx, open_timeout=TIMEOUT
                ) as client:
                    await client.send("over tls")
                    return await recv(client) == "over tls"
            except OSError:
                return proc.returncode is not None  # not listening yet, or gone

        await wait_for_condition(echoes_over_wss, timeout=START_TIMEOUT)
        assert proc.returncode is None, "the app exited"
        proc.send_signal(signal.SIGTERM)
        output, _ = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0, output.decode()
    lines = output.decode().splitlines()
    assert lines[-2:] == ["background task cancelled", "listen returned"], lines


def test_listen_builds_a_context_from_cert_files(tmp_path) -> None:
    from xyra.app import tls_context

    ca = trustme.CA()
    cert = ca.issue_cert("localhost")
    certfile, keyfile = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(certfile)
    cert.private_key_pem.write_to_path(keyfile)
    ctx = tls_context(None, str(certfile), str(keyfile))
    assert isinstance(ctx, ssl.SSLContext)
    with pytest.raises(ValueError):
        tls_context(ctx, str(certfile), str(keyfile))


# -- hostile clients ----------------------------------------------------------------------------


async def test_a_thousand_half_open_connections() -> None:
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(max(soft, 4096), hard), hard))
    app = App(handshake_timeout=1.0)
    app.websocket("/", {"message": echo})
    async with served(app) as server:
        before = rss_kib()
        half: list[RawClient] = []
        for i in range(1000):
            raw = await RawClient.connect(server)
            await raw.send(b"GET / HTTP/1.1\r\nHost: x\r\n" if i % 2 else b"")
            half.append(raw)
        await neighbour_ok(server)
        assert rss_kib() - before < 64 * 1024  # bounded: well under 64 KiB per connection
        # the handshake timeout reaps every one of them
        await asyncio.wait_for(
            asyncio.gather(*(r.wait_closed(3 * TIMEOUT) for r in half)), 3 * TIMEOUT
        )
        assert server.connections == 0
        await neighbour_ok(server)


async def test_unmasked_and_huge_frames_beside_a_good_client() -> None:
    app = App()
    app.websocket("/", {"message": echo}, close_timeout=0.5)
    async with served(app) as server, websockets.connect(ws_url(server)) as good:
        bad = await RawClient.open(server)
        await bad.send_frame(OP_BINARY, b"", declared_length=(1 << 63) - 1)
        assert (await bad.recv_close())[0] == 1009
        await good.send("ok")
        assert await recv(good) == "ok"


# -- the upgrade handler (authentication) --------------------------------------------------------


def auth_app(upgrade) -> App:  # type: ignore[no-untyped-def]
    app = App()

    def on_open(ws: WebSocket) -> None:
        ws.send(f"hello {ws.data.get('user')}")

    app.websocket("/", {"upgrade": upgrade, "open": on_open, "message": echo})
    return app


def check_token(request):  # type: ignore[no-untyped-def]
    from xyra import Response

    token = request.query.get("token") or request.cookies.get("token")
    if token != "good":
        return Response("who are you?", status=401)
    if request.headers.get("x-banned"):
        return False
    request.data["user"] = f"alice@{request.path}"
    return None


async def check_token_slowly(request):  # type: ignore[no-untyped-def]
    await asyncio.sleep(0.2)
    return check_token(request)


@pytest.mark.parametrize("upgrade", [check_token, check_token_slowly], ids=["sync", "async"])
async def test_upgrade_handler_accepts_and_attaches_data(upgrade) -> None:  # type: ignore[no-untyped-def]
    async with served(auth_app(upgrade)) as server:
        async with websockets.connect(ws_url(server, "/?token=good")) as client:
            assert await recv(client) == "hello alice@/"
        async with websockets.connect(
            ws_url(server), additional_headers={"Cookie": "token=good"}
        ) as client:
            assert await recv(client) == "hello alice@/"


@pytest.mark.parametrize("upgrade", [check_token, check_token_slowly], ids=["sync", "async"])
async def test_upgrade_handler_rejects_with_its_status_and_body(upgrade) -> None:  # type: ignore[no-untyped-def]
    async with served(auth_app(upgrade)) as server:
        raw = await RawClient.connect(server)
        await raw.send(upgrade_request("/?token=bad"))
        response = await raw.recv_response()
        assert response.status == 401 and response.body == b"who are you?"
        raw = await RawClient.connect(server)
        await raw.send(upgrade_request("/?token=good", headers="X-Banned: 1\r\n"))
        assert (await raw.recv_response()).status == 403
        await neighbour_ok_auth(server)


async def neighbour_ok_auth(server) -> None:  # type: ignore[no-untyped-def]
    async with websockets.connect(ws_url(server, "/?token=good")) as client:
        assert await recv(client) == "hello alice@/"


async def test_bytes_sent_during_an_async_upgrade_are_held_not_lost() -> None:
    deciding = asyncio.Event()
    decide = asyncio.Event()

    async def check_token_when_told(request):  # type: ignore[no-untyped-def]
        deciding.set()
        await asyncio.wait_for(decide.wait(), TIMEOUT)
        return check_token(request)

    async with served(auth_app(check_token_when_told)) as server:
        raw = await RawClient.connect(server)
        # the request and a frame in one write; another frame while the handler decides
        await raw.send(upgrade_request("/?token=good") + client_frame(OP_TEXT, b"one"))
        await asyncio.wait_for(deciding.wait(), TIMEOUT)
        await raw.send(client_frame(OP_TEXT, b"two"))
        await asyncio.sleep(0)  # a loop iteration: the server reads "two" while it decides
        decide.set()
        assert (await raw.recv_head()).startswith(b"HTTP/1.1 101")
        assert await raw.recv_frame() == (OP_TEXT, b"hello alice@/")
        assert await raw.recv_frame() == (OP_TEXT, b"one")
        assert await raw.recv_frame() == (OP_TEXT, b"two")


async def test_upgrade_handler_error_is_500_and_logged(caplog) -> None:  # type: ignore[no-untyped-def]
    def broken(request):  # type: ignore[no-untyped-def]
        raise RuntimeError("db down")

    caplog.set_level(logging.ERROR, logger="xyra")
    async with served(auth_app(broken)) as server:
        raw = await RawClient.connect(server)
        await raw.send(upgrade_request())
        response = await raw.recv_response()
        assert response.status == 500 and b"db down" not in response.body
    assert any("db down" in (r.exc_text or "") for r in caplog.records)


async def test_upgrade_request_object() -> None:
    seen = {}

    def upgrade(request):  # type: ignore[no-untyped-def]
        seen.update(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            host=request.headers.get("host"),
            cookies=dict(request.cookies),
            remote=request.remote_address,
            subprotocols=list(request.subprotocols),
        )

    app = App()
    app.websocket("/r", {"upgrade": upgrade, "message": echo}, subprotocols=["b"])
    async with served(app) as server:
        async with websockets.connect(
            ws_url(server, "/r?a=1&b=2"),
            subprotocols=["a", "b"],
            additional_headers={"Cookie": "k=v"},
        ) as client:
            port = client.local_address[1]
            assert client.subprotocol == "b"
    assert seen == {
        "method": "GET",
        "path": "/r",
        "query": {"a": "1", "b": "2"},
        "host": f"127.0.0.1:{server.port}",
        "cookies": {"k": "v"},
        "remote": ("127.0.0.1", port),
        "subprotocols": ["a", "b"],
    }

"""The opening handshake, without sockets: RFC 6455 vectors and every rejection."""

from __future__ import annotations

import base64
import binascii

import pytest

from xyra.handshake import Accepted, Rejection, accept_key, process_request

KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def headers(**overrides: str | None) -> list[tuple[str, str]]:
    base = {
        "host": "example.com",
        "upgrade": "websocket",
        "connection": "Upgrade",
        "sec-websocket-key": KEY,
        "sec-websocket-version": "13",
    }
    base.update({k.replace("_", "-"): v for k, v in overrides.items()})  # type: ignore[misc]
    return [(k, v) for k, v in base.items() if v is not None]


def test_rfc6455_key_accept_vector() -> None:
    assert accept_key(KEY) == "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accepts_a_valid_request() -> None:
    result = process_request("GET", headers())
    assert isinstance(result, Accepted)
    assert result.response.startswith(b"HTTP/1.1 101 Switching Protocols\r\n")
    assert b"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n" in result.response
    assert result.response.endswith(b"\r\n\r\n")


@pytest.mark.parametrize("connection", ["keep-alive, Upgrade", "upgrade", "Upgrade,keep-alive"])
def test_connection_is_a_token_list(connection: str) -> None:
    assert isinstance(process_request("GET", headers(connection=connection)), Accepted)


@pytest.mark.parametrize(
    ("method", "hdrs", "status", "fragment"),
    [
        ("POST", headers(), 405, "needs GET"),
        ("GET", headers(upgrade=None), 426, "Upgrade: websocket"),
        ("GET", headers(upgrade="h2c"), 426, "Upgrade: websocket"),
        ("GET", headers(connection="keep-alive"), 400, "upgrade"),
        ("GET", headers(sec_websocket_key=None), 400, "missing Sec-WebSocket-Key"),
        ("GET", headers(sec_websocket_key="AAAAAAAAAAAAAAAAAAAA"), 400, "16 bytes, not 15"),
        ("GET", headers(sec_websocket_key="not base64!!"), 400, "base64"),
        ("GET", headers(sec_websocket_version="8"), 426, "speaks 13"),
        ("GET", headers(sec_websocket_version=None), 426, "speaks 13"),
    ],
)
def test_rejections_say_what_was_wrong(method, hdrs, status, fragment) -> None:
    result = process_request(method, hdrs)
    assert isinstance(result, Rejection)
    assert result.status == status
    assert fragment in result.reason
    wire = result.to_bytes()
    assert wire.startswith(f"HTTP/1.1 {status} ".encode())
    assert fragment.encode() in wire


def test_wrong_version_advertises_13() -> None:
    result = process_request("GET", headers(sec_websocket_version="8"))
    assert isinstance(result, Rejection)
    assert b"\r\nSec-WebSocket-Version: 13\r\n" in result.to_bytes()


def test_two_keys_are_rejected() -> None:
    hdrs = [*headers(), ("sec-websocket-key", KEY)]
    result = process_request("GET", hdrs)
    assert isinstance(result, Rejection) and result.status == 400


def test_subprotocol_is_the_first_offered_by_the_client_that_is_supported() -> None:
    hdrs = [
        *headers(),
        ("sec-websocket-protocol", "chat, superchat"),
        ("sec-websocket-protocol", "v2"),
    ]
    result = process_request("GET", hdrs, subprotocols=["v2", "superchat"])
    assert isinstance(result, Accepted)
    assert result.subprotocol == "superchat"
    assert b"Sec-WebSocket-Protocol: superchat\r\n" in result.response
    none = process_request("GET", hdrs, subprotocols=["mqtt"])
    assert isinstance(none, Accepted) and none.subprotocol is None
    assert b"Sec-WebSocket-Protocol" not in none.response


@pytest.mark.parametrize(
    "key",
    [
        KEY,
        "AAAAAAAAAAAAAAAAAAAAAA==",
        "/+/+/+/+/+/+/+/+/+/+/w==",
        "AAAAAAAAAAAAAAAAAAAAAB==",  # non-zero padding bits: still 16 bytes
        " AAAAAAAAAAAAAAAAAAAAAA== ",
        "AAAAAAAAAAAAAAAAAAAAAAA=",  # 17 bytes
        "AAAAAAAAAAAAAAAAAAAAAA",  # no padding
        "AAAAAAAAAAAAAAAAAAAAA===",
        "AAAAAAAAAAAAAAAAAAAA-_==",  # the URL-safe alphabet is not base64
        "AAAAAAAAAAAAAAAAAAAAAA==AAAA",
    ],
)
def test_a_key_is_accepted_exactly_when_it_is_base64_of_16_bytes(key: str) -> None:
    try:
        valid = len(base64.b64decode(key.strip().encode("ascii"), validate=True)) == 16
    except binascii.Error:
        valid = False
    result = process_request("GET", headers(sec_websocket_key=key))
    assert isinstance(result, Accepted) == valid, result

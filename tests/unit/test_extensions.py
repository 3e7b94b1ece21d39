"""permessage-deflate negotiation (xyra.extensions, RFC 7692 section 7.1)."""

from __future__ import annotations

import pytest

from xyra.extensions import DeflateParams, ExtensionError, negotiate_deflate, parse_extensions

PMD = "permessage-deflate"


def negotiate(*values: str, mode: str = "dedicated", **options: int):
    return negotiate_deflate(list(values), mode, **options)


# ---------------------------------------------------------------------------
# Header syntax


def test_parse_lists_across_lines() -> None:
    parsed = parse_extensions(
        [
            'permessage-deflate; client_max_window_bits; server_max_window_bits="10"',
            " , x-webkit-deflate-frame ,, Permessage-Deflate ;Server_No_Context_Takeover",
            "",
        ]
    )
    assert parsed == [
        (PMD, [("client_max_window_bits", None), ("server_max_window_bits", "10")]),
        ("x-webkit-deflate-frame", []),
        (PMD, [("server_no_context_takeover", None)]),
    ]


def test_parse_whitespace_and_quoted_escapes() -> None:
    parsed = parse_extensions(['foo ;\ta = b\t; c="d\\e" , bar'])
    assert parsed == [("foo", [("a", "b"), ("c", "de")]), ("bar", [])]


@pytest.mark.parametrize(
    "value",
    [
        "permessage-deflate;",  # parameter name missing
        "permessage-deflate; =1",
        "permessage-deflate; a=",  # value missing
        "permessage-deflate; a=1 2",
        "permessage-deflate client_max_window_bits",  # missing ';'
        'permessage-deflate; a="1',  # unterminated quote
        'permessage-deflate; a="1 0"',  # quoted value that is not a token
        'permessage-deflate; a=""',
        "permessage-deflate; a=@",
        "; permessage-deflate",
        "permessage-deflate, ;",
        "permessage/deflate",
    ],
)
def test_syntax_errors(value: str) -> None:
    with pytest.raises(ExtensionError):
        parse_extensions([value])
    with pytest.raises(ExtensionError):
        negotiate(value)


def test_error_is_a_value_error_with_a_reason() -> None:
    # The handshake turns ValueError into HTTP 400 with this text.
    with pytest.raises(ValueError, match="duplicate parameter server_no_context_takeover"):
        negotiate("permessage-deflate; server_no_context_takeover; server_no_context_takeover")


# ---------------------------------------------------------------------------
# Malformed permessage-deflate offers


@pytest.mark.parametrize(
    "offer",
    [
        "permessage-deflate; unknown",
        "permessage-deflate; unknown=1",
        "permessage-deflate; server_no_context_takeover=1",  # value on a flag
        'permessage-deflate; client_no_context_takeover="x"',
        "permessage-deflate; server_max_window_bits",  # value required
        "permessage-deflate; server_max_window_bits=7",
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; client_max_window_bits=0",
        "permessage-deflate; client_max_window_bits=010",  # leading zero
        "permessage-deflate; client_max_window_bits=abc",
        'permessage-deflate; client_max_window_bits="16"',
        "permessage-deflate; client_max_window_bits; client_max_window_bits=10",
        "permessage-deflate; server_max_window_bits=10; server_max_window_bits=10",
        "permessage-deflate; client_no_context_takeover; client_no_context_takeover",
    ],
)
@pytest.mark.parametrize("mode", ["shared", "dedicated"])
def test_malformed_offer_raises(offer: str, mode: str) -> None:
    with pytest.raises(ExtensionError):
        negotiate(offer, mode=mode)


def test_any_malformed_offer_raises_even_after_a_good_one() -> None:
    with pytest.raises(ExtensionError):
        negotiate("permessage-deflate", "permessage-deflate; bogus")


def test_other_extensions_are_ignored() -> None:
    assert negotiate("x-webkit-deflate-frame; no_context_takeover; max_window_bits=9") is None
    response, _ = negotiate("foo; bar=1, permessage-deflate")
    assert response == PMD


# ---------------------------------------------------------------------------
# Modes


def test_off_never_negotiates_nor_parses() -> None:
    assert negotiate("permessage-deflate", mode="off") is None
    assert negotiate("permessage-deflate; bogus", mode="off") is None


def test_unknown_mode() -> None:
    with pytest.raises(ValueError, match="compression"):
        negotiate("permessage-deflate", mode="fast")


def test_no_offer() -> None:
    assert negotiate(mode="shared") is None
    assert negotiate("", mode="dedicated") is None


def test_browser_offers() -> None:
    chrome = "permessage-deflate; client_max_window_bits"
    assert negotiate(chrome, mode="shared") == (
        "permessage-deflate; server_no_context_takeover; client_max_window_bits=15",
        DeflateParams(server_no_context_takeover=True),
    )
    assert negotiate(chrome, mode="dedicated") == (
        "permessage-deflate; client_max_window_bits=15",
        DeflateParams(),
    )
    firefox = "permessage-deflate"
    assert negotiate(firefox, mode="dedicated") == (PMD, DeflateParams())
    assert negotiate(firefox, mode="shared") == (
        "permessage-deflate; server_no_context_takeover",
        DeflateParams(server_no_context_takeover=True),
    )


def test_shared_always_no_context_takeover() -> None:
    response, params = negotiate("permessage-deflate; server_no_context_takeover", mode="shared")
    assert response == "permessage-deflate; server_no_context_takeover"
    assert params.server_no_context_takeover


def test_dedicated_honours_server_no_context_takeover() -> None:
    response, params = negotiate("permessage-deflate; server_no_context_takeover")
    assert response == "permessage-deflate; server_no_context_takeover"
    assert params == DeflateParams(server_no_context_takeover=True)


@pytest.mark.parametrize("mode", ["shared", "dedicated"])
def test_client_no_context_takeover_is_agreed(mode: str) -> None:
    response, params = negotiate("permessage-deflate; client_no_context_takeover", mode=mode)
    assert "; client_no_context_takeover" in response
    assert params.client_no_context_takeover


@pytest.mark.parametrize("bits", range(8, 16))
def test_dedicated_honours_server_max_window_bits(bits: int) -> None:
    response, params = negotiate(f"permessage-deflate; server_max_window_bits={bits}")
    assert response == f"permessage-deflate; server_max_window_bits={bits}"
    assert params == DeflateParams(server_max_window_bits=bits)


def test_dedicated_server_window_capped_by_settings() -> None:
    response, params = negotiate(
        "permessage-deflate; server_max_window_bits=14", server_max_window_bits=12
    )
    assert response == "permessage-deflate; server_max_window_bits=12"
    assert params.server_max_window_bits == 12
    # Not offered: the smaller window is used silently, nothing is echoed.
    response, params = negotiate("permessage-deflate", server_max_window_bits=12)
    assert response == PMD
    assert params.server_max_window_bits == 12


def test_quoted_values() -> None:
    response, params = negotiate(
        'permessage-deflate; server_max_window_bits="10"; client_max_window_bits="9"'
    )
    assert response == ("permessage-deflate; server_max_window_bits=10; client_max_window_bits=9")
    assert params == DeflateParams(server_max_window_bits=10, client_max_window_bits=9)


def test_shared_honours_a_smaller_server_window() -> None:
    # The server keeps one no-context compressor per window size, so this fits too.
    response, params = negotiate("permessage-deflate; server_max_window_bits=10", mode="shared")
    assert response == ("permessage-deflate; server_no_context_takeover; server_max_window_bits=10")
    assert params == DeflateParams(server_no_context_takeover=True, server_max_window_bits=10)
    response, params = negotiate("permessage-deflate; server_max_window_bits=15", mode="shared")
    assert response == ("permessage-deflate; server_no_context_takeover; server_max_window_bits=15")
    assert params.server_max_window_bits == 15


def test_first_fitting_offer_wins() -> None:
    offers = (
        "x-webkit-deflate-frame, "
        "permessage-deflate; server_max_window_bits=10; client_max_window_bits, "
        "permessage-deflate; client_max_window_bits=12",
        "permessage-deflate",
    )
    response, params = negotiate(*offers, mode="shared")
    assert response == (
        "permessage-deflate; server_no_context_takeover; "
        "server_max_window_bits=10; client_max_window_bits=15"
    )
    assert params == DeflateParams(server_no_context_takeover=True, server_max_window_bits=10)
    response, params = negotiate(*offers, mode="dedicated")
    assert response == ("permessage-deflate; server_max_window_bits=10; client_max_window_bits=15")
    assert params == DeflateParams(server_max_window_bits=10)


def test_decline_when_nothing_fits() -> None:
    # Only permessage-deflate is implemented: other extensions are declined, not failed.
    offers = ["x-webkit-deflate-frame", "deflate-frame; no_context_takeover"]
    assert negotiate(*offers, mode="shared") is None
    assert negotiate(*offers, mode="dedicated") is None


@pytest.mark.parametrize("mode", ["shared", "dedicated"])
def test_client_max_window_bits(mode: str) -> None:
    # Without a value: the server picks (its setting).
    _, params = negotiate("permessage-deflate; client_max_window_bits", mode=mode)
    assert params.client_max_window_bits == 15
    response, params = negotiate(
        "permessage-deflate; client_max_window_bits", mode=mode, client_max_window_bits=10
    )
    assert response.endswith("; client_max_window_bits=10")
    assert params.client_max_window_bits == 10
    # With a value: no larger than the client's hint.
    response, params = negotiate(
        "permessage-deflate; client_max_window_bits=9", mode=mode, client_max_window_bits=12
    )
    assert response.endswith("; client_max_window_bits=9")
    assert params.client_max_window_bits == 9
    # Not offered: never in the response, and the client may use 15.
    response, params = negotiate(PMD, mode=mode, client_max_window_bits=10)
    assert "client_max_window_bits" not in response
    assert params.client_max_window_bits == 15


def test_every_parameter_at_once() -> None:
    response, params = negotiate(
        "permessage-deflate; client_max_window_bits=11; server_max_window_bits=13; "
        "client_no_context_takeover; server_no_context_takeover"
    )
    assert response == (
        "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
        "server_max_window_bits=13; client_max_window_bits=11"
    )
    assert params == DeflateParams(True, True, 13, 11)


def test_settings_are_checked() -> None:
    with pytest.raises(ValueError):
        negotiate(PMD, server_max_window_bits=8)
    with pytest.raises(ValueError):
        negotiate(PMD, client_max_window_bits=16)


def test_params_drive_the_engine() -> None:
    deflate = pytest.importorskip("xyra._core.deflate")
    _, params = negotiate(
        "permessage-deflate; server_max_window_bits=8; client_no_context_takeover"
    )
    deflater = deflate.Deflater(params.server_max_window_bits, params.server_no_context_takeover)
    inflater = deflate.Inflater(params.server_max_window_bits)
    message = b"negotiated " * 100
    assert inflater.decompress_bytes(deflater.compress_bytes(message), 1 << 20) == message

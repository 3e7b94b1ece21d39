"""``X-Forwarded-For`` and ``X-Forwarded-Proto``, trusted only from listed addresses.

The same rules as uvicorn's ``--proxy-headers``/``--forwarded-allow-ips``: the headers
are read only when the TCP peer is a trusted proxy; the client is the right-most
address of ``X-Forwarded-For`` that is not itself a trusted proxy (the left-most one
under ``*``), with port 0; ``X-Forwarded-Proto`` sets the scheme (``ws``/``wss`` for a
WebSocket).
"""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Iterable, MutableMapping
from typing import Any

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
DEFAULT_TRUSTED = "127.0.0.1"
_SCHEMES = {"http", "https", "ws", "wss"}


def trusted_from(value: str | Iterable[str] | None) -> ProxyTrust:
    """A ``ProxyTrust`` from ``--forwarded-allow-ips`` (comma-separated addresses,
    networks, or ``*``); None reads ``$FORWARDED_ALLOW_IPS``, else 127.0.0.1 only."""
    if value is None:
        value = os.environ.get("FORWARDED_ALLOW_IPS", DEFAULT_TRUSTED)
    items = value.split(",") if isinstance(value, str) else list(value)
    return ProxyTrust([item.strip() for item in items if item.strip()])


class ProxyTrust:
    """Which peers may set the client address and scheme through forwarded headers."""

    def __init__(self, entries: list[str]) -> None:
        self.always = "*" in entries
        self.networks: list[Network] = []
        self.literals: set[str] = set()  # non-IP entries (unix socket paths, names)
        for entry in entries:
            if entry == "*":
                continue
            try:
                self.networks.append(ipaddress.ip_network(entry, strict=False))
            except ValueError:
                self.literals.add(entry)

    def trusts(self, host: str) -> bool:
        if self.always or host in self.literals:
            return True
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            return False
        return any(address in net for net in self.networks)

    def client_host(self, forwarded_for: str) -> str | None:
        """The client address ``X-Forwarded-For`` names, as trusted proxies tell it."""
        hosts = [h.strip() for h in forwarded_for.split(",") if h.strip()]
        if not hosts:
            return None
        if self.always:
            return hosts[0]
        for host in reversed(hosts):
            if not self.trusts(host):
                return host
        return hosts[0]

    def apply(self, scope: MutableMapping[str, Any], headers: list[tuple[bytes, bytes]]) -> None:
        """Rewrite ``scope["client"]`` and ``scope["scheme"]`` from a trusted proxy's headers."""
        client = scope.get("client")
        if not isinstance(client, tuple) or not self.trusts(str(client[0])):
            return
        proto = forwarded = None
        for name, value in headers:
            if name == b"x-forwarded-proto":
                proto = value.decode("latin-1").strip().lower()
            elif name == b"x-forwarded-for":
                forwarded = value.decode("latin-1")
        if proto in _SCHEMES:
            if scope.get("type") == "websocket":
                proto = proto.replace("http", "ws")
            scope["scheme"] = proto
        if forwarded is not None:
            host = self.client_host(forwarded)
            if host is not None:
                scope["client"] = (host, 0)

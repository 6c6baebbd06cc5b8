"""Which destinations the gateway may push to.

Checked when a subscription is saved: the URL must be http(s), and a host that is a literal
address (or `localhost`) must not fall in a denied network unless an allowed network lists it.
Denied by default: loopback, link-local (cloud metadata) and unspecified addresses.
The connect-time check on resolved addresses (DNS rebinding) belongs to the push client.
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from urllib.parse import urlsplit

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_DENIED = (
    "127.0.0.0/8",
    "::1/128",
    "169.254.0.0/16",
    "fe80::/10",
    "0.0.0.0/8",
    "::/128",
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})


class EgressDenied(ValueError):
    """A destination the policy refuses; the message says why and how to allow it."""


@dataclass(frozen=True, slots=True)
class EgressPolicy:
    allowed: tuple[Network, ...] = ()
    denied: tuple[Network, ...] = tuple(ipaddress.ip_network(net) for net in DEFAULT_DENIED)

    @classmethod
    def from_lists(cls, allowed: Iterable[str], denied: Iterable[str]) -> EgressPolicy:
        """Networks from configuration; extra denied networks add to the defaults."""
        return cls(
            allowed=tuple(ipaddress.ip_network(net, strict=False) for net in allowed),
            denied=tuple(
                ipaddress.ip_network(net, strict=False) for net in (*DEFAULT_DENIED, *denied)
            ),
        )

    def allows(self, address: Address) -> bool:
        candidates = [address]
        if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)  # ::ffff:127.0.0.1 is 127.0.0.1
        return all(self._allows_one(candidate) for candidate in candidates)

    def _allows_one(self, address: Address) -> bool:
        if any(address in network for network in self.allowed):
            return True
        return not any(address in network for network in self.denied)

    def check_url(self, url: str) -> None:
        try:
            parts = urlsplit(url)
            host = parts.hostname
            _ = parts.port  # raises ValueError for a malformed port
        except ValueError as error:
            raise EgressDenied(f"{url!r} is not a valid URL: {error}") from None
        if parts.scheme not in ("http", "https"):
            raise EgressDenied(f"{url!r} is not an http(s) URL")
        if not host:
            raise EgressDenied(f"{url!r} has no host")
        address = _literal_address(host)
        if address is not None and not self.allows(address):
            raise EgressDenied(
                f"{url!r} points at {address}, which egress policy denies; list its network in "
                "egress.allowedNetworks to allow it"
            )


def _literal_address(host: str) -> Address | None:
    """The address a literal host names, including the spellings a resolver accepts that
    `ipaddress` does not (127.1, 2130706433, 0x7f000001, 0177.0.0.1) and a trailing dot."""
    host = host.rstrip(".").lower()
    if host in LOOPBACK_NAMES:
        return ipaddress.ip_address("127.0.0.1")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except OSError:
        return None

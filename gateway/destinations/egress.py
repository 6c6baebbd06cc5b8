"""Which destinations the gateway may push to (DESIGN "Safety", RELIABILITY S1 and S2).

A push gateway fetches URLs its users type in; unchecked, it is an SSRF proxy into the cloud
metadata service. Destinations are checked twice:

- when a subscription is saved: http(s) only, and the host, when it is a literal address (in
  any spelling a resolver accepts) or resolves to addresses, must be allowed;
- when a push connects: `PolicyResolver` checks every address a name resolves to and hands the
  connector only allowed ones, so the connection is pinned to a checked address (DNS
  rebinding cannot swap in 127.0.0.1 after the save-time check). Literal addresses skip
  resolvers, so the push path checks them itself (`EgressPolicy.check_url`).

Denied unless `egress.allowedNetworks` lists them: loopback, unspecified, link-local (cloud
metadata), RFC 1918 private, CGNAT, benchmarking, TEST-NETs, reserved, multicast, ULA and
site-local ranges, IPv4 embedded in IPv4-mapped, IPv4-compatible, IPv4-translated, NAT64, 6to4
and Teredo addresses, the names `localhost` and `*.localhost` (RFC 6761: loopback) and
`metadata.google.internal`. In-cluster services live in private ranges: the operator allows
their CIDRs explicitly (the Helm chart takes them as values).

A host is judged as a client connects to it: IDNA (UTS 46) maps fullwidth digits and the
ideographic full stops U+3002, U+FF0E and U+FF61 to ASCII first, as yarl does before aiohttp
connects, so `127.0.0.1\uff0e` is 127.0.0.1. A percent-encoded host, a NUL or any other byte
that is not part of a DNS name, a label over 63 characters or a name over 253 is refused.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any
from urllib.parse import unquote, urlsplit

import idna
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver

Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Address = ipaddress.IPv4Address | ipaddress.IPv6Address

DEFAULT_DENIED = (
    "0.0.0.0/8",  # "this network", unspecified
    "10.0.0.0/8",  # RFC 1918
    "100.64.0.0/10",  # CGNAT
    "127.0.0.0/8",  # loopback
    "168.63.129.16/32",  # Azure WireServer
    "169.254.0.0/16",  # link-local: cloud metadata (169.254.169.254)
    "172.16.0.0/12",  # RFC 1918
    "192.0.0.0/24",  # IETF protocol assignments
    "192.0.2.0/24",  # TEST-NET-1
    "192.168.0.0/16",  # RFC 1918
    "198.18.0.0/15",  # benchmarking
    "198.51.100.0/24",  # TEST-NET-2
    "203.0.113.0/24",  # TEST-NET-3
    "224.0.0.0/4",  # multicast
    "240.0.0.0/4",  # reserved, and broadcast 255.255.255.255
    "::/128",  # unspecified
    "::1/128",  # loopback
    "100::/64",  # discard
    "fc00::/7",  # unique local (ULA)
    "fe80::/10",  # link-local
    "fec0::/10",  # site-local (deprecated, still routed by some stacks)
    "ff00::/8",  # multicast
)
LOOPBACK_NAMES = frozenset({"localhost", "localhost.localdomain", "ip6-localhost"})
DENIED_NAMES = LOOPBACK_NAMES | {"metadata.google.internal", "metadata"}
# IPv6 forms whose last 32 bits are an IPv4 address a stack may connect to.
EMBEDDING_IPV4 = (
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 (RFC 6052)
    ipaddress.IPv6Network("64:ff9b:1::/48"),  # local-use NAT64 (RFC 8215)
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (RFC 4291, deprecated): ::7f00:1
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (RFC 2765): ::ffff:0:7f00:1
)
UNSPECIFIED, LOOPBACK = ipaddress.IPv6Address("::"), ipaddress.IPv6Address("::1")
MAX_NAME = 253  # RFC 1035 2.3.4, without the trailing dot
LABEL = re.compile(r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?")  # 1-63; `_` as in SRV names


class EgressDenied(ValueError):
    """A destination the policy refuses; the message says why and how to allow it."""


class EgressDeniedError(OSError):
    """Raised inside the push connector when every resolved address is denied."""


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
        """Allowed when the address and every IPv4 address embedded in it are allowed."""
        return all(self._allows_one(candidate) for candidate in _with_embedded(address))

    def _allows_one(self, address: Address) -> bool:
        if any(address in network for network in self.allowed):
            return True
        return not any(address in network for network in self.denied)

    def allows_name(self, host: str) -> bool:
        name = host.rstrip(".").lower()
        if is_loopback_name(name):
            return self.allows(ipaddress.IPv4Address("127.0.0.1"))
        return name not in DENIED_NAMES

    def check_url(self, url: str) -> str:
        """The URL's host if the URL may be used; raises EgressDenied saying why not."""
        host = url_host(url)
        if not self.allows_name(host):
            raise EgressDenied(f"{url!r} names {host!r}, which egress policy denies")
        address = literal_address(host)
        if address is not None and not self.allows(address):
            raise EgressDenied(
                f"{url!r} points at {address}, which egress policy denies; list its network in "
                "egress.allowedNetworks to allow it"
            )
        return host


def url_host(url: str) -> str:
    """The host `url` connects to, in the ASCII form a client uses (see the module doc);
    raises EgressDenied when the URL or its host cannot be used."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
        _ = parts.port  # raises ValueError for a malformed port
    except ValueError as error:
        raise EgressDenied(f"{url!r} is not a valid URL: {error}") from None
    if parts.scheme not in ("http", "https"):
        raise EgressDenied(f"{url!r} is not an http(s) URL")
    if parts.username is not None or parts.password is not None:
        # Credentials in a URL would be shown by every GET and copied into errors and logs.
        raise EgressDenied(
            "the URL carries credentials (user:password@); use basicAuth or bearerTokenFile"
        )
    if not host:
        raise EgressDenied(f"{url!r} has no host")
    return normal_host(host, url)


def normal_host(host: str, url: str) -> str:
    """`host` (lower case, from `urlsplit`) as a client connects to it: an IP literal as it
    is, a name IDNA-mapped to ASCII and checked against DNS's syntax."""
    if "%" in host:
        raise EgressDenied(
            f"{url!r} has a percent-encoded host ({unquote(host)!r} decoded); write the host"
            " without percent-encoding"
        )
    try:
        ipaddress.ip_address(host)
        return host
    except ValueError:
        pass
    if not host.isascii():
        try:
            host = idna.encode(host, uts46=True).decode("ascii")
        except (idna.IDNAError, UnicodeError) as error:
            raise EgressDenied(f"{url!r} does not have a valid host name: {error}") from None
    _check_dns_name(host, url)
    return host


def _check_dns_name(host: str, url: str) -> None:
    name = host.removesuffix(".")
    if len(name) > MAX_NAME:
        raise EgressDenied(f"{url!r} has a host name over {MAX_NAME} characters")
    for label in name.split("."):
        if not LABEL.fullmatch(label):
            raise EgressDenied(
                f"{url!r} does not have a valid host name: {label[:70]!r} is not a DNS label"
                " (1-63 letters, digits, '-' or '_')"
            )


def is_loopback_name(host: str) -> bool:
    """`localhost`, its usual aliases and every name under `.localhost` (RFC 6761 6.3)."""
    name = host.rstrip(".").lower()
    return name in LOOPBACK_NAMES or name.endswith(".localhost")


def literal_address(host: str) -> Address | None:
    """The address a literal host names, including the spellings a resolver accepts that
    `ipaddress` does not (127.1, 2130706433, 0x7f000001, 0177.0.0.1) and a trailing dot;
    loopback names count as 127.0.0.1."""
    host = host.rstrip(".").lower()
    if is_loopback_name(host):
        return ipaddress.ip_address("127.0.0.1")
    try:
        return ipaddress.ip_address(host)
    except ValueError:
        pass
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):  # ValueError: a NUL in the text
        return None


def _with_embedded(address: Address) -> list[Address]:
    found: list[Address] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            found.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            found.append(address.sixtofour)
        if address not in (UNSPECIFIED, LOOPBACK) and any(
            address in prefix for prefix in EMBEDDING_IPV4
        ):
            found.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
        if address.teredo is not None:
            found.extend(address.teredo)
    return found


class PolicyResolver(AbstractResolver):
    """Resolves through `inner` and returns only allowed addresses (the connection is then
    made to one of them); raises EgressDeniedError when none is allowed."""

    def __init__(self, policy: EgressPolicy, inner: AbstractResolver | None = None) -> None:
        self._policy = policy
        self._inner = inner  # the default one needs a running loop: made at first use

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        if not self._policy.allows_name(host):
            raise EgressDeniedError(f"{host} is a denied name")
        if self._inner is None:
            self._inner = DefaultResolver()
        results = await self._inner.resolve(host, port, family)
        allowed = [r for r in results if self._policy.allows(ipaddress.ip_address(r["host"]))]
        if not allowed:
            addresses = ", ".join(sorted({r["host"] for r in results}))
            raise EgressDeniedError(f"{host} resolves only to denied addresses ({addresses})")
        return allowed

    async def close(self) -> None:
        if self._inner is not None:
            await self._inner.close()

    async def check_host(self, host: str) -> None:
        """Save-time check of a name: refused only when it resolves, and only to denied
        addresses (a name that does not resolve yet may be created later)."""
        try:
            await self.resolve(host, 443, socket.AF_UNSPEC)
        except EgressDeniedError as error:
            raise EgressDenied(str(error)) from None
        except OSError:
            return


def resolve_result(host: str, address: str, port: int, family: int) -> Any:
    """A ResolveResult as aiohttp expects (for stub resolvers in tests and tools)."""
    return {
        "hostname": host,
        "host": address,
        "port": port,
        "family": family,
        "proto": 0,
        "flags": socket.AI_NUMERICHOST,
    }

"""A stub DNS resolver for tests: names map to addresses a test controls (and can change)."""

from __future__ import annotations

import socket

from aiohttp.abc import AbstractResolver, ResolveResult

from gateway.destinations.egress import resolve_result


class StubResolver(AbstractResolver):
    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups: list[str] = []

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        self.lookups.append(host)
        if host not in self.names:
            raise OSError(f"stub: {host} does not resolve")
        return [
            resolve_result(
                host, address, port, socket.AF_INET6 if ":" in address else socket.AF_INET
            )
            for address in self.names[host]
        ]

    async def close(self) -> None:
        return None

"""Where pushes go out: one shared aiohttp session (keep-alive, pooled connections).

One attempt is bounded as a whole by the subscription's ackDeadline (connect, send, and reading
the answer); redirects are never followed; at most `max_response_bytes` of the answer is read.
Transport failures become an error kind the outcome policy understands.
"""

from __future__ import annotations

import asyncio
import ssl
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver

from gateway.egress import EgressDenied, EgressDeniedError, EgressPolicy, PolicyResolver
from gateway.pushes import PushRequest

MAX_RESPONSE_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class PushResult:
    status: int | None  # None when no HTTP answer came back
    error: str | None  # "timeout", "connect", "tls", "protocol" when status is None
    detail: str | None
    body: bytes
    retry_after: str | None


class HttpSink:
    def __init__(
        self,
        policy: EgressPolicy | None = None,
        resolver: AbstractResolver | None = None,
        max_response_bytes: int = MAX_RESPONSE_BYTES,
    ) -> None:
        self.policy = policy or EgressPolicy()
        self.resolver = PolicyResolver(self.policy, resolver)
        self._max_response_bytes = max_response_bytes
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, keepalive_timeout=30, resolver=self.resolver
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
            skip_auto_headers=("User-Agent",),
            headers={"user-agent": "ce-gateway"},
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def push(self, url: str, request: PushRequest, deadline: float) -> PushResult:
        assert self._session is not None, "HttpSink.start() first"
        try:
            self.policy.check_url(url)  # literal addresses never reach the resolver
        except EgressDenied as error:
            return _failed("egress-denied", str(error))
        try:
            async with asyncio.timeout(deadline):
                return await self._post(self._session, url, request)
        except TimeoutError:
            return _failed("timeout", f"no answer within {deadline:g}s")
        except (aiohttp.ClientSSLError, ssl.SSLError) as error:
            return _failed("tls", str(error))
        except aiohttp.ClientConnectorError as error:
            if isinstance(error.os_error, EgressDeniedError):
                return _failed("egress-denied", str(error.os_error))
            return _failed("connect", str(error))
        except (aiohttp.ClientError, ValueError) as error:
            return _failed("protocol", f"{error.__class__.__name__}: {error}")

    async def _post(
        self, session: aiohttp.ClientSession, url: str, request: PushRequest
    ) -> PushResult:
        async with session.post(
            url, data=request.body, headers=request.headers, allow_redirects=False
        ) as response:
            body = await self._read_capped(response)
            return PushResult(
                response.status, None, None, body, response.headers.get("retry-after")
            )

    async def _read_capped(self, response: aiohttp.ClientResponse) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in response.content.iter_chunked(16 * 1024):
            chunks.append(chunk[: self._max_response_bytes - size])
            size += len(chunks[-1])
            if size >= self._max_response_bytes:
                break  # the rest is never read; the connection is not reused
        return b"".join(chunks)


def _failed(kind: str, detail: str) -> PushResult:
    return PushResult(None, kind, detail[:256], b"", None)

"""Where pushes go out: one sink per destination type, behind one `push(target, ...)`.

`Sinks` is what the engine holds: it dispatches each push by its target's type, to `HttpSink`
(one shared aiohttp session: keep-alive, pooled connections) or
`gateway.delivery.sinks.sqs.SqsSink`. Every sink returns a `PushResult` the outcome policy
understands and never raises for a failed push.

An HTTP attempt is bounded as a whole by the subscription's ackDeadline (connect, send, and
reading the answer); redirects are never followed and cookies never kept; at most
`max_response_bytes` of the answer is read. Transport failures become an error kind (`timeout`,
`connect`, `tls`, ...).
"""

from __future__ import annotations

import ssl

import aiohttp
from aiohttp.abc import AbstractResolver

from gateway.deadlines import Deadlines
from gateway.delivery.pushes import PushRequest, PushResult
from gateway.delivery.sinks.sqs import SqsSink
from gateway.destinations.egress import (
    EgressDenied,
    EgressDeniedError,
    EgressPolicy,
    PolicyResolver,
)
from gateway.destinations.targets import HttpTarget, SqsTarget, Target

MAX_RESPONSE_BYTES = 64 * 1024
MAX_REMEMBERED_URLS = 10_000
_failed = PushResult.failed


class Sinks:
    """The engine's one way out: each push goes to the sink for its destination type."""

    def __init__(
        self, policy: EgressPolicy | None = None, resolver: AbstractResolver | None = None
    ) -> None:
        self.http = HttpSink(policy, resolver)
        self.sqs = SqsSink(self.http.policy, self.http.resolver)

    @property
    def resolver(self) -> PolicyResolver:
        """The egress-checking resolver every sink connects through (save-time checks too)."""
        return self.http.resolver

    async def start(self) -> None:
        await self.http.start()
        await self.sqs.start()

    async def close(self) -> None:
        await self.sqs.close()
        await self.http.close()

    async def push(self, target: Target, request: PushRequest, deadline: float) -> PushResult:
        if isinstance(target, SqsTarget):
            return await self.sqs.push(target, request, deadline)
        return await self.http.push(target, request, deadline)


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
        self._refusals: dict[str, str | None] = {}  # url -> why egress refuses it, or None
        self._deadlines = Deadlines()

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(
            limit=0, limit_per_host=0, keepalive_timeout=30, resolver=self.resolver
        )
        self._session = aiohttp.ClientSession(
            connector=connector,
            timeout=aiohttp.ClientTimeout(total=None),
            auto_decompress=False,
            # aiohttp would label a bytes body application/octet-stream: a push carries the
            # event's datacontenttype, and none when it has none (HTTP binding 3.1.1).
            skip_auto_headers=("User-Agent", "Content-Type"),
            headers={"user-agent": "ce-gateway"},
            # Every subscription shares this session: a cookie one subscriber sets must not
            # ride along on pushes to another (nor come back to it: pushes are stateless).
            cookie_jar=aiohttp.DummyCookieJar(),
        )

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def push(self, target: HttpTarget, request: PushRequest, deadline: float) -> PushResult:
        assert self._session is not None, "HttpSink.start() first"
        url = target.url
        refusal = self._refusal(url)  # literal addresses never reach the resolver
        if refusal is not None:
            return _failed("egress-denied", refusal)
        try:
            return await self._deadlines.run(self._post(self._session, url, request), deadline)
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

    def _refusal(self, url: str) -> str | None:
        """The policy's verdict on the URL itself, worked out once per URL (the policy is
        fixed for the process; names are checked again on every resolution)."""
        if url not in self._refusals:
            if len(self._refusals) > MAX_REMEMBERED_URLS:
                self._refusals.clear()
            try:
                self.policy.check_url(url)
                self._refusals[url] = None
            except EgressDenied as error:
                self._refusals[url] = str(error)
        return self._refusals[url]

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

"""A real subscriber for tests: an aiohttp server on 127.0.0.1 that records every request and
answers from a script (status, headers, body, and an optional real delay)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp import web

from gateway.clock import Clock


@dataclass(frozen=True)
class Received:
    path: str
    headers: dict[str, str]
    body: bytes
    at: float  # wall time on the injected clock (or the loop's time)

    @property
    def event_id(self) -> str:
        return self.headers.get("ce-id", "")


@dataclass(frozen=True)
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    delay: float = 0.0


Script = Callable[[Received], Answer]


class Subscriber:
    def __init__(self, clock: Clock | None = None) -> None:
        self.clock = clock
        self.received: list[Received] = []
        self.script: Script = lambda request: Answer()
        self.in_flight = 0
        self.max_in_flight = 0
        self.url = ""
        self.port = 0

    def for_event(self, event_id: str) -> list[Received]:
        return [request for request in self.received if request.event_id == event_id]

    async def _handle(self, request: web.Request) -> web.Response:
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            at = self.clock.now() if self.clock else asyncio.get_running_loop().time()
            received = Received(request.path, dict(request.headers), await request.read(), at)
            received = Received(
                received.path,
                {k.lower(): v for k, v in received.headers.items()},
                received.body,
                at,
            )
            self.received.append(received)
            answer = self.script(received)
            if answer.delay:
                await asyncio.sleep(answer.delay)
            return web.Response(status=answer.status, headers=answer.headers, body=answer.body)
        finally:
            self.in_flight -= 1


@contextlib.asynccontextmanager
async def run_subscriber(
    clock: Clock | None = None, host: str = "127.0.0.1", port: int = 0
) -> AsyncIterator[Subscriber]:
    subscriber = Subscriber(clock)
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", subscriber._handle)
    runner = web.AppRunner(app, access_log=None, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    subscriber.port = port
    subscriber.url = f"http://{host}:{port}"
    try:
        yield subscriber
    finally:
        await runner.cleanup()

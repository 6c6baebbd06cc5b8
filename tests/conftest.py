"""Shared fixtures: a real gateway served by Hypercorn on 127.0.0.1, over a temp-dir LMDB."""

from __future__ import annotations

import asyncio
import contextlib
import random
import socket
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
from aiohttp.abc import AbstractResolver
from hypercorn.asyncio import serve
from starlette.applications import Starlette

from gateway.app import Gateway, StoreOpener, create_app
from gateway.clock import Clock, ManualClock
from gateway.config.settings import Settings, parse_config
from gateway.server import hypercorn_config
from gateway.store.lmdb.store import LmdbStore
from gateway.store.open import open_store as open_configured_store
from tests.support.sqs_server import SqsServer, run_sqs_server


class FixedRouting:
    """Routing for an LMDB store opened by a test: every event of every topic fans out to
    the given (subscription, delay) pairs."""

    def __init__(self, *fanout: tuple[str, float]) -> None:
        self._fanout = list(fanout)

    def fanout(self, topic: str, attributes: Any) -> list[tuple[str, float]]:
        return self._fanout

    def subscriptions_of(self, topic: str) -> list[tuple[str, str | None]]:
        return []


BINARY_HEADERS = {
    "ce-specversion": "1.0",
    "ce-type": "com.example.order.created",
    "ce-source": "/shop",
    "content-type": "application/json",
}


def make_settings(data_dir: Path, **config: Any) -> Settings:
    config.setdefault("topics", [{"name": "orders"}])
    server = {"dataDir": str(data_dir), **config.pop("server", {})}
    return parse_config({"server": server, **config})


@dataclass
class RunningGateway:
    url: str
    app: Starlette
    client: httpx.AsyncClient

    @property
    def gateway(self) -> Gateway:
        gateway: Gateway = self.app.state.gateway
        return gateway

    @property
    def store(self) -> LmdbStore:
        assert self.gateway.store is not None
        return self.gateway.store

    def gateway_now(self) -> float:
        """The gateway's scheduling time (steady, on the injected clock)."""
        engine = self.gateway.engine
        assert engine is not None
        return engine.steady()

    async def publish(self, topic: str, event_id: str, **headers: str) -> httpx.Response:
        return await self.client.post(
            f"/topics/{topic}/events",
            headers={**BINARY_HEADERS, "ce-id": event_id, **headers},
            content=b'{"n": 1}',
        )

    async def publish_batch(self, topic: str, events: list[dict[str, Any]]) -> httpx.Response:
        return await self.client.post(
            f"/topics/{topic}/events",
            headers={"content-type": "application/cloudevents-batch+json"},
            content=orjson.dumps(events),
        )


@contextlib.asynccontextmanager
async def run_gateway(
    settings: Settings,
    *,
    clock: Clock | None = None,
    open_store: StoreOpener = open_configured_store,
    rng: random.Random | None = None,
    resolver: AbstractResolver | None = None,
) -> AsyncIterator[RunningGateway]:
    """Serve a gateway on a free loopback port until the block ends."""
    app = create_app(settings, clock=clock, open_store=open_store, rng=rng, resolver=resolver)
    listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    # Hypercorn takes ownership of the descriptor and closes it at shutdown.
    config = hypercorn_config(settings.server, bind=f"fd://{listener.detach()}")
    stop = asyncio.Event()
    task = asyncio.create_task(serve(app, config, shutdown_trigger=stop.wait))  # type: ignore[arg-type]
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(base_url=url, timeout=10) as client:
            await _wait_ready(client, task)
            yield RunningGateway(url, app, client)
    finally:
        stop.set()
        await asyncio.wait_for(task, 15)


async def _wait_ready(client: httpx.AsyncClient, task: asyncio.Task[Any]) -> None:
    for _ in range(200):
        if task.done():
            task.result()  # surface a startup failure
        with contextlib.suppress(httpx.TransportError):
            if (await client.get("/readyz")).status_code == 200:
                return
        await asyncio.sleep(0.02)
    raise TimeoutError("gateway did not become ready")


@pytest.fixture(scope="session")
def sqs_server() -> Iterator[SqsServer]:
    """moto's SQS on a free loopback port, for the whole session (each test makes its queues)."""
    with run_sqs_server() as server:
        yield server


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path / "data")


@pytest.fixture
async def gateway(settings: Settings) -> AsyncIterator[RunningGateway]:
    async with run_gateway(settings) as running:
        yield running


def assert_problem(response: httpx.Response, status: int, slug: str) -> dict[str, Any]:
    """Every 4xx/5xx is an RFC 9457 problem body with our stable type."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem: dict[str, Any] = response.json()
    assert problem["type"] == f"urn:ce-gateway:problem:{slug}"
    assert problem["status"] == status
    assert problem["detail"]
    return problem


LOOPBACK_EGRESS = {"allowedNetworks": ["127.0.0.1/32"]}


def subscription(name: str, url: str, topic: str = "orders", **policy: Any) -> dict[str, Any]:
    """A subscription spec in the YAML/JSON shape, pushing to `url` in binary mode."""
    content_mode = policy.pop("contentMode", "binary")
    return {
        "name": name,
        "topic": topic,
        "destination": {"http": {"url": url, "contentMode": content_mode}},
        **policy,
    }


async def settle(gw: RunningGateway, rounds: int = 3) -> None:
    """Wait until every lane is idle (nothing due, nothing in flight), several checks running."""
    engine = gw.gateway.engine
    assert engine is not None
    quiet = 0
    for _ in range(2000):
        await asyncio.sleep(0.002)
        quiet = quiet + 1 if engine.idle else 0
        if quiet >= rounds:
            return
    raise TimeoutError("the engine did not settle")


def status(gw: RunningGateway, name: str) -> dict[str, int]:
    counters = gw.store.deliveries.counters(name)
    settled = counters["acked"] + counters["deadlettered"] + counters["dropped"]
    return {**counters, "pending": counters["published"] - settled}


async def advance_to_next_due(gw: RunningGateway, clock: ManualClock, name: str) -> bool:
    """Move the injected clock to `name`'s next due delivery and let the engine run it.

    Returns False when nothing is pending any more."""
    await settle(gw)
    now = gw.gateway_now()
    due = gw.store.deliveries.next_due(name, after=now)
    if due is None:
        return False
    clock.advance(max(0.0, due - now) + 0.001)
    await settle(gw)
    return True

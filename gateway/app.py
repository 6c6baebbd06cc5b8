"""Wires the parts into one Starlette app. No logic lives here, only construction and lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

from aiohttp.abc import AbstractResolver
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response

from gateway import console, openapi
from gateway.admin import ConfigApi, DeadLettersApi, EventsApi, SubscriptionsApi, TopicsApi
from gateway.admin.pretry import PretryApi
from gateway.clock import Clock, SteadyTime, SystemClock
from gateway.config.settings import Settings
from gateway.delivery.engine import Engine
from gateway.delivery.sinks.http import Sinks
from gateway.events import Limits
from gateway.ingress.auth import AuthMiddleware, load_tokens
from gateway.ingress.framing import FramingMiddleware
from gateway.ingress.receiver import Receiver
from gateway.ops import health
from gateway.ops.collector import GatewayCollector, Sources
from gateway.ops.health import SHUTTING_DOWN
from gateway.ops.metrics import Metrics
from gateway.ops.observability import measure_loop_lag, metrics_operation
from gateway.ops.retention import run_retention
from gateway.problems import (
    GatewayError,
    InvalidRequest,
    MethodNotAllowed,
    NotFound,
    problem_response,
)
from gateway.resources.declarative import ApplyResult, apply_config, reload_config
from gateway.resources.subscriptions import RoutingTable, SubscriptionRegistry, egress_policy
from gateway.resources.topics import TopicRegistry
from gateway.store.base import Routing, Store
from gateway.store.open import open_store as open_configured_store

log = logging.getLogger("gateway")
# (settings, routing, on_commit) -> the store; `gateway.store.open.open_store` by default.
StoreOpener = Callable[[Settings, Routing, Callable[[int, float], None]], Store]


@dataclass
class Gateway:
    """What a running app holds; tests reach the store and clock through `app.state.gateway`."""

    settings: Settings
    clock: Clock
    readiness: health.Readiness = field(default_factory=health.Readiness)
    rng: random.Random = field(default_factory=random.Random)
    metrics: Metrics = field(default_factory=Metrics)
    sink: Sinks = field(default_factory=Sinks)
    routing: RoutingTable = field(default_factory=RoutingTable)  # given to the store at open
    store: Store | None = None
    topics: TopicRegistry | None = None
    subscriptions: SubscriptionRegistry | None = None
    engine: Engine | None = None
    tasks: list[asyncio.Task[None]] = field(default_factory=list)
    operations: list[openapi.Operation] = field(default_factory=list)

    async def reload(self) -> ApplyResult:
        """Apply the configuration file again (SIGHUP, POST /v1/config:reload)."""
        assert self.topics is not None and self.subscriptions is not None
        return await reload_config(
            self.settings.source, self.settings, self.topics, self.subscriptions
        )


def create_app(
    settings: Settings,
    *,
    clock: Clock | None = None,
    open_store: StoreOpener = open_configured_store,
    rng: random.Random | None = None,
    resolver: AbstractResolver | None = None,
    routing: RoutingTable | None = None,
    metrics: Metrics | None = None,
) -> Starlette:
    """The gateway as an ASGI app. `clock`, `rng` and `resolver` (DNS for pushes) are the
    seams tests inject; `routing` and `metrics` are those a store opened beforehand (the CLI
    does) was given."""
    gateway = Gateway(settings=settings, clock=clock or SystemClock(), rng=rng or random.Random())
    gateway.routing = routing or gateway.routing
    gateway.metrics = metrics or gateway.metrics
    gateway.sink = Sinks(egress_policy(settings), resolver)
    now = SteadyTime(gateway.clock)
    app = Starlette(
        middleware=[
            Middleware(FramingMiddleware),
            Middleware(
                AuthMiddleware,
                tokens=load_tokens(settings.auth),
                admin_port=settings.server.admin_port,
            ),
        ],
        exception_handlers={
            GatewayError: _gateway_error,
            HTTPException: _http_error,
            ClientDisconnect: _body_cut_off,
            Exception: _unexpected_error,
        },
        lifespan=lambda app: _lifespan(gateway, open_store, now, app),
    )
    app.state.gateway = gateway
    gateway.operations = [
        *health.operations(gateway.readiness),
        metrics_operation(gateway.metrics),
        openapi.openapi_operation(lambda: gateway.operations),
    ]
    app.router.routes.extend(openapi.routes(gateway.operations))
    console.install(app, gateway)  # GET /console (issue 23)
    return app


@contextlib.asynccontextmanager
async def _lifespan(
    gateway: Gateway, open_store: StoreOpener, now: SteadyTime, app: Starlette
) -> AsyncIterator[None]:
    store = await asyncio.to_thread(
        open_store, gateway.settings, gateway.routing, gateway.metrics.observe_commit
    )
    gateway.store = store
    try:
        topics, subscriptions = await _apply_config(gateway, store)
        engine = await _start_engine(gateway, store, subscriptions, now)
        served = _build_apis(gateway, store, topics, subscriptions, engine, now)
        gateway.operations.extend(served)
        # Ahead of health and metrics: the router tries routes in order, publishes first.
        app.router.routes[:0] = openapi.routes(served)
        sources = Sources(store, topics, subscriptions, engine, gateway.readiness, now)
        _start_background(gateway, sources, engine)
        gateway.readiness.set_ready()
        yield
    finally:
        gateway.readiness.set_not_ready(SHUTTING_DOWN)
        for task in gateway.tasks:
            task.cancel()
        await asyncio.gather(*gateway.tasks, return_exceptions=True)
        if gateway.engine is not None:
            await gateway.engine.stop(grace=gateway.settings.server.graceful_timeout)
        await asyncio.to_thread(store.close)


async def _start_engine(
    gateway: Gateway, store: Store, subscriptions: SubscriptionRegistry, now: SteadyTime
) -> Engine:
    """Start the push lanes and keep them in step with subscription changes."""
    engine = Engine(
        store, subscriptions, gateway.sink, gateway.clock, now, gateway.rng, gateway.metrics
    )
    gateway.engine = engine
    await engine.start()
    subscriptions.on_change = engine.sync
    return engine


def _build_apis(
    gateway: Gateway,
    store: Store,
    topics: TopicRegistry,
    subscriptions: SubscriptionRegistry,
    engine: Engine,
    now: SteadyTime,
) -> list[openapi.Operation]:
    """The ingress, admin and pretry routes, each declared once as an `Operation`."""
    server = gateway.settings.server
    receiver = Receiver(
        store,
        topics,
        gateway.readiness,
        now,
        server.max_body_size,
        gateway.metrics,
        Limits(server.max_event_size, server.max_extensions),
        on_published=lambda topic, result: engine.wake(result.subscriptions),
    )
    return [
        *receiver.operations(),
        *TopicsApi(store, topics, subscriptions).operations(),
        *EventsApi(store, topics, subscriptions, gateway.clock, now).operations(),
        *SubscriptionsApi(store, subscriptions, gateway.sink.resolver).operations(),
        *DeadLettersApi(store, topics, subscriptions, now, engine.wake).operations(),
        *ConfigApi(gateway.reload).operations(),
        *PretryApi(
            store, topics, subscriptions, receiver, gateway.sink.resolver, gateway.clock.now
        ).operations(),
    ]


def _start_background(gateway: Gateway, sources: Sources, engine: Engine) -> None:
    """The store-full readiness check, metrics over `sources`, the loop-lag probe, the
    retention sweep and the store's upkeep (LMDB: trimming its mapped memory)."""
    store, metrics = sources.store, gateway.metrics
    gateway.readiness.checks.append(lambda: health.STORE_FULL if store.full else None)
    metrics.watch(GatewayCollector(sources, lambda: metrics.loop_lag))
    gateway.tasks.append(asyncio.create_task(measure_loop_lag(gateway.metrics)))
    gateway.tasks.append(
        asyncio.create_task(run_retention(store, sources.now, gateway.clock, engine.wake))
    )
    gateway.tasks.append(asyncio.create_task(store.maintain()))


async def _apply_config(
    gateway: Gateway, store: Store
) -> tuple[TopicRegistry, SubscriptionRegistry]:
    """Load what the store holds and apply the file; the registry fills `gateway.routing`,
    the store's routing since it was opened."""
    topics = TopicRegistry(store)
    await topics.load()
    egress = egress_policy(gateway.settings)
    registry = SubscriptionRegistry(store, gateway.routing, topics.exists, egress)
    await registry.load()
    await apply_config(gateway.settings, topics, registry)
    gateway.topics, gateway.subscriptions = topics, registry
    return topics, registry


async def _gateway_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, GatewayError)
    return problem_response(error, instance=request.url.path)


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    if error.status_code == 405:
        return problem_response(MethodNotAllowed(f"{request.method} is not allowed here"))
    if error.status_code == 404:
        return problem_response(NotFound(f"no route {request.url.path}"))
    generic = GatewayError(str(error.detail))
    generic.status = error.status_code  # type: ignore[misc]
    return problem_response(generic)


async def _body_cut_off(request: Request, error: Exception) -> Response:
    """The body stopped before its end: the client went away, or the server dropped it after
    `server.readTimeout` of silence. A client's fault, answered (if anyone still listens) as
    an incomplete request, not logged as a server error."""
    return problem_response(
        InvalidRequest(
            "the request body ended before it was complete (the client disconnected, or sent "
            "nothing for server.readTimeout)",
            field="body",
        )
    )


async def _unexpected_error(request: Request, error: Exception) -> Response:
    log.exception("unhandled error on %s %s", request.method, request.url.path)
    return problem_response(GatewayError("unexpected error; see the gateway log"))

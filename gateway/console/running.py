"""What the console reads of the running gateway (`gateway.app.Gateway` is one).

A Protocol, so the console, a layer below the app's wiring, never imports it. The store, the
registries and the engine are there once the app has started.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

if TYPE_CHECKING:
    from gateway import openapi
    from gateway.clock import Clock
    from gateway.config.settings import Settings
    from gateway.delivery.engine import Engine
    from gateway.ops.metrics import Metrics
    from gateway.resources.subscriptions import SubscriptionRegistry
    from gateway.resources.topics import TopicRegistry
    from gateway.store.base import Store


class GatewayParts(Protocol):
    @property
    def settings(self) -> Settings: ...

    @property
    def clock(self) -> Clock: ...

    @property
    def metrics(self) -> Metrics: ...

    @property
    def operations(self) -> list[openapi.Operation]: ...

    @property
    def store(self) -> Store | None: ...

    @property
    def topics(self) -> TopicRegistry | None: ...

    @property
    def subscriptions(self) -> SubscriptionRegistry | None: ...

    @property
    def engine(self) -> Engine | None: ...

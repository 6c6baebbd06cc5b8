"""The delivery engine: the lanes' registry, one lane per subscription (`gateway.delivery.lane`).

It starts a lane for every subscription, keeps each lane's policy current as subscriptions
change, retires the lanes of removed ones, wakes lanes when commits create deliveries for them,
and stops them all at shutdown. What one attempt does is the lane's business.

It also answers the scrape-time collector's questions about the lanes
(`gateway.ops.collector.LaneStatistics`).
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Iterable

from gateway.clock import Clock
from gateway.delivery.failure_log import DeliveryLog
from gateway.delivery.lane import Lane
from gateway.delivery.recorder import Recorder
from gateway.delivery.sinks.http import Sinks
from gateway.ops.metrics import Metrics
from gateway.resources.subscriptions import Subscription, SubscriptionRegistry
from gateway.store.base import Store


class Engine:
    def __init__(
        self,
        store: Store,
        subscriptions: SubscriptionRegistry,
        sink: Sinks,
        clock: Clock,
        steady: Callable[[], float],
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        """`steady`: the scheduling time due times are on; `clock`: sleeping, measuring and
        wall timestamps (see `gateway.delivery.lane`)."""
        self.store = store
        self.subscriptions = subscriptions
        self.sink = sink
        self.clock = clock
        self.steady = steady
        self.rng = rng or random.Random()
        self.metrics = metrics or Metrics()
        self.lanes: dict[str, Lane] = {}
        self.stopped = False

    async def start(self) -> None:
        await self.sink.start()
        self.sync()

    def sync(self) -> None:
        """Give every subscription a lane, with its current policy; retire removed ones."""
        if self.stopped:  # a reload while the server drains must not start lanes again
            return
        current = {subscription.name: subscription for subscription in self.subscriptions.all()}
        for name in list(self.lanes):
            if name not in current:
                self.lanes.pop(name).stop()
        for name, subscription in current.items():
            lane = self.lanes.get(name)
            if lane is None:
                self.lanes[name] = self._lane(subscription)
            else:
                lane.update(subscription)

    def _lane(self, subscription: Subscription) -> Lane:
        return Lane(
            subscription,
            store=self.store,
            sink=self.sink,
            recorder=Recorder(self.store, self.steady, self.wake),
            log=DeliveryLog(subscription.name, self.clock, self.steady),
            metrics=self.metrics,
            steady=self.steady,
            clock=self.clock,
            jitter=self.rng.random,
        )

    def wake(self, names: Iterable[str]) -> None:
        for name in names:
            lane = self.lanes.get(name)
            if lane is not None:
                lane.wake()

    async def stop(self, grace: float = 0.0) -> None:
        """Stop taking new work; give attempts in flight up to `grace` seconds to finish and
        record their outcome (fewer duplicates after a restart). Whatever is still in flight
        then is abandoned unrecorded, so it stays pending and is pushed again later."""
        self.stopped = True
        lanes = list(self.lanes.values())
        self.lanes.clear()
        for lane in lanes:
            lane.stop_taking()
        workers = [worker for lane in lanes for worker in lane.workers]
        if workers and grace > 0:
            await asyncio.wait(workers, timeout=grace)
        for lane in lanes:
            lane.stop()
        await asyncio.gather(*(lane.finished() for lane in lanes))
        await self.sink.close()

    @property
    def idle(self) -> bool:
        return all(lane.idle for lane in self.lanes.values())

    # LaneStatistics, read at scrape time.

    def concurrency(self, subscription: str) -> int:
        """Pushes the subscription's lane allows in flight now (0 without a lane)."""
        lane = self.lanes.get(subscription)
        return lane.limit.current if lane else 0

    def in_flight(self, subscription: str) -> int:
        """Deliveries the subscription's lane holds, not yet settled (0 without a lane)."""
        lane = self.lanes.get(subscription)
        return len(lane.in_flight) if lane else 0

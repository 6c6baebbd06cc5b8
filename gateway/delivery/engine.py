"""The delivery engine: carries out the retry policy, durably, one lane per subscription.

Each subscription has a lane (an asyncio task) that takes due deliveries from the store's
due-time index, a page at a time and never more than its concurrency allows, pushes them, and
records each outcome. A lane is woken when a commit creates deliveries for it (no polling on the
happy path) and otherwise sleeps until its earliest due time. Lanes share nothing, so one slow
or failing destination never holds back another subscription, and one poison event never blocks
the events behind it (it is simply rescheduled).

One attempt reads as steps: build the request, push, classify, decide, record.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import random
from collections.abc import Callable, Iterable
from typing import Any

import orjson
from prometheus_client import Counter

from gateway.clock import Clock
from gateway.delivery.concurrency import AdaptiveLimit
from gateway.delivery.failure_log import DeliveryLog
from gateway.delivery.pushes import PushRequest, PushResult, build_push, with_credentials
from gateway.delivery.recorder import Recorder
from gateway.delivery.sinks.http import Sinks
from gateway.destinations.targets import Target
from gateway.ops.metrics import Metrics
from gateway.policy.backoff import next_delay, retry_after_seconds
from gateway.policy.deadletters import MAX_DL_BODY, Failure
from gateway.policy.outcomes import (
    INTERNAL_ERROR,
    Ack,
    DeadLetter,
    Decision,
    RetryAt,
    Verdict,
    classify_error,
    classify_status,
    decide,
    delivery_code,
)
from gateway.resources.subscriptions import Subscription, SubscriptionRegistry
from gateway.store.lmdb.deliveries import DueDelivery, Settlement
from gateway.store.lmdb.store import LmdbStore

ERROR_COOLDOWN = 1.0


class Engine:
    def __init__(
        self,
        store: LmdbStore,
        subscriptions: SubscriptionRegistry,
        sink: Sinks,
        clock: Clock,
        now: Callable[[], float],
        rng: random.Random | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        self.store = store
        self.subscriptions = subscriptions
        self.sink = sink
        self.clock = clock
        self.now = now
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
                self.lanes[name] = Lane(subscription, self)
            else:
                lane.update(subscription)

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


class Lane:
    """A subscription's deliveries: a worker per slot, and a supervisor that starts workers
    when there is room and something is due, and otherwise sleeps until woken or due."""

    def __init__(self, subscription: Subscription, engine: Engine) -> None:
        self.subscription = subscription
        self.engine = engine
        self.limit = AdaptiveLimit(subscription.max_concurrency)
        # A worker pushes one delivery at a time and takes the next itself, so a busy lane
        # costs no task or wake-up per push. A slot is held until the outcome is committed,
        # not just until the answer: after a crash, only what the slots held can be pushed
        # twice (RELIABILITY R2: at most one duplicate per in-flight slot).
        self.workers: set[asyncio.Task[None]] = set()
        self.in_flight: set[int] = set()  # seqs taken, not yet settled
        # Due deliveries read a page at a time (not one store read per push). A page lasts
        # about one push's time; a delivery settled meanwhile by something else (expiry,
        # purge) may still be pushed once, which at-least-once allows.
        self._ready: collections.deque[DueDelivery] = collections.deque()
        self._taking = True
        self._recorder = Recorder(engine.store, engine.now, engine.wake)
        self.waiting = False
        self._durations = engine.metrics.delivery_duration.labels(subscription.name)
        # Each (outcome, code) series bound once: a dict lookup per push, not a `labels()`.
        self._series: dict[tuple[str, str], Counter] = {}
        self._acked = self._counter("acked", "2xx")
        self.log = DeliveryLog(subscription.name, engine.clock, engine.now)
        self._wake = asyncio.Event()
        self._task = asyncio.create_task(self._run(), name=f"lane:{subscription.name}")

    @property
    def idle(self) -> bool:
        return self.waiting and not self.workers and not self._ready and not self._wake.is_set()

    def update(self, subscription: Subscription) -> None:
        self.subscription = subscription
        self.limit.resize(subscription.max_concurrency)
        self.wake()

    def wake(self) -> None:
        self._wake.set()

    def stop_taking(self) -> None:
        """Workers finish the delivery they hold and stop; nothing new starts."""
        self._taking = False
        self._task.cancel()

    def stop(self) -> None:
        self.stop_taking()
        for worker in self.workers:
            worker.cancel()
        self._recorder.cancel()

    async def finished(self) -> None:
        await asyncio.gather(self._task, *self.workers, return_exceptions=True)

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self.engine.now()
            try:
                self._start_workers(now)
                await self._wait(now)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a lane must outlive a bad read: log, pause, carry on
                self.log.lane_failed(error, ERROR_COOLDOWN)
                await self.engine.clock.sleep(ERROR_COOLDOWN)

    def _room(self) -> int:
        return self.limit.current - len(self.workers)

    def _start_workers(self, now: float) -> None:
        while self._room() > 0:
            delivery = self._take(now)
            if delivery is None:
                return
            self.workers.add(asyncio.create_task(self._work(delivery)))

    def _take(self, now: float) -> DueDelivery | None:
        """The next due delivery, marked in flight: from the page read last, or a new page."""
        if not self._ready:
            self._ready.extend(
                self.engine.store.deliveries.due(
                    self.subscription.name, now, self.limit.current, self.in_flight
                )
            )
        if not self._ready:
            return None
        delivery = self._ready.popleft()
        self.in_flight.add(delivery.seq)
        return delivery

    async def _wait(self, now: float) -> None:
        """Until woken (new deliveries, a free slot, a policy change) or the next due time."""
        delay = None
        if self._room() > 0:
            due = self.engine.store.deliveries.next_due(self.subscription.name, after=now)
            delay = None if due is None else max(0.0, due - now)
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
        if delay is not None:
            waiters.add(asyncio.ensure_future(self.engine.clock.sleep(delay)))
        self.waiting = True
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting = False
            for waiter in waiters:
                waiter.cancel()

    async def _work(self, delivery: DueDelivery) -> None:
        """One slot: attempt deliveries one after another until none is due or the slot is
        no longer ours (the limit shrank, the lane stops)."""
        try:
            current: DueDelivery | None = delivery
            while current is not None:
                await self._attempt(current)
                current = self._next()
        finally:
            self.workers.discard(asyncio.current_task())
            self._wake.set()  # the supervisor decides what the free slot does next

    def _next(self) -> DueDelivery | None:
        workers = len(self.workers)
        if not self._taking or workers > self.limit.current:
            return None
        if workers < self.limit.current:
            self._wake.set()  # room for more workers (the limit grew): the supervisor starts them
        return self._take(self.engine.now())

    async def _attempt(self, delivery: DueDelivery) -> None:
        try:
            settlement, code = await self._try(delivery)
            await self._recorder.record(settlement)
            self._settled(delivery, settlement, code)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # nothing recorded: it stays pending, tried again later
            self._counter("error", "other").inc()
            self.log.internal(delivery.payload, error)
            with contextlib.suppress(asyncio.CancelledError):
                await self.engine.clock.sleep(ERROR_COOLDOWN)
        finally:
            self.in_flight.discard(delivery.seq)

    async def _try(self, delivery: DueDelivery) -> tuple[Settlement, str]:
        """The attempt's settlement, and its `code` label."""
        subscription = self.subscription
        if delivery.payload is None or delivery.state.expires <= self.engine.now():
            # Expired, or its event is gone with a deleted topic: settle it, never leave it stuck.
            decision = DeadLetter("expired")
            failure = _last_failure(delivery)
            return self._settlement(delivery, decision, delivery.state.attempts, failure), "other"
        try:
            request = self._request(delivery.payload)
        except Exception as error:  # a stored event the push cannot be built from (issue 19)
            result = PushResult.failed(INTERNAL_ERROR, f"{error.__class__.__name__}: {error}")
            return self._judge(delivery, result, unreadable=True), "other"
        started = self.engine.clock.monotonic()
        result = await self.engine.sink.push(
            subscription.target, request, subscription.ack_deadline
        )
        self._durations.observe(self.engine.clock.monotonic() - started)
        return self._judge(delivery, result), delivery_code(result.status, result.error)

    def _request(self, payload: bytes) -> PushRequest:
        target = self.subscription.target
        return with_credentials(
            build_push(payload, target.content_mode),
            self.subscription.name,
            target,
            int(self.engine.clock.now()),
        )

    def _counter(self, outcome: str, code: str) -> Counter:
        series = self._series.get((outcome, code))
        if series is None:
            series = self.engine.metrics.deliveries.labels(self.subscription.name, outcome, code)
            self._series[(outcome, code)] = series
        return series

    def _settled(self, delivery: DueDelivery, settlement: Settlement, code: str) -> None:
        """Count the recorded outcome; log one that is not an ack."""
        decision = settlement.decision
        if isinstance(decision, Ack):
            (self._acked if code == "2xx" else self._counter("acked", code)).inc()
            return
        if isinstance(decision, RetryAt):
            outcome = "retried"
        else:
            outcome = "deadlettered" if settlement.dead_letter_topic else "dropped"
        self._counter(outcome, code).inc()
        self.log.settled(settlement, delivery.payload)

    def _judge(
        self, delivery: DueDelivery, result: PushResult, unreadable: bool = False
    ) -> Settlement:
        """`unreadable`: the push could not be built from the stored event, which says
        nothing about the destination (its concurrency is left alone)."""
        subscription = self.subscription
        attempts = delivery.state.attempts + 1
        verdict = _verdict(result, subscription.permanent_codes)
        if not unreadable:
            self._adapt(verdict)
        retry_after = retry_after_seconds(result.retry_after, self.engine.clock.now())
        delay = next_delay(subscription.retry, attempts, self.engine.rng.random(), retry_after)
        decision = decide(
            verdict,
            attempts=attempts,
            max_attempts=subscription.max_attempts,
            now=self.engine.now(),
            delay=delay,
            expires_at=delivery.state.expires,
        )
        failure = None if verdict is Verdict.ACK else _failure(result, subscription.target)
        dead_letterable = not unreadable or _is_json_object(delivery.payload)
        return self._settlement(delivery, decision, attempts, failure, dead_letterable)

    def _settlement(
        self,
        delivery: DueDelivery,
        decision: Decision,
        attempts: int,
        failure: Failure | None,
        dead_letterable: bool = True,
    ) -> Settlement:
        """`dead_letterable`: False for a stored event no dead letter can be made of (it is
        then dropped when given up)."""
        return Settlement(
            subscription=self.subscription.name,
            seq=delivery.seq,
            decision=decision,
            attempts=attempts,
            failure=failure,
            dead_letter_topic=self.subscription.dead_letter_topic if dead_letterable else None,
            due=delivery.state.due,
            wall=self.engine.clock.now(),
        )

    def _adapt(self, verdict: Verdict) -> None:
        if verdict is Verdict.RETRY:
            self.limit.on_failure()
        else:  # an ack, or a permanent refusal of one event: the destination is healthy
            self.limit.on_success()


def _verdict(result: PushResult, permanent_codes: frozenset[int] | None) -> Verdict:
    if result.status is not None:
        return classify_status(result.status, permanent_codes)
    return classify_error(result.error or "protocol")


def _failure(result: PushResult, target: Target) -> Failure:
    if result.status is not None:
        # Only 1 KiB is ever kept (dlbody): store no more than that with every retry.
        body = target.redact(result.body)[: MAX_DL_BODY + 4]
        return Failure(str(result.status), f"HTTP {result.status}", body)
    detail = None if result.detail is None else target.redact(result.detail.encode()).decode()
    return Failure(result.error, detail, None)


def _is_json_object(payload: bytes | None) -> bool:
    try:
        return payload is not None and isinstance(orjson.loads(payload), dict)
    except orjson.JSONDecodeError:
        return False


def _last_failure(delivery: DueDelivery) -> Failure:
    state = delivery.state
    return Failure(state.last_status, state.last_error, state.last_body)

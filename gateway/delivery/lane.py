"""One subscription's lane: its workers, and one attempt read as its steps.

A lane takes due deliveries from the store's due-time index, a page at a time and never more
than its concurrency allows, pushes them, and records each outcome. It is woken when a commit
creates deliveries for it (no polling on the happy path) and otherwise sleeps until its earliest
due time. Lanes share nothing, so one slow or failing destination never holds back another
subscription, and one poison event never blocks the events behind it (it is rescheduled).

Two times, never mixed up:
- `steady()`: scheduling time (due times, expiry, what the store is asked for). Epoch-like, but
  it advances with monotonic time, so a wall-clock step neither expires nor stalls anything.
- `clock`: sleeping and measuring (`clock.sleep`, `clock.monotonic`), and `clock.now()`, the
  wall time, read only for timestamps that leave the gateway (signatures, `Retry-After` dates,
  the wall time of a settlement).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

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
from gateway.resources.subscriptions import Subscription
from gateway.store.base import Store
from gateway.store.records import LOG_RESPONSE, Attempt, Delivery, Settlement

ERROR_COOLDOWN = 1.0


class Outcome(NamedTuple):
    """An attempt's settlement, and the `code` label it is counted under."""

    settlement: Settlement
    code: str


class Lane:
    """A subscription's deliveries: a worker per slot, and a supervisor that starts workers
    when there is room and something is due, and otherwise sleeps until woken or due."""

    def __init__(
        self,
        subscription: Subscription,
        *,
        store: Store,
        sink: Sinks,
        recorder: Recorder,
        log: DeliveryLog,
        metrics: Metrics,
        steady: Callable[[], float],
        clock: Clock,
        jitter: Callable[[], float],
    ) -> None:
        """`steady`: scheduling time; `clock`: sleeping, measuring and wall timestamps (see
        the module's docstring); `jitter`: a uniform draw in [0, 1) for the backoff."""
        self.subscription = subscription
        self._store = store
        self._sink = sink
        self._recorder = recorder
        self.log = log
        self._steady = steady
        self._clock = clock
        self._jitter = jitter
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
        self._ready: collections.deque[Delivery] = collections.deque()
        self._taking = True
        self.waiting = False
        self._deliveries = metrics.deliveries
        self._durations = metrics.delivery_duration.labels(subscription.name)
        # Each (outcome, code) series bound once: a dict lookup per push, not a `labels()`.
        self._series: dict[tuple[str, str], Counter] = {}
        self._acked = self._counter("acked", "2xx")
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

    # The supervisor and its workers.

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            now = self._steady()
            try:
                await self._start_workers(now)
                await self._wait(now)
            except asyncio.CancelledError:
                raise
            except Exception as error:  # a lane must outlive a bad read: log, pause, carry on
                self.log.lane_failed(error, ERROR_COOLDOWN)
                await self._clock.sleep(ERROR_COOLDOWN)

    def _room(self) -> int:
        return self.limit.current - len(self.workers)

    async def _start_workers(self, now: float) -> None:
        while self._room() > 0:
            delivery = await self._take(now)
            if delivery is None:
                return
            self.workers.add(asyncio.create_task(self._work(delivery)))

    async def _take(self, now: float) -> Delivery | None:
        """The next due delivery, marked in flight: from the page read last, or a new page."""
        if not self._ready:
            self._ready.extend(
                await self._store.claim(
                    self.subscription.name, now, self.limit.current, self.in_flight
                )
            )
        while self._ready:
            delivery = self._ready.popleft()
            # A store that suspends in `claim` lets two workers read overlapping pages.
            if delivery.seq not in self.in_flight:
                self.in_flight.add(delivery.seq)
                return delivery
        return None

    async def _wait(self, now: float) -> None:
        """Until woken (new deliveries, a free slot, a policy change) or the next due time."""
        delay = None
        if self._room() > 0:
            due = await self._store.next_due(self.subscription.name, after=now)
            delay = None if due is None else max(0.0, due - now)
        waiters: set[asyncio.Future[Any]] = {asyncio.ensure_future(self._wake.wait())}
        if delay is not None:
            waiters.add(asyncio.ensure_future(self._clock.sleep(delay)))
        self.waiting = True
        try:
            await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self.waiting = False
            for waiter in waiters:
                waiter.cancel()

    async def _work(self, delivery: Delivery) -> None:
        """One slot: attempt deliveries one after another until none is due or the slot is
        no longer ours (the limit shrank, the lane stops)."""
        try:
            current: Delivery | None = delivery
            while current is not None:
                await self.attempt(current)
                current = await self._next()
        finally:
            self.workers.discard(asyncio.current_task())
            self._wake.set()  # the supervisor decides what the free slot does next

    async def _next(self) -> Delivery | None:
        workers = len(self.workers)
        if not self._taking or workers > self.limit.current:
            return None
        if workers < self.limit.current:
            self._wake.set()  # room for more workers (the limit grew): the supervisor starts them
        return await self._take(self._steady())

    # One attempt.

    async def attempt(self, delivery: Delivery) -> None:
        """One delivery, top to bottom: expired? build, push, judge, record, count."""
        try:
            payload = delivery.payload
            if payload is None or self._expired(delivery):
                outcome = self._expire(delivery)
            else:
                request = self._build(payload)
                if isinstance(request, PushResult):  # no push can be made of the stored event
                    outcome = self._judge(delivery, request, unreadable=True)
                else:
                    result, seconds = await self._push(request)
                    outcome = self._judge(delivery, result, seconds=seconds)
            await self._recorder.record(outcome.settlement)
            self._count(delivery, outcome)
        except asyncio.CancelledError:
            raise
        except Exception as error:  # nothing recorded: it stays pending, tried again later
            await self._failed_inside(delivery, error)
        finally:
            self.in_flight.discard(delivery.seq)

    def _expired(self, delivery: Delivery) -> bool:
        return delivery.expires <= self._steady()

    def _expire(self, delivery: Delivery) -> Outcome:
        """Expired, or its event is gone with a deleted topic: settle it, never leave it stuck
        (nothing is pushed, so its attempts stay as they were)."""
        failure = delivery.last_failure
        decision = DeadLetter("expired")
        return Outcome(self._settlement(delivery, decision, delivery.attempts, failure), "other")

    def _build(self, payload: bytes) -> PushRequest | PushResult:
        """The signed request; or, for a stored event no push can be built from (issue 19),
        the failed result the attempt is judged by."""
        target = self.subscription.target
        try:
            request = build_push(payload, target.content_mode)
            return with_credentials(request, self.subscription.name, target, int(self._clock.now()))
        except Exception as error:
            return PushResult.failed(INTERNAL_ERROR, f"{error.__class__.__name__}: {error}")

    async def _push(self, request: PushRequest) -> tuple[PushResult, float]:
        """The result and how long the push took (seconds)."""
        subscription = self.subscription
        started = self._clock.monotonic()
        result = await self._sink.push(subscription.target, request, subscription.ack_deadline)
        seconds = self._clock.monotonic() - started
        self._durations.observe(seconds)
        return result, seconds

    def _judge(
        self,
        delivery: Delivery,
        result: PushResult,
        unreadable: bool = False,
        seconds: float = 0.0,
    ) -> Outcome:
        """What the result means and what is recorded next. `unreadable`: the push could not
        be built from the stored event, which says nothing about the destination (its
        concurrency is left alone, and it is dropped when given up unless a dead letter can
        be made of it)."""
        subscription = self.subscription
        attempts = delivery.attempts + 1
        verdict = _verdict(result, subscription.permanent_codes)
        if not unreadable:
            self._adapt(verdict)
        decision = decide(
            verdict,
            attempts=attempts,
            max_attempts=subscription.max_attempts,
            now=self._steady(),
            delay=self._backoff(result, attempts) if verdict is Verdict.RETRY else 0.0,
            expires_at=delivery.expires,
        )
        failure = None if verdict is Verdict.ACK else _failure(result, subscription.target)
        dead_letterable = not unreadable or _is_json_object(delivery.payload)
        attempt = _attempt(result, self.subscription.target, self._clock.now(), seconds)
        settlement = self._settlement(
            delivery, decision, attempts, failure, dead_letterable, attempt
        )
        return Outcome(settlement, delivery_code(result.status, result.error))

    def _backoff(self, result: PushResult, attempts: int) -> float:
        """The gap before a retry: what `Retry-After` asks (an HTTP date is wall time), else
        the subscription's backoff with jitter."""
        retry_after = retry_after_seconds(result.retry_after, self._clock.now())
        return next_delay(self.subscription.retry, attempts, self._jitter(), retry_after)

    def _adapt(self, verdict: Verdict) -> None:
        if verdict is Verdict.RETRY:
            self.limit.on_failure()
        else:  # an ack, or a permanent refusal of one event: the destination is healthy
            self.limit.on_success()

    def _settlement(
        self,
        delivery: Delivery,
        decision: Decision,
        attempts: int,
        failure: Failure | None,
        dead_letterable: bool = True,
        attempt: Attempt | None = None,
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
            due=delivery.due,
            wall=self._clock.now(),
            attempt=attempt,
        )

    def _count(self, delivery: Delivery, outcome: Outcome) -> None:
        """Count the recorded outcome; log one that is not an ack."""
        settlement, code = outcome
        decision = settlement.decision
        if isinstance(decision, Ack):
            (self._acked if code == "2xx" else self._counter("acked", code)).inc()
            return
        if isinstance(decision, RetryAt):
            kind = "retried"
        else:
            kind = "deadlettered" if settlement.dead_letter_topic else "dropped"
        self._counter(kind, code).inc()
        self.log.settled(settlement, delivery.payload)

    async def _failed_inside(self, delivery: Delivery, error: Exception) -> None:
        """Count and log a failure inside the gateway, and pause the slot a moment."""
        self._counter("error", "other").inc()
        self.log.internal(delivery.payload, error)
        with contextlib.suppress(asyncio.CancelledError):
            await self._clock.sleep(ERROR_COOLDOWN)

    def _counter(self, outcome: str, code: str) -> Counter:
        series = self._series.get((outcome, code))
        if series is None:
            series = self._deliveries.labels(self.subscription.name, outcome, code)
            self._series[(outcome, code)] = series
        return series


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


def _attempt(result: PushResult, target: Target, wall: float, seconds: float) -> Attempt:
    """The attempt as its log keeps it (credentials redacted, the response cut short)."""
    # The whole body is redacted before it is cut, so no credential is left half-visible.
    response = target.redact(result.body)[:LOG_RESPONSE] if result.body else b""
    if result.status is not None:
        error = None if 200 <= result.status < 300 else f"HTTP {result.status}"
        status: int | str = result.status
    else:
        status = result.error or "protocol"
        error = None if result.detail is None else target.redact(result.detail.encode()).decode()
    return Attempt(wall, status, error, round(seconds * 1000), response).bounded()


def _is_json_object(payload: bytes | None) -> bool:
    try:
        return payload is not None and isinstance(orjson.loads(payload), dict)
    except orjson.JSONDecodeError:
        return False

"""Wall-clock jumps while events are pending (RELIABILITY R16; `gateway.clock`).

`ManualClock.jump` steps only the wall clock, as an NTP correction does; `advance` moves wall and
monotonic time together. The gateway schedules on steady time (wall time at start-up plus
monotonic time since), so a jump must neither expire, advance nor stall anything: due times,
retention and the dedup window all follow monotonic time. Push timeouts are real asyncio time
(`asyncio.timeout` on the loop's monotonic clock), shown with a slow subscriber.
"""

from __future__ import annotations

import asyncio
import random
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    make_settings,
    run_gateway,
    settle,
    status,
    subscription,
)
from tests.support.subscriber import Answer, Received, run_subscriber

HOUR = 3600.0
RETENTION = 2 * HOUR  # short, so a 1 h jump is a large share of it and the walks stay short
MAXIMUM_BACKOFF = 600.0
SWEEP = 61.0  # just past the retention sweep's 60 s interval


class Attempts:
    """The subscriber's script: always 503, recording the monotonic time of each attempt."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self.at: defaultdict[str, list[float]] = defaultdict(list)

    def __call__(self, request: Received) -> Answer:
        self.at[request.event_id].append(self.clock.monotonic())
        return Answer(503)


def settings_for(tmp_path: Path, url: str, **policy: Any) -> Any:
    return make_settings(
        tmp_path,
        egress=LOOPBACK_EGRESS,
        topics=[{"name": "orders", "retention": "2h"}],
        subscriptions=[subscription("s1", url, **policy)],
    )


async def step(gw: RunningGateway, clock: ManualClock, seconds: float) -> None:
    clock.advance(seconds)
    await settle(gw)
    await asyncio.sleep(0.01)  # a retention sweep woken by this step may still be committing
    await settle(gw)


async def test_forward_jump_neither_expires_nor_advances_anything(tmp_path: Path) -> None:
    """+1 h: the event is 1.5 h into a 2 h retention and the wall clock now says 2.5 h. Nothing
    expires and no retry comes early; the event expires only when it truly is past due."""
    clock = ManualClock()
    attempts = Attempts(clock)
    async with run_subscriber(clock) as sub:
        sub.script = attempts
        settings = settings_for(tmp_path, sub.url, retryPolicy={"schedule": ["10m"]})
        async with run_gateway(settings, clock=clock) as gw:
            start = clock.monotonic()
            await gw.publish("orders", "old")
            await settle(gw)
            for _ in range(9):
                await step(gw, clock, 600)
            assert [t - start for t in attempts.at["old"]] == [600.0 * n for n in range(10)]

            clock.jump(+HOUR)
            # A publish wakes the lane, which reads what is due "now"; the sweep runs too.
            assert (await gw.publish("orders", "probe")).status_code == 202
            await step(gw, clock, SWEEP)
            assert len(attempts.at["old"]) == 10, "a retry came early after the jump"
            assert len(attempts.at["probe"]) == 1
            assert status(gw, "s1") == {
                "published": 2,
                "acked": 0,
                "deadlettered": 0,
                "dropped": 0,
                "pending": 2,
            }

            await step(gw, clock, 600 - SWEEP)  # 6000 s in: the next scheduled attempt, on time
            assert attempts.at["old"][-1] - start == 6000.0
            assert status(gw, "s1")["pending"] == 2
            # Truly past due: the next retry (7200 s) would fall at retention's end, so the
            # 6600 s attempt gives up; by 7200 s plus one sweep it is certainly gone.
            await step(gw, clock, 600)
            await step(gw, clock, 600 + SWEEP)
            assert attempts.at["old"][-1] - start == 6600.0
            counters = status(gw, "s1")
            assert (counters["dropped"], counters.get("dropped.expired"), counters["pending"]) == (
                1,
                1,
                1,
            )


async def test_backward_jump_causes_no_mass_expiry_and_no_stuck_retries(tmp_path: Path) -> None:
    """-1 h: every pending event still gets its next attempt within maximumBackoff of monotonic
    time, none expires, and retention still ends on time (not an hour late)."""
    clock = ManualClock()
    attempts = Attempts(clock)
    async with run_subscriber(clock) as sub:
        sub.script = attempts
        settings = settings_for(tmp_path, sub.url)
        async with run_gateway(settings, clock=clock, rng=random.Random(3)) as gw:
            ids = [f"e{index}" for index in range(5)]
            published = clock.monotonic()
            for event_id in ids:
                await gw.publish("orders", event_id)
            await settle(gw)
            for _ in range(20):  # 40 minutes: backoff has grown to its 600 s cap
                await step(gw, clock, 120)
            before = {event_id: len(attempts.at[event_id]) for event_id in ids}
            assert all(count >= 6 for count in before.values()), before

            clock.jump(-HOUR)
            jumped = clock.monotonic()
            await gw.publish("orders", "probe")  # wakes the lane under the stepped clock
            await step(gw, clock, SWEEP)
            assert status(gw, "s1")["dropped"] == 0
            assert status(gw, "s1")["pending"] == len(ids) + 1

            await step(gw, clock, MAXIMUM_BACKOFF - SWEEP)
            for event_id in ids:
                later = [t for t in attempts.at[event_id] if t > jumped]
                assert later, f"{event_id} had no attempt within maximumBackoff of the jump"
                assert later[0] - jumped <= MAXIMUM_BACKOFF

            # Retention follows monotonic time: nothing is given up before retention minus one
            # backoff, and everything is gone 2 h after publishing plus one sweep.
            while clock.monotonic() < published + RETENTION + SWEEP:
                await step(gw, clock, 240)
                if clock.monotonic() < published + RETENTION - MAXIMUM_BACKOFF:
                    assert status(gw, "s1")["dropped"] == 0, clock.monotonic() - published
            counters = status(gw, "s1")
            assert counters["dropped"] == counters["dropped.expired"] == len(ids)
            assert counters["pending"] == 1  # only the probe, published later


@pytest.mark.parametrize(
    "jump",
    [
        pytest.param(+HOUR, id="forward-1h"),
        pytest.param(-HOUR, id="backward-1h"),
        pytest.param(+3 * HOUR, id="forward-past-retention"),
        pytest.param(-3 * HOUR, id="backward-past-retention"),
    ],
)
async def test_dedup_window_follows_monotonic_time(tmp_path: Path, jump: float) -> None:
    """A duplicate after a jump is still a duplicate (delivered once); after retention of
    monotonic time the pair is accepted as new (R4's documented behaviour)."""
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        settings = settings_for(tmp_path, sub.url)
        async with run_gateway(settings, clock=clock) as gw:
            assert (await gw.publish("orders", "x")).json() == {"accepted": 1, "duplicates": 0}
            await settle(gw)
            clock.jump(jump)
            assert (await gw.publish("orders", "x")).json() == {"accepted": 0, "duplicates": 1}
            await step(gw, clock, RETENTION - 120)  # still inside the window
            assert (await gw.publish("orders", "x")).json() == {"accepted": 0, "duplicates": 1}
            await settle(gw)
            assert [r.event_id for r in sub.received] == ["x"]
            await step(gw, clock, 120 + SWEEP)
            assert (await gw.publish("orders", "x")).json() == {"accepted": 1, "duplicates": 0}
            await settle(gw)
            assert [r.event_id for r in sub.received] == ["x", "x"]


@pytest.mark.parametrize(
    "jump",
    [
        pytest.param(0.0, id="no-jump"),
        pytest.param(-HOUR, id="backward-1h-in-flight"),
        pytest.param(+HOUR, id="forward-1h-in-flight"),
    ],
)
async def test_push_timeout_is_monotonic_and_recorded_as_timeout(
    tmp_path: Path, jump: float
) -> None:
    """ackDeadline 200ms against a subscriber that answers after 1 s: the attempt fails as
    `timeout` (whatever the wall clock does meanwhile) and, with one attempt allowed, the event
    is dead-lettered saying so. Had the deadline not held, the late 200 would have acked it."""
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(200, delay=1.0)
        spec = subscription(
            "s1", sub.url, ackDeadline="200ms", maxDeliveryAttempts=1, deadLetterTopic="dead"
        )
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders"}, {"name": "dead"}],
            subscriptions=[spec],
        )
        async with run_gateway(settings, clock=clock) as gw:
            loop = asyncio.get_running_loop()
            await gw.publish("orders", "slow")
            started = loop.time()
            while sub.in_flight == 0:
                await asyncio.sleep(0.005)
            clock.jump(jump)
            await settle(gw)
            assert loop.time() - started < 1.0, "the attempt outlived its ackDeadline"
            [dead] = (await gw.client.get("/v1/topics/dead/events")).json()["events"]
            assert (dead["id"], dead["dlreason"], dead["dlattempts"]) == ("slow", "exhausted", "1")
            assert dead["dlstatus"] == "timeout"
            assert len(sub.received) == 1
            counters = status(gw, "s1")
            assert (counters["acked"], counters["deadlettered"]) == (0, 1)

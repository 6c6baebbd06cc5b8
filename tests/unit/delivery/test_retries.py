"""Backoff, Retry-After, schedules, exhaustion and durable schedules (RELIABILITY R5, R7).

The subscriber answers 503; the injected clock walks 24 h of retries in well under a second.
"""

from __future__ import annotations

import itertools
import random
import re
from pathlib import Path

import pytest

from gateway.clock import ManualClock
from gateway.policy.backoff import RetryPolicy, next_delay
from tests.conftest import (
    LOOPBACK_EGRESS,
    advance_to_next_due,
    make_settings,
    run_gateway,
    settle,
    status,
    subscription,
)
from tests.support.subscriber import Answer, run_subscriber

DAY = 24 * 3600


def replayed_attempts(rng: random.Random, retention: float) -> int:
    """How many attempts fit in `retention` under the default policy with this jitter."""
    policy, elapsed, attempts = RetryPolicy(), 0.0, 1
    while True:
        delay = next_delay(policy, attempts, rng.random(), None)
        if elapsed + delay >= retention:
            return attempts
        elapsed += delay
        attempts += 1


def gaps(times: list[float]) -> list[float]:
    return [later - earlier for earlier, later in itertools.pairwise(times)]


async def walk(gw, clock, name: str, limit: int = 500) -> None:  # type: ignore[no-untyped-def]
    for _ in range(limit):
        if not await advance_to_next_due(gw, clock, name):
            return
    raise AssertionError("still pending after the walk")


async def test_exponential_backoff_with_jitter_capped_for_24h(tmp_path: Path) -> None:
    """R5: gaps 10, 20, 40, ... s each within 10 %, capped at 600 s; the count matches the closed
    form; at the end of retention the event is dropped and counted (no dead-letter topic)."""
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(503)
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url)]
        )
        async with run_gateway(settings, clock=clock, rng=random.Random(7)) as gw:
            await gw.publish("orders", "e")
            await walk(gw, clock, "s1")
            observed = gaps([request.at for request in sub.received])
            for attempt, gap in enumerate(observed, start=1):
                nominal = min(600.0, 10.0 * 2 ** (attempt - 1))
                assert nominal * 0.9 - 0.01 <= gap <= min(600.0, nominal * 1.1) + 0.01, attempt
            assert max(observed) <= 600.01
            # The count is the pure policy replayed with the same seeded jitter, and lies between
            # the closed forms for the longest gaps (+10 %, capped) and the shortest (-10 %).
            assert len(sub.received) == replayed_attempts(random.Random(7), DAY)
            longest = 1 + 6 + (DAY - 1.1 * 630) // 600
            shortest = 1 + 6 + (DAY - 0.9 * 630) // 540
            assert longest <= len(sub.received) <= shortest + 1
            assert status(gw, "s1") == {
                "published": 1,
                "acked": 0,
                "deadlettered": 0,
                "dropped": 1,
                "pending": 0,
                "dropped.expired": 1,
            }


@pytest.mark.parametrize(
    ("retry_after", "expected_gap"),
    [
        pytest.param("30", 30.0, id="seconds-honoured"),
        pytest.param("99999", 600.0, id="capped-at-maximum-backoff"),
    ],
)
async def test_retry_after_is_honoured_and_capped(
    tmp_path: Path, retry_after: str, expected_gap: float
) -> None:
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(429, {"retry-after": retry_after})
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url)]
        )
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("orders", "e")
            await advance_to_next_due(gw, clock, "s1")
            assert gaps([r.at for r in sub.received]) == [pytest.approx(expected_gap, abs=0.01)]


async def test_explicit_schedule_is_followed_exactly(tmp_path: Path) -> None:
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(500)
        spec = subscription(
            "s1",
            sub.url,
            retryPolicy={"schedule": ["1h", "2h", "3h"]},
            maxDeliveryAttempts=4,
            deadLetterTopic="dead",
        )
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders"}, {"name": "dead"}],
            subscriptions=[spec],
        )
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("orders", "e")
            await walk(gw, clock, "s1")
            assert gaps([r.at for r in sub.received]) == [
                pytest.approx(3600, abs=0.01),
                pytest.approx(7200, abs=0.01),
                pytest.approx(10800, abs=0.01),
            ]
            assert status(gw, "s1")["deadlettered"] == 1


async def test_exhausted_event_is_dead_lettered_once_with_its_reasons(tmp_path: Path) -> None:
    """R7: after exactly 5 attempts the event is in the dead-letter topic, whole, once."""
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(500, body=b"x" * 5000)
        spec = subscription("billing", sub.url, maxDeliveryAttempts=5, deadLetterTopic="dead")
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders"}, {"name": "dead"}],
            subscriptions=[spec],
        )
        async with run_gateway(settings, clock=clock) as gw:
            response = await gw.publish(
                "orders", "ord-1", **{"ce-subject": "inv.pdf", "ce-tenant": "acme"}
            )
            assert response.status_code == 202
            await walk(gw, clock, "billing")
            assert len(sub.received) == 5
            [dead] = (await gw.client.get("/v1/topics/dead/events")).json()["events"]
            assert (dead["id"], dead["source"], dead["type"]) == (
                "ord-1",
                "/shop",
                "com.example.order.created",
            )
            assert (dead["subject"], dead["tenant"], dead["data"]) == ("inv.pdf", "acme", {"n": 1})
            assert dead["dlsubscription"] == "billing"
            assert (dead["dlreason"], dead["dlattempts"], dead["dlstatus"]) == (
                "exhausted",
                "5",
                "500",
            )
            assert len(dead["dlbody"].encode()) <= 1024
            assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?Z", dead["dltime"])
            for name in dead:
                if name.startswith("dl"):
                    assert re.fullmatch(r"[a-z0-9]{1,20}", name)
            clock.advance(DAY / 2)
            await settle(gw)
            assert len((await gw.client.get("/v1/topics/dead/events")).json()["events"]) == 1
            assert status(gw, "billing")["deadlettered"] == 1


async def test_schedule_survives_a_restart_mid_backoff(tmp_path: Path) -> None:
    """The next attempt time is durable: stop during a backoff, start again, it continues."""
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(503)
        spec = subscription("s1", sub.url, retryPolicy={"schedule": ["1h", "2h"]})
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("orders", "e")
            await advance_to_next_due(gw, clock, "s1")  # attempt 2, at +1 h
            assert len(sub.received) == 2
        async with run_gateway(settings, clock=clock) as gw:
            await settle(gw)
            assert len(sub.received) == 2  # nothing due at restart: the 2 h backoff holds
            clock.advance(2 * 3600 - 60)
            await settle(gw)
            assert len(sub.received) == 2
            clock.advance(61)
            await settle(gw)
            assert len(sub.received) == 3
            first, second = gaps([r.at for r in sub.received])
            assert first == pytest.approx(3600, abs=0.01)
            assert 7200 <= second <= 7201.01  # due at +2 h; the clock stepped 1 s past it


async def test_a_duplicate_after_restart_is_delivered_once(tmp_path: Path) -> None:
    """R4: the same (source, id) before and after a restart: 2xx both times, one push."""
    async with run_subscriber() as sub:
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url)]
        )
        async with run_gateway(settings) as gw:
            assert (await gw.publish("orders", "once")).status_code == 202
            await settle(gw)
        async with run_gateway(settings) as gw:
            assert (await gw.publish("orders", "once")).json() == {"accepted": 0, "duplicates": 1}
            await settle(gw)
        assert [r.event_id for r in sub.received] == ["once"]

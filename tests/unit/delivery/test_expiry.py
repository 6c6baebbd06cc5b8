"""Retention expiry is accounted for (RELIABILITY R8; DESIGN "Delivery semantics", "Dead letters").

A subscriber is down (503) for more than a day of injected time while a backlog of events,
published at different times, waits. Each event still undelivered when its retention ends is
dead-lettered with reason `expired`, or dropped and counted when the subscription has no
dead-letter topic. The clock walks in one-hour steps and at every step the ledger is reconciled
against what the subscriber and the dead-letter topic actually saw: nothing disappears uncounted.

Expiry can come a little before the 24 h mark: the engine gives up as soon as the next retry
would fall after retention ends, so the bound asserted is "not before retention minus
maximumBackoff", never an exact second.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import orjson
import pytest

from gateway.clock import ManualClock
from gateway.store.lmdb import keys
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

DAY = 24 * 3600.0
STEP = 3600.0  # the walk advances the clock an hour at a time
MAXIMUM_BACKOFF = 600.0  # the default retryPolicy.maximumBackoff
EVENTS = 20
RECOVERY_STEP = 22  # 22 h in, before any retention ends: the subscriber accepts some events
WALK_STEPS = 46  # the last event (published at 19 h) is past its retention at 43 h


@dataclass(frozen=True)
class Snapshot:
    """The ledger of one subscription at one instant (a single LMDB read transaction)."""

    counters: dict[str, int]
    pending_ids: set[str]
    dead_letters: list[dict[str, Any]]


def snapshot(gw: RunningGateway, name: str, topic: str, dead_topic: str | None) -> Snapshot:
    store = gw.store

    def run(txn: Any) -> Snapshot:
        counters = {"published": 0, "acked": 0, "deadlettered": 0, "dropped": 0}
        prefix = keys.counter_key(name, "")
        cursor = txn.cursor(db=store.db["meta"])
        if cursor.set_range(prefix):
            for key, value in cursor:
                if not key.startswith(prefix):
                    break
                counters[key[len(prefix) :].decode()] = keys.SEQ.unpack(value)[0]
        pending: set[str] = set()
        cursor = txn.cursor(db=store.db["deliveries"])
        if cursor.set_range(keys.due_prefix(name)):
            for key, value in cursor:
                if not key.startswith(keys.due_prefix(name)):
                    break
                state = keys.decode_delivery(value)
                event = txn.get(keys.event_key(topic, state.seq), db=store.db["events"])
                assert event is not None, "a pending delivery whose event is gone"
                pending.add(orjson.loads(keys.split_event_value(event)[2])["id"])
        return Snapshot(counters, pending, _topic_events(txn, gw, dead_topic))

    result: Snapshot = store.read(run)
    return result


def _topic_events(txn: Any, gw: RunningGateway, topic: str | None) -> list[dict[str, Any]]:
    if topic is None:
        return []
    found = []
    cursor = txn.cursor(db=gw.store.db["events"])
    prefix = keys.topic_prefix(topic)
    if cursor.set_range(prefix):
        for key, value in cursor:
            if not key.startswith(prefix):
                break
            found.append(orjson.loads(keys.split_event_value(value)[2]))
    return found


def epoch(rfc3339: str) -> float:
    return datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).timestamp()


class Backlog:
    """The test's own record of what was published when, and what the subscriber accepted."""

    def __init__(self) -> None:
        self.published_at: dict[str, float] = {}
        self.recovered: Callable[[str], bool] = lambda event_id: False
        self.accepted: list[str] = []

    def answer(self, request: Received) -> Answer:
        if self.recovered(request.event_id):
            self.accepted.append(request.event_id)
            return Answer(200)
        return Answer(503, body=b"down for maintenance")


def reconcile(ledger: Snapshot, backlog: Backlog, now: float, dead_lettering: bool) -> set[str]:
    """R8's invariant at one instant; returns the ids that were expired so far."""
    counters, pending = ledger.counters, ledger.pending_ids
    published = set(backlog.published_at)
    acked = set(backlog.accepted)
    assert len(backlog.accepted) == len(acked), "an acked event was pushed again"
    assert counters["published"] == len(published)
    assert counters["acked"] == len(acked)
    assert counters["published"] == (
        counters["acked"] + counters["deadlettered"] + counters["dropped"] + len(pending)
    )
    assert pending <= published and not pending & acked
    expired = published - pending - acked
    dead_ids = [event["id"] for event in ledger.dead_letters]
    if dead_lettering:
        assert sorted(dead_ids) == sorted(expired), "each expired event dead-lettered once"
        assert counters["deadlettered"] == counters.get("deadlettered.expired", 0) == len(expired)
        assert counters["dropped"] == 0
    else:
        assert dead_ids == []
        assert counters["dropped"] == counters.get("dropped.expired", 0) == len(expired)
        assert counters["deadlettered"] == 0
    for event_id in expired:  # never before retention minus one maximum backoff
        assert now >= backlog.published_at[event_id] + DAY - MAXIMUM_BACKOFF, event_id
    return expired


async def settle_past_retention(
    gw: RunningGateway, read: Callable[[], Snapshot], backlog: Backlog, now: float
) -> Snapshot:
    """Let the engine and the retention sweep finish this step: every event whose retention
    ended by `now` must leave the pending set (the sweep runs once per advance)."""
    await settle(gw)
    for _ in range(500):
        ledger = read()
        overdue = {i for i in ledger.pending_ids if backlog.published_at[i] + DAY <= now}
        if not overdue:
            return ledger
        await asyncio.sleep(0.005)
        await settle(gw)
    raise AssertionError(f"still pending after their retention ended: {sorted(overdue)}")


@pytest.mark.parametrize(
    "dead_lettering",
    [
        pytest.param(True, id="with-dead-letter-topic"),
        pytest.param(False, id="without-dead-letter-topic"),
    ],
)
@pytest.mark.parametrize(
    "recovers",
    [
        pytest.param(False, id="down-throughout"),
        pytest.param(True, id="half-recover-at-22h"),
    ],
)
async def test_backlog_past_retention_is_accounted_at_every_step(
    tmp_path: Path, dead_lettering: bool, recovers: bool
) -> None:
    clock = ManualClock()
    backlog = Backlog()
    async with run_subscriber(clock) as sub:
        sub.script = backlog.answer
        policy: dict[str, Any] = {}
        topics = [{"name": "orders"}]
        if dead_lettering:  # many attempts, so retention (not exhaustion) ends delivery
            policy = {"deadLetterTopic": "orders-dead", "maxDeliveryAttempts": 10_000}
            topics.append({"name": "orders-dead"})
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=topics,
            subscriptions=[subscription("s1", sub.url, **policy)],
        )
        dead_topic = "orders-dead" if dead_lettering else None
        async with run_gateway(settings, clock=clock) as gw:

            def read() -> Snapshot:
                return snapshot(gw, "s1", "orders", dead_topic)

            expired: set[str] = set()
            for step in range(WALK_STEPS + 1):
                if step < EVENTS:  # one new event every hour for the first 20 hours
                    event_id = f"ev-{step:02d}"
                    assert (await gw.publish("orders", event_id)).status_code == 202
                    backlog.published_at[event_id] = gw.gateway_now()
                if recovers and step == RECOVERY_STEP:
                    backlog.recovered = lambda event_id: int(event_id[-2:]) % 2 == 1
                ledger = await settle_past_retention(gw, read, backlog, gw.gateway_now())
                now_expired = reconcile(ledger, backlog, gw.gateway_now(), dead_lettering)
                assert expired <= now_expired, "an expired event came back"
                expired = now_expired
                clock.advance(STEP)

            ledger = read()
            assert ledger.pending_ids == set()
            all_ids = set(backlog.published_at)
            acked = {i for i in all_ids if int(i[-2:]) % 2 == 1} if recovers else set()
            assert set(backlog.accepted) == acked
            assert expired == all_ids - acked
            assert ledger.counters["acked"] == len(acked)
            gone = "deadlettered" if dead_lettering else "dropped"
            assert ledger.counters[gone] == ledger.counters[f"{gone}.expired"] == len(expired)
            # Every event was tried while the subscriber was down; none was given up unseen.
            assert {r.event_id for r in sub.received} == all_ids
            if dead_lettering:
                await check_dead_letters(gw, backlog, expired)


async def check_dead_letters(gw: RunningGateway, backlog: Backlog, expired: set[str]) -> None:
    """What a user browsing the dead-letter topic relies on: the whole event, once, and why."""
    response = await gw.client.get("/v1/topics/orders-dead/events", params={"limit": 1000})
    assert response.status_code == 200
    page = response.json()
    assert page["next"] is None
    by_id = {event["id"]: event for event in page["events"]}
    assert len(by_id) == len(page["events"]) == len(expired)
    assert set(by_id) == expired
    for event_id, dead in by_id.items():
        assert (dead["source"], dead["type"], dead["data"]) == (
            "/shop",
            "com.example.order.created",
            {"n": 1},
        )
        assert (dead["dlsubscription"], dead["dlreason"], dead["dlstatus"]) == (
            "s1",
            "expired",
            "503",
        )
        assert dead["dlbody"] == "down for maintenance"
        assert int(dead["dlattempts"]) >= 1
        ended = backlog.published_at[event_id] + DAY
        assert ended - MAXIMUM_BACKOFF <= epoch(dead["dltime"]) <= ended + STEP, event_id


async def test_status_api_reconciles_with_the_ledger_after_expiry(tmp_path: Path) -> None:
    """The admin view a user reads (`GET /v1/subscriptions/{name}`) adds up the same way, and a
    second subscription on the same topic that acked everything is unaffected by the expiry."""
    clock = ManualClock()
    async with run_subscriber(clock) as down, run_subscriber(clock) as up:
        down.script = lambda r: Answer(503)
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            subscriptions=[subscription("down", down.url), subscription("up", up.url)],
        )
        async with run_gateway(settings, clock=clock) as gw:
            for index in range(5):
                await gw.publish("orders", f"e{index}")
                clock.advance(STEP)
            await settle(gw)
            for _ in range(int(DAY // STEP) + 2):
                clock.advance(STEP)
                await settle(gw)
            for _ in range(200):  # the last sweep may still be committing
                body = (await gw.client.get("/v1/subscriptions/down")).json()
                if body["status"]["pending"] == 0:
                    break
                await asyncio.sleep(0.005)
            core = ("published", "acked", "deadlettered", "dropped", "pending")
            assert {key: body["status"][key] for key in core} == {
                "published": 5,
                "acked": 0,
                "deadlettered": 0,
                "dropped": 5,
                "pending": 0,
            }
            assert status(gw, "down")["dropped.expired"] == 5
            assert gw.store.deliveries.pending("down") == 0
            healthy = (await gw.client.get("/v1/subscriptions/up")).json()["status"]
            assert {key: healthy[key] for key in core} == {
                "published": 5,
                "acked": 5,
                "deadlettered": 0,
                "dropped": 0,
                "pending": 0,
            }
            assert sorted(r.event_id for r in up.received) == [f"e{i}" for i in range(5)]


async def test_moved_subscription_still_accounts_for_deliveries_of_a_deleted_topic(
    tmp_path: Path,
) -> None:
    """A subscription moved (PUT) from `orders` to `other` keeps its pending delivery of an
    `orders` event. `orders` then has no subscription, so it may be deleted; whether the gateway
    refuses that or allows it, the delivery must still end counted (expired, dropped or
    dead-lettered) once retention is over, never stay pending for good."""
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(503)
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders", "retention": "2h"}, {"name": "other", "retention": "2h"}],
            subscriptions=[subscription("s1", sub.url)],
        )
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("orders", "e1")
            await settle(gw)
            moved = subscription("s1", sub.url, topic="other")
            del moved["name"]
            assert (await gw.client.put("/v1/subscriptions/s1", json=moved)).status_code == 200
            deleted = await gw.client.delete("/v1/topics/orders")
            assert deleted.status_code in (204, 409), deleted.text
            for _ in range(3 * 6):  # 3 h in 10-minute steps: past the 2 h retention
                clock.advance(600)
                await settle(gw)
            await asyncio.sleep(0.02)
            await settle(gw)
            counters = status(gw, "s1")
            assert gw.store.deliveries.pending("s1") == 0, (deleted.status_code, counters)
            assert counters["pending"] == 0
            assert counters["dropped"] + counters["deadlettered"] == counters["published"] == 1

"""Failures a user can see (issue 19, DESIGN "Delivery visibility"): failure log lines that
stay bounded per subscription, the `code` label of cegateway_deliveries_total, the last
success and failure in a subscription's status (surviving a restart), and a stored event the
push cannot be built from, retried and then given up instead of looping."""

from __future__ import annotations

import asyncio
import json
import logging
import socket
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.config.settings import Settings, TopicSettings
from gateway.delivery.failure_log import BURST, PER_MINUTE
from gateway.events import IncomingEvent
from gateway.ops.logs import LineBudget, json_formatter
from gateway.policy.deadletters import rfc3339_utc
from gateway.policy.outcomes import Ack, DeadLetter
from gateway.store.lmdb.store import LmdbStore
from gateway.store.records import LastOutcome, Settlement
from tests.conftest import (
    LOOPBACK_EGRESS,
    FixedRouting,
    RunningGateway,
    make_settings,
    run_gateway,
    settle,
    status,
    subscription,
)
from tests.support.subscriber import Answer, Received, run_subscriber
from tests.unit.ops.test_metrics import scrape, value

START = 1_800_000_000.0  # ManualClock's wall time at start


def delivery_lines(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [
        record
        for record in caplog.records
        if record.name == "gateway.delivery" and getattr(record, "subscription", None) == name
    ]


def suppressed(records: list[logging.LogRecord]) -> int:
    return sum(getattr(record, "suppressed", 0) for record in records)


def batch(ids: list[str]) -> list[dict[str, Any]]:
    return [{"specversion": "1.0", "id": i, "source": "/shop", "type": "t"} for i in ids]


# -- the budget, as a table ------------------------------------------------------------------


S = None  # a line left out


@pytest.mark.parametrize(
    ("times", "answers"),
    [
        pytest.param([0.0] * 3, [0, 0, 0], id="within-the-burst"),
        pytest.param([0.0] * 5, [0, 0, 0, S, S], id="burst-then-left-out"),
        pytest.param([0.0] * 5 + [9.9], [0, 0, 0, S, S, S], id="not-refilled-yet"),
        pytest.param([0.0] * 5 + [10.0], [0, 0, 0, S, S, 2], id="next-line-reports-the-count"),
        pytest.param([0.0] * 3 + [30.0] * 4, [0, 0, 0, 0, 0, 0, S], id="three-refilled"),
        pytest.param([0.0] * 3 + [600.0] * 4, [0, 0, 0, 0, 0, 0, S], id="refill-capped"),
        pytest.param([5.0] * 4 + [1.0], [0, 0, 0, S, S], id="time-going-back-adds-nothing"),
    ],
)
def test_line_budget(times: list[float], answers: list[int | None]) -> None:
    """A burst of 3, then 6 a minute (one every 10 s): None leaves a line out; a line written
    gets how many were left out since the last one."""
    budget = LineBudget(3, 6)
    assert [budget.take(at) for at in times] == answers


# -- failure log lines -----------------------------------------------------------------------


async def test_one_failing_subscription_writes_a_bounded_number_of_lines_a_minute(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """20 events failing every 5 s for a simulated minute are 240 failed attempts: at most
    BURST + PER_MINUTE lines, and the suppressed counts they report (with the next line
    written) add up to every failed attempt."""
    caplog.set_level(logging.INFO, logger="gateway.delivery")
    clock = ManualClock()
    failed: list[Received] = []

    def failing(request: Received) -> Answer:
        if request.event_id in failing_ids:
            failed.append(request)
            return Answer(503)
        return Answer(200)

    failing_ids = {f"e{n}" for n in range(20)}
    async with run_subscriber(clock) as sub:
        sub.script = failing
        spec = subscription("flaky", sub.url, retryPolicy={"schedule": ["5s"]})
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings, clock=clock) as gw:
            response = await gw.publish_batch("orders", batch(sorted(failing_ids)))
            assert response.status_code == 202
            await settle(gw)
            for _ in range(11):  # attempts at 0, 5, ..., 55 s: one minute
                clock.advance(5)
                await settle(gw)
            in_a_minute = delivery_lines(caplog, "flaky")
            assert len(failed) == 240
            assert len(in_a_minute) <= BURST + PER_MINUTE
            print(f"lines one failing subscription wrote in a minute: {len(in_a_minute)}")
            # Only e0 fails from now on; the next line written reports what was left out.
            failing_ids = {"e0"}
            for _ in range(10):
                clock.advance(5)
                await settle(gw)
                if len(delivery_lines(caplog, "flaky")) > len(in_a_minute):
                    break
            lines = delivery_lines(caplog, "flaky")
            assert len(lines) == len(in_a_minute) + 1
            assert len(lines) + suppressed(lines) == len(failed)
            assert lines[-1].suppressed > 0  # type: ignore[attr-defined]
            assert status(gw, "flaky")["acked"] == 19


async def test_lines_of_a_retry_a_dead_letter_and_a_drop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Each is one JSON line with the subscription, the event's id and source, the attempt,
    the status and error; a retry its next attempt time, a dead letter and a drop a reason."""
    caplog.set_level(logging.INFO, logger="gateway.delivery")
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(503 if r.path == "/retry" else 422)
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders"}, {"name": "dead"}],
            subscriptions=[
                subscription("retrying", sub.url + "/retry", retryPolicy={"schedule": ["30s"]}),
                subscription("dead-lettering", sub.url + "/dl", deadLetterTopic="dead"),
                subscription("dropping", sub.url + "/drop"),
            ],
        )
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("orders", "e1")
            await settle(gw)
    formatter = json_formatter()
    [retry] = [json.loads(formatter.format(r)) for r in delivery_lines(caplog, "retrying")]
    [dead] = [json.loads(formatter.format(r)) for r in delivery_lines(caplog, "dead-lettering")]
    [drop] = [json.loads(formatter.format(r)) for r in delivery_lines(caplog, "dropping")]
    identity = {"eventId": "e1", "eventSource": "/shop", "attempt": 1}
    assert (
        retry.items()
        >= {
            **identity,
            "level": "WARNING",
            "logger": "gateway.delivery",
            "outcome": "retried",
            "status": 503,
            "error": "HTTP 503",
            "nextAttemptTime": rfc3339_utc(START + 30),
        }.items()
    )
    assert (
        dead.items()
        >= {
            **identity,
            "outcome": "deadlettered",
            "reason": "permanent",
            "deadLetterTopic": "dead",
            "status": 422,
        }.items()
    )
    assert (
        drop.items()
        >= {
            **identity,
            "level": "ERROR",
            "outcome": "dropped",
            "reason": "permanent",
            "status": 422,
        }.items()
    )
    assert "nextAttemptTime" not in dead and "suppressed" not in retry
    assert "e1" in retry["message"] and "503" in retry["message"]


# -- the code label --------------------------------------------------------------------------


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_deliveries_are_counted_by_outcome_and_code(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        answers = {"/ok": 200, "/moved": 302, "/bad": 422, "/down": 503}
        sub.script = lambda r: Answer(answers[r.path], headers={"location": "/elsewhere"})
        refused = f"http://127.0.0.1:{closed_port()}/"
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            subscriptions=[
                *(subscription(path[1:], sub.url + path) for path in answers),
                subscription("refused", refused),
            ],
        )
        async with run_gateway(settings) as gw:
            await gw.publish("orders", "e1")
            await settle(gw)
            text = await scrape(gw)
    expected = {
        ("ok", "acked", "2xx"),
        ("moved", "retried", "3xx"),
        ("bad", "dropped", "4xx"),
        ("down", "retried", "5xx"),
        ("refused", "retried", "connect"),
    }
    for name, outcome, code in expected:
        series = {"subscription": name, "outcome": outcome, "code": code}
        assert value(text, "cegateway_deliveries_total", **series) == 1, series


# -- the last success and failure in a subscription's status ---------------------------------


async def subscription_status(gw: RunningGateway, name: str) -> dict[str, Any]:
    response = await gw.client.get(f"/v1/subscriptions/{name}")
    assert response.status_code == 200, response.text
    document: dict[str, Any] = response.json()["status"]
    return document


async def test_status_shows_the_last_success_and_failure_and_keeps_them_over_a_restart(
    tmp_path: Path,
) -> None:
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(503 if len(sub.received) == 1 else 200)
        spec = subscription("s1", sub.url, retryPolicy={"schedule": ["10s"]})
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings, clock=clock) as gw:
            assert "lastSuccessTime" not in await subscription_status(gw, "s1")
            await gw.publish("orders", "e1")
            await settle(gw)
            failed = await subscription_status(gw, "s1")
            assert "lastSuccessTime" not in failed
            assert failed["lastFailureTime"] == rfc3339_utc(START)
            assert (failed["lastStatus"], failed["lastError"]) == (503, "HTTP 503")
            clock.advance(10)
            await settle(gw)
            await gw.publish("orders", "e2")  # acked at once, its ack through the ack writer
            await settle(gw)
            assert gw.store.ack_writer.commits >= 1
            recovered = await subscription_status(gw, "s1")
        async with run_gateway(settings, clock=clock) as gw:
            restarted = await subscription_status(gw, "s1")
    assert recovered["lastSuccessTime"] == rfc3339_utc(START + 10)
    assert recovered["lastFailureTime"] == rfc3339_utc(START)  # kept: the last failure
    assert restarted == recovered
    assert restarted["acked"] == 2


async def test_status_names_an_error_kind_when_no_http_answer_came(tmp_path: Path) -> None:
    spec = subscription("s1", f"http://127.0.0.1:{closed_port()}/")
    settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
    async with run_gateway(settings) as gw:
        await gw.publish("orders", "e1")
        await settle(gw)
        found = await subscription_status(gw, "s1")
    assert found["lastStatus"] == "connect"
    assert isinstance(found["lastError"], str) and 0 < len(found["lastError"]) <= 256


async def test_the_status_model_in_openapi_has_the_last_outcome_fields(tmp_path: Path) -> None:
    async with run_gateway(make_settings(tmp_path)) as gw:
        document = (await gw.client.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]
    properties = schemas["SubscriptionStatus"]["properties"]
    for name in ("lastSuccessTime", "lastFailureTime", "lastStatus", "lastError"):
        assert name in properties, name


# -- a stored event the push cannot be built from (issue 19, F1) ----------------------------

POISON = (
    b'{"specversion":"1.0","id":"poison","source":"/shop","type":"t",'
    b'"datacontenttype":"application/json","data":{"x":NaN}}'
)


async def store_poison(gw: RunningGateway) -> None:
    """A stored event that is no JSON (what F1's ingress once let in), put in directly."""
    attributes = {"specversion": "1.0", "id": "poison", "source": "/shop", "type": "t"}
    event = IncomingEvent("/shop", "poison", attributes, POISON)
    result = await gw.store.publish("orders", [event], gw.gateway_now())
    assert result.accepted == 1
    engine = gw.gateway.engine
    assert engine is not None
    engine.wake(result.subscriptions)


def poison_settings(tmp_path: Path, url: str) -> Settings:
    spec = subscription(
        "s1",
        url,
        deadLetterTopic="dead",
        maxDeliveryAttempts=3,
        retryPolicy={"schedule": ["10s"]},
    )
    return make_settings(
        tmp_path,
        egress=LOOPBACK_EGRESS,
        topics=[{"name": "orders"}, {"name": "dead"}],
        subscriptions=[spec],
    )


async def test_a_push_that_cannot_be_built_is_retried_then_given_up_without_a_loop(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        async with run_gateway(poison_settings(tmp_path, sub.url), clock=clock) as gw:
            await store_poison(gw)
            await gw.publish("orders", "fine")
            await settle(gw)
            assert [r.event_id for r in sub.received] == ["fine"]  # its neighbour is pushed
            assert status(gw, "s1")["pending"] == 1  # not given up at once: retried
            for _ in range(2):
                clock.advance(10)
                await settle(gw)
            counters = status(gw, "s1")
            text = await scrape(gw)
            last = await subscription_status(gw, "s1")
    assert counters["pending"] == 0
    # No dead letter can be made of it (it is no JSON): dropped, counted, logged.
    assert counters["dropped"] == counters["dropped.exhausted"] == 1
    assert counters["acked"] == 1 and counters["deadlettered"] == 0
    retried = {"subscription": "s1", "outcome": "retried", "code": "other"}
    assert value(text, "cegateway_deliveries_total", **retried) == 2
    dropped = {"subscription": "s1", "outcome": "dropped", "code": "other"}
    assert value(text, "cegateway_deliveries_total", **dropped) == 1
    assert last["lastStatus"] == "invalid-event"
    assert not [record for record in caplog.records if record.exc_info]  # no traceback
    lines = delivery_lines(caplog, "s1")
    assert [getattr(line, "outcome", None) for line in lines] == ["retried", "retried", "dropped"]
    assert all(line.eventId is None for line in lines)  # type: ignore[attr-defined]


async def test_a_dead_letter_that_cannot_be_made_is_dropped_not_a_failed_batch(
    tmp_path: Path,
) -> None:
    """The store's own guard: a dead letter of a stored event that is no JSON object would
    fail the whole commit of outcomes, again and again; it is dropped and counted."""
    store = LmdbStore(tmp_path / "data")
    try:
        store.routing = FixedRouting(("s1", 0.0))
        await store.put_topic(TopicSettings("orders", 86_400.0))
        await store.put_topic(TopicSettings("dead", 86_400.0))
        event = IncomingEvent("/shop", "poison", {}, POISON)
        await store.publish("orders", [event], 1_000.0)
        [delivery] = store.deliveries.due("s1", 1_001.0, 10, ())
        settlement = Settlement(
            "s1", delivery.seq, DeadLetter("exhausted"), 3, None, "dead", 1_000.0
        )
        assert await store.settle([settlement], 1_001.0) == set()
        counters = store.deliveries.counters("s1")
        assert counters["dropped"] == counters["dropped.exhausted"] == 1
        assert await store.event_count("dead") == 0
    finally:
        store.close()


async def wait_until(predicate: Any, tries: int = 4000) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.005)
    raise TimeoutError("condition not reached")


async def test_outcomes_that_cannot_be_recorded_are_counted_and_logged_within_the_budget(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The store refuses every commit of outcomes for a minute: the event stays pending and
    is pushed again each second, each attempt counted as outcome `error`, and the traceback
    logged only on the lines the budget lets through (not once a second)."""
    caplog.set_level(logging.INFO)
    clock = ManualClock()
    errors = {"subscription": "s1", "outcome": "error", "code": "other"}
    async with run_subscriber(clock) as sub:
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url)]
        )
        async with run_gateway(settings, clock=clock) as gw:

            async def refuse(settlements: Any, now: float) -> set[str]:
                raise RuntimeError("the store is broken")

            def counted() -> float:
                """Attempts counted as `error`: each one's cooldown has begun by then."""
                registry = gw.gateway.metrics.registry
                return registry.get_sample_value("cegateway_deliveries_total", errors) or 0.0

            monkeypatch.setattr(gw.store, "settle", refuse)
            await gw.publish("orders", "e1")
            await wait_until(lambda: counted() == 1)
            for second in range(1, 61):
                # Only once the cooldown has begun: a sleep begun after the advance would not
                # be woken by it (the subscriber seeing the push is too early to tell).
                clock.advance(1)
                await wait_until(lambda: counted() == second + 1)  # noqa: B023
                assert len(sub.received) == second + 1
            await wait_until(lambda: len(delivery_lines(caplog, "s1")) >= BURST)
            lines = delivery_lines(caplog, "s1")
            text = await scrape(gw)
            assert status(gw, "s1")["pending"] == 1
            monkeypatch.undo()  # the store works again: the event is acked
            clock.advance(1)
            await wait_until(lambda: status(gw, "s1")["acked"] == 1)
    assert value(text, "cegateway_deliveries_total", **errors) >= 60
    assert len(lines) <= BURST + PER_MINUTE
    tracebacks = [record for record in caplog.records if record.exc_info]
    assert len(tracebacks) == len(lines)
    assert all(getattr(line, "outcome", None) == "error" for line in lines)
    assert lines[0].eventId == "e1"  # type: ignore[attr-defined]


async def test_a_deleted_subscription_takes_its_last_outcome_with_it(tmp_path: Path) -> None:
    """A subscription created again under the name of a deleted one starts with no last
    success or failure, even if an ack of the old one arrives after the delete."""
    store = LmdbStore(tmp_path / "data")
    try:
        store.routing = FixedRouting(("s1", 0.0))
        await store.put_topic(TopicSettings("orders", 86_400.0))
        events = [IncomingEvent("/shop", f"e{n}", {}, b'{"id":"e%d"}' % n) for n in range(2)]
        await store.publish("orders", events, 1_000.0)
        first, second = store.deliveries.due("s1", 1_001.0, 10, ())
        await store.settle([Settlement("s1", first.seq, Ack(), 1, None, due=first.due)], 1)
        assert store.deliveries.last_outcome("s1").success_time is not None
        await store.delete_subscription("s1", lambda: lambda: None)
        assert store.deliveries.last_outcome("s1") == LastOutcome()
        late = Settlement("s1", second.seq, Ack(), 1, None, due=second.due, wall=5.0)
        await store.settle([late], 1_002.0)  # through the ack writer, after the delete
        assert store.deliveries.last_outcome("s1") == LastOutcome()
    finally:
        store.close()

"""Push delivery end to end: a real gateway, real subscribers on 127.0.0.1, injected clock."""

from __future__ import annotations

import random
from pathlib import Path

import orjson
import pytest

from gateway.clock import ManualClock
from tests.conftest import (
    BINARY_HEADERS,
    LOOPBACK_EGRESS,
    make_settings,
    run_gateway,
    settle,
    status,
    subscription,
)
from tests.support.stub_dns import StubResolver
from tests.support.subscriber import Answer, run_subscriber


async def test_event_is_pushed_in_binary_mode_and_acked(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url + "/in")]
        )
        async with run_gateway(settings) as gw:
            response = await gw.publish("orders", "e1", **{"ce-subject": "x.pdf"})
            assert response.status_code == 202
            await settle(gw)
            [received] = sub.received
            assert received.path == "/in"
            assert received.headers["ce-id"] == "e1"
            assert received.headers["ce-source"] == "/shop"
            assert received.headers["ce-subject"] == "x.pdf"
            assert received.headers["content-type"] == "application/json"
            assert orjson.loads(received.body) == {"n": 1}
            assert "ce-time" not in received.headers  # never invented
            assert status(gw, "s1") == {
                "published": 1,
                "acked": 1,
                "deadlettered": 0,
                "dropped": 0,
                "pending": 0,
            }


@pytest.mark.parametrize(
    ("content_type", "body", "pushed"),
    [
        pytest.param("application/json", b"[1, true]", b"[1, true]", id="json-array"),
        pytest.param(
            "application/json", b' {"a" : "\\u00e9"}\n', b' {"a" : "\\u00e9"}\n', id="json-as-sent"
        ),
        pytest.param("application/json", b'"text"', b'"text"', id="json-string"),
        # (A body that says JSON but is not is now refused at ingress: issue 19, F1.)
        pytest.param("application/octet-stream", b"utf-8 text", b"utf-8 text", id="bytes"),
        pytest.param("text/plain", b"[1, true]", b"[1, true]", id="text"),
    ],
)
async def test_binary_in_binary_out_keeps_the_data(
    tmp_path: Path, content_type: str, body: bytes, pushed: bytes
) -> None:
    """What a publisher sends in binary mode reaches the subscriber as the same bytes, JSON
    included (DESIGN "CloudEvents fidelity"), never as Python's text of it."""
    async with run_subscriber() as sub:
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url)]
        )
        async with run_gateway(settings) as gw:
            response = await gw.client.post(
                "/topics/orders/events",
                headers={**BINARY_HEADERS, "ce-id": "e1", "content-type": content_type},
                content=body,
            )
            assert response.status_code == 202
            await settle(gw)
            [received] = sub.received
            assert received.body == pushed
            assert received.headers["content-type"] == content_type


async def test_structured_mode_push_carries_the_whole_event(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        spec = subscription("s1", sub.url, contentMode="structured")
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings) as gw:
            await gw.publish("orders", "e1", **{"ce-time": "2024-05-06T07:08:09.123456789Z"})
            await settle(gw)
            [received] = sub.received
            assert received.headers["content-type"] == "application/cloudevents+json"
            event = orjson.loads(received.body)
            assert (event["id"], event["data"]) == ("e1", {"n": 1})
            assert event["time"] == "2024-05-06T07:08:09.123456789Z"


async def test_fan_out_to_three_subscriptions_with_different_filters(tmp_path: Path) -> None:
    async with run_subscriber() as a, run_subscriber() as b, run_subscriber() as c:
        specs = [
            subscription("all", a.url),
            subscription("pdfs", b.url, filters=[{"suffix": {"subject": ".pdf"}}]),
            subscription(
                "created-not-test",
                c.url,
                filters=[
                    {"exact": {"type": "com.example.order.created"}},
                    {"not": {"prefix": {"source": "/test"}}},
                ],
            ),
        ]
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=specs)
        async with run_gateway(settings) as gw:
            await gw.publish("orders", "1", **{"ce-subject": "a.pdf"})
            await gw.publish("orders", "2", **{"ce-subject": "a.txt"})
            await gw.publish("orders", "3", **{"ce-source": "/test/x", "ce-subject": "b.pdf"})
            await gw.publish("orders", "4", **{"ce-type": "com.example.order.paid"})
            await settle(gw)
            assert sorted(r.event_id for r in a.received) == ["1", "2", "3", "4"]
            assert sorted(r.event_id for r in b.received) == ["1", "3"]
            assert sorted(r.event_id for r in c.received) == ["1", "2"]


async def test_redirect_is_a_failure_and_never_followed(tmp_path: Path) -> None:
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: (
            Answer(302, {"location": sub.url + "/elsewhere"}) if r.path == "/in" else Answer()
        )
        spec = subscription("s1", sub.url + "/in")
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("orders", "r")
            await settle(gw)
            assert [r.path for r in sub.received] == ["/in"]
            assert status(gw, "s1")["pending"] == 1


async def test_a_cookie_one_subscriber_sets_is_never_sent_back(tmp_path: Path) -> None:
    """Pushes share one HTTP session: a cookie kept from one answer would go to every
    subscription on that host (another team's service), so none is ever kept."""
    async with run_subscriber() as sub:
        sub.script = lambda r: Answer(200, {"set-cookie": "session=s1-secret; Path=/"})
        # By name, not IP: aiohttp's default jar already ignores cookies from IP addresses.
        url = sub.url.replace("127.0.0.1", "hooks.example.com")
        specs = [subscription("s1", url + "/one"), subscription("s2", url + "/two")]
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=specs)
        resolver = StubResolver({"hooks.example.com": ["127.0.0.1"]})
        async with run_gateway(settings, resolver=resolver) as gw:
            for index in range(3):
                await gw.publish("orders", f"c-{index}")
                await settle(gw)
        assert len(sub.received) == 6
        assert [r.headers.get("cookie") for r in sub.received] == [None] * 6


async def test_permanent_4xx_dead_letters_at_once(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        sub.script = lambda r: Answer(422, body=b"bad order")
        spec = subscription("s1", sub.url, deadLetterTopic="orders-dead")
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders"}, {"name": "orders-dead"}],
            subscriptions=[spec],
        )
        async with run_gateway(settings) as gw:
            await gw.publish("orders", "p1")
            await settle(gw)
            assert len(sub.received) == 1
            [dead] = (await gw.client.get("/v1/topics/orders-dead/events")).json()["events"]
            assert (dead["id"], dead["dlreason"], dead["dlattempts"]) == ("p1", "permanent", "1")
            assert (dead["dlstatus"], dead["dlbody"]) == ("422", "bad order")
            assert status(gw, "s1")["deadlettered"] == 1


async def test_per_subscription_override_makes_400_transient(tmp_path: Path) -> None:
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(400)
        spec = subscription("s1", sub.url, permanentStatusCodes=[422])
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings, clock=clock, rng=random.Random(1)) as gw:
            await gw.publish("orders", "o")
            await settle(gw)
            clock.advance(15)
            await settle(gw)
            assert len(sub.received) == 2
            assert status(gw, "s1")["pending"] == 1


async def test_delivery_delay_postpones_only_the_first_attempt(tmp_path: Path) -> None:
    """`deliveryDelay` (Pretry's retryHours[0]): the first push waits; others are unaffected."""
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        delayed = subscription("later", sub.url + "/later", deliveryDelay="30s")
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[delayed, subscription("now", sub.url)]
        )
        async with run_gateway(settings, clock=clock) as gw:
            published = clock.now()
            await gw.publish("orders", "d1")
            await settle(gw)
            assert [r.path for r in sub.received] == ["/"]
            clock.advance(29.9)
            await settle(gw)
            assert len(sub.received) == 1
            clock.advance(0.2)
            await settle(gw)
            assert [r.path for r in sub.received] == ["/", "/later"]
            assert sub.received[1].at - published == pytest.approx(30.1, abs=0.01)
            assert status(gw, "later")["acked"] == 1


async def test_a_busy_lane_records_its_outcomes_in_batches(tmp_path: Path) -> None:
    """Each outcome is committed before its slot is reused, but a busy lane's outcomes share
    store operations (gateway.recorder): far fewer operations than pushes, every event acked
    exactly once, and never more pushes at once than the subscription allows."""
    events = 300
    async with run_subscriber() as sub:
        sub.script = lambda request: Answer(delay=0.002)
        spec = subscription("busy", sub.url, maxConcurrency=32)
        settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings) as gw:
            batch = [
                {"specversion": "1.0", "id": f"e{n}", "source": "/shop", "type": "t", "data": n}
                for n in range(events)
            ]
            before = gw.store.committed_operations
            response = await gw.publish_batch("orders", batch)
            assert response.status_code == 202
            await settle(gw)
            operations = gw.store.committed_operations - before
            assert sorted(received.event_id for received in sub.received) == sorted(
                f"e{n}" for n in range(events)
            )
            assert status(gw, "busy")["acked"] == events
            assert 1 < sub.max_in_flight <= 32
            assert operations < events / 4  # one publish + a batch of outcomes per commit

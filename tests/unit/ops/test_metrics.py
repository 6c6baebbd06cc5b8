"""/metrics: DESIGN's series, promtool-clean, values that reconcile, bounded cardinality (S10)."""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import orjson
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    make_settings,
    run_gateway,
    settle,
    subscription,
)
from tests.support.subscriber import Answer, run_subscriber

DESIGN_METRICS = (
    "cegateway_events_published",
    "cegateway_events_duplicate",
    "cegateway_publish_duration_seconds",
    "cegateway_deliveries",
    "cegateway_delivery_duration_seconds",
    "cegateway_deliveries_pending",
    "cegateway_oldest_pending_age_seconds",
    "cegateway_deadlettered",
    "cegateway_deadletter_depth",
    "cegateway_events_dropped",
    "cegateway_store_fsyncs",
    "cegateway_store_used_bytes",
)
OPERATOR_METRICS = (
    "cegateway_store_commit_batch_size",
    "cegateway_store_commit_duration_seconds",
    "cegateway_destination_concurrency",
    "cegateway_event_loop_lag_seconds",
    "cegateway_store_map_usage_ratio",
    "cegateway_build_info",
)


async def scrape(gw: RunningGateway) -> str:
    response = await gw.client.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    return response.text


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(text: str, name: str, **labels: str) -> float:
    return samples(text)[(name, tuple(sorted(labels.items())))]


def settings_with_dead_letters(tmp_path: Path, url: str):  # type: ignore[no-untyped-def]
    return make_settings(
        tmp_path,
        egress=LOOPBACK_EGRESS,
        topics=[{"name": "orders"}, {"name": "dead"}],
        subscriptions=[subscription("billing", url, deadLetterTopic="dead")],
    )


async def test_design_metrics_are_exposed_and_promtool_clean(tmp_path: Path) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "make install provides promtool (Debian package prometheus)"
    async with run_subscriber() as sub:
        sub.script = lambda r: Answer(422 if r.event_id == "bad" else 200)
        async with run_gateway(settings_with_dead_letters(tmp_path, sub.url)) as gw:
            for event_id in ("a", "b", "bad", "a"):
                await gw.publish("orders", event_id)
            await settle(gw)
            text = await scrape(gw)
    names = {family.name for family in text_string_to_metric_families(text)}
    for name in DESIGN_METRICS + OPERATOR_METRICS:
        assert name in names, name
    check = await asyncio.create_subprocess_exec(
        promtool,
        "check",
        "metrics",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
    )
    output, _ = await check.communicate(text.encode())
    assert check.returncode == 0, output.decode()


async def test_metric_values_follow_what_happened(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        sub.script = lambda r: Answer(422 if r.event_id == "bad" else 200)
        async with run_gateway(settings_with_dead_letters(tmp_path, sub.url)) as gw:
            for event_id in ("a", "b", "bad", "a"):
                await gw.publish("orders", event_id)
            await settle(gw)
            text = await scrape(gw)
            assert value(text, "cegateway_events_published_total", topic="orders") == 3
            assert value(text, "cegateway_events_duplicate_total", topic="orders") == 1
            assert (
                value(
                    text,
                    "cegateway_deliveries_total",
                    subscription="billing",
                    outcome="acked",
                    code="2xx",
                )
                == 2
            )
            assert (
                value(
                    text, "cegateway_deadlettered_total", subscription="billing", reason="permanent"
                )
                == 1
            )
            assert value(text, "cegateway_deadletter_depth", topic="dead") == 1
            assert value(text, "cegateway_deliveries_pending", subscription="billing") == 0
            assert value(text, "cegateway_store_fsyncs_total") >= 1
            purge = await gw.client.post("/v1/topics/dead/events:purge", json={"all": True})
            assert purge.json() == {"purged": 1}
            text = await scrape(gw)
            assert value(text, "cegateway_deadletter_depth", topic="dead") == 0
            # Durable figures survive a restart; they are kept in the store.
        async with run_gateway(settings_with_dead_letters(tmp_path, sub.url)) as gw:
            text = await scrape(gw)
            assert (
                value(
                    text, "cegateway_deadlettered_total", subscription="billing", reason="permanent"
                )
                == 1
            )


async def test_oldest_pending_age_grows_while_a_destination_is_down(tmp_path: Path) -> None:
    from gateway.clock import ManualClock

    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(503)
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url)]
        )
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("orders", "stuck")
            await settle(gw)
            clock.advance(300)
            await settle(gw)
            text = await scrape(gw)
            assert value(text, "cegateway_oldest_pending_age_seconds", subscription="s1") >= 300
            assert value(text, "cegateway_deliveries_pending", subscription="s1") == 1
            # Two failed attempts so far (at 0 s and after the advance): 32 halved twice.
            assert value(text, "cegateway_destination_concurrency", subscription="s1") == 8


async def test_series_do_not_grow_with_events_or_unknown_topics(tmp_path: Path) -> None:
    """S10: 10,000 unique ids/sources/types and 1,000 unknown-topic requests add no series."""
    async with run_subscriber() as sub:
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[subscription("s1", sub.url)]
        )
        async with run_gateway(settings) as gw:
            await gw.publish("orders", "warm-up")
            await settle(gw)
            before = set(samples(await scrape(gw)))
            for first in range(0, 10_000, 500):
                batch = [
                    {
                        "specversion": "1.0",
                        "id": f"id-{i}",
                        "source": f"/src/{i}",
                        "type": f"type.{i}",
                    }
                    for i in range(first, first + 500)
                ]
                response = await gw.client.post(
                    "/topics/orders/events",
                    headers={"content-type": "application/cloudevents-batch+json"},
                    content=orjson.dumps(batch),
                )
                assert response.status_code == 202
            for index in range(1_000):
                assert (await gw.publish(f"no-such-topic-{index}", "x")).status_code == 404
            await settle(gw)
            text = await scrape(gw)
    after = set(samples(text))
    assert after == before
    assert "id-9999" not in text and "/src/" not in text and "no-such-topic" not in text


async def test_lane_gauges_show_pushes_held_and_the_concurrency_allowed(tmp_path: Path) -> None:
    """Read at scrape time from the lanes (issue 20's LaneStatistics): what an operator sees
    while a destination is slow, and after."""
    async with run_subscriber() as sub:
        sub.script = lambda r: Answer(200, delay=0.3 if r.event_id.startswith("slow") else 0)
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "orders"}, {"name": "audit"}],
            subscriptions=[
                subscription("billing", sub.url, maxConcurrency=3),
                subscription("archive", sub.url, topic="audit", maxConcurrency=5),
            ],
        )
        async with run_gateway(settings) as gw:
            for event_id in ("slow-1", "slow-2"):
                assert (await gw.publish("orders", event_id)).status_code == 202
            for _ in range(500):
                if sub.in_flight == 2:
                    break
                await asyncio.sleep(0.002)
            assert sub.in_flight == 2
            held = await scrape(gw)
            await settle(gw)
            after = await scrape(gw)
    assert value(held, "cegateway_deliveries_in_flight", subscription="billing") == 2
    assert value(held, "cegateway_deliveries_in_flight", subscription="archive") == 0
    assert value(held, "cegateway_destination_concurrency", subscription="billing") == 3
    assert value(held, "cegateway_destination_concurrency", subscription="archive") == 5
    assert value(after, "cegateway_deliveries_in_flight", subscription="billing") == 0
    assert value(after, "cegateway_destination_concurrency", subscription="billing") == 3

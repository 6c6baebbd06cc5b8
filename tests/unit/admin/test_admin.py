"""The admin REST API over real HTTP: topics, topic browsing, subscriptions and their status.

Every 4xx is an RFC 9457 problem body naming the field that is wrong (DESIGN "Interfaces").
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    assert_problem,
    make_settings,
    run_gateway,
    settle,
    subscription,
)
from tests.support.subscriber import Answer, Received, run_subscriber

COUNTS = ("published", "acked", "deadlettered", "dropped", "pending")
TOPICS = [
    {"name": "orders"},
    {"name": "orders-dead"},
    {"name": "audit", "retention": "48h"},
    {"name": "short", "retention": "PT90M"},
]


def admin_settings(tmp_path: Path, **config: Any) -> Any:
    return make_settings(tmp_path / "data", egress=LOOPBACK_EGRESS, topics=TOPICS, **config)


def spec(url: str, topic: str = "orders", **policy: Any) -> dict[str, Any]:
    """A PUT body: the YAML shape without the name (the path names the subscription)."""
    body = subscription("unused", url, topic, **policy)
    del body["name"]
    return body


def without_status(document: dict[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in document.items() if key != "status"}


def counts(document: dict[str, Any]) -> dict[str, int]:
    return {key: document["status"][key] for key in COUNTS}


async def eventually(check: Callable[[], Any], what: str, tries: int = 250) -> None:
    """Poll `check` until it is truthy (bounded: 250 x 20 ms)."""
    for _ in range(tries):
        if await check():
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


async def publish_type(gw: RunningGateway, event_id: str, event_type: str) -> None:
    response = await gw.publish("orders", event_id, **{"ce-type": event_type})
    assert response.status_code == 202, response.text


# -- topics ----------------------------------------------------------------------------------


async def test_list_topics_has_default_and_configured_with_retention(tmp_path: Path) -> None:
    async with run_gateway(admin_settings(tmp_path)) as gw:
        response = await gw.client.get("/v1/topics")
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        assert response.json() == {
            "topics": [
                {"name": "audit", "retention": "48h"},
                {"name": "default", "retention": "24h"},
                {"name": "orders", "retention": "24h"},
                {"name": "orders-dead", "retention": "24h"},
                {"name": "short", "retention": "90m"},
            ]
        }
        single = await gw.client.get("/v1/topics/audit")
        assert single.json() == {"name": "audit", "retention": "48h"}
        assert_problem(await gw.client.get("/v1/topics/nope"), 404, "not-found")


async def test_put_topic_creates_then_replaces_idempotently(gateway: RunningGateway) -> None:
    created = await gateway.client.put("/v1/topics/invoices", json={"retention": "48h"})
    assert created.status_code == 201
    assert created.json() == {"name": "invoices", "retention": "48h"}
    again = await gateway.client.put("/v1/topics/invoices", json={"retention": "48h"})
    assert again.status_code == 200
    assert again.json() == created.json()
    changed = await gateway.client.put(
        "/v1/topics/invoices", json={"name": "invoices", "retention": "1.5s"}
    )
    assert changed.status_code == 200
    assert (await gateway.client.get("/v1/topics/invoices")).json() == {
        "name": "invoices",
        "retention": "1.5s",
    }
    defaulted = await gateway.client.put("/v1/topics/plain")
    assert (defaulted.status_code, defaulted.json()) == (201, {"name": "plain", "retention": "24h"})
    names = [topic["name"] for topic in (await gateway.client.get("/v1/topics")).json()["topics"]]
    assert {"invoices", "plain"} <= set(names)
    assert (await gateway.publish("invoices", "i-1")).status_code == 202


@pytest.mark.parametrize(
    ("path", "body", "field"),
    [
        pytest.param("/v1/topics/t1", {"retention": "two days"}, "retention", id="bad-retention"),
        pytest.param("/v1/topics/t1", {"retention": "10"}, "retention", id="retention-no-unit"),
        pytest.param("/v1/topics/t1", {"retention": 48}, "retention", id="retention-not-string"),
        pytest.param("/v1/topics/t1", {"name": "t2"}, "name", id="name-differs-from-path"),
        pytest.param("/v1/topics/-dash", {}, "name", id="name-leading-dash"),
        pytest.param("/v1/topics/a%20b", {}, "name", id="name-with-space"),
        pytest.param("/v1/topics/" + "x" * 101, {}, "name", id="name-too-long"),
    ],
)
async def test_put_topic_refuses_bad_input(
    gateway: RunningGateway, path: str, body: dict[str, Any], field: str
) -> None:
    response = await gateway.client.put(path, json=body)
    problem = assert_problem(response, 400, "invalid-request")
    assert problem["field"] == field
    names = [topic["name"] for topic in (await gateway.client.get("/v1/topics")).json()["topics"]]
    assert names == ["default", "orders"]


async def test_put_topic_refuses_unknown_field_and_bad_json(gateway: RunningGateway) -> None:
    response = await gateway.client.put("/v1/topics/t1", json={"retention": "1h", "colour": "red"})
    problem = assert_problem(response, 400, "invalid-request")
    assert "colour" in problem["detail"]
    response = await gateway.client.put("/v1/topics/t1", content=b"{not json")
    assert_problem(response, 400, "invalid-request")
    assert_problem(await gateway.client.get("/v1/topics/t1"), 404, "not-found")


async def test_delete_topic_then_404(gateway: RunningGateway) -> None:
    assert (await gateway.client.put("/v1/topics/gone", json={})).status_code == 201
    assert (await gateway.publish("gone", "g-1")).status_code == 202
    response = await gateway.client.delete("/v1/topics/gone")
    assert response.status_code == 204
    assert response.content == b""
    assert_problem(await gateway.client.delete("/v1/topics/gone"), 404, "not-found")
    assert_problem(await gateway.client.get("/v1/topics/gone"), 404, "not-found")
    assert_problem(await gateway.client.get("/v1/topics/gone/events"), 404, "not-found")
    assert_problem(await gateway.publish("gone", "g-2"), 404, "not-found")
    # Re-created, it starts empty: the old events went with the topic.
    assert (await gateway.client.put("/v1/topics/gone", json={})).status_code == 201
    assert (await gateway.client.get("/v1/topics/gone/events")).json()["events"] == []


async def test_default_topic_cannot_be_deleted(gateway: RunningGateway) -> None:
    """DESIGN: "The topic `default` always exists"; `POST /` publishes to it."""
    response = await gateway.client.delete("/v1/topics/default")
    assert response.status_code in (400, 403, 409), response.status_code
    assert response.headers["content-type"] == "application/problem+json"
    assert (await gateway.client.get("/v1/topics/default")).status_code == 200


async def test_delete_topic_in_use_is_409_listing_subscriptions(tmp_path: Path) -> None:
    async with run_gateway(admin_settings(tmp_path)) as gw:
        url = "http://127.0.0.1:9/hook"
        for name, body in [
            ("b-sub", spec(url)),
            ("a-sub", spec(url, deadLetterTopic="orders-dead")),
            ("c-sub", spec(url, topic="audit")),
        ]:
            assert (await gw.client.put(f"/v1/subscriptions/{name}", json=body)).status_code == 201
        problem = assert_problem(await gw.client.delete("/v1/topics/orders"), 409, "conflict")
        assert problem["subscriptions"] == ["a-sub", "b-sub"]
        assert "a-sub" in problem["detail"] and "b-sub" in problem["detail"]
        # A dead-letter topic in use is protected too.
        problem = assert_problem(await gw.client.delete("/v1/topics/orders-dead"), 409, "conflict")
        assert problem["subscriptions"] == ["a-sub"]
        assert (await gw.client.get("/v1/topics/orders")).status_code == 200
        # Once the users are gone the topic can go.
        for name in ("a-sub", "b-sub"):
            assert (await gw.client.delete(f"/v1/subscriptions/{name}")).status_code == 204
        assert (await gw.client.delete("/v1/topics/orders")).status_code == 204


async def test_browse_pages_25_events_by_10(gateway: RunningGateway) -> None:
    ids = [f"e{index:02d}" for index in range(25)]
    for event_id in ids:
        assert (await gateway.publish("orders", event_id)).status_code == 202
    pages: list[list[dict[str, Any]]] = []
    after: str | None = None
    for _ in range(10):  # bounded: 3 pages expected
        params = {"limit": "10", **({"after": after} if after is not None else {})}
        response = await gateway.client.get("/v1/topics/orders/events", params=params)
        assert response.status_code == 200
        assert response.headers["content-type"] == "application/json"
        body = response.json()
        assert set(body) == {"events", "next"}
        pages.append(body["events"])
        after = body["next"]
        if after is None:
            break
        assert isinstance(after, str)
    assert [len(page) for page in pages] == [10, 10, 5]
    events = [event for page in pages for event in page]
    assert [event["id"] for event in events] == ids
    for event in events:
        assert event["specversion"] == "1.0"
        assert event["source"] == "/shop"
        assert event["type"] == "com.example.order.created"
        assert event["datacontenttype"] == "application/json"
        assert event["data"] == {"n": 1}
    # One page of everything; the default page holds all 25.
    whole = (await gateway.client.get("/v1/topics/orders/events", params={"limit": "1000"})).json()
    assert [event["id"] for event in whole["events"]] == ids
    assert whole["next"] is None
    default = (await gateway.client.get("/v1/topics/orders/events")).json()
    assert len(default["events"]) == 25
    # An exact multiple: the page that ends the topic says so with next null or an empty page.
    first = (await gateway.client.get("/v1/topics/orders/events", params={"limit": 25})).json()
    assert len(first["events"]) == 25
    if first["next"] is not None:
        rest = await gateway.client.get(
            "/v1/topics/orders/events", params={"limit": 25, "after": first["next"]}
        )
        assert rest.json() == {"events": [], "next": None}


@pytest.mark.parametrize("limit", ["0", "1001", "x", "-1", "1.5", ""])
async def test_browse_bad_limit_is_400_naming_limit(gateway: RunningGateway, limit: str) -> None:
    response = await gateway.client.get("/v1/topics/orders/events", params={"limit": limit})
    assert assert_problem(response, 400, "invalid-request")["field"] == "limit"


@pytest.mark.parametrize("after", ["abc", "-1", "1e3"])
async def test_browse_bad_cursor_is_400_naming_after(gateway: RunningGateway, after: str) -> None:
    response = await gateway.client.get("/v1/topics/orders/events", params={"after": after})
    assert assert_problem(response, 400, "invalid-request")["field"] == "after"


@pytest.mark.parametrize(
    ("name", "value"),
    [
        pytest.param("limit", "\u00b2", id="limit-superscript-two"),
        pytest.param("after", "\u00b2", id="after-superscript-two"),
        pytest.param("after", "9" * 30, id="after-beyond-64-bits"),
    ],
)
async def test_browse_odd_numbers_are_400_not_500(
    gateway: RunningGateway, name: str, value: str
) -> None:
    """`str.isdigit()` accepts "²" (int() does not) and a cursor beyond 2**64 overflows the key
    packing: both must be a 400 naming the parameter, not an unexpected 500."""
    response = await gateway.client.get("/v1/topics/orders/events", params={name: value})
    assert assert_problem(response, 400, "invalid-request")["field"] == name


# -- subscriptions ---------------------------------------------------------------------------


async def test_put_subscription_creates_then_replaces_and_lists(tmp_path: Path) -> None:
    async with run_gateway(admin_settings(tmp_path)) as gw:
        body = spec(
            "http://127.0.0.1:9/hook",
            contentMode="structured",
            filters=[{"exact": {"type": "com.example.order.created"}}],
            ackDeadline="5s",
            retryPolicy={"minimumBackoff": "250ms", "maximumBackoff": "1m"},
            maxDeliveryAttempts=3,
            permanentStatusCodes=[400, 422],
            deadLetterTopic="orders-dead",
        )
        created = await gw.client.put("/v1/subscriptions/billing", json=body)
        assert created.status_code == 201, created.text
        document = without_status(created.json())
        assert document["name"] == "billing"
        assert document["topic"] == "orders"
        assert document["destination"]["http"] == {
            "url": "http://127.0.0.1:9/hook",
            "contentMode": "structured",
        }
        assert document["filters"] == [{"exact": {"type": "com.example.order.created"}}]
        assert document["ackDeadline"] == "5s"
        assert document["retryPolicy"]["minimumBackoff"] == "250ms"
        assert document["retryPolicy"]["maximumBackoff"] == "1m"
        assert document["maxDeliveryAttempts"] == 3
        assert document["permanentStatusCodes"] == [400, 422]
        assert document["deadLetterTopic"] == "orders-dead"

        fetched = (await gw.client.get("/v1/subscriptions/billing")).json()
        assert without_status(fetched) == document
        assert counts(fetched) == dict.fromkeys(COUNTS, 0)

        again = await gw.client.put("/v1/subscriptions/billing", json=body)
        assert again.status_code == 200
        assert without_status(again.json()) == document
        replaced = await gw.client.put(
            "/v1/subscriptions/billing", json={**spec("http://127.0.0.1:9/v2"), "name": "billing"}
        )
        assert replaced.status_code == 200
        fetched = (await gw.client.get("/v1/subscriptions/billing")).json()
        assert fetched["destination"]["http"]["url"] == "http://127.0.0.1:9/v2"
        assert "deadLetterTopic" not in fetched  # unset fields are left out
        assert fetched["filters"] == []

        second = await gw.client.put(
            "/v1/subscriptions/audit-log", json=spec("http://127.0.0.1:9/a")
        )
        assert second.status_code == 201
        listing = await gw.client.get("/v1/subscriptions")
        assert listing.status_code == 200
        names = [item["name"] for item in listing.json()["subscriptions"]]
        assert names == ["audit-log", "billing"]
        assert listing.json()["subscriptions"][1]["destination"]["http"]["url"].endswith("/v2")


async def test_unknown_subscription_is_404(gateway: RunningGateway) -> None:
    assert_problem(await gateway.client.get("/v1/subscriptions/nope"), 404, "not-found")
    assert_problem(await gateway.client.delete("/v1/subscriptions/nope"), 404, "not-found")
    assert (await gateway.client.get("/v1/subscriptions")).json() == {"subscriptions": []}


URL = "http://127.0.0.1:9/hook"


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(spec(URL, topic="nope"), "topic", id="unknown-topic"),
        pytest.param(
            spec(URL, retryPolicy={"maximumBackoff": "ten minutes"}),
            "retryPolicy.maximumBackoff",
            id="bad-duration",
        ),
        pytest.param(
            spec(URL, retryPolicy={"minimumBackoff": "10m", "maximumBackoff": "1m"}),
            "retryPolicy.minimumBackoff",
            id="min-above-max",
        ),
        pytest.param(
            spec(URL, retryPolicy={"schedule": ["1h", "soon"]}),
            "retryPolicy.schedule[1]",
            id="bad-schedule",
        ),
        pytest.param(spec(URL, ackDeadline="0s"), "ackDeadline", id="ack-deadline-zero"),
        pytest.param(
            spec(URL, filters=[{"exakt": {"type": "x"}}]), "filters[0]", id="filter-operator"
        ),
        pytest.param(
            spec(URL, filters=[{"exact": {"Type!": "x"}}]), "filters[0]", id="filter-attribute"
        ),
        pytest.param(
            spec(URL, filters=[{"exact": {"type": "a"}}, {"any": "not a list"}]),
            "filters[1]",
            id="filter-any-not-list",
        ),
        pytest.param(
            spec(URL, deadLetterTopic="missing"), "deadLetterTopic", id="dead-letter-missing"
        ),
        pytest.param(
            spec(URL, deadLetterTopic="orders"), "deadLetterTopic", id="dead-letter-own-topic"
        ),
        pytest.param(
            spec(URL, contentMode="weird"),
            "destination.http.contentMode",
            id="content-mode",
        ),
        pytest.param(spec(URL, maxDeliveryAttempts=0), "maxDeliveryAttempts", id="attempts-0"),
        pytest.param(
            spec(URL, permanentStatusCodes=[400, 500]),
            "permanentStatusCodes[1]",
            id="permanent-500",
        ),
        pytest.param(spec(URL, maxConcurrency=0), "maxConcurrency", id="concurrency-0"),
        pytest.param({"topic": "orders", "destination": {}}, "destination", id="destination-empty"),
        pytest.param(
            spec(URL, retryPolicy={"maximumBackoff": 600}),
            "retryPolicy.maximumBackoff",
            id="duration-not-string",
        ),
        pytest.param({**spec(URL), "name": "other"}, "name", id="name-differs-from-path"),
    ],
)
async def test_put_subscription_refuses_invalid_spec(
    tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    async with run_gateway(admin_settings(tmp_path)) as gw:
        response = await gw.client.put("/v1/subscriptions/s1", json=body)
        problem = assert_problem(response, 400, "invalid-request")
        assert problem["field"].startswith(field), problem
        assert (await gw.client.get("/v1/subscriptions")).json() == {"subscriptions": []}


async def test_put_subscription_refuses_bad_name_and_bad_json(gateway: RunningGateway) -> None:
    response = await gateway.client.put("/v1/subscriptions/-x", json=spec(URL))
    assert assert_problem(response, 400, "invalid-request")["field"] == "name"
    response = await gateway.client.put("/v1/subscriptions/s1", content=b"[1, 2")
    assert_problem(response, 400, "invalid-request")
    response = await gateway.client.put("/v1/subscriptions/s1", json=[spec(URL)])
    assert_problem(response, 400, "invalid-request")


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({**spec(URL), "colour": "red"}, "colour", id="unknown-top-level"),
        pytest.param(
            spec(URL, retryPolicy={"maximumBackof": "1m"}),
            "retryPolicy.maximumBackof",
            id="unknown-nested",
        ),
        pytest.param(
            {"topic": "orders", "destination": {"http": {"url": URL, "mode": "binary"}}},
            "destination.http.mode",
            id="unknown-in-destination",
        ),
        pytest.param({"destination": {"http": {"url": URL}}}, "topic", id="missing-topic"),
    ],
)
async def test_unknown_or_missing_key_is_named_in_field(
    tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    """The problem's `field` must name the key at fault, not "(top level)" or its parent."""
    async with run_gateway(admin_settings(tmp_path)) as gw:
        response = await gw.client.put("/v1/subscriptions/s1", json=body)
        problem = assert_problem(response, 400, "invalid-request")
        assert field.rsplit(".", 1)[-1] in problem["detail"]
        assert problem["field"] == field, problem


async def test_unknown_topic_body_field_is_named_in_field(gateway: RunningGateway) -> None:
    response = await gateway.client.put("/v1/topics/t1", json={"retention": "1h", "colour": "red"})
    problem = assert_problem(response, 400, "invalid-request")
    assert problem["field"] == "colour", problem


async def test_dead_letter_cycle_names_the_subscription_being_put(tmp_path: Path) -> None:
    """a -> b, b -> c are fine; c -> a closes the cycle, and the refusal is about that PUT."""
    settings = make_settings(
        tmp_path / "data",
        egress=LOOPBACK_EGRESS,
        topics=[{"name": "a"}, {"name": "b"}, {"name": "c"}],
    )
    async with run_gateway(settings) as gw:
        for name, topic, dead in [("s1", "a", "b"), ("s2", "b", "c")]:
            response = await gw.client.put(
                f"/v1/subscriptions/{name}", json=spec(URL, topic=topic, deadLetterTopic=dead)
            )
            assert response.status_code == 201
        response = await gw.client.put(
            "/v1/subscriptions/s3", json=spec(URL, topic="c", deadLetterTopic="a")
        )
        problem = assert_problem(response, 400, "invalid-request")
        assert_problem(await gw.client.get("/v1/subscriptions/s3"), 404, "not-found")
        assert problem["field"] == "deadLetterTopic", problem


async def test_status_counts_reflect_real_deliveries(tmp_path: Path) -> None:
    def answer(request: Received) -> Answer:
        if request.event_id.startswith("ok"):
            return Answer(200)
        if request.event_id.startswith("bad"):
            return Answer(422, body=b"no")
        return Answer(503)

    async with run_subscriber() as sub:
        sub.script = answer
        async with run_gateway(admin_settings(tmp_path)) as gw:
            with_dead = spec(sub.url + "/a", deadLetterTopic="orders-dead")
            without = spec(sub.url + "/b", filters=[{"prefix": {"id": "bad"}}])
            for name, body in [("with-dead", with_dead), ("without-dead", without)]:
                response = await gw.client.put(f"/v1/subscriptions/{name}", json=body)
                assert response.status_code == 201, response.text
            for event_id in ("ok-1", "ok-2", "bad-1", "busy-1"):
                assert (await gw.publish("orders", event_id)).status_code == 202
            await settle(gw)

            async def settled() -> bool:
                status = (await gw.client.get("/v1/subscriptions/with-dead")).json()["status"]
                return len(sub.received) == 5 and status["acked"] + status["deadlettered"] == 3

            await eventually(settled, "every first attempt recorded")
            await settle(gw)
            document = (await gw.client.get("/v1/subscriptions/with-dead")).json()
            assert counts(document) == {
                "published": 4,
                "acked": 2,
                "deadlettered": 1,
                "dropped": 0,
                "pending": 1,
            }
            other = (await gw.client.get("/v1/subscriptions/without-dead")).json()
            assert counts(other) == {
                "published": 1,
                "acked": 0,
                "deadlettered": 0,
                "dropped": 1,
                "pending": 0,
            }
            by_path = sorted((r.path, r.event_id) for r in sub.received)
            assert by_path == [
                ("/a", "bad-1"),
                ("/a", "busy-1"),
                ("/a", "ok-1"),
                ("/a", "ok-2"),
                ("/b", "bad-1"),
            ]
            dead = (await gw.client.get("/v1/topics/orders-dead/events")).json()["events"]
            assert [(event["id"], event["dlreason"]) for event in dead] == [("bad-1", "permanent")]


async def test_replaced_filter_applies_to_later_events(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        async with run_gateway(admin_settings(tmp_path)) as gw:
            first = spec(sub.url, filters=[{"exact": {"type": "com.example.a"}}])
            assert (await gw.client.put("/v1/subscriptions/f", json=first)).status_code == 201
            await publish_type(gw, "1", "com.example.a")
            await publish_type(gw, "2", "com.example.b")
            await settle(gw)
            second = spec(sub.url, filters=[{"exact": {"type": "com.example.b"}}])
            assert (await gw.client.put("/v1/subscriptions/f", json=second)).status_code == 200
            await publish_type(gw, "3", "com.example.a")
            await publish_type(gw, "4", "com.example.b")
            await settle(gw)

            async def two_acked() -> bool:
                document = (await gw.client.get("/v1/subscriptions/f")).json()
                return bool(document["status"]["acked"] == 2)

            await eventually(two_acked, "two acks")
            assert sorted(request.event_id for request in sub.received) == ["1", "4"]
            document = (await gw.client.get("/v1/subscriptions/f")).json()
            assert document["filters"] == [{"exact": {"type": "com.example.b"}}]
            assert counts(document)["published"] == 2


async def test_delete_with_pending_is_409_then_force_drops_them(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        sub.script = lambda request: Answer(503)
        async with run_gateway(admin_settings(tmp_path)) as gw:
            body = spec(sub.url, retryPolicy={"minimumBackoff": "30s", "maximumBackoff": "60s"})
            assert (await gw.client.put("/v1/subscriptions/slow", json=body)).status_code == 201
            for event_id in ("p1", "p2", "p3"):
                assert (await gw.publish("orders", event_id)).status_code == 202
            await settle(gw)

            async def three_tried() -> bool:
                return len({request.event_id for request in sub.received}) == 3

            await eventually(three_tried, "a first attempt at each event")
            await settle(gw)
            document = (await gw.client.get("/v1/subscriptions/slow")).json()
            assert counts(document)["pending"] == 3

            problem = assert_problem(
                await gw.client.delete("/v1/subscriptions/slow"), 409, "conflict"
            )
            assert problem["pending"] == 3
            assert "3 pending" in problem["detail"]
            response = await gw.client.delete("/v1/subscriptions/slow", params={"force": "false"})
            assert_problem(response, 409, "conflict")
            assert (await gw.client.get("/v1/subscriptions/slow")).status_code == 200

            response = await gw.client.delete("/v1/subscriptions/slow", params={"force": "true"})
            assert response.status_code == 204
            assert_problem(await gw.client.get("/v1/subscriptions/slow"), 404, "not-found")
            assert gw.store.deliveries.pending("slow") == 0
            assert gw.store.deliveries.counters("slow") == dict.fromkeys(COUNTS[:-1], 0)

            # Re-created under the same name, it starts clean: the old deliveries are gone.
            sub.script = lambda request: Answer(200)
            tried = len(sub.received)
            assert (await gw.client.put("/v1/subscriptions/slow", json=body)).status_code == 201
            await settle(gw)
            document = (await gw.client.get("/v1/subscriptions/slow")).json()
            assert counts(document) == dict.fromkeys(COUNTS, 0)
            assert len(sub.received) == tried
            # And it can be deleted without force when nothing is pending.
            assert (await gw.client.delete("/v1/subscriptions/slow")).status_code == 204


async def test_every_admin_error_is_problem_json(gateway: RunningGateway) -> None:
    client: httpx.AsyncClient = gateway.client
    assert_problem(await client.post("/v1/topics"), 405, "method-not-allowed")
    assert_problem(await client.patch("/v1/subscriptions/x", json={}), 405, "method-not-allowed")
    assert_problem(await client.get("/v1/nothing"), 404, "not-found")


# -- poison input (issue 19: F3, F4, retention) -------------------------------------------------

DEEP = b"[" * 100_000  # a RecursionError in the JSON decoder before (a 500)
NESTED_200 = b"[" * 200 + b"]" * 200  # valid JSON deeper than jsonsafe.MAX_DEPTH (128)
ADMIN_BODIES = [
    pytest.param("PUT", "/v1/subscriptions/s1", b'{"filters":', id="subscription"),
    pytest.param("PUT", "/v1/subscriptions/s1", b'{"topic": "orders", "x":', id="subscription-key"),
    pytest.param("PUT", "/v1/topics/t1", b'{"retention":', id="topic"),
    pytest.param("POST", "/v1/topics/orders-dead/events:redrive", b'{"ids":', id="redrive"),
    pytest.param("POST", "/v1/topics/orders-dead/events:purge", b'{"ids":', id="purge"),
    pytest.param("POST", "/v1/config", b'{"integrations":', id="pretry-config"),
    pytest.param("POST", "/v1/event", b'{"identifier": "p", "eventBody":', id="pretry-event"),
]


@pytest.mark.parametrize(
    "tail", [pytest.param(DEEP, id="100000"), pytest.param(NESTED_200, id="200")]
)
@pytest.mark.parametrize(("method", "path", "head"), ADMIN_BODIES)
async def test_deeply_nested_admin_bodies_are_400_and_store_nothing(
    tmp_path: Path, method: str, path: str, head: bytes, tail: bytes
) -> None:
    async with run_gateway(admin_settings(tmp_path)) as gw:
        before = [
            (await gw.client.get(listing)).json() for listing in ("/v1/topics", "/v1/subscriptions")
        ]
        body = head + tail + (b"}" if tail is NESTED_200 else b"")
        response = await gw.client.request(
            method, path, content=body, headers={"content-type": "application/json"}
        )
        problem = assert_problem(response, 400, "invalid-request")
        assert problem["field"] == "body", problem
        after = [
            (await gw.client.get(listing)).json() for listing in ("/v1/topics", "/v1/subscriptions")
        ]
        assert after == before
        assert_problem(await gw.client.get("/v1/config/p"), 404, "not-found")


HUGE = 99_999_999_999_999_999_999_999  # F4: saved, then every listing a 500, even after restart


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param(
            spec(URL, maxDeliveryAttempts=HUGE), "maxDeliveryAttempts", id="attempts-huge"
        ),
        pytest.param(
            spec(URL, maxDeliveryAttempts=10_001), "maxDeliveryAttempts", id="attempts-10001"
        ),
        pytest.param(spec(URL, maxConcurrency=HUGE), "maxConcurrency", id="concurrency-huge"),
        pytest.param(spec(URL, maxConcurrency=1001), "maxConcurrency", id="concurrency-1001"),
        pytest.param(
            spec(URL, permanentStatusCodes=[HUGE]), "permanentStatusCodes[0]", id="status-huge"
        ),
        pytest.param(
            spec(URL, permanentStatusCodes=[399]), "permanentStatusCodes[0]", id="status-399"
        ),
        pytest.param(
            spec(URL, permanentStatusCodes=[400] * 101), "permanentStatusCodes", id="status-101"
        ),
        pytest.param(spec(URL, ackDeadline="601s"), "ackDeadline", id="ack-deadline-601s"),
        pytest.param(spec(URL, ackDeadline="9" * 60 + "h"), "ackDeadline", id="ack-deadline-huge"),
        pytest.param(
            spec(URL, retryPolicy={"maximumBackoff": "366d"}),
            "retryPolicy.maximumBackoff",
            id="backoff-366d",
        ),
        pytest.param(
            spec(URL, retryPolicy={"minimumBackoff": "99999999999999999999h"}),
            "retryPolicy.minimumBackoff",
            id="backoff-huge",
        ),
        pytest.param(
            spec(URL, retryPolicy={"schedule": ["1h", "400d"]}),
            "retryPolicy.schedule[1]",
            id="schedule-400d",
        ),
        pytest.param(
            spec(URL, retryPolicy={"schedule": ["1s"] * 101}),
            "retryPolicy.schedule",
            id="schedule-101",
        ),
        pytest.param(spec(URL, deliveryDelay="366d"), "deliveryDelay", id="delivery-delay-366d"),
        pytest.param(
            spec(URL, filters=[{"exact": {"type": "a"}}] * 101), "filters", id="filters-101"
        ),
        pytest.param(spec("http://127.0.0.1:9/" + "x" * 2048), "destination.http.url", id="url"),
    ],
)
async def test_out_of_range_fields_are_400_naming_the_field_and_store_nothing(
    tmp_path: Path, body: dict[str, Any], field: str
) -> None:
    async with run_gateway(admin_settings(tmp_path)) as gw:
        response = await gw.client.put("/v1/subscriptions/s1", json=body)
        problem = assert_problem(response, 400, "invalid-request")
        assert problem["field"] == field, problem
        listed = await gw.client.get("/v1/subscriptions")
        assert listed.status_code == 200
        assert listed.json() == {"subscriptions": []}
        assert_problem(await gw.client.get("/v1/subscriptions/s1"), 404, "not-found")
        assert "s1" not in dict(await gw.store.subscription_rows())


async def test_edges_of_the_ranges_are_accepted(tmp_path: Path) -> None:
    body = spec(
        URL,
        maxDeliveryAttempts=10_000,
        maxConcurrency=1000,
        permanentStatusCodes=[400, 499],
        ackDeadline="600s",
        retryPolicy={"minimumBackoff": "0s", "maximumBackoff": "365d"},
        deliveryDelay="365d",
    )
    async with run_gateway(admin_settings(tmp_path)) as gw:
        response = await gw.client.put("/v1/subscriptions/s1", json=body)
        assert response.status_code == 201, response.text
        assert (await gw.client.put("/v1/topics/t1", json={"retention": "1s"})).status_code == 201
        assert (
            await gw.client.put("/v1/topics/t2", json={"retention": "3650d"})
        ).status_code == 201


async def test_a_stored_spec_that_no_longer_decodes_is_skipped_not_a_500(tmp_path: Path) -> None:
    """F4 after a restart: a row saved before the ranges (maxDeliveryAttempts 10^23) made every
    listing a 500. It is now skipped at start (and logged); the others are served."""
    settings = admin_settings(tmp_path)
    async with run_gateway(settings) as gw:
        assert (await gw.client.put("/v1/subscriptions/good", json=spec(URL))).status_code == 201
        bad = {**subscription("bad", URL), "maxDeliveryAttempts": HUGE}
        row = httpx.Response(200, json=bad).content  # JSON with the 23-digit integer as is
        await gw.store.put_subscription("bad", row, lambda: lambda: None)
    async with run_gateway(settings) as gw:
        listed = await gw.client.get("/v1/subscriptions")
        assert listed.status_code == 200, listed.text
        assert [item["name"] for item in listed.json()["subscriptions"]] == ["good"]
        assert_problem(await gw.client.get("/v1/subscriptions/bad"), 404, "not-found")
        # ... and it can be replaced with a valid spec.
        response = await gw.client.put("/v1/subscriptions/bad", json=spec(URL))
        assert response.status_code in (200, 201), response.text
        assert (await gw.client.get("/v1/subscriptions")).status_code == 200


@pytest.mark.parametrize(
    "retention",
    ["0s", "0ms", "999ms", "PT0S", "3651d", "9" * 60 + "h"],
)
async def test_topic_retention_outside_1s_to_3650d_is_400(
    gateway: RunningGateway, retention: str
) -> None:
    response = await gateway.client.put("/v1/topics/t1", json={"retention": retention})
    problem = assert_problem(response, 400, "invalid-request")
    assert problem["field"] == "retention", problem
    assert "at least 1s and at most 3650d" in problem["detail"]
    assert_problem(await gateway.client.get("/v1/topics/t1"), 404, "not-found")


@pytest.mark.parametrize(("method", "path", "head"), ADMIN_BODIES[:-1])  # /v1/event: maxBodySize
async def test_admin_bodies_over_1_mib_are_413_and_store_nothing(
    tmp_path: Path, method: str, path: str, head: bytes
) -> None:
    body = head + b'"' + b"x" * 1024**2 + b'"}'
    async with run_gateway(admin_settings(tmp_path)) as gw:
        response = await gw.client.request(method, path, content=body)
        problem = assert_problem(response, 413, "payload-too-large")
        assert problem["field"] == "body"
        assert (await gw.client.get("/v1/subscriptions")).json() == {"subscriptions": []}
        assert_problem(await gw.client.get("/v1/topics/t1"), 404, "not-found")


async def test_a_chunked_admin_body_is_refused_as_it_passes_1_mib(tmp_path: Path) -> None:
    """Without a Content-Length the body is counted as it streams, never buffered whole."""
    async with run_gateway(admin_settings(tmp_path)) as gw:
        reader, writer = await asyncio.open_connection("127.0.0.1", int(gw.url.rsplit(":", 1)[1]))
        writer.write(
            b"PUT /v1/subscriptions/s1 HTTP/1.1\r\nHost: x\r\n"
            b"content-type: application/json\r\ntransfer-encoding: chunked\r\n\r\n"
        )
        chunk = b"%x\r\n" % 65536 + b"z" * 65536 + b"\r\n"
        try:
            for _ in range(64):  # 4 MiB, stopping once the server answers
                writer.write(chunk)
                await writer.drain()
        except OSError:
            pass
        answer = await reader.read(65536)
        writer.close()
        assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
        assert (await gw.client.get("/v1/subscriptions")).json() == {"subscriptions": []}

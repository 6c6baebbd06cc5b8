"""`GET /v1/topics/{topic}/events/{id}` over real HTTP (DESIGN "Exact shapes: Delivery
visibility"): the event and each subscription's delivery with its attempt log, pushes made for
real to a subscriber, time moved by the injected clock."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gateway.clock import ManualClock
from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    advance_to_next_due,
    assert_problem,
    make_settings,
    run_gateway,
    settle,
    subscription,
)
from tests.support.subscriber import Answer, Received, run_subscriber

TOKEN = "sekrit-token-4711"


def settings(tmp_path: Path, url: str, **policy: Any) -> Any:
    spec = subscription(
        "s1",
        url + "/hook",
        retryPolicy={"minimumBackoff": "10s", "maximumBackoff": "10s"},
        **policy,
    )
    token_file = tmp_path / "token"
    token_file.write_text(TOKEN)
    spec["destination"]["http"]["bearerTokenFile"] = str(token_file)
    return make_settings(tmp_path / "data", egress=LOOPBACK_EGRESS, subscriptions=[spec])


def twice_failing() -> Any:
    answers = iter([Answer(503, body=b"busy, token " + TOKEN.encode()), Answer(500)])

    def script(request: Received) -> Answer:
        return next(answers, Answer(200, body=b"thanks"))

    return script


async def event_of(gw: RunningGateway, event_id: str, **query: str) -> Any:
    return await gw.client.get(f"/v1/topics/orders/events/{event_id}", params=query)


async def test_two_failures_then_success_show_three_attempts(tmp_path: Path) -> None:
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = twice_failing()
        async with run_gateway(settings(tmp_path, sub.url), clock=clock) as gw:
            assert (await gw.publish("orders", "order-42")).status_code == 202
            await settle(gw)
            pending = (await event_of(gw, "order-42")).json()
            [delivery] = pending["deliveries"]
            assert (delivery["state"], delivery["attempts"]) == ("pending", 1)
            assert delivery["nextAttemptTime"] is not None
            assert delivery["lastStatus"] == 503
            while await advance_to_next_due(gw, clock, "s1"):
                pass
            response = await event_of(gw, "order-42")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["event"]["id"] == "order-42"
    assert body["event"]["source"] == "/shop"
    [delivery] = body["deliveries"]
    assert delivery["subscription"] == "s1"
    assert (delivery["state"], delivery["attempts"]) == ("acked", 3)
    assert delivery["nextAttemptTime"] is None
    log = delivery["log"]
    assert [entry["status"] for entry in log] == [503, 500, 200]
    assert [entry["error"] for entry in log] == ["HTTP 503", "HTTP 500", None]
    assert log[0]["response"].startswith("busy, token ")
    assert TOKEN not in log[0]["response"]  # credentials are redacted
    assert log[2]["response"] == "thanks"
    assert all(isinstance(entry["durationMs"], int) for entry in log)
    assert all(entry["time"].endswith("Z") for entry in log)
    assert len(set(entry["time"] for entry in log)) == 3


async def test_a_first_attempt_ack_keeps_its_log(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        async with run_gateway(settings(tmp_path, sub.url)) as gw:
            await gw.publish("orders", "order-1")
            await settle(gw)
            response = await event_of(gw, "order-1")
    [delivery] = response.json()["deliveries"]
    assert (delivery["state"], delivery["attempts"]) == ("acked", 1)
    assert [entry["status"] for entry in delivery["log"]] == [200]


async def test_unknown_ids_and_topics_are_404(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        async with run_gateway(settings(tmp_path, sub.url)) as gw:
            await gw.publish("orders", "order-1")
            missing = await event_of(gw, "order-2")
            elsewhere = await gw.client.get("/v1/topics/nowhere/events/order-1")
            other_source = await event_of(gw, "order-1", source="/elsewhere")
    assert_problem(missing, 404, "not-found")
    assert_problem(elsewhere, 404, "not-found")
    assert_problem(other_source, 404, "not-found")


async def test_an_id_shared_by_two_sources_needs_the_source(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        async with run_gateway(settings(tmp_path, sub.url)) as gw:
            await gw.publish("orders", "order-1", **{"ce-source": "/shop/a"})
            await gw.publish("orders", "order-1", **{"ce-source": "/shop/b"})
            await settle(gw)
            ambiguous = await event_of(gw, "order-1")
            chosen = await event_of(gw, "order-1", source="/shop/b")
    problem = assert_problem(ambiguous, 409, "conflict")
    assert problem["sources"] == ["/shop/a", "/shop/b"]
    assert chosen.status_code == 200
    assert chosen.json()["event"]["source"] == "/shop/b"


async def test_the_route_is_in_the_openapi_document(tmp_path: Path) -> None:
    async with run_subscriber() as sub:
        async with run_gateway(settings(tmp_path, sub.url)) as gw:
            document = (await gw.client.get("/openapi.json")).json()
    operation = document["paths"]["/v1/topics/{name}/events/{id}"]["get"]
    assert set(operation["responses"]) >= {"200", "404", "409"}
    assert "EventDeliveries" in document["components"]["schemas"]


async def test_a_subscriptions_deliveries_page_by_cursor_and_state(tmp_path: Path) -> None:
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda request: Answer(503 if b'"late"' in request.body else 200)
        async with run_gateway(settings(tmp_path, sub.url), clock=clock) as gw:
            for n in range(3):
                await gw.publish("orders", f"order-{n}")
            await gw.client.post(
                "/topics/orders/events",
                headers={"content-type": "application/cloudevents+json"},
                content=b'{"specversion":"1.0","id":"order-3","source":"/shop",'
                b'"type":"com.example.order.created","data":"late"}',
            )
            await settle(gw)
            first = (await gw.client.get("/v1/subscriptions/s1/deliveries?limit=3")).json()
            rest = await gw.client.get(f"/v1/subscriptions/s1/deliveries?after={first['next']}")
            waiting = await gw.client.get("/v1/subscriptions/s1/deliveries?state=pending")
            bad_state = await gw.client.get("/v1/subscriptions/s1/deliveries?state=lost")
            bad_cursor = await gw.client.get("/v1/subscriptions/s1/deliveries?after=x")
            missing = await gw.client.get("/v1/subscriptions/nobody/deliveries")
            document = (await gw.client.get("/openapi.json")).json()
    assert [d["id"] for d in first["deliveries"]] == ["order-0", "order-1", "order-2"]
    assert {d["state"] for d in first["deliveries"]} == {"acked"}
    assert first["deliveries"][0]["source"] == "/shop"
    assert first["deliveries"][0]["type"] == "com.example.order.created"
    assert first["deliveries"][0]["publishedTime"].endswith("Z")
    [late] = rest.json()["deliveries"]
    assert (late["id"], late["state"], late["lastStatus"]) == ("order-3", "pending", 503)
    assert late["nextAttemptTime"] is not None
    assert rest.json()["next"] is None
    assert [d["id"] for d in waiting.json()["deliveries"]] == ["order-3"]
    assert assert_problem(bad_state, 400, "invalid-request")["field"] == "state"
    assert assert_problem(bad_cursor, 400, "invalid-request")["field"] == "after"
    assert_problem(missing, 404, "not-found")
    assert "/v1/subscriptions/{name}/deliveries" in document["paths"]

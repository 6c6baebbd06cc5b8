"""Ingress over real HTTP: the three content modes, the 202 shape, and every 4xx."""

from __future__ import annotations

import orjson
import pytest
from cloudevents.core.bindings import http
from cloudevents.core.v1.event import CloudEvent

from tests.conftest import (
    BINARY_HEADERS,
    RunningGateway,
    assert_problem,
    make_settings,
    run_gateway,
)


def sdk_event(event_id: str, **attributes: str) -> CloudEvent:
    return CloudEvent(
        attributes={"type": "com.example.t", "source": "/sdk", "id": event_id, **attributes},
        data={"hello": "world"},
    )


async def stored(gateway: RunningGateway, topic: str = "orders") -> list[dict[str, object]]:
    response = await gateway.client.get(f"/v1/topics/{topic}/events")
    assert response.status_code == 200
    events: list[dict[str, object]] = response.json()["events"]
    return events


async def test_binary_mode_from_sdk_is_accepted_and_stored(gateway: RunningGateway) -> None:
    # The SDK leaves Content-Type out for JSON data; it is the datacontenttype (HTTP binding
    # 3.1.1), so it is given here: a body without one is opaque bytes, stored as such.
    message = http.to_binary_event(
        sdk_event("b-1", subject="inv.pdf", datacontenttype="application/json")
    )
    response = await gateway.client.post(
        "/topics/orders/events", headers=message.headers, content=message.body
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 1, "duplicates": 0}
    [event] = await stored(gateway)
    assert (event["id"], event["source"], event["subject"]) == ("b-1", "/sdk", "inv.pdf")
    assert event["data"] == {"hello": "world"}


async def test_structured_mode_from_sdk_is_accepted(gateway: RunningGateway) -> None:
    message = http.to_structured_event(sdk_event("s-1"))
    response = await gateway.client.post(
        "/topics/orders/events", headers=message.headers, content=message.body
    )
    assert response.status_code == 202
    [event] = await stored(gateway)
    assert event["id"] == "s-1"


async def test_spec_03_is_accepted(gateway: RunningGateway) -> None:
    response = await gateway.publish("orders", "v03", **{"ce-specversion": "0.3"})
    assert response.status_code == 202
    [event] = await stored(gateway)
    assert event["specversion"] == "0.3"


async def test_batch_is_all_or_nothing(gateway: RunningGateway) -> None:
    good = [{"specversion": "1.0", "id": f"e{i}", "source": "/b", "type": "t"} for i in range(3)]
    bad = [*good, {"specversion": "1.0", "source": "/b", "type": "t"}]
    headers = {"content-type": "application/cloudevents-batch+json"}
    response = await gateway.client.post(
        "/topics/orders/events", headers=headers, content=orjson.dumps(bad)
    )
    problem = assert_problem(response, 400, "invalid-event")
    assert (problem["field"], problem["index"]) == ("id", 3)
    assert await stored(gateway) == []
    response = await gateway.client.post(
        "/topics/orders/events", headers=headers, content=orjson.dumps(good + good[:1])
    )
    assert response.status_code == 202
    assert response.json() == {"accepted": 3, "duplicates": 1}


async def test_root_publishes_to_default_topic(gateway: RunningGateway) -> None:
    response = await gateway.client.post(
        "/", headers={**BINARY_HEADERS, "ce-id": "r"}, content=b"{}"
    )
    assert response.status_code == 202
    assert [event["id"] for event in await stored(gateway, "default")] == ["r"]


@pytest.mark.parametrize(
    ("headers", "body", "status", "slug", "field"),
    [
        pytest.param({**BINARY_HEADERS}, b"{}", 400, "invalid-event", "id", id="binary-missing-id"),
        pytest.param(
            {**BINARY_HEADERS, "ce-id": "1", "ce-specversion": "9.9"},
            b"{}",
            400,
            "invalid-event",
            "specversion",
            id="bad-specversion",
        ),
        pytest.param(
            {**BINARY_HEADERS, "ce-id": "1", "ce-time": "yesterday"},
            b"{}",
            400,
            "invalid-event",
            "time",
            id="bad-time",
        ),
        pytest.param(
            {**BINARY_HEADERS, "ce-id": "1", "ce-my_ext": "x"},
            b"{}",
            400,
            "invalid-event",
            "my_ext",
            id="bad-extension-name",
        ),
        pytest.param(
            {"content-type": "application/cloudevents+json"},
            b"{not json",
            400,
            "invalid-event",
            None,
            id="structured-not-json",
        ),
        pytest.param(
            {"content-type": "text/plain"}, b"hello", 415, "unsupported-media-type", None, id="415"
        ),
    ],
)
async def test_bad_input_gets_a_problem_and_stores_nothing(
    gateway: RunningGateway,
    headers: dict[str, str],
    body: bytes,
    status: int,
    slug: str,
    field: str | None,
) -> None:
    response = await gateway.client.post("/topics/orders/events", headers=headers, content=body)
    problem = assert_problem(response, status, slug)
    assert problem.get("field") == field
    assert await stored(gateway) == []


async def test_unknown_topic_is_404(gateway: RunningGateway) -> None:
    assert_problem(await gateway.publish("nope", "1"), 404, "not-found")


async def test_oversize_content_length_is_413_before_reading(tmp_path: object) -> None:
    settings = make_settings(tmp_path / "d", server={"maxBodySize": "1KiB"})  # type: ignore[operator]
    async with run_gateway(settings) as gw:
        response = await gw.client.post(
            "/topics/orders/events",
            headers={**BINARY_HEADERS, "ce-id": "big"},
            content=b"x" * 2048,
        )
        assert_problem(response, 413, "payload-too-large")

        async def chunks():  # type: ignore[no-untyped-def]
            # Chunked, no Content-Length: counted while streaming. Small enough that the client
            # has sent it all before the early 413 arrives.
            for _ in range(4):
                yield b"y" * 512

        response = await gw.client.post(
            "/topics/orders/events",
            headers={**BINARY_HEADERS, "ce-id": "chunked"},
            content=chunks(),
        )
        assert_problem(response, 413, "payload-too-large")
        assert await stored(gw) == []


async def test_problem_for_unknown_route_and_method(gateway: RunningGateway) -> None:
    assert_problem(await gateway.client.get("/nowhere"), 404, "not-found")
    assert_problem(await gateway.client.get("/topics/orders/events"), 405, "method-not-allowed")


async def test_health_and_readiness(gateway: RunningGateway) -> None:
    assert (await gateway.client.get("/healthz")).json() == {"status": "ok"}
    assert (await gateway.client.get("/readyz")).json() == {"status": "ready"}


async def test_not_ready_refuses_publish_with_503(gateway: RunningGateway) -> None:
    gateway.gateway.readiness.set_not_ready("maintenance")
    response = await gateway.publish("orders", "x")
    assert_problem(response, 503, "not-ready")
    assert (await gateway.client.get("/readyz")).status_code == 503

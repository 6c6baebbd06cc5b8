"""Pretry's API as its users call it: the bodies of `POST /v1/config` and `POST /v1/event` sent
verbatim, an HTTP integration to a real subscriber (basic auth checked) and an SQS integration to
moto, the whole schedule walked with the injected clock."""

from __future__ import annotations

import base64
import copy
import logging
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from gateway.clock import ManualClock
from gateway.config.settings import load_config
from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    advance_to_next_due,
    assert_problem,
    make_settings,
    run_gateway,
    settle,
    status,
)
from tests.support.sqs_server import SqsServer
from tests.support.subscriber import Answer, run_subscriber

HOUR = 3600.0
PASSWORD = "pretry-http-password-9f3k"
ACCESS_KEY = "AKIDPRETRY00000001"
SECRET_KEY = "pretry-sqs-secret-key-77x"
SECRETS = (PASSWORD, ACCESS_KEY, SECRET_KEY)
EVENT = {"identifier": "identifier-1", "eventBody": {"order": 42, "items": ["a", "b"], "note": "é"}}
HTTP_SUB, SQS_SUB = "pretry.identifier-1.0", "pretry.identifier-1.1"
DEAD = "pretry.identifier-1.dead"


def pretry_config(http_url: str, queue_url: str | None = None, **changes: Any) -> dict[str, Any]:
    """Pretry's config body, as its users send it."""
    integrations: list[dict[str, Any]] = [
        {"type": "HTTP", "config": {"url": http_url, "username": "svc", "password": PASSWORD}}
    ]
    if queue_url is not None:
        integrations.append(
            {
                "type": "SQS",
                "config": {
                    "url": queue_url,
                    "region": "eu-west-1",
                    "secretKey": SECRET_KEY,
                    "accessKey": ACCESS_KEY,
                },
            }
        )
    config = {
        "identifier": "identifier-1",
        "maxRetry": 3,
        "retryHours": [1, 2, 3],
        "integrations": integrations,
    }
    return {**config, **changes}


def pretry_settings(tmp_path: Path, **config: Any) -> Any:
    return make_settings(tmp_path, egress=LOOPBACK_EGRESS, topics=[], **config)


def delivery_counts(metrics: str) -> dict[tuple[str, str], float]:
    counts = {}
    for family in text_string_to_metric_families(metrics):
        if family.name == "cegateway_deliveries":
            for sample in family.samples:
                if sample.name.endswith("_total"):
                    labels = sample.labels
                    counts[(labels["subscription"], labels["outcome"])] = sample.value
    return counts


async def dead_letters(gw: RunningGateway) -> httpx.Response:
    return await gw.client.get(f"/v1/topics/{DEAD}/events")


async def test_the_whole_schedule_then_the_dead_letter_topic(
    tmp_path: Path, sqs_server: SqsServer, caplog: pytest.LogCaptureFixture
) -> None:
    """3 attempts at +1 h, +3 h, +6 h to the HTTP integration (basic auth, the body itself),
    one message to SQS at +1 h, then the dead-letter topic; metrics count it all."""
    caplog.set_level(logging.DEBUG)
    clock = ManualClock()
    queue = sqs_server.create_queue("pretry")
    async with (
        run_subscriber(clock) as sub,
        run_gateway(pretry_settings(tmp_path), clock=clock) as gw,
    ):
        sub.script = lambda request: Answer(500, body=b"down")
        created = await gw.client.post("/v1/config", json=pretry_config(sub.url + "/hook", queue))
        assert created.status_code == 201, created.text
        assert created.json()["subscriptions"] == [HTTP_SUB, SQS_SUB]
        accepted = await gw.client.post("/v1/event", json=EVENT)
        assert accepted.status_code == 202, accepted.text
        assert accepted.json()["accepted"] == 1
        received_at = clock.now()

        clock.advance(HOUR - 1)
        await settle(gw)
        assert sub.received == [] and sqs_server.receive_all(queue) == []
        while await advance_to_next_due(gw, clock, HTTP_SUB):
            pass
        offsets = [request.at - received_at for request in sub.received]
        assert offsets == [pytest.approx(h * HOUR, abs=0.01) for h in (1, 3, 6)]
        for request in sub.received:
            assert request.path == "/hook"
            assert (
                request.headers["authorization"]
                == "Basic " + base64.b64encode(f"svc:{PASSWORD}".encode()).decode()
            )
            assert request.headers["content-type"] == "application/json"
            assert orjson.loads(request.body) == EVENT["eventBody"]
            assert not any(name.startswith("ce-") for name in request.headers)
        assert [orjson.loads(body) for body in sqs_server.receive_all(queue)] == [
            EVENT["eventBody"]
        ]

        page = await dead_letters(gw)
        [dead] = page.json()["events"]
        assert dead["data"] == EVENT["eventBody"]
        assert (dead["dlsubscription"], dead["dlreason"]) == (HTTP_SUB, "exhausted")
        assert (dead["dlattempts"], dead["dlstatus"], dead["dlbody"]) == ("3", "500", "down")
        assert status(gw, HTTP_SUB)["deadlettered"] == 1
        assert status(gw, SQS_SUB)["acked"] == 1
        counts = delivery_counts((await gw.client.get("/metrics")).text)
        assert counts[(HTTP_SUB, "retried")] == 2
        assert counts[(HTTP_SUB, "deadlettered")] == 1
        assert counts[(SQS_SUB, "acked")] == 1
        stored = (await gw.client.get("/v1/topics/pretry.identifier-1/events")).json()
        assert [event["data"] for event in stored["events"]] == [EVENT["eventBody"]]
        views = [
            page.text,
            (await gw.client.get("/v1/config/identifier-1")).text,
            (await gw.client.get(f"/v1/subscriptions/{HTTP_SUB}")).text,
            (await gw.client.get(f"/v1/subscriptions/{SQS_SUB}")).text,
            (await gw.client.get("/metrics")).text,
            caplog.text,
        ]
    for text in views:
        for secret in SECRETS:
            assert secret not in text


async def test_dead_letters_are_redriven_and_purged_like_any_others(tmp_path: Path) -> None:
    clock = ManualClock()
    async with (
        run_subscriber(clock) as sub,
        run_gateway(pretry_settings(tmp_path), clock=clock) as gw,
    ):
        sub.script = lambda request: Answer(503)
        config = pretry_config(sub.url, maxRetry=1, retryHours=[0.5])
        assert (await gw.client.post("/v1/config", json=config)).status_code == 201
        for _ in range(2):
            assert (await gw.client.post("/v1/event", json=EVENT)).status_code == 202
        while await advance_to_next_due(gw, clock, HTTP_SUB):
            pass
        first, second = (await dead_letters(gw)).json()["events"]
        assert len(sub.received) == 2
        sub.script = lambda request: Answer(200)
        redrive = await gw.client.post(
            f"/v1/topics/{DEAD}/events:redrive", json={"ids": [first["id"]]}
        )
        assert redrive.json() == {"redriven": 1, "skipped": 0}
        await settle(gw)  # a redrive is delivered at once
        assert len(sub.received) == 3 and status(gw, HTTP_SUB)["acked"] == 1
        purge = await gw.client.post(f"/v1/topics/{DEAD}/events:purge", json={"all": True})
        assert purge.json() == {"purged": 1}
        assert (await dead_letters(gw)).json()["events"] == []
        assert second["id"] != first["id"]


def integration(kind: str, **config: Any) -> dict[str, Any]:
    return {"type": kind, "config": config}


HTTP_OK = integration("HTTP", url="http://127.0.0.1:9/hook")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        pytest.param({"maxRetry": 0, "retryHours": []}, "maxRetry", id="max-retry-0"),
        pytest.param({"retryHours": [1, 2]}, "retryHours", id="retry-hours-short"),
        pytest.param({"retryHours": [1, 2, 3, 4]}, "retryHours", id="retry-hours-long"),
        pytest.param({"retryHours": [1, -2, 3]}, "retryHours[1]", id="retry-hours-negative"),
        pytest.param({"integrations": []}, "integrations", id="no-integrations"),
        pytest.param(
            {"integrations": [integration("FTP", url="ftp://x")]},
            "integrations[0].type",
            id="unknown-type",
        ),
        pytest.param(
            {"integrations": [HTTP_OK, integration("HTTP", url="not a url")]},
            "integrations[1].config.url",
            id="http-bad-url",
        ),
        pytest.param(
            {"integrations": [integration("HTTP", url="http://169.254.169.254/")]},
            "integrations[0].config.url",
            id="http-egress-denied",
        ),
        pytest.param(
            {"integrations": [integration("SQS", url="ftp://queue", region="eu-west-1")]},
            "integrations[0].config.url",
            id="sqs-bad-url",
        ),
        pytest.param(
            {"integrations": [integration("SQS", url="http://10.1.2.3/1/q", region="eu-west-1")]},
            "integrations[0].config.url",
            id="sqs-egress-denied",
        ),
        pytest.param(
            {"integrations": [integration("SQS", url="http://127.0.0.1:9/1/q")]},
            "integrations[0].config.region",
            id="sqs-no-region",
        ),
        pytest.param(
            {"integrations": [integration("SQS", url="http://127.0.0.1:9/1/q", region="x y")]},
            "integrations[0].config.region",
            id="sqs-bad-region",
        ),
        pytest.param(
            {"integrations": [integration("HTTP", url="http://127.0.0.1:9/", username="u")]},
            "integrations[0].config.password",
            id="username-without-password",
        ),
        pytest.param(
            {
                "integrations": [
                    integration("SQS", url="https://sqs.eu-west-1.amazonaws.com/1/q", accessKey="a")
                ]
            },
            "integrations[0].config.secretKey",
            id="access-key-without-secret",
        ),
        pytest.param(
            {"integrations": [integration("HTTP", url="http://127.0.0.1:9/", token="t")]},
            "integrations[0].config.token",
            id="unknown-config-field",
        ),
        pytest.param({"identifier": "has space"}, "identifier", id="identifier-chars"),
        pytest.param({"identifier": "x" * 81}, "identifier", id="identifier-long"),
        pytest.param({"identifier": "a.b"}, "identifier", id="identifier-dot"),
        pytest.param({"maxRetry": "3"}, "maxRetry", id="max-retry-string"),
        pytest.param({"maxRetry": 10**23, "retryHours": [1]}, "maxRetry", id="max-retry-huge"),
        pytest.param(
            {"maxRetry": 11, "retryHours": [8760.0] * 11},
            "retryHours",
            id="schedule-past-retention",
        ),
        pytest.param({"maxRetry": 1, "retryHours": [8761]}, "retryHours[0]", id="hours-8761"),
    ],
)
async def test_bad_configs_are_400_naming_the_field(
    tmp_path: Path, changes: dict[str, Any], field: str
) -> None:
    async with run_gateway(pretry_settings(tmp_path)) as gw:
        body = {**pretry_config("http://127.0.0.1:9/"), **changes}
        response = await gw.client.post("/v1/config", json=body)
        problem = assert_problem(response, 400, "invalid-request")
        assert problem["field"] == field, problem
        assert (await gw.client.get("/v1/subscriptions")).json()["subscriptions"] == []
        assert [t["name"] for t in (await gw.client.get("/v1/topics")).json()["topics"]] == [
            "default"
        ]


NAN_EVENT = b'{"identifier": "identifier-1", "eventBody": {"x": NaN}}'


async def test_bad_events_and_unknown_identifiers(tmp_path: Path) -> None:
    async with run_gateway(pretry_settings(tmp_path)) as gw:
        unknown = await gw.client.post("/v1/event", json=EVENT)
        assert assert_problem(unknown, 404, "not-found")["field"] == "identifier"
        config = pretry_config("http://127.0.0.1:9/")
        assert (await gw.client.post("/v1/config", json=config)).status_code == 201
        missing = await gw.client.post("/v1/event", json={"identifier": "identifier-1"})
        assert assert_problem(missing, 400, "invalid-request")["field"] == "eventBody"
        extra = await gw.client.post("/v1/event", json={**EVENT, "eventbody": 1})
        assert assert_problem(extra, 400, "invalid-request")["field"] == "eventbody"
        not_json = await gw.client.post("/v1/event", content=b"{")
        assert_problem(not_json, 400, "invalid-request")
        for body in (b'{"identifier": "identifier-1", "eventBody": ' + b"[" * 100_000, NAN_EVENT):
            refused = await gw.client.post("/v1/event", content=body)
            assert assert_problem(refused, 400, "invalid-request")["field"] == "body"
        assert (await gw.client.get("/v1/topics/pretry.identifier-1/events")).json()["events"] == []
        assert_problem(await gw.client.get("/v1/config/nobody"), 404, "not-found")
        assert_problem(await gw.client.delete("/v1/config/nobody"), 404, "not-found")


async def test_get_masks_credentials_and_delete_removes_everything(
    tmp_path: Path, sqs_server: SqsServer
) -> None:
    async with run_gateway(pretry_settings(tmp_path)) as gw:
        config = pretry_config("http://127.0.0.1:9/", sqs_server.create_queue())
        assert (await gw.client.post("/v1/config", json=config)).status_code == 201
        assert (await gw.client.post("/v1/event", json=EVENT)).status_code == 202
        view = (await gw.client.get("/v1/config/identifier-1")).json()
        expected = copy.deepcopy(config)
        expected["integrations"][0]["config"]["password"] = "[redacted]"
        expected["integrations"][1]["config"].update(accessKey="[redacted]", secretKey="[redacted]")
        assert view == {
            **expected,
            "topic": "pretry.identifier-1",
            "deadLetterTopic": DEAD,
            "subscriptions": [HTTP_SUB, SQS_SUB],
        }
        spec = (await gw.client.get(f"/v1/subscriptions/{SQS_SUB}")).json()
        assert spec["destination"]["sqs"]["endpointUrl"] == sqs_server.endpoint
        assert spec["deliveryDelay"] == "1h"
        assert spec["retryPolicy"]["schedule"] == ["2h", "3h"]
        assert spec["maxDeliveryAttempts"] == 3

        assert (await gw.client.delete("/v1/config/identifier-1")).status_code == 204
        assert (await gw.client.get("/v1/subscriptions")).json()["subscriptions"] == []
        topics = (await gw.client.get("/v1/topics")).json()["topics"]
        assert [topic["name"] for topic in topics] == ["default"]
        assert_problem(await gw.client.get("/v1/config/identifier-1"), 404, "not-found")
        assert_problem(await gw.client.post("/v1/event", json=EVENT), 404, "not-found")


async def test_delete_refuses_while_another_subscription_uses_its_topics(tmp_path: Path) -> None:
    async with run_gateway(pretry_settings(tmp_path)) as gw:
        await gw.client.post("/v1/config", json=pretry_config("http://127.0.0.1:9/"))
        watcher = {"topic": DEAD, "destination": {"http": {"url": "http://127.0.0.1:9/dl"}}}
        assert (await gw.client.put("/v1/subscriptions/watch", json=watcher)).status_code == 201
        refused = await gw.client.delete("/v1/config/identifier-1")
        assert assert_problem(refused, 409, "conflict")["subscriptions"] == ["watch"]
        assert (await gw.client.get("/v1/config/identifier-1")).status_code == 200


async def test_replacing_a_config_keeps_accepted_events(tmp_path: Path) -> None:
    """The event accepted under the old config is delivered under the new one (new URL, new
    schedule); an integration dropped from the config goes with its subscription."""
    clock = ManualClock()
    async with (
        run_subscriber(clock) as old,
        run_subscriber(clock) as new,
        run_gateway(pretry_settings(tmp_path), clock=clock) as gw,
    ):
        first = pretry_config(old.url, maxRetry=2, retryHours=[1, 1])
        first["integrations"].append(integration("HTTP", url=old.url + "/second"))
        assert (await gw.client.post("/v1/config", json=first)).status_code == 201
        assert (await gw.client.post("/v1/event", json=EVENT)).status_code == 202
        second = pretry_config(new.url, maxRetry=2, retryHours=[1, 1])
        replaced = await gw.client.post("/v1/config", json=second)
        assert replaced.status_code == 200, replaced.text
        names = [
            s["name"] for s in (await gw.client.get("/v1/subscriptions")).json()["subscriptions"]
        ]
        assert names == [HTTP_SUB]
        await advance_to_next_due(gw, clock, HTTP_SUB)
        assert old.received == []
        assert [orjson.loads(r.body) for r in new.received] == [EVENT["eventBody"]]
        assert status(gw, HTTP_SUB)["acked"] == 1


async def test_config_and_credentials_survive_a_restart(tmp_path: Path) -> None:
    clock = ManualClock()
    settings = pretry_settings(tmp_path)
    async with run_subscriber(clock) as sub:
        async with run_gateway(settings, clock=clock) as gw:
            assert (
                await gw.client.post("/v1/config", json=pretry_config(sub.url))
            ).status_code == 201
            assert (await gw.client.post("/v1/event", json=EVENT)).status_code == 202
        async with run_gateway(settings, clock=clock) as gw:
            assert (await gw.client.get("/v1/config/identifier-1")).status_code == 200
            await advance_to_next_due(gw, clock, HTTP_SUB)
        [request] = sub.received
        assert request.headers["authorization"].startswith("Basic ")
        assert base64.b64decode(request.headers["authorization"][6:]) == f"svc:{PASSWORD}".encode()


async def test_idempotency_key_makes_a_repeated_post_a_duplicate(tmp_path: Path) -> None:
    async with run_gateway(pretry_settings(tmp_path)) as gw:
        await gw.client.post("/v1/config", json=pretry_config("http://127.0.0.1:9/"))
        headers = {"idempotency-key": "order-42-attempt"}
        first = await gw.client.post("/v1/event", json=EVENT, headers=headers)
        again = await gw.client.post("/v1/event", json=EVENT, headers=headers)
        assert first.json() == {"accepted": 1, "duplicates": 0, "id": "order-42-attempt"}
        assert again.json() == {"accepted": 0, "duplicates": 1, "id": "order-42-attempt"}
        plain = (await gw.client.post("/v1/event", json=EVENT)).json()
        assert plain["accepted"] == 1 and plain["id"] != "order-42-attempt"


async def test_event_follows_publisher_rules_and_config_admin_rules(tmp_path: Path) -> None:
    admin, publisher = "admin-token-0123456789", "publisher-token-0123456789"
    (tmp_path / "admin").write_text(admin)
    (tmp_path / "publisher").write_text(publisher)
    auth = {
        "adminTokenFile": str(tmp_path / "admin"),
        "publisherTokenFile": str(tmp_path / "publisher"),
    }
    as_admin = {"authorization": f"Bearer {admin}"}
    as_publisher = {"authorization": f"Bearer {publisher}"}
    config = pretry_config("http://127.0.0.1:9/")
    async with run_gateway(pretry_settings(tmp_path / "d", auth=auth)) as gw:
        post = gw.client.post
        assert_problem(await post("/v1/config", json=config), 401, "unauthorized")
        assert_problem(
            await post("/v1/config", json=config, headers=as_publisher), 403, "forbidden"
        )
        assert (await post("/v1/config", json=config, headers=as_admin)).status_code == 201
        get = gw.client.get
        assert_problem(await get("/v1/config/identifier-1", headers=as_publisher), 403, "forbidden")
        assert (await get("/v1/config/identifier-1", headers=as_admin)).status_code == 200
        assert_problem(await post("/v1/event", json=EVENT), 401, "unauthorized")
        assert (await post("/v1/event", json=EVENT, headers=as_publisher)).status_code == 202
        assert (await post("/v1/event", json=EVENT, headers=as_admin)).status_code == 202
        assert status(gw, HTTP_SUB)["published"] == 2


async def test_a_pruning_config_file_leaves_pretry_resources_alone(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(
        yaml.safe_dump({"server": {"dataDir": str(tmp_path / "data")}, "prune": True})
    )
    async with run_gateway(load_config(config)) as gw:
        hook = {"type": "HTTP", "config": {"url": "https://hooks.example.com/in"}}
        body = {"identifier": "kept", "maxRetry": 1, "retryHours": [1], "integrations": [hook]}
        assert (await gw.client.post("/v1/config", json=body)).status_code == 201
        assert (await gw.client.put("/v1/topics/adhoc", json={})).status_code == 201
        assert (await gw.client.post("/v1/config:reload")).json()["pruned"] == 1
        topics = [t["name"] for t in (await gw.client.get("/v1/topics")).json()["topics"]]
        assert topics == ["default", "pretry.kept", "pretry.kept.dead"]
        assert (await gw.client.get("/v1/subscriptions/pretry.kept.0")).status_code == 200


async def test_a_stored_config_that_no_longer_decodes_is_409_and_can_be_replaced(
    tmp_path: Path,
) -> None:
    """A config saved before a range was enforced (maxRetry 10^23) is no 500: GET says what is
    wrong, POST replaces it, DELETE removes it."""
    settings = pretry_settings(tmp_path)
    async with run_gateway(settings) as gw:
        config = pretry_config("http://127.0.0.1:9/")
        assert (await gw.client.post("/v1/config", json=config)).status_code == 201
        row = httpx.Response(200, json={**config, "maxRetry": 10**23}).content
        await gw.store.write(
            lambda txn: txn.put(b"pretry/identifier-1", row, db=gw.store.db["meta"])
        )
    async with run_gateway(settings) as gw:
        problem = assert_problem(await gw.client.get("/v1/config/identifier-1"), 409, "conflict")
        assert "no longer valid" in problem["detail"]
        replaced = await gw.client.post("/v1/config", json=config)
        assert replaced.status_code == 200, replaced.text
        assert (await gw.client.get("/v1/config/identifier-1")).json()["maxRetry"] == 3
        await gw.store.write(
            lambda txn: txn.put(b"pretry/identifier-1", row, db=gw.store.db["meta"])
        )
        assert (await gw.client.delete("/v1/config/identifier-1")).status_code == 204
        assert_problem(await gw.client.get("/v1/config/identifier-1"), 404, "not-found")
        long = await gw.client.get("/v1/config/" + "x" * 600)  # longer than an LMDB key
        assert_problem(long, 404, "not-found")

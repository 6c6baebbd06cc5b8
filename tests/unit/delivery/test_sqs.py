"""SQS destinations against a real SQS-compatible server (moto on 127.0.0.1), read back with an
independent client (boto3): bodies, counts, batching, restarts and the permanent-error path."""

from __future__ import annotations

import asyncio
import socket
from pathlib import Path
from typing import Any

import orjson
import pytest
from botocore import exceptions as boto

from gateway.clock import ManualClock
from gateway.delivery.pushes import PushResult
from gateway.delivery.sinks.sqs import SENT, QueueBatcher, entry_result, error_result
from gateway.destinations.egress import EgressDeniedError
from tests.conftest import (
    LOOPBACK_EGRESS,
    advance_to_next_due,
    assert_problem,
    make_settings,
    run_gateway,
    settle,
    status,
)
from tests.support.sqs_server import KEYS, REGION, SqsServer
from tests.support.stub_dns import StubResolver

TOPICS = [{"name": "orders"}, {"name": "dead"}]
BATCH = "application/cloudevents-batch+json"


def sqs_subscription(
    name: str, queue_url: str, endpoint: str | None, **policy: Any
) -> dict[str, Any]:
    sqs: dict[str, Any] = {
        "queueUrl": queue_url,
        "region": REGION,
        "accessKeyId": KEYS["aws_access_key_id"],
        "secretAccessKey": KEYS["aws_secret_access_key"],
        "contentMode": policy.pop("contentMode", "structured"),
    }
    if endpoint is not None:
        sqs["endpointUrl"] = endpoint
    return {"name": name, "topic": "orders", "destination": {"sqs": sqs}, **policy}


def events(count: int, prefix: str = "e") -> bytes:
    return orjson.dumps(
        [
            {"specversion": "1.0", "id": f"{prefix}-{i}", "source": "/shop", "type": "t", "data": i}
            for i in range(count)
        ]
    )


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


async def test_events_arrive_as_structured_cloudevents(
    tmp_path: Path, sqs_server: SqsServer
) -> None:
    queue = sqs_server.create_queue()
    spec = sqs_subscription("to-sqs", queue, sqs_server.endpoint)
    settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
    async with run_gateway(settings) as gw:
        for index in range(3):
            response = await gw.publish("orders", f"o-{index}", **{"ce-subject": "x"})
            assert response.status_code == 202
        await settle(gw)
        assert status(gw, "to-sqs")["acked"] == 3
    bodies = [orjson.loads(body) for body in sqs_server.receive_all(queue)]
    assert sorted(body["id"] for body in bodies) == ["o-0", "o-1", "o-2"]
    for body in bodies:
        assert (body["specversion"], body["source"], body["subject"]) == ("1.0", "/shop", "x")
        assert body["type"] == "com.example.order.created"
        assert body["data"] == {"n": 1}


async def test_data_mode_sends_only_the_event_data(tmp_path: Path, sqs_server: SqsServer) -> None:
    queue = sqs_server.create_queue()
    spec = sqs_subscription("data", queue, sqs_server.endpoint, contentMode="data")
    settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[spec])
    async with run_gateway(settings) as gw:
        response = await gw.client.post(
            "/topics/orders/events", content=events(12), headers={"content-type": BATCH}
        )
        assert response.status_code == 202
        await settle(gw)
    assert sorted(int(body) for body in sqs_server.receive_all(queue)) == list(range(12))


async def test_a_missing_queue_is_dead_lettered_at_once(
    tmp_path: Path, sqs_server: SqsServer
) -> None:
    spec = sqs_subscription(
        "nowhere", sqs_server.missing_queue_url(), sqs_server.endpoint, deadLetterTopic="dead"
    )
    settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, topics=TOPICS, subscriptions=[spec])
    async with run_gateway(settings) as gw:
        await gw.publish("orders", "lost-1")
        await settle(gw)
        assert status(gw, "nowhere")["deadlettered"] == 1
        page = await gw.client.get("/v1/topics/dead/events")
    [dead] = page.json()["events"]
    assert dead["id"] == "lost-1"
    assert (dead["dlreason"], dead["dlattempts"]) == ("permanent", "1")
    assert dead["dlstatus"] == "sqs-queue-missing"
    assert "NonExistentQueue" in dead["dlerror"] or "QueueDoesNotExist" in dead["dlerror"]
    for secret in KEYS.values():
        assert secret not in page.text


async def test_nothing_is_lost_across_a_restart_while_sqs_is_unreachable(
    tmp_path: Path, sqs_server: SqsServer
) -> None:
    """Deliveries to an endpoint that refuses connections stay pending (transient), survive a
    restart, and arrive exactly once when the endpoint is back."""
    clock = ManualClock()
    queue = sqs_server.create_queue()
    down = sqs_subscription("durable", queue, f"http://127.0.0.1:{closed_port()}")
    first = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[down])
    async with run_gateway(first, clock=clock) as gw:
        response = await gw.client.post(
            "/topics/orders/events", content=events(15, "r"), headers={"content-type": BATCH}
        )
        assert response.json() == {"accepted": 15, "duplicates": 0}
        await settle(gw)
        assert status(gw, "durable")["pending"] == 15
        state = gw.store.deliveries.due("durable", gw.gateway_now() + 3600, 1, frozenset())[0]
        assert (state.attempts, state.last_failure.status) == (1, "connect")
    up = sqs_subscription("durable", queue, sqs_server.endpoint)
    second = make_settings(tmp_path, egress=LOOPBACK_EGRESS, subscriptions=[up])
    async with run_gateway(second, clock=clock) as gw:
        while await advance_to_next_due(gw, clock, "durable"):
            pass
        assert status(gw, "durable")["acked"] == 15
    bodies = sqs_server.receive_all(queue)
    assert sorted(orjson.loads(body)["id"] for body in bodies) == sorted(
        f"r-{i}" for i in range(15)
    )


async def test_credentials_from_a_file_and_inline_keys_are_masked(
    tmp_path: Path, sqs_server: SqsServer
) -> None:
    credentials = tmp_path / "aws"
    credentials.write_text(
        "[default]\naws_access_key_id = AKIDFROMFILE0000\naws_secret_access_key = file-secret\n"
    )
    queue = sqs_server.create_queue()
    from_file = sqs_subscription("from-file", queue, sqs_server.endpoint)
    for key in ("accessKeyId", "secretAccessKey"):
        del from_file["destination"]["sqs"][key]
    from_file["destination"]["sqs"]["credentialsFile"] = str(credentials)
    inline = sqs_subscription("inline", queue, sqs_server.endpoint)
    settings = make_settings(
        tmp_path / "d", egress=LOOPBACK_EGRESS, subscriptions=[from_file, inline]
    )
    async with run_gateway(settings) as gw:
        await gw.publish("orders", "c-1")
        await settle(gw)
        one = (await gw.client.get("/v1/subscriptions/inline")).json()
        listed = (await gw.client.get("/v1/subscriptions")).text
        filed = (await gw.client.get("/v1/subscriptions/from-file")).json()
    assert len(sqs_server.receive_all(queue)) == 2
    assert one["destination"]["sqs"]["accessKeyId"] == "[redacted]"
    assert one["destination"]["sqs"]["secretAccessKey"] == "[redacted]"
    assert filed["destination"]["sqs"]["credentialsFile"] == str(credentials)
    for secret in (*KEYS.values(), "AKIDFROMFILE0000", "file-secret"):
        assert secret not in listed and secret not in str(one) and secret not in str(filed)


async def test_endpoint_is_checked_by_the_egress_policy(
    tmp_path: Path, sqs_server: SqsServer
) -> None:
    async with run_gateway(make_settings(tmp_path)) as gw:
        spec = sqs_subscription("s", sqs_server.create_queue(), sqs_server.endpoint)
        del spec["name"]
        response = await gw.client.put("/v1/subscriptions/s", json=spec)
    problem = assert_problem(response, 400, "invalid-request")
    assert problem["field"] == "destination.sqs.endpointUrl"


async def test_endpoint_names_resolve_through_the_egress_policy(
    tmp_path: Path, sqs_server: SqsServer
) -> None:
    """S2 for SQS: clients connect through the policy resolver, so a name that resolves to a
    denied address is dead-lettered as egress-denied instead of reached."""
    port = sqs_server.endpoint.rsplit(":", 1)[1]
    resolver = StubResolver({"ok.example.test": ["127.0.0.1"], "bad.example.test": ["127.0.0.2"]})
    queue = sqs_server.create_queue()
    specs = [
        sqs_subscription(name, queue, f"http://{name}.example.test:{port}", deadLetterTopic="dead")
        for name in ("ok", "bad")
    ]
    settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, topics=TOPICS, subscriptions=specs)
    async with run_gateway(settings, resolver=resolver) as gw:
        await gw.publish("orders", "via-name")
        await settle(gw)
        assert status(gw, "ok")["acked"] == 1
        [dead] = (await gw.client.get("/v1/topics/dead/events")).json()["events"]
    assert [orjson.loads(body)["id"] for body in sqs_server.receive_all(queue)] == ["via-name"]
    assert (dead["dlsubscription"], dead["dlstatus"], dead["dlreason"]) == (
        "bad",
        "egress-denied",
        "permanent",
    )
    assert {"ok.example.test", "bad.example.test"} <= set(resolver.lookups)


# -- the batcher and error mapping, without a server -----------------------------------------


class RecordingClient:
    """Answers SendMessageBatch like SQS: every entry sent, or the last one refused."""

    def __init__(self, refuse_last: bool = False) -> None:
        self.calls: list[list[str]] = []
        self.refuse_last = refuse_last

    async def send_message_batch(self, QueueUrl: str, Entries: list[Any]) -> Any:
        self.calls.append([entry["MessageBody"] for entry in Entries])
        ids = [entry["Id"] for entry in Entries]
        failed = ids[-1:] if self.refuse_last else []
        return {
            "Successful": [{"Id": i} for i in ids if i not in failed],
            "Failed": [
                {"Id": i, "SenderFault": True, "Code": "InvalidMessageContents", "Message": "no"}
                for i in failed
            ],
        }


async def test_sends_due_together_go_out_in_batches_of_ten() -> None:
    client = RecordingClient()
    batcher = QueueBatcher(client, "q", linger=0.005)  # type: ignore[arg-type]
    results = await asyncio.gather(*(batcher.submit(str(i)) for i in range(25)))
    assert [len(call) for call in client.calls] == [10, 10, 5]
    assert sorted(int(body) for call in client.calls for body in call) == list(range(25))
    assert all(result == SENT for result in results)


async def test_a_refused_entry_fails_alone_and_a_lone_send_waits_only_the_linger() -> None:
    client = RecordingClient(refuse_last=True)
    batcher = QueueBatcher(client, "q", linger=0.005)  # type: ignore[arg-type]
    first, second = await asyncio.gather(batcher.submit("a"), batcher.submit("b"))
    assert first == SENT
    assert (second.status, second.error) == (None, "sqs-invalid")
    assert client.calls == [["a", "b"]]


def client_error(code: str, status: int) -> boto.ClientError:
    return boto.ClientError(
        {"Error": {"Code": code, "Message": "m"}, "ResponseMetadata": {"HTTPStatusCode": status}},
        "SendMessageBatch",
    )


def egress_wrapped() -> Exception:
    inner = OSError("connect failed")
    inner.__cause__ = EgressDeniedError("127.0.0.1 is denied")
    return boto.EndpointConnectionError(endpoint_url="http://x", error=inner)


@pytest.mark.parametrize(
    ("error", "kind"),
    [
        pytest.param(
            client_error("AWS.SimpleQueueService.NonExistentQueue", 400),
            "sqs-queue-missing",
            id="missing-queue",
        ),
        pytest.param(client_error("AccessDenied", 403), "sqs-access-denied", id="access-denied"),
        pytest.param(client_error("ThrottlingException", 400), "sqs-throttled", id="throttled"),
        pytest.param(client_error("InternalError", 500), "sqs-server-error", id="server-error"),
        pytest.param(client_error("InvalidParameterValue", 400), "sqs-invalid", id="invalid"),
        pytest.param(
            boto.EndpointConnectionError(endpoint_url="http://x"), "connect", id="connect"
        ),
        pytest.param(boto.ReadTimeoutError(endpoint_url="http://x"), "timeout", id="read-timeout"),
        pytest.param(boto.NoCredentialsError(), "sqs-credentials", id="no-credentials"),
        pytest.param(egress_wrapped(), "egress-denied", id="egress-denied"),
    ],
)
def test_errors_become_outcome_kinds(error: Exception, kind: str) -> None:
    result = error_result(error)
    assert (result.status, result.error) == (None, kind)
    assert result.detail


def test_a_failed_batch_entry_is_classified_by_its_code() -> None:
    throttled = {"Id": "0", "SenderFault": False, "Code": "RequestThrottled", "Message": "slow"}
    assert entry_result(throttled) == PushResult.failed("sqs-throttled", "RequestThrottled: slow")

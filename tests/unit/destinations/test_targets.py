"""Destinations into targets: SQS and inline credentials, content modes, masking (issue 6)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from gateway.config.settings import ConfigError, parse_config
from gateway.destinations.targets import AwsCredentials, HttpTarget, SqsTarget, mask_secrets
from gateway.resources.subscriptions import Subscription, validate_settings

QUEUE = "https://sqs.eu-west-1.amazonaws.com/123456789012/orders"


def build(destination: dict[str, Any], **fields: Any) -> Subscription:
    spec = {"name": "s", "topic": "orders", "destination": destination, **fields}
    settings = parse_config({"topics": [{"name": "orders"}], "subscriptions": [spec]})
    [subscription] = validate_settings(settings)
    return subscription


def refused(destination: dict[str, Any], **fields: Any) -> str:
    with pytest.raises(ConfigError) as caught:
        build(destination, **fields)
    return str(caught.value)


def test_sqs_region_comes_from_an_aws_queue_url() -> None:
    target = build({"sqs": {"queueUrl": QUEUE}}).target
    assert target == SqsTarget(QUEUE, "eu-west-1", "structured")
    legacy = build({"sqs": {"queueUrl": "https://us-east-2.queue.amazonaws.com/1/q"}}).target
    assert isinstance(legacy, SqsTarget) and legacy.region == "us-east-2"


def test_sqs_credentials_from_a_shared_credentials_file(tmp_path: Path) -> None:
    path = tmp_path / "aws"
    path.write_text(
        "[default]\naws_access_key_id = AKID1\naws_secret_access_key = s3cr3t-key\n"
        "aws_session_token = tok\n"
    )
    target = build({"sqs": {"queueUrl": QUEUE, "credentialsFile": str(path)}}).target
    assert isinstance(target, SqsTarget)
    assert target.credentials == AwsCredentials("AKID1", "s3cr3t-key", "tok")
    assert "s3cr3t" not in repr(target) and "AKID1" not in repr(target)
    assert target.redact(b"bad key AKID1 / s3cr3t-key") == b"bad key [redacted] / [redacted]"


def test_inline_sqs_keys_and_inline_basic_auth() -> None:
    sqs = {"queueUrl": QUEUE, "accessKeyId": "AKID2", "secretAccessKey": "inline-secret"}
    target = build({"sqs": sqs}).target
    assert isinstance(target, SqsTarget)
    assert target.credentials == AwsCredentials("AKID2", "inline-secret")
    http = {"url": "https://hooks.example.com/", "basicAuth": {"username": "u", "password": "pw"}}
    basic = build({"http": http}).target
    assert isinstance(basic, HttpTarget) and basic.authorization == "Basic dTpwdw=="


@pytest.mark.parametrize(
    ("destination", "fields", "path"),
    [
        pytest.param(
            {"sqs": {"queueUrl": "http://127.0.0.1:9/1/q"}},
            {},
            "destination.sqs.region",
            id="no-region",
        ),
        pytest.param(
            {"sqs": {"queueUrl": QUEUE, "region": "eu west"}},
            {},
            "destination.sqs.region",
            id="bad-region",
        ),
        pytest.param(
            {"sqs": {"queueUrl": "queue"}}, {}, "destination.sqs.queueUrl", id="queue-url"
        ),
        pytest.param(
            {"sqs": {"queueUrl": QUEUE, "endpointUrl": "http://127.0.0.1:4566"}},
            {},
            "destination.sqs.endpointUrl",
            id="endpoint-egress",
        ),
        pytest.param(
            {"sqs": {"queueUrl": QUEUE, "contentMode": "binary"}},
            {},
            "destination.sqs.contentMode",
            id="sqs-binary",
        ),
        pytest.param(
            {"sqs": {"queueUrl": QUEUE, "accessKeyId": "AKID"}},
            {},
            "destination.sqs.secretAccessKey",
            id="key-without-secret",
        ),
        pytest.param(
            {
                "sqs": {
                    "queueUrl": QUEUE,
                    "accessKeyId": "a",
                    "secretAccessKey": "b",
                    "credentialsFile": "/x",
                }
            },
            {},
            "destination.sqs",
            id="inline-and-file",
        ),
        pytest.param(
            {"sqs": {"queueUrl": QUEUE}},
            {"signing": {"secretFile": "/x"}},
            "signing",
            id="sqs-signing",
        ),
        pytest.param(
            {"http": {"url": "https://h.example.com/", "basicAuth": {"username": "u"}}},
            {},
            "destination.http.basicAuth",
            id="basic-without-password",
        ),
        pytest.param(
            {"http": {"url": "https://h.example.com/", "contentMode": "weird"}},
            {},
            "destination.http.contentMode",
            id="http-mode",
        ),
        pytest.param(
            {"http": {"url": "https://h.example.com/"}, "sqs": {"queueUrl": QUEUE}},
            {},
            "destination",
            id="both-kinds",
        ),
        pytest.param(
            {"http": {"url": "https://h.example.com/"}},
            {"deliveryDelay": "9x"},
            "deliveryDelay",
            id="delay-bad",
        ),
        pytest.param(
            {"http": {"url": "https://h.example.com/"}},
            {"deliveryDelay": "400d"},
            "deliveryDelay",
            id="delay-long",
        ),
    ],
)
def test_bad_destinations_name_the_key(
    destination: dict[str, Any], fields: dict[str, Any], path: str
) -> None:
    message = refused(destination, **fields)
    assert message.startswith(f"subscriptions[0].{path}:"), message


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        pytest.param("not ini at all", "not an AWS credentials file", id="not-ini"),
        pytest.param("[a]\naws_access_key_id=x\n[b]\n", "[default]", id="no-default"),
        pytest.param("[default]\naws_access_key_id = x\n", "aws_secret_access_key", id="no-secret"),
    ],
)
def test_bad_credentials_files(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "aws"
    path.write_text(content)
    message = refused({"sqs": {"queueUrl": QUEUE, "credentialsFile": str(path)}})
    assert "destination.sqs.credentialsFile" in message and expected in message


def test_delivery_delay_and_data_mode() -> None:
    subscription = build(
        {"http": {"url": "https://h.example.com/", "contentMode": "data"}}, deliveryDelay="1.5h"
    )
    assert subscription.delivery_delay == 5400
    assert (
        isinstance(subscription.target, HttpTarget) and subscription.target.content_mode == "data"
    )
    assert build({"http": {"url": "https://h.example.com/"}}).delivery_delay == 0


def test_mask_secrets_replaces_every_inline_secret() -> None:
    spec = {
        "destination": {
            "http": {"url": "u", "basicAuth": {"username": "svc", "password": "pw"}},
            "sqs": {"queueUrl": "q", "accessKeyId": "a", "secretAccessKey": "s", "region": "r"},
        }
    }
    assert mask_secrets(spec)["destination"] == {
        "http": {"url": "u", "basicAuth": {"username": "svc", "password": "[redacted]"}},
        "sqs": {
            "queueUrl": "q",
            "accessKeyId": "[redacted]",
            "secretAccessKey": "[redacted]",
            "region": "r",
        },
    }
    assert mask_secrets({"destination": {"http": {"url": "u"}}}) == {
        "destination": {"http": {"url": "u"}}
    }

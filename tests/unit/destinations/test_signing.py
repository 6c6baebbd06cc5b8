"""Signed pushes and secret hygiene (RELIABILITY S4): verified by the independent
`standardwebhooks` package, as a subscriber would."""

from __future__ import annotations

import base64
import logging
import os
import time
from pathlib import Path

import pytest
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from gateway.clock import ManualClock
from gateway.config.settings import ConfigError, parse_config
from gateway.resources.subscriptions import validate_settings
from tests.conftest import (
    LOOPBACK_EGRESS,
    advance_to_next_due,
    make_settings,
    run_gateway,
    settle,
    subscription,
)
from tests.support.subscriber import Answer, Received, run_subscriber


def new_secret() -> str:
    return "whsec_" + base64.b64encode(os.urandom(32)).decode()


def write(tmp_path: Path, name: str, text: str) -> str:
    path = tmp_path / name
    path.write_text(text)
    return str(path)


def verify(secret: str, request: Received) -> None:
    Webhook(secret).verify(request.body, request.headers)


async def test_every_push_verifies_and_a_changed_byte_does_not(tmp_path: Path) -> None:
    secret = new_secret()
    spec = subscription("s1", "", signing={"secretFile": write(tmp_path, "signing", secret + "\n")})
    async with run_subscriber() as sub:
        spec["destination"]["http"]["url"] = sub.url
        for mode in ("binary", "structured"):
            spec["destination"]["http"]["contentMode"] = mode
            settings = make_settings(tmp_path / mode, egress=LOOPBACK_EGRESS, subscriptions=[spec])
            async with run_gateway(settings) as gw:
                for index in range(3):
                    await gw.publish("orders", f"{mode}-{index}")
                await settle(gw)
        assert len(sub.received) == 6
        for request in sub.received:
            verify(secret, request)
            assert request.headers["webhook-signature"].startswith("v1,")
            assert abs(int(request.headers["webhook-timestamp"]) - time.time()) < 60
            tampered = bytearray(request.body)
            tampered[0] ^= 1
            with pytest.raises(WebhookVerificationError):
                Webhook(secret).verify(bytes(tampered), request.headers)
            with pytest.raises(WebhookVerificationError):
                Webhook(new_secret()).verify(request.body, request.headers)


async def test_key_rotation_sends_two_signatures_either_verifies(tmp_path: Path) -> None:
    old, new = new_secret(), new_secret()
    async with run_subscriber() as sub:
        spec = subscription(
            "s1", sub.url, signing={"secretFile": write(tmp_path, "s", f"{old}\n{new}\n")}
        )
        settings = make_settings(tmp_path / "d", egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings) as gw:
            await gw.publish("orders", "rot")
            await settle(gw)
        [request] = sub.received
        assert len(request.headers["webhook-signature"].split(" ")) == 2
        verify(old, request)
        verify(new, request)


async def test_webhook_id_is_stable_across_retries_and_timestamp_is_per_attempt(
    tmp_path: Path,
) -> None:
    clock = ManualClock(start=time.time())
    secret = new_secret()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(503) if len(sub.received) < 3 else Answer(200)
        spec = subscription("s1", sub.url, signing={"secretFile": write(tmp_path, "s", secret)})
        settings = make_settings(tmp_path / "d", egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("orders", "retry-me")
            for _ in range(3):
                await advance_to_next_due(gw, clock, "s1")
        assert len(sub.received) == 3
        assert len({r.headers["webhook-id"] for r in sub.received}) == 1
        stamps = [int(r.headers["webhook-timestamp"]) for r in sub.received]
        assert stamps == sorted(stamps) and len(set(stamps)) == 3


@pytest.mark.parametrize(
    ("content", "message"),
    [
        pytest.param("whsec_" + base64.b64encode(b"short").decode(), "at least 24", id="too-short"),
        pytest.param(
            base64.b64encode(os.urandom(32)).decode(), "starts with whsec_", id="no-prefix"
        ),
        pytest.param("whsec_!!!notbase64", "base64", id="not-base64"),
        pytest.param(
            " ".join(new_secret() for _ in range(3)), "two while rotating", id="three-secrets"
        ),
    ],
)
def test_bad_secrets_are_refused_naming_the_key(tmp_path: Path, content: str, message: str) -> None:
    spec = subscription(
        "s1", "https://hooks.example.com/", signing={"secretFile": write(tmp_path, "s", content)}
    )
    settings = parse_config({"topics": [{"name": "orders"}], "subscriptions": [spec]})
    with pytest.raises(ConfigError, match=r"subscriptions\[0\]\.signing\.secretFile") as caught:
        validate_settings(settings)
    assert message in str(caught.value)


@pytest.mark.parametrize(
    ("http", "expected"),
    [
        pytest.param({"bearerTokenFile": "token"}, "Bearer tok-12345", id="bearer"),
        pytest.param(
            {"basicAuth": {"username": "svc", "passwordFile": "token"}},
            "Basic " + base64.b64encode(b"svc:tok-12345").decode(),
            id="basic",
        ),
    ],
)
async def test_destination_credentials_come_from_files(
    tmp_path: Path, http: dict[str, object], expected: str
) -> None:
    write(tmp_path, "token", "tok-12345\n")
    for key, value in list(http.items()):
        if key == "bearerTokenFile":
            http[key] = str(tmp_path / "token")
        elif isinstance(value, dict):
            value["passwordFile"] = str(tmp_path / "token")
    async with run_subscriber() as sub:
        spec = subscription("s1", sub.url)
        spec["destination"]["http"].update(http)
        settings = make_settings(tmp_path / "d", egress=LOOPBACK_EGRESS, subscriptions=[spec])
        async with run_gateway(settings) as gw:
            await gw.publish("orders", "auth")
            await settle(gw)
        assert sub.received[0].headers["authorization"] == expected


async def test_secrets_never_leak_into_logs_metrics_api_or_dead_letters(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    signing, password = new_secret(), "pw-" + base64.b32encode(os.urandom(10)).decode()
    admin, publisher = "adm-" + password[3:] + "x" * 8, "pub-" + password[3:] + "y" * 8
    secrets = (signing, signing[6:], password, admin, publisher)
    auth = {
        "adminTokenFile": write(tmp_path, "admin", admin),
        "publisherTokenFile": write(tmp_path, "publisher", publisher),
    }
    async with run_subscriber() as sub:
        sub.script = lambda r: Answer(400, body=r.headers.get("authorization", "").encode())
        spec = subscription(
            "s1",
            sub.url,
            deadLetterTopic="dead",
            signing={"secretFile": write(tmp_path, "signing", signing)},
        )
        spec["destination"]["http"]["basicAuth"] = {
            "username": "svc",
            "passwordFile": write(tmp_path, "password", password),
        }
        settings = make_settings(
            tmp_path / "d",
            egress=LOOPBACK_EGRESS,
            auth=auth,
            topics=[{"name": "orders"}, {"name": "dead"}],
            subscriptions=[spec],
        )
        async with run_gateway(settings) as gw:
            bearer = {"authorization": f"Bearer {admin}"}
            await gw.publish("orders", "leak", authorization=f"Bearer {publisher}")
            await settle(gw)
            seen = [
                (await gw.client.get("/metrics")).text,
                (await gw.client.get("/v1/subscriptions/s1", headers=bearer)).text,
                (await gw.client.get("/v1/subscriptions", headers=bearer)).text,
                (await gw.client.get("/v1/topics/dead/events", headers=bearer)).text,
                (await gw.client.get("/openapi.json")).text,
                caplog.text,
            ]
    assert len(sub.received) == 1  # the push really carried the credentials...
    credential = base64.b64encode(f"svc:{password}".encode()).decode()
    for text in seen:
        for secret in (*secrets, credential):
            assert secret not in text  # ...and none of them shows anywhere else
    # The subscriber echoed its Authorization header back; the dead letter keeps it redacted.
    assert '"dlbody":"Basic [redacted]"' in seen[3]

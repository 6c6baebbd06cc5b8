"""Egress at save time through DNS (S1) and at connect time (S2: rebinding, pinning).

DNS is a stub the test controls; every address connected to is on 127.0.0.0/8.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.conftest import (
    assert_problem,
    make_settings,
    run_gateway,
    settle,
    status,
    subscription,
)
from tests.support.stub_dns import StubResolver
from tests.support.subscriber import run_subscriber

S1_ADDRESSES = [
    pytest.param("127.0.0.1", id="loopback"),
    pytest.param("::1", id="loopback-v6"),
    pytest.param("0.0.0.0", id="unspecified"),
    pytest.param("10.0.0.5", id="rfc1918-10"),
    pytest.param("172.20.1.1", id="rfc1918-172"),
    pytest.param("192.168.0.1", id="rfc1918-192"),
    pytest.param("169.254.169.254", id="metadata"),
    pytest.param("fe80::1", id="link-local-v6"),
    pytest.param("100.64.0.1", id="cgnat"),
    pytest.param("192.0.0.8", id="ietf-192-0-0"),
    pytest.param("192.0.2.1", id="test-net-1"),
    pytest.param("198.51.100.7", id="test-net-2"),
    pytest.param("203.0.113.9", id="test-net-3"),
    pytest.param("198.18.0.1", id="benchmarking"),
    pytest.param("240.0.0.1", id="reserved"),
    pytest.param("255.255.255.255", id="broadcast"),
    pytest.param("fd00::1", id="ula"),
    pytest.param("fec0::1", id="site-local"),
    pytest.param("::ffff:127.0.0.1", id="v4-mapped-loopback"),
    pytest.param("64:ff9b::a9fe:a9fe", id="nat64-metadata"),
    pytest.param("2002:7f00:1::", id="6to4-loopback"),
    pytest.param("168.63.129.16", id="azure-wireserver"),
]


@pytest.mark.parametrize("address", S1_ADDRESSES)
async def test_save_time_check_follows_dns(tmp_path: Path, address: str) -> None:
    """S1: a name that resolves only to a blocked address is refused when saved."""
    resolver = StubResolver({"hooks.example.com": [address]})
    async with run_gateway(make_settings(tmp_path), resolver=resolver) as gw:
        body = subscription("s1", "https://hooks.example.com/in")
        del body["name"]
        problem = assert_problem(
            await gw.client.put("/v1/subscriptions/s1", json=body), 400, "invalid-request"
        )
        assert problem["field"] == "destination.http.url"
        assert address.split("::ffff:")[-1] in problem["detail"] or address in problem["detail"]


@pytest.mark.parametrize(
    "host",
    [
        pytest.param("metadata.google.internal", id="gce-metadata-name"),
        pytest.param("localhost", id="localhost"),
    ],
)
async def test_denied_names_are_refused_without_asking_dns(tmp_path: Path, host: str) -> None:
    resolver = StubResolver({})
    async with run_gateway(make_settings(tmp_path), resolver=resolver) as gw:
        body = subscription("s1", f"http://{host}/computeMetadata/v1/")
        del body["name"]
        response = await gw.client.put("/v1/subscriptions/s1", json=body)
        assert assert_problem(response, 400, "invalid-request")["field"] == "destination.http.url"


async def test_dns_rebinding_is_blocked_at_connect_time(tmp_path: Path) -> None:
    """S2: public at save time, 127.0.0.1 at delivery: the push is blocked, never sent, and
    dead-lettered as permanent with dlstatus egress-denied."""
    async with run_subscriber() as trap:
        resolver = StubResolver({"rebind.example.com": ["8.8.8.8"]})
        settings = make_settings(
            tmp_path,
            topics=[{"name": "orders"}, {"name": "dead"}],
            subscriptions=[],
        )
        async with run_gateway(settings, resolver=resolver) as gw:
            body = subscription(
                "s1", f"http://rebind.example.com:{trap.port}/in", deadLetterTopic="dead"
            )
            del body["name"]
            assert (await gw.client.put("/v1/subscriptions/s1", json=body)).status_code == 201
            resolver.names["rebind.example.com"] = ["127.0.0.1"]  # the rebinding
            await gw.publish("orders", "rb")
            await settle(gw)
            assert trap.received == []
            [dead] = (await gw.client.get("/v1/topics/dead/events")).json()["events"]
            assert (dead["dlreason"], dead["dlstatus"]) == ("permanent", "egress-denied")
            assert status(gw, "s1")["deadlettered"] == 1


async def test_connection_is_pinned_to_a_checked_address(tmp_path: Path) -> None:
    """S2: a name resolving to a denied and an allowed address connects only to the allowed
    one (the subscriber on 127.0.0.2; a trap on 127.0.0.1, same port, gets nothing)."""
    async with run_subscriber(host="127.0.0.2") as good:
        async with run_subscriber(host="127.0.0.1", port=good.port) as trap:
            resolver = StubResolver({"two.example.com": ["127.0.0.1", "127.0.0.2"]})
            settings = make_settings(
                tmp_path,
                egress={"allowedNetworks": ["127.0.0.2/32"]},
                subscriptions=[subscription("s1", f"http://two.example.com:{good.port}/in")],
            )
            async with run_gateway(settings, resolver=resolver) as gw:
                for index in range(5):
                    await gw.publish("orders", f"p{index}")
                await settle(gw)
                assert len(good.received) == 5
                assert trap.received == []


async def test_allowlist_opens_loopback_delivery(tmp_path: Path) -> None:
    """S1: with an explicit operator allowlist (127.0.0.1/32) loopback delivery works."""
    async with run_subscriber() as sub:
        resolver = StubResolver({"local.example.com": ["127.0.0.1"]})
        settings = make_settings(
            tmp_path,
            egress={"allowedNetworks": ["127.0.0.1/32"]},
            subscriptions=[subscription("s1", f"http://local.example.com:{sub.port}/")],
        )
        async with run_gateway(settings, resolver=resolver) as gw:
            await gw.publish("orders", "ok")
            await settle(gw)
            assert [r.event_id for r in sub.received] == ["ok"]

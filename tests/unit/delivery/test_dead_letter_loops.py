"""Dead-letter loops are impossible (RELIABILITY R9; DESIGN "Delivery semantics").

A subscription whose dead-letter topic is its own topic, or one that closes a cycle of
dead-letter topics across subscriptions, is refused: in the configuration file with a message
naming the key path (DESIGN "Configuration file"), and through `PUT /v1/subscriptions/{name}`
with a 400 problem naming the field, leaving nothing half-applied. A chain that does not loop
back is fine, and a dead-letter topic is an ordinary topic whose events can be delivered and
dead-lettered onward.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from gateway.clock import ManualClock
from gateway.config.settings import ConfigError, parse_config
from gateway.resources.subscriptions import Subscription, validate_settings
from tests.conftest import (
    LOOPBACK_EGRESS,
    RunningGateway,
    assert_problem,
    make_settings,
    run_gateway,
    settle,
    status,
    subscription,
)
from tests.support.subscriber import Answer, run_subscriber

URL = "http://127.0.0.1:9/hook"  # never contacted: these subscriptions are only validated
TOPICS = [{"name": name} for name in ("a", "b", "c")]


def dead_lettering(name: str, topic: str, dead_letter_topic: str) -> dict[str, Any]:
    return subscription(name, URL, topic=topic, deadLetterTopic=dead_letter_topic)


def validate(subscriptions: list[dict[str, Any]]) -> list[Subscription]:
    settings = parse_config(
        {"egress": LOOPBACK_EGRESS, "topics": TOPICS, "subscriptions": subscriptions}
    )
    return validate_settings(settings)


# -- the configuration file ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("subscriptions", "path"),
    [
        pytest.param(
            [dead_lettering("loop", "a", "a")], r"subscriptions\[0\]", id="own-topic-first"
        ),
        pytest.param(
            [dead_lettering("fine", "a", "b"), dead_lettering("loop", "c", "c")],
            r"subscriptions\[1\]",
            id="own-topic-second",
        ),
    ],
)
def test_config_refuses_a_dead_letter_topic_that_is_its_own_topic(
    subscriptions: list[dict[str, Any]], path: str
) -> None:
    with pytest.raises(ConfigError, match=rf"^{path}\.deadLetterTopic: .*own topic"):
        validate(subscriptions)


CYCLES = [
    pytest.param(
        [dead_lettering("a-to-b", "a", "b"), dead_lettering("b-to-a", "b", "a")],
        id="a-b-a",
    ),
    pytest.param(
        [
            dead_lettering("a-to-b", "a", "b"),
            dead_lettering("b-to-c", "b", "c"),
            dead_lettering("c-to-a", "c", "a"),
        ],
        id="a-b-c-a",
    ),
]


@pytest.mark.parametrize("subscriptions", CYCLES)
def test_config_refuses_a_cycle_of_dead_letter_topics(
    subscriptions: list[dict[str, Any]],
) -> None:
    with pytest.raises(ConfigError, match="closes a cycle of dead-letter topics"):
        validate(subscriptions)


@pytest.mark.parametrize("subscriptions", CYCLES)
def test_config_cycle_error_names_the_key_path(subscriptions: list[dict[str, Any]]) -> None:
    """DESIGN "Configuration file": dead-letter cycles are refused at start with a message that
    names the key path, as the own-topic case does (`subscriptions[0].deadLetterTopic: ...`)."""
    with pytest.raises(ConfigError) as info:
        validate(subscriptions)
    paths = tuple(f"subscriptions[{i}].deadLetterTopic: " for i in range(len(subscriptions)))
    assert str(info.value).startswith(paths), str(info.value)


@pytest.mark.parametrize(
    "subscriptions",
    [
        pytest.param(
            [dead_lettering("a-to-b", "a", "b"), dead_lettering("b-to-c", "b", "c")],
            id="chain-a-b-c",
        ),
        pytest.param(
            [dead_lettering("a-to-c", "a", "c"), dead_lettering("b-to-c", "b", "c")],
            id="two-into-one",
        ),
        pytest.param(
            [dead_lettering("a-to-b", "a", "b"), dead_lettering("a-to-c", "a", "c")],
            id="one-topic-two-dead-letter-topics",
        ),
    ],
)
def test_config_accepts_dead_letter_topics_that_do_not_loop(
    subscriptions: list[dict[str, Any]],
) -> None:
    built = validate(subscriptions)
    assert [(s.topic, s.dead_letter_topic) for s in built] == [
        (spec["topic"], spec["deadLetterTopic"]) for spec in subscriptions
    ]


async def test_gateway_start_refuses_a_cyclic_config(tmp_path: Path) -> None:
    """The same rule holds when a gateway is started on such a file without `validate-config`."""
    settings = make_settings(
        tmp_path,
        egress=LOOPBACK_EGRESS,
        topics=TOPICS,
        subscriptions=[dead_lettering("a-to-b", "a", "b"), dead_lettering("b-to-a", "b", "a")],
    )
    # Hypercorn reports the lifespan's ConfigError as a LifespanFailureError quoting it.
    with pytest.raises(Exception, match="closes a cycle of dead-letter topics"):
        async with run_gateway(settings):
            pass


# -- the admin API ---------------------------------------------------------------------------


async def put(gw: RunningGateway, name: str, topic: str, dead_letter_topic: str) -> Any:
    spec = dead_lettering(name, topic, dead_letter_topic)
    del spec["name"]  # the path names it
    return await gw.client.put(f"/v1/subscriptions/{name}", json=spec)


async def names(gw: RunningGateway) -> list[str]:
    response = await gw.client.get("/v1/subscriptions")
    assert response.status_code == 200
    return [sub["name"] for sub in response.json()["subscriptions"]]


@pytest.fixture
async def admin(tmp_path: Path) -> Any:
    settings = make_settings(tmp_path, egress=LOOPBACK_EGRESS, topics=TOPICS)
    async with run_gateway(settings) as gw:
        yield gw


async def test_api_refuses_a_dead_letter_topic_that_is_its_own_topic(admin: RunningGateway) -> None:
    problem = assert_problem(await put(admin, "loop", "a", "a"), 400, "invalid-request")
    assert problem["field"] == "deadLetterTopic"
    assert "own topic" in problem["detail"]
    assert (await admin.client.get("/v1/subscriptions/loop")).status_code == 404
    assert await names(admin) == []


@pytest.mark.parametrize(
    ("accepted", "refused"),
    [
        pytest.param([("a-to-b", "a", "b")], ("b-to-a", "b", "a"), id="a-b-a"),
        pytest.param(
            [("a-to-b", "a", "b"), ("b-to-c", "b", "c")], ("c-to-a", "c", "a"), id="a-b-c-a"
        ),
    ],
)
async def test_api_refuses_the_put_that_closes_a_cycle(
    admin: RunningGateway, accepted: list[tuple[str, str, str]], refused: tuple[str, str, str]
) -> None:
    for name, topic, dead_letter_topic in accepted:
        assert (await put(admin, name, topic, dead_letter_topic)).status_code == 201
    problem = assert_problem(await put(admin, *refused), 400, "invalid-request")
    assert "closes a cycle" in problem["detail"]
    # Nothing half-applied: only the earlier subscriptions exist, and the gateway still works.
    assert (await admin.client.get(f"/v1/subscriptions/{refused[0]}")).status_code == 404
    assert await names(admin) == sorted(name for name, _, _ in accepted)
    assert admin.gateway.subscriptions is not None
    assert [s.name for s in admin.gateway.subscriptions.on_topic(refused[1])] == [
        name for name, topic, _ in accepted if topic == refused[1]
    ]


@pytest.mark.parametrize(
    ("before", "after"),
    [
        pytest.param(("b", "c"), ("b", "a"), id="new-dead-letter-topic"),
        pytest.param(("c", "a"), ("b", "a"), id="new-topic"),
    ],
)
async def test_api_refuses_a_replacement_that_closes_a_cycle_and_keeps_the_old_one(
    admin: RunningGateway, before: tuple[str, str], after: tuple[str, str]
) -> None:
    """PUT replaces: with `first` on a -> b, moving `second` to b -> a would loop; it is refused
    and the stored `second` stays as it was."""
    assert (await put(admin, "first", "a", "b")).status_code == 201
    assert (await put(admin, "second", *before)).status_code == 201
    problem = assert_problem(await put(admin, "second", *after), 400, "invalid-request")
    assert "closes a cycle" in problem["detail"]
    kept = (await admin.client.get("/v1/subscriptions/second")).json()
    assert (kept["topic"], kept["deadLetterTopic"]) == before
    assert admin.gateway.subscriptions is not None
    assert admin.gateway.subscriptions.get("second").dead_letter_topic == before[1]  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("accepted", "refused"),
    [
        pytest.param([("a-to-b", "a", "b")], ("b-to-a", "b", "a"), id="a-b-a"),
        pytest.param(
            [("first", "a", "b"), ("second", "c", "a")], ("second", "b", "a"), id="replacement"
        ),
    ],
)
async def test_api_cycle_problem_names_the_field_of_the_subscription_put(
    admin: RunningGateway, accepted: list[tuple[str, str, str]], refused: tuple[str, str, str]
) -> None:
    """R9 and DESIGN "Interfaces": the 4xx problem names the field that is wrong, as the
    own-topic refusal does (`field: deadLetterTopic`), and its detail is about the subscription
    being PUT, not about another one already stored."""
    for name, topic, dead_letter_topic in accepted:
        assert (await put(admin, name, topic, dead_letter_topic)).status_code == 201
    others = [spec for spec in accepted if spec[0] != refused[0]]
    problem = assert_problem(await put(admin, *refused), 400, "invalid-request")
    assert problem["field"] == "deadLetterTopic", problem
    for name, _, _ in others:
        assert f"'{name}'" not in problem["detail"], problem["detail"]


async def test_api_accepts_a_chain_that_does_not_loop(admin: RunningGateway) -> None:
    assert (await put(admin, "a-to-b", "a", "b")).status_code == 201
    assert (await put(admin, "b-to-c", "b", "c")).status_code == 201
    assert (await put(admin, "a-to-c", "a", "c")).status_code == 201
    assert await names(admin) == ["a-to-b", "a-to-c", "b-to-c"]


async def test_api_replacement_is_checked_without_its_old_self(admin: RunningGateway) -> None:
    """Reversing the only subscription (a -> b becomes b -> a) is no cycle: its old edge goes."""
    assert (await put(admin, "only", "a", "b")).status_code == 201
    assert (await put(admin, "only", "b", "a")).status_code == 200
    replaced = (await admin.client.get("/v1/subscriptions/only")).json()
    assert (replaced["topic"], replaced["deadLetterTopic"]) == ("b", "a")


# -- a dead-letter topic is a topic ----------------------------------------------------------


async def test_dead_letters_flow_onward_along_a_chain(tmp_path: Path) -> None:
    """a -> b -> c: an event refused on a is dead-lettered to b, where it is delivered and
    refused again, and dead-lettered to c, where it is delivered and acked. Each subscription
    dead-letters it once, and the run ends."""
    async with run_subscriber() as refuser, run_subscriber() as sink:
        refuser.script = lambda r: Answer(422, body=b"no")
        specs = [
            subscription("on-a", refuser.url + "/a", topic="a", deadLetterTopic="b"),
            subscription("on-b", refuser.url + "/b", topic="b", deadLetterTopic="c"),
            subscription("on-c", sink.url, topic="c"),
        ]
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, topics=TOPICS, subscriptions=specs
        )
        async with run_gateway(settings) as gw:
            assert (await gw.publish("a", "ev-1", **{"ce-tenant": "acme"})).status_code == 202
            await settle(gw)
            assert [(r.path, r.event_id) for r in refuser.received] == [
                ("/a", "ev-1"),
                ("/b", "ev-1"),
            ]
            [delivered] = sink.received
            assert delivered.event_id == "ev-1"
            assert delivered.headers["ce-tenant"] == "acme"
            assert delivered.headers["ce-dlsubscription"] == "on-b"
            assert delivered.headers["ce-dlreason"] == "permanent"

            [on_b] = (await gw.client.get("/v1/topics/b/events")).json()["events"]
            assert (on_b["id"], on_b["dlsubscription"], on_b["dlreason"]) == (
                "ev-1",
                "on-a",
                "permanent",
            )
            [on_c] = (await gw.client.get("/v1/topics/c/events")).json()["events"]
            assert (on_c["id"], on_c["dlsubscription"], on_c["data"]) == ("ev-1", "on-b", {"n": 1})

            assert status(gw, "on-a")["deadlettered"] == 1
            assert status(gw, "on-b") == {
                "published": 1,
                "acked": 0,
                "deadlettered": 1,
                "dropped": 0,
                "pending": 0,
                "deadlettered.permanent": 1,
            }
            assert status(gw, "on-c")["acked"] == 1
            assert status(gw, "on-c")["pending"] == 0


async def test_events_published_straight_to_a_dead_letter_topic_are_delivered(
    tmp_path: Path,
) -> None:
    async with run_subscriber() as sub:
        specs = [
            subscription("on-a", sub.url, topic="a", deadLetterTopic="b"),
            subscription("on-b", sub.url + "/b", topic="b"),
        ]
        settings = make_settings(
            tmp_path, egress=LOOPBACK_EGRESS, topics=TOPICS, subscriptions=specs
        )
        async with run_gateway(settings) as gw:
            assert (await gw.publish("b", "direct")).status_code == 202
            await settle(gw)
            assert [(r.path, r.event_id) for r in sub.received] == [("/b", "direct")]
            assert status(gw, "on-b")["acked"] == 1
            assert status(gw, "on-a")["published"] == 0


@pytest.mark.parametrize(
    "action", [pytest.param("purge", id="purge"), pytest.param("redrive", id="redrive")]
)
async def test_purging_or_redriving_a_chained_dead_letter_leaves_nothing_stuck(
    tmp_path: Path, action: str
) -> None:
    """A dead-letter topic is a topic: `on-b` holds a pending delivery of the dead letter on b.
    Purging (or redriving) that dead letter removes it from b; `on-b`'s delivery must still end
    (delivered, expired, dropped or dead-lettered, and counted), never stay pending for good."""
    clock = ManualClock()
    async with run_subscriber(clock) as sub:
        sub.script = lambda r: Answer(422) if r.path == "/a" else Answer(503)
        specs = [
            subscription("on-a", sub.url + "/a", topic="a", deadLetterTopic="b"),
            subscription("on-b", sub.url + "/b", topic="b"),
        ]
        settings = make_settings(
            tmp_path,
            egress=LOOPBACK_EGRESS,
            topics=[{"name": "a", "retention": "2h"}, {"name": "b", "retention": "2h"}],
            subscriptions=specs,
        )
        async with run_gateway(settings, clock=clock) as gw:
            await gw.publish("a", "ev-1")
            await settle(gw)
            assert status(gw, "on-b")["pending"] == 1
            response = await gw.client.post(f"/v1/topics/b/events:{action}", json={"all": True})
            assert response.status_code == 200, response.text
            await settle(gw)
            for _ in range(3 * 6):  # 3 h in 10-minute steps: past b's 2 h retention
                clock.advance(600)
                await settle(gw)
            await asyncio.sleep(0.02)
            await settle(gw)
            counters = status(gw, "on-b")
            assert gw.store.deliveries.pending("on-b") == 0, counters
            assert counters["pending"] == 0, counters

"""Topic rows, subscription rows and extension rows: what the registries and the Pretry API
keep in the store. A subscription change calls its `apply` (the routing update) once, at the
point of the store's commit order where it takes effect, and deleting a subscription takes its
pending deliveries and counters with it."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from gateway.problems import NotFound, StoreFailure
from gateway.store.base import Store
from gateway.store.records import PublishResult
from tests.store_contract.conftest import Faults
from tests.store_contract.support import (
    DAY,
    T0,
    Ack,
    RetryAt,
    Routing,
    event,
    events,
    pending,
    pending_ids,
    settlement,
    topic,
)

SPEC = b'{"name":"s1","topic":"orders","target":"https://example.test/hook"}'


class Applied:
    """An `apply` callback that routes (or unroutes) s1, counts its calls and returns its
    undo (which puts the routes back as they were), as the Protocol asks."""

    def __init__(self, routing: Routing, add: bool) -> None:
        self.routing, self.add, self.calls, self.undone = routing, add, 0, 0

    def __call__(self) -> Callable[[], None]:
        self.calls += 1
        before = {topic: list(routes) for topic, routes in self.routing.routes.items()}
        if self.add:
            self.routing.add("orders", "s1")
        else:
            self.routing.remove("s1")

        def undo() -> None:
            self.undone += 1
            self.routing.routes = before

        return undo


async def test_put_topic_creates_then_replaces(store: Store) -> None:
    assert await store.put_topic(topic("orders", retention=DAY)) is True
    assert await store.put_topic(topic("orders", retention=2 * DAY)) is False
    await store.put_topic(topic("audit"))
    stored = {t.name: t.retention for t in await store.topics()}
    assert stored == {"orders": 2 * DAY, "audit": DAY}


async def test_event_count_follows_what_the_topic_holds(store: Store) -> None:
    await store.put_topic(topic("orders"))
    assert await store.event_count("orders") == 0
    await store.publish("orders", events("e", 3), T0)
    await store.publish("orders", [event("e0")], T0)  # a duplicate adds nothing
    assert await store.event_count("orders") == 3
    await store.sweep(T0 + DAY + 1, 0.0)
    assert await store.event_count("orders") == 0


async def test_delete_topic_removes_the_topic_and_its_events(store: Store) -> None:
    await store.put_topic(topic("orders"))
    await store.put_topic(topic("audit"))
    await store.publish("orders", events("e", 3), T0)
    await store.delete_topic("orders")
    assert [t.name for t in await store.topics()] == ["audit"]
    with pytest.raises(NotFound):
        await store.browse("orders", None, 10)
    with pytest.raises(NotFound):
        await store.publish("orders", [event("e9")], T0)
    await store.put_topic(topic("orders"))  # created again: empty, the old events are gone
    assert (await store.browse("orders", None, 10)).events == []


async def test_a_delivery_whose_topic_was_deleted_has_no_payload_and_can_be_settled(
    store: Store, routing: Routing
) -> None:
    routing.add("orders", "s1")
    await store.put_topic(topic("orders"))
    await store.publish("orders", [event("e1")], T0)
    await store.delete_topic("orders")
    [orphan] = await pending(store, "s1")
    assert orphan.payload is None
    await store.settle([settlement(orphan, Ack())], T0 + 1)
    assert await pending(store, "s1") == []


async def test_subscription_rows_are_created_replaced_and_listed(
    store: Store, routing: Routing
) -> None:
    applied = Applied(routing, add=True)
    assert await store.put_subscription("s1", SPEC, applied) is True
    replaced = SPEC.replace(b"hook", b"hook2")
    assert await store.put_subscription("s1", replaced, applied) is False
    await store.put_subscription("s2", SPEC.replace(b"s1", b"s2"), lambda: lambda: None)
    rows = dict(await store.subscription_rows())
    assert rows == {"s1": replaced, "s2": SPEC.replace(b"s1", b"s2")}
    assert applied.calls == 2


async def test_a_publish_after_put_subscription_fans_out_to_it(
    store: Store, routing: Routing
) -> None:
    await store.put_topic(topic("orders"))
    await store.publish("orders", [event("before")], T0)
    await store.put_subscription("s1", SPEC, Applied(routing, add=True))
    result = await store.publish("orders", [event("after")], T0)
    assert result.subscriptions == {"s1"}
    assert await pending_ids(store, "s1") == ["after"]


async def test_publishes_racing_a_subscription_change_see_it_whole_or_not_at_all(
    store: Store, routing: Routing
) -> None:
    """The ordering guarantee: each publish fanned out to s1 exactly when its result says so,
    and the counters agree with the deliveries."""
    await store.put_topic(topic("orders"))
    before = [
        asyncio.ensure_future(store.publish("orders", [event(f"r{n}")], T0)) for n in range(10)
    ]
    change = asyncio.ensure_future(store.put_subscription("s1", SPEC, Applied(routing, add=True)))
    after = [
        asyncio.ensure_future(store.publish("orders", [event(f"r{n}")], T0)) for n in range(10, 20)
    ]
    results = await asyncio.gather(*before, *after)
    assert await change is True
    routed = {f"r{n}" for n, result in enumerate(results) if "s1" in result.subscriptions}
    assert set(await pending_ids(store, "s1")) == routed
    assert (await store.counters("s1"))["published"] == len(routed)


async def test_delete_subscription_takes_its_deliveries_and_counters_with_it(
    store: Store, routing: Routing
) -> None:
    await store.put_topic(topic("orders"))
    await store.put_subscription("s1", SPEC, Applied(routing, add=True))
    await store.publish("orders", events("e", 3), T0)
    first = (await pending(store, "s1"))[0]
    await store.settle([settlement(first, Ack())], T0 + 1)
    unrouted = Applied(routing, add=False)
    assert await store.delete_subscription("s1", unrouted) == 2  # the pending ones
    assert unrouted.calls == 1
    assert await pending(store, "s1") == []
    assert await store.next_due("s1", 0.0) is None
    assert await store.oldest_pending("s1") is None
    counters = await store.counters("s1")
    assert all(value == 0 for value in counters.values()), counters
    assert await store.subscription_rows() == []
    assert (await store.last_outcome("s1")).success_time is None
    assert (await store.publish("orders", [event("late")], T0 + 2)).subscriptions == frozenset()


async def test_an_outcome_settled_after_its_subscription_was_deleted_changes_nothing(
    store: Store, routing: Routing
) -> None:
    """An attempt in flight when the subscription went: its ack or retry resurrects nothing."""
    await store.put_topic(topic("orders"))
    await store.put_subscription("s1", SPEC, Applied(routing, add=True))
    await store.publish("orders", events("e", 2), T0)
    first, second = await pending(store, "s1")
    await store.delete_subscription("s1", Applied(routing, add=False))
    await store.settle([settlement(first, Ack())], T0 + 1)
    await store.settle([settlement(second, RetryAt(T0 + 60, "503"))], T0 + 1)
    assert await pending(store, "s1") == []
    counters = await store.counters("s1")
    assert all(value == 0 for value in counters.values()), counters


async def test_a_subscription_created_again_under_a_deleted_name_starts_afresh(
    store: Store, routing: Routing
) -> None:
    await store.put_topic(topic("orders"))
    await store.put_subscription("s1", SPEC, Applied(routing, add=True))
    await store.publish("orders", events("e", 2), T0)
    await store.delete_subscription("s1", Applied(routing, add=False))
    await store.put_subscription("s1", SPEC, Applied(routing, add=True))
    await store.publish("orders", [event("new")], T0 + 1)
    assert await pending_ids(store, "s1") == ["new"]
    assert (await store.counters("s1"))["published"] == 1


async def test_extension_rows_are_stored_replaced_and_deleted(store: Store) -> None:
    assert await store.extension_row("pretry", "p1") is None
    await store.put_extension_row("pretry", "p1", b'{"v":1}')
    await store.put_extension_row("pretry", "p1", b'{"v":2}')
    assert await store.extension_row("pretry", "p1") == b'{"v":2}'
    await store.delete_extension_row("pretry", "p1")
    assert await store.extension_row("pretry", "p1") is None
    await store.delete_extension_row("pretry", "p1")  # deleting what is gone is no error


async def test_extension_rows_under_other_keys_are_apart(store: Store) -> None:
    await store.put_extension_row("pretry", "a", b"1")
    await store.put_extension_row("pretry", "ab", b"2")
    await store.put_extension_row("pretry", "a/b", b"3")
    assert await store.extension_row("pretry", "a") == b"1"
    assert await store.extension_row("pretry", "ab") == b"2"
    assert await store.extension_row("pretry", "a/b") == b"3"
    await store.delete_extension_row("pretry", "a")
    assert await store.extension_row("pretry", "ab") == b"2"
    assert await store.subscription_rows() == []  # no extension row shows up as another row
    assert await store.topics() == []


async def test_a_subscription_change_that_does_not_commit_is_undone_before_the_next_publish(
    store: Store, routing: Routing, faults: Faults
) -> None:
    """The routing change's undo runs in commit order: a publish queued right behind a put
    whose commit fails does not fan out to a subscription that was never stored."""
    await store.put_topic(topic("orders"))
    applied = Applied(routing, add=True)
    faults.fail_nth(1, hold=True)
    change = asyncio.ensure_future(store.put_subscription("s1", SPEC, applied))
    publish = await queued_behind_the_failing_commit(store, faults)
    with pytest.raises(StoreFailure):
        await change
    assert (await publish).subscriptions == frozenset()
    assert (applied.calls, applied.undone) == (1, 1)
    assert await store.subscription_rows() == []
    assert await pending(store, "s1") == []


async def test_a_delete_that_does_not_commit_leaves_the_subscription_routed(
    store: Store, routing: Routing, faults: Faults
) -> None:
    await store.put_topic(topic("orders"))
    await store.put_subscription("s1", SPEC, Applied(routing, add=True))
    removed = Applied(routing, add=False)
    faults.fail_nth(1, hold=True)
    change = asyncio.ensure_future(store.delete_subscription("s1", removed))
    publish = await queued_behind_the_failing_commit(store, faults)
    with pytest.raises(StoreFailure):
        await change
    assert (await publish).subscriptions == {"s1"}
    assert removed.undone == 1
    assert await pending_ids(store, "s1") == ["e1"]


async def queued_behind_the_failing_commit(
    store: Store, faults: Faults
) -> asyncio.Future[PublishResult]:
    """A publish queued while the held commit fails, so it is in the next commit."""
    for _ in range(1000):
        if faults.reached.is_set():
            break
        await asyncio.sleep(0.005)
    assert faults.reached.is_set(), "the failing commit was never reached"
    publish = asyncio.ensure_future(store.publish("orders", [event("e1")], T0))
    for _ in range(3):  # its first step queues it for the writer
        await asyncio.sleep(0)
    faults.release()
    return publish

"""Browsing a topic: pages of at most `limit` events in order, linked by an opaque cursor, so
that following `next` visits every event exactly once (no skip, no repeat), even while events
are being published."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.problems import InvalidRequest, NotFound
from gateway.store.base import Store
from tests.store_contract.support import (
    T0,
    Selection,
    document,
    event,
    events,
    stored_ids,
    topic,
)


async def pages(store: Store, name: str, limit: int, **options: Any) -> list[list[str]]:
    found: list[list[str]] = []
    cursor: str | None = None
    for _ in range(1000):
        page = await store.browse(name, cursor, limit, **options)
        assert len(page.events) <= limit
        found.append([document(stored.payload)["id"] for stored in page.events])
        if page.next is None:
            return found
        cursor = page.next
    raise AssertionError("browse never ended")


async def test_paging_visits_every_event_once_in_order(store: Store) -> None:
    await store.put_topic(topic("orders"))
    await store.publish("orders", events("e", 50), T0)
    walked = await pages(store, "orders", 7)
    assert len(walked) >= 8  # 50 events at 7 a page
    assert [event_id for page in walked for event_id in page] == [f"e{n}" for n in range(50)]


async def test_newest_first_paging_visits_every_event_once_newest_first(store: Store) -> None:
    await store.put_topic(topic("orders"))
    await store.publish("orders", events("e", 20), T0)
    walked = await pages(store, "orders", 6, newest_first=True)
    assert [event_id for page in walked for event_id in page] == [
        f"e{n}" for n in reversed(range(20))
    ]


async def test_a_full_page_links_to_the_next_and_the_last_page_ends_the_walk(
    store: Store,
) -> None:
    await store.put_topic(topic("orders"))
    await store.publish("orders", events("e", 5), T0)
    first = await store.browse("orders", None, 3)
    assert len(first.events) == 3 and isinstance(first.next, str)
    rest = await store.browse("orders", first.next, 3)
    assert [document(s.payload)["id"] for s in rest.events] == ["e3", "e4"]
    assert rest.next is None


async def test_an_empty_topic_is_one_empty_page(store: Store) -> None:
    await store.put_topic(topic("orders"))
    page = await store.browse("orders", None, 10)
    assert (page.events, page.next) == ([], None)


async def test_events_published_between_pages_come_later_without_repeats(
    store: Store,
) -> None:
    await store.put_topic(topic("orders"))
    await store.publish("orders", events("a", 4), T0)
    first = await store.browse("orders", None, 3)
    await store.publish("orders", events("b", 3), T0 + 1)
    rest: list[str] = []
    cursor = first.next
    while cursor is not None:
        page = await store.browse("orders", cursor, 4)
        rest.extend(document(s.payload)["id"] for s in page.events)
        cursor = page.next
    assert rest == ["a3", "b0", "b1", "b2"]


async def test_a_selection_pages_through_only_the_matching_dead_letters(store: Store) -> None:
    await store.put_topic(topic("dead"))
    letters = [
        event(f"d{n}", dlsubscription="s1" if n % 3 else "s2", dlreason="exhausted")
        for n in range(30)
    ]
    await store.publish("dead", letters, T0)
    walked = await pages(store, "dead", 4, selection=Selection(subscription="s2"))
    assert [i for page in walked for i in page] == [f"d{n}" for n in range(0, 30, 3)]
    ids = Selection(ids=frozenset({"d1", "d29"}))
    assert [i for page in await pages(store, "dead", 4, selection=ids) for i in page] == [
        "d1",
        "d29",
    ]


async def test_browsing_an_unknown_topic_is_not_found(store: Store) -> None:
    with pytest.raises(NotFound):
        await store.browse("nowhere", None, 10)


@pytest.mark.parametrize("cursor", ["x", "-1", "1.5", "9" * 30])
async def test_a_cursor_no_page_gave_is_refused_as_invalid(store: Store, cursor: str) -> None:
    """An invalid request (the API's 400), never a crash nor an arbitrary page."""
    await store.put_topic(topic("orders"))
    await store.publish("orders", [event("e1")], T0)
    with pytest.raises(InvalidRequest):
        await store.browse("orders", cursor, 10)
    assert await stored_ids(store, "orders") == ["e1"]

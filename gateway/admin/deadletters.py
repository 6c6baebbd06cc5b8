"""`/v1/topics/{name}/events:redrive` and `:purge` on a dead-letter topic, and the dead-letter
filters that browsing a topic's events accepts as query parameters.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import api_models as shapes
from gateway.admin.common import admin_body, decode_body, json_response
from gateway.openapi import Operation, Query
from gateway.problems import InvalidRequest
from gateway.resources.subscriptions import SubscriptionRegistry
from gateway.resources.topics import TopicRegistry
from gateway.store.lmdb.redrive import Selection
from gateway.store.lmdb.store import LmdbStore

DEAD_LETTER_QUERY = (
    Query("subscription", "only dead letters of this subscription (dlsubscription)"),
    Query("reason", "only this dlreason: exhausted, permanent or expired"),
    Query("id", "only events with this CloudEvent id"),
)


def selection_from_query(request: Request) -> Selection | None:
    query = request.query_params
    if not any(name in query for name in ("subscription", "reason", "id")):
        return None
    ids = frozenset([query["id"]]) if "id" in query else None
    return Selection(ids=ids, subscription=query.get("subscription"), reason=query.get("reason"))


class DeadLettersApi:
    """Redrive and purge on a dead-letter topic (DESIGN "Dead letters")."""

    def __init__(
        self,
        store: LmdbStore,
        topics: TopicRegistry,
        subscriptions: SubscriptionRegistry,
        now: Callable[[], float],
        wake: Callable[[frozenset[str]], None],
    ) -> None:
        self._store = store
        self._topics = topics
        self._subscriptions = subscriptions
        self._now = now
        self._wake = wake

    def operations(self) -> list[Operation]:
        base = "/v1/topics/{name}/events"
        return [
            Operation(
                "POST",
                base + ":redrive",
                self.redrive,
                "Send dead letters back to their subscriptions as fresh deliveries",
                request=shapes.DeadLetterSelection,
                responses={200: shapes.RedriveResult},
                problems=(400, 404, 413),
            ),
            Operation(
                "POST",
                base + ":purge",
                self.purge,
                "Delete dead letters",
                request=shapes.DeadLetterSelection,
                responses={200: shapes.PurgeResult},
                problems=(400, 404, 413),
            ),
        ]

    def _selection(self, body: bytes) -> Selection:
        chosen = decode_body(body, shapes.DeadLetterSelection)
        if chosen.all == (chosen.ids is not None):
            raise InvalidRequest('send either "ids": [...] or "all": true', field="ids")
        if chosen.ids is not None and not chosen.ids:
            raise InvalidRequest("ids is empty; list at least one event id", field="ids")
        ids = None if chosen.all else frozenset(chosen.ids or ())
        return Selection(ids=ids, subscription=chosen.subscription, reason=chosen.reason)

    def _retention_of(self, name: str) -> float | None:
        subscription = self._subscriptions.get(name)
        if subscription is None or not self._topics.exists(subscription.topic):
            return None
        return self._topics.get(subscription.topic).retention

    async def _not_found(self, topic: str, selection: Selection) -> list[str]:
        """The requested ids that no dead letter of the selection has (none with `all`)."""
        if selection.ids is None:
            return []
        found: set[str] = set()
        cursor: str | None = None
        while True:  # a short read per page; other requests run between pages
            page = self._store.browse(topic, cursor, 1000, selection)
            found.update(str(orjson.loads(event.payload).get("id")) for event in page.events)
            cursor = page.next
            if cursor is None:
                return sorted(selection.ids - found)
            await asyncio.sleep(0)

    async def redrive(self, request: Request) -> Response:
        topic = request.path_params["name"]
        self._topics.get(topic)
        selection = self._selection(await admin_body(request))
        not_found = await self._not_found(topic, selection)
        result = await self._store.redrive(topic, selection, self._retention_of, self._now())
        self._wake(result.woken)
        return json_response(
            _with_not_found({"redriven": result.handled, "skipped": result.skipped}, not_found)
        )

    async def purge(self, request: Request) -> Response:
        topic = request.path_params["name"]
        self._topics.get(topic)
        selection = self._selection(await admin_body(request))
        not_found = await self._not_found(topic, selection)
        result = await self._store.purge(topic, selection)
        return json_response(_with_not_found({"purged": result.handled}, not_found))


def _with_not_found(answer: dict[str, Any], not_found: list[str]) -> dict[str, Any]:
    """`notFound` is there only when some requested id matched no dead letter."""
    return {**answer, "notFound": not_found} if not_found else answer

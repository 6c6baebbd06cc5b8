"""`/v1/topics/{name}/events/{id}`: one event and its deliveries, each with its attempt log;
`/v1/subscriptions/{name}/deliveries`: a subscription's deliveries, a page at a time
(DESIGN "Exact shapes: Delivery visibility").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import api_models as shapes
from gateway.admin.common import PAGE_QUERY, json_response, page_limit
from gateway.clock import Clock
from gateway.openapi import Operation, Query
from gateway.policy.deadletters import rfc3339_utc
from gateway.problems import Conflict, InvalidRequest, NotFound
from gateway.resources.subscriptions import SubscriptionRegistry
from gateway.resources.topics import TopicRegistry
from gateway.store.base import Store
from gateway.store.records import (
    DELIVERY_STATES,
    Attempt,
    DeliveryRecord,
    ListedDelivery,
    StoredEvent,
)


class EventsApi:
    def __init__(
        self,
        store: Store,
        topics: TopicRegistry,
        subscriptions: SubscriptionRegistry,
        clock: Clock,
        steady: Callable[[], float],
    ) -> None:
        self._store = store
        self._topics = topics
        self._subscriptions = subscriptions
        self._clock = clock
        self._steady = steady  # the scheduling clock a delivery's due time is on

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "GET",
                "/v1/topics/{name}/events/{id}",
                self.get,
                "An event and its deliveries, each with its attempt log",
                responses={200: shapes.EventDeliveries},
                problems=(404, 409),
                query=(Query("source", "the event's source, when several share its id"),),
            ),
            Operation(
                "GET",
                "/v1/subscriptions/{name}/deliveries",
                self.deliveries,
                "A subscription's deliveries, pending and settled, in event order",
                responses={200: shapes.DeliveryList},
                problems=(400, 404),
                query=(Query("state", "pending, acked, deadlettered or dropped"), *PAGE_QUERY),
            ),
        ]

    async def deliveries(self, request: Request) -> Response:
        name = request.path_params["name"]
        subscription = self._subscriptions.get(name)
        if subscription is None:
            raise NotFound(f"subscription {name!r} does not exist")
        state = request.query_params.get("state")
        if state is not None and state not in DELIVERY_STATES:
            raise InvalidRequest(
                f"state must be one of {', '.join(DELIVERY_STATES)}", field="state"
            )
        page = await self._store.subscription_deliveries(
            name, subscription.topic, state, request.query_params.get("after"), page_limit(request)
        )
        listed = [self._listed(one) for one in page.deliveries]
        return json_response({"deliveries": listed, "next": page.next})

    def _listed(self, listed: ListedDelivery) -> dict[str, Any]:
        document = orjson.loads(listed.payload)
        found = self._delivery(listed.delivery)
        del found["subscription"], found["log"]
        return {
            "id": document.get("id"),
            "source": document.get("source"),
            "type": document.get("type"),
            **found,
            "publishedTime": rfc3339_utc(self._wall(listed.received)),
        }

    def _wall(self, steady: float) -> float:
        """A time on the scheduling clock as wall time."""
        return self._clock.now() + (steady - self._steady())

    async def get(self, request: Request) -> Response:
        name, event_id = request.path_params["name"], request.path_params["id"]
        self._topics.get(name)
        source = request.query_params.get("source")
        found = await self._store.events_by_id(name, event_id, source)
        event = self._one(found, event_id)
        deliveries = await self._store.event_deliveries(name, event.seq)
        return json_response(
            {
                "event": orjson.loads(event.payload),
                "deliveries": [self._delivery(record) for record in deliveries],
            }
        )

    @staticmethod
    def _one(found: list[StoredEvent], event_id: str) -> StoredEvent:
        if not found:
            raise NotFound(f"no event has the id {event_id!r}")
        if len(found) > 1:
            sources = sorted({str(orjson.loads(e.payload).get("source")) for e in found})
            raise Conflict(
                f"{len(found)} events have the id {event_id!r}: give ?source= "
                f"(one of {', '.join(sources)})",
                sources=sources,
            )
        return found[0]

    def _delivery(self, record: DeliveryRecord) -> dict[str, Any]:
        next_time = None
        if record.due is not None:
            next_time = rfc3339_utc(self._wall(max(record.due, self._steady())))
        return {
            "subscription": record.subscription,
            "state": record.state,
            "attempts": record.attempts,
            "nextAttemptTime": next_time,
            "lastStatus": _status(record.last_status),
            "lastError": record.last_error,
            "log": [_attempt(attempt) for attempt in record.log],
        }


def _status(status: str | None) -> int | str | None:
    if status is not None and status.isascii() and status.isdigit():
        return int(status)
    return status


def _attempt(attempt: Attempt) -> dict[str, Any]:
    return {
        "time": rfc3339_utc(attempt.time),
        "status": attempt.status,
        "error": attempt.error,
        "durationMs": attempt.duration_ms,
        "response": attempt.response.decode("utf-8", errors="replace"),
    }

"""What each console page shows, as plain values for the templates (issue 23).

Figures come from the same places the admin API and `/metrics` read: subscriptions and their
status through the API's own GET operations (`calls`), counts and pages of events from the
store, push outcomes from the console's `OutcomeHistory`. Nothing here writes; the actions
(redrive, purge, publish) are in `actions`.
"""

from __future__ import annotations

import datetime
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import orjson
from markupsafe import Markup

from gateway.console import charts
from gateway.console.calls import AdminCalls
from gateway.console.data import Data, data_of, pretty
from gateway.console.history import Minute, OutcomeHistory
from gateway.resources.subscriptions import Subscription
from gateway.store.base import StoredEvent
from gateway.store.lmdb.redrive import Selection

if TYPE_CHECKING:
    from gateway.app import Gateway
    from gateway.resources.subscriptions import SubscriptionRegistry
    from gateway.store.lmdb.store import LmdbStore

STATES = ("failing", "degraded", "healthy", "idle")  # the overview's order
RECENT = 15  # minutes in which the latest busy one decides "failing" (backoff reaches 10 min)
PAGE = 50
DEAD_LETTER_SCAN = 5  # pages of a shared dead-letter topic searched for one event
LATER = "the per-event delivery log is a later issue"


@dataclass(frozen=True)
class TopicRow:
    name: str
    retention: str
    events: int
    dead_letter_depth: int | None  # None: no subscription dead-letters into it


@dataclass(frozen=True)
class LastError:
    text: str
    when: str | None
    where: str  # "status" or "dead letter"


@dataclass(frozen=True)
class SubscriptionRow:
    name: str
    topic: str
    state: str
    status: dict[str, Any]
    oldest_pending_age: float | None
    summary: charts.Summary
    spark: Markup
    last_error: LastError | None
    dead_letter_topic: str | None

    @property
    def pending(self) -> int:
        return int(self.status.get("pending", 0))


@dataclass(frozen=True)
class Overview:
    topics: list[TopicRow]
    subscriptions: list[SubscriptionRow]
    generated: str


@dataclass(frozen=True)
class EventRow:
    seq: int
    received: str
    attributes: dict[str, Any]

    @property
    def id(self) -> str:
        return str(self.attributes.get("id", ""))


@dataclass(frozen=True)
class EventList:
    rows: list[EventRow]
    older: str | None  # the `before` cursor of the next (older) page


@dataclass(frozen=True)
class SubscriptionPage:
    row: SubscriptionRow
    spec: str
    chart: Markup
    code_chart: Markup
    minutes: list[Minute]
    dead_letters: EventList | None


@dataclass(frozen=True)
class DeliveryState:
    subscription: str
    state: str  # "pending", "dead-lettered", "not matched", "not pending"
    detail: str
    dead_letter: tuple[str, int] | None = None  # (topic, seq) of its dead letter


@dataclass(frozen=True)
class EventPage:
    topic: str
    row: EventRow
    data: Data
    deliveries: list[DeliveryState] = field(default_factory=list)


def rfc3339(seconds: float) -> str:
    moment = datetime.datetime.fromtimestamp(seconds, datetime.UTC)
    return moment.isoformat(timespec="seconds").replace("+00:00", "Z")


def _parse_time(text: object) -> float | None:
    if not isinstance(text, str):
        return None
    try:
        return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None


def subscription_state(minutes: Sequence[Minute], status: Mapping[str, Any]) -> str:
    """failing: the last failure is newer than the last success (when the status says so),
    or the latest minute with attempts (within `RECENT`) had failures and no ack; degraded:
    failures within the hour; healthy: acks only; idle: no attempts within the hour."""
    failed_at = _parse_time(status.get("lastFailureTime"))
    succeeded_at = _parse_time(status.get("lastSuccessTime"))
    busy = [m for m in minutes[-RECENT:] if m.attempts]
    if failed_at is not None and (succeeded_at is None or failed_at > succeeded_at):
        return "failing"
    if busy and not busy[-1].counts["acked"]:
        return "failing"
    summary = charts.summarize(minutes)
    if summary.failures:
        return "degraded"
    return "healthy" if summary.acked else "idle"


def event_row(stored: StoredEvent) -> EventRow:
    document: dict[str, Any] = orjson.loads(stored.payload)
    document.pop("data", None)
    document.pop("data_base64", None)
    return EventRow(stored.seq, rfc3339(stored.received), document)


class Pages:
    def __init__(self, gateway: Gateway, calls: AdminCalls, history: OutcomeHistory) -> None:
        self._gateway = gateway
        self._calls = calls
        self.history = history

    # -- the gateway's parts, there once the app has started ------------------------------

    @property
    def _store(self) -> LmdbStore:
        assert self._gateway.store is not None
        return self._gateway.store

    @property
    def _registry(self) -> SubscriptionRegistry:
        assert self._gateway.subscriptions is not None
        return self._gateway.subscriptions

    def subscription(self, name: str) -> Subscription | None:
        return self._registry.get(name)

    def topic_names(self) -> list[str]:
        assert self._gateway.topics is not None
        return [topic.name for topic in self._gateway.topics.all()]

    # -- overview ---------------------------------------------------------------------------

    async def overview(self) -> Overview:
        self.history.sample()
        subscriptions = self._registry.all()
        self.history.forget(s.name for s in subscriptions)
        rows = [await self.subscription_row(s) for s in subscriptions]
        rows.sort(key=lambda row: (STATES.index(row.state), row.name))
        return Overview(await self.topics(subscriptions), rows, self._wall())

    def _wall(self) -> str:
        return rfc3339(self._gateway.clock.now())

    async def topics(self, subscriptions: Sequence[Subscription]) -> list[TopicRow]:
        dead_letter_topics = {s.dead_letter_topic for s in subscriptions if s.dead_letter_topic}
        answer = await self._calls.call("GET", "/v1/topics")
        rows = []
        for topic in answer.body["topics"]:
            count = self._store.event_count(topic["name"])
            depth = count if topic["name"] in dead_letter_topics else None
            rows.append(TopicRow(topic["name"], topic["retention"], count, depth))
        return rows

    async def subscription_row(self, subscription: Subscription) -> SubscriptionRow:
        answer = await self._calls.call(
            "GET", "/v1/subscriptions/{name}", {"name": subscription.name}
        )
        status: dict[str, Any] = answer.body.get("status", {}) if answer.ok else {}
        minutes = self.history.minutes(subscription.name)
        enqueued = self._store.deliveries.oldest_pending(subscription.name)
        engine = self._gateway.engine
        age = None if enqueued is None or engine is None else max(0.0, engine.now() - enqueued)
        return SubscriptionRow(
            name=subscription.name,
            topic=subscription.topic,
            state=subscription_state(minutes, status),
            status=status,
            oldest_pending_age=age,
            summary=charts.summarize(minutes),
            spark=charts.sparkline(minutes),
            last_error=self._last_error(subscription, status),
            dead_letter_topic=subscription.dead_letter_topic,
        )

    def _last_error(
        self, subscription: Subscription, status: Mapping[str, Any]
    ) -> LastError | None:
        if status.get("lastError"):
            when = status.get("lastFailureTime")
            return LastError(
                str(status["lastError"]), None if when is None else str(when), "status"
            )
        if subscription.dead_letter_topic is None:
            return None
        page = self._store.browse_newest(
            subscription.dead_letter_topic, None, 1, Selection(subscription=subscription.name)
        )
        if not page.events:
            return None
        document = orjson.loads(page.events[0].payload)
        text = f"{document.get('dlstatus', '?')}: {document.get('dlerror', '')}".strip()
        return LastError(text, str(document.get("dltime", "")) or None, "dead letter")

    # -- a subscription ---------------------------------------------------------------------

    async def subscription_page(
        self, subscription: Subscription, before: str | None
    ) -> SubscriptionPage:
        self.history.sample()
        row = await self.subscription_row(subscription)
        answer = await self._calls.call(
            "GET", "/v1/subscriptions/{name}", {"name": subscription.name}
        )
        spec = {key: value for key, value in answer.body.items() if key != "status"}
        minutes = self.history.minutes(subscription.name)
        dead = None
        if subscription.dead_letter_topic is not None:
            dead = self.events(
                subscription.dead_letter_topic, before, Selection(subscription=subscription.name)
            )
        return SubscriptionPage(
            row,
            pretty(spec),
            charts.outcome_chart(minutes),
            charts.code_chart(minutes),
            minutes,
            dead,
        )

    def dead_letters(self, subscription: Subscription, ids: frozenset[str] | None) -> EventList:
        """The dead letters a redrive or purge would touch (the first `PAGE` when many)."""
        assert subscription.dead_letter_topic is not None
        selection = Selection(ids=ids, subscription=subscription.name)
        return self.events(subscription.dead_letter_topic, None, selection)

    # -- a topic and its events -------------------------------------------------------------

    def events(
        self, topic: str, before: str | None, selection: Selection | None = None
    ) -> EventList:
        page = self._store.browse_newest(topic, before, PAGE, selection)
        return EventList([event_row(stored) for stored in page.events], page.next)

    def event_page(self, topic: str, seq: int) -> EventPage | None:
        if not 1 <= seq < 2**63:
            return None
        page = self._store.browse(topic, str(seq - 1), 1)
        if not page.events or page.events[0].seq != seq:
            return None
        stored = page.events[0]
        row = event_row(stored)
        deliveries = [self._delivery(s, row) for s in self._registry.on_topic(topic)]
        return EventPage(topic, row, data_of(orjson.loads(stored.payload)), deliveries)

    def _delivery(self, subscription: Subscription, row: EventRow) -> DeliveryState:
        name = subscription.name
        if not subscription.filter.matches(row.attributes):
            return DeliveryState(name, "not matched", "its filter does not match this event")
        state = self._store.deliveries.state(name, row.seq)
        if state is not None:
            detail = f"{state.attempts} attempts so far" if state.attempts else "not tried yet"
            if state.last_status:
                detail += f"; last {state.last_status}: {state.last_error or ''}".rstrip(": ")
            return DeliveryState(name, "pending", detail)
        dead = self._find_dead_letter(subscription, row)
        if dead is not None:
            return dead
        return DeliveryState(
            name,
            "not pending",
            "acked, dropped, redriven, or published before the subscription existed; "
            f"which one is not recorded per event yet ({LATER})",
        )

    def _find_dead_letter(self, subscription: Subscription, row: EventRow) -> DeliveryState | None:
        topic = subscription.dead_letter_topic
        if topic is None:
            return None
        selection = Selection(ids=frozenset([row.id]), subscription=subscription.name)
        before = None
        for _ in range(DEAD_LETTER_SCAN):
            page = self._store.browse_newest(topic, before, PAGE, selection)
            for stored in page.events:
                document = orjson.loads(stored.payload)
                if document.get("source") == row.attributes.get("source"):
                    detail = (
                        f"{document.get('dlreason')} after {document.get('dlattempts')} attempts"
                    )
                    where = (topic, stored.seq)
                    return DeliveryState(subscription.name, "dead-lettered", detail, where)
            if page.next is None:
                return None
            before = page.next
        return None

"""Subscriptions: validated once into frozen policies, kept in the store, mirrored in memory.

A subscription attaches one topic to one destination with a filter and a delivery policy
(DESIGN "Subscription"). `build_subscription` turns the YAML/JSON shape into a `Subscription`
with durations in seconds and a compiled filter, or raises ConfigError naming the key path.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import msgspec

from gateway.config.settings import (
    ACK_DEADLINE,
    DEFAULT_TOPIC,
    DELAY,
    MAX_CONCURRENCY,
    MAX_DELIVERY_ATTEMPTS,
    TOPIC_NAME,
    ConfigError,
    RawRetryPolicy,
    RawSubscription,
    Settings,
    duration_at,
)
from gateway.destinations.egress import EgressPolicy
from gateway.destinations.targets import Target, build_target
from gateway.policy.backoff import RetryPolicy
from gateway.policy.filters import Filter, FilterError, compile_filters
from gateway.store.base import Store

T = TypeVar("T")
log = logging.getLogger("gateway.subscriptions")


@dataclass(frozen=True, slots=True)
class Subscription:
    name: str
    topic: str
    filter: Filter
    target: Target
    ack_deadline: float
    retry: RetryPolicy
    max_attempts: int | None
    permanent_codes: frozenset[int] | None
    dead_letter_topic: str | None
    max_concurrency: int
    spec: RawSubscription
    delivery_delay: float = 0.0  # seconds from publish to the first attempt


def build_subscription(
    raw: RawSubscription, path: str, topic_exists: Callable[[str], bool], egress: EgressPolicy
) -> Subscription:
    _check_name(f"{path}.name", raw.name)
    _check_topic(f"{path}.topic", raw.topic, topic_exists)
    dead_letter_topic = _dead_letter_topic(raw, path, topic_exists)
    return Subscription(
        name=raw.name,
        topic=raw.topic,
        filter=_filter(raw.filters, f"{path}.filters"),
        target=build_target(raw, path, egress),
        ack_deadline=_ack_deadline(raw.ack_deadline, f"{path}.ackDeadline"),
        retry=_retry_policy(raw.retry_policy, f"{path}.retryPolicy"),
        max_attempts=_max_attempts(raw, path, dead_letter_topic),
        permanent_codes=_permanent_codes(raw.permanent_status_codes, path),
        dead_letter_topic=dead_letter_topic,
        max_concurrency=_max_concurrency(raw.max_concurrency, f"{path}.maxConcurrency"),
        spec=raw,
        delivery_delay=_delivery_delay(raw.delivery_delay, f"{path}.deliveryDelay"),
    )


def _check_name(path: str, name: str) -> None:
    if not TOPIC_NAME.fullmatch(name):
        raise ConfigError(
            f"{path}: {name!r} is not a subscription name; use 1-100 letters, digits, '.', '_'"
            " or '-', starting with a letter or digit"
        )


def _check_topic(path: str, topic: str, topic_exists: Callable[[str], bool]) -> None:
    if not topic_exists(topic):
        raise ConfigError(f"{path}: topic {topic!r} does not exist; declare it under topics")


def _dead_letter_topic(
    raw: RawSubscription, path: str, topic_exists: Callable[[str], bool]
) -> str | None:
    if raw.dead_letter_topic is None:
        return None
    _check_topic(f"{path}.deadLetterTopic", raw.dead_letter_topic, topic_exists)
    if raw.dead_letter_topic == raw.topic:
        raise ConfigError(
            f"{path}.deadLetterTopic: {raw.dead_letter_topic!r} is the subscription's own topic;"
            " dead letters would be delivered back to it forever"
        )
    return raw.dead_letter_topic


def _filter(spec: list[dict[str, Any]], path: str) -> Filter:
    try:
        return compile_filters(spec, path)
    except FilterError as error:
        raise ConfigError(str(error)) from None


def _ack_deadline(text: str, path: str) -> float:
    return duration_at(path, text, ACK_DEADLINE)


def _delivery_delay(text: str | None, path: str) -> float:
    return 0.0 if text is None else duration_at(path, text, DELAY)


def _retry_policy(raw: RawRetryPolicy, path: str) -> RetryPolicy:
    minimum = duration_at(f"{path}.minimumBackoff", raw.minimum_backoff, DELAY)
    maximum = duration_at(f"{path}.maximumBackoff", raw.maximum_backoff, DELAY)
    if minimum > maximum:
        raise ConfigError(f"{path}.minimumBackoff: {raw.minimum_backoff!r} exceeds maximumBackoff")
    schedule = tuple(
        duration_at(f"{path}.schedule[{index}]", delay, DELAY)
        for index, delay in enumerate(raw.schedule or ())
    )
    if raw.schedule is not None and not schedule:
        raise ConfigError(f"{path}.schedule: list at least one delay, or leave schedule out")
    return RetryPolicy(
        minimum_backoff=minimum, maximum_backoff=max(maximum, *schedule, 0.0), schedule=schedule
    )


def _max_attempts(raw: RawSubscription, path: str, dead_letter_topic: str | None) -> int | None:
    # The range (1 to MAX_DELIVERY_ATTEMPTS) is the field's, checked as the spec is decoded;
    # checked again here for a spec built in code.
    if raw.max_delivery_attempts is None:
        return 5 if dead_letter_topic else None
    return _in_range(
        raw.max_delivery_attempts, 1, MAX_DELIVERY_ATTEMPTS, f"{path}.maxDeliveryAttempts"
    )


def _permanent_codes(codes: list[int] | None, path: str) -> frozenset[int] | None:
    # Only 4xx statuses can be made permanent; the items' range is also the field's.
    if codes is None:
        return None
    for index, code in enumerate(codes):
        if not 400 <= code <= 499:
            raise ConfigError(f"{path}.permanentStatusCodes[{index}]: {code} is not a 4xx status")
    return frozenset(codes)


def _max_concurrency(value: int, path: str) -> int:
    return _in_range(value, 1, MAX_CONCURRENCY, path)


def _in_range(value: int, low: int, high: int, path: str) -> int:
    if not low <= value <= high:
        raise ConfigError(f"{path}: {value} is out of range; use {low} to {high}")
    return value


def validate_settings(settings: Settings) -> list[Subscription]:
    """Every subscription of a configuration file, checked offline (validate-config, start)."""
    topics = {DEFAULT_TOPIC, *(topic.name for topic in settings.topics)}
    egress = egress_policy(settings)
    built = [
        build_subscription(raw, f"subscriptions[{index}]", topics.__contains__, egress)
        for index, raw in enumerate(settings.subscriptions)
    ]
    names = [subscription.name for subscription in built]
    for index, name in enumerate(names):
        if name in names[:index]:
            raise ConfigError(f"subscriptions[{index}].name: {name!r} is declared twice")
    for index, subscription in enumerate(built):
        check_dead_letter_cycle(subscription, built[:index], f"subscriptions[{index}]")
    return built


def egress_policy(settings: Settings) -> EgressPolicy:
    try:
        return EgressPolicy.from_lists(
            settings.egress.allowed_networks, settings.egress.denied_networks
        )
    except ValueError as error:
        raise ConfigError(f"egress: {error}; use CIDR forms like 10.0.0.0/8") from None


def check_dead_letter_cycle(
    candidate: Subscription, others: Iterable[Subscription], path: str
) -> None:
    """Refuse `candidate` if its dead-letter topic leads back to its own topic (R9)."""
    edges: dict[str, set[str]] = {}
    for subscription in [*others, candidate]:
        if subscription.dead_letter_topic:
            edges.setdefault(subscription.topic, set()).add(subscription.dead_letter_topic)
    start = candidate.dead_letter_topic
    if start and _reaches(edges, start, candidate.topic):
        raise ConfigError(
            f"{path}.deadLetterTopic: {start!r} closes a cycle of dead-letter topics back to"
            f" {candidate.topic!r}; dead letters would circle forever"
        )


def _reaches(edges: Mapping[str, set[str]], start: str, goal: str) -> bool:
    seen: set[str] = set()
    stack = [start]
    while stack:
        topic = stack.pop()
        if topic == goal:
            return True
        if topic not in seen:
            seen.add(topic)
            stack.extend(edges.get(topic, ()))
    return False


class RoutingTable:
    """The store's `Routing`: the subscriptions in force, by topic. Created before the store
    is opened (and handed to it), filled by the `SubscriptionRegistry` loaded after; the
    registry swaps `by_topic` whole, never edits it in place (see its class doc)."""

    def __init__(self) -> None:
        self.by_topic: dict[str, tuple[Subscription, ...]] = {}

    def fanout(self, topic: str, attributes: Mapping[str, Any]) -> list[tuple[str, float]]:
        """The subscriptions of `topic` whose filter matches, each with its delivery delay
        (called in the write transaction)."""
        return [
            (sub.name, sub.delivery_delay)
            for sub in self.by_topic.get(topic, ())
            if sub.filter.matches(attributes)
        ]

    def subscriptions_of(self, topic: str) -> list[tuple[str, str | None]]:
        return [(sub.name, sub.dead_letter_topic) for sub in self.by_topic.get(topic, ())]


class SubscriptionRegistry:
    """The subscriptions in force: persisted in the store (subscription rows), compiled in
    memory, routed through `routing` (the store's `Routing`).

    Fan-out reads the indexes from the store's writer while a change is committed. So the
    indexes are never edited in place: each change builds new ones and swaps them in at the
    change's place in the store's commit order (the `apply` of `Store.put_subscription` /
    `delete_subscription`). Publishes committed after a change see it, those before it do
    not, and none sees half of it.

    `mutations` serialises configuration changes (API, reload, Pretry), so a check and the
    change it guards (no subscription uses this topic; no dead-letter cycle) cannot interleave
    with another change.
    """

    def __init__(
        self,
        store: Store,
        routing: RoutingTable,
        topic_exists: Callable[[str], bool],
        egress: EgressPolicy,
    ) -> None:
        self._store = store
        self._routing = routing
        self._topic_exists = topic_exists
        self.egress = egress
        self._by_name: dict[str, Subscription] = {}
        self.on_change: Callable[[], None] = lambda: None
        self.mutations = asyncio.Lock()

    async def load(self) -> None:
        """Compile what the store holds; one that no longer validates (or no longer decodes,
        as a spec saved before a range was enforced) is logged and skipped, so it never
        stops a start nor makes a listing fail."""
        rows = await self._store.subscription_rows()
        for raw in [spec for name, row in rows if (spec := _decoded(name, row)) is not None]:
            try:
                subscription = build_subscription(raw, raw.name, self._topic_exists, self.egress)
            except ConfigError as error:
                log.error("stored subscription %s is invalid and was skipped: %s", raw.name, error)
                continue
            self._swap(add=subscription)

    def get(self, name: str) -> Subscription | None:
        return self._by_name.get(name)

    def all(self) -> list[Subscription]:
        return sorted(self._by_name.values(), key=lambda subscription: subscription.name)

    def on_topic(self, topic: str) -> Sequence[Subscription]:
        return self._routing.by_topic.get(topic, ())

    def build(
        self, raw: RawSubscription, path: str = "subscription", new_topics: Iterable[str] = ()
    ) -> Subscription:
        """Validate `raw` against the subscriptions in force; `new_topics` are about to be
        created along with it (validated first, so nothing is half-applied)."""
        planned = frozenset(new_topics)

        def exists(topic: str) -> bool:
            return topic in planned or self._topic_exists(topic)

        subscription = build_subscription(raw, path, exists, self.egress)
        others = [sub for sub in self._by_name.values() if sub.name != raw.name]
        check_dead_letter_cycle(subscription, others, path)
        return subscription

    async def put(self, subscription: Subscription) -> bool:
        spec = msgspec.json.encode(subscription.spec)
        # The swap happens in the store's commit order (see class doc).
        change = self._store.put_subscription(
            subscription.name, spec, lambda: self._swap(add=subscription)
        )
        created = await change
        self.on_change()
        return created

    async def delete(self, name: str) -> int:
        """Remove the subscription and its pending deliveries; returns how many were dropped."""
        # No publish ordered after this one fans out to it.
        change = self._store.delete_subscription(name, lambda: self._swap(remove=name))
        dropped = await change
        self.on_change()
        return dropped

    def uses_topic(self, topic: str) -> list[str]:
        return [
            sub.name
            for sub in self._by_name.values()
            if topic in (sub.topic, sub.dead_letter_topic)
        ]

    def _swap(
        self, add: Subscription | None = None, remove: str | None = None
    ) -> Callable[[], None]:
        """Swap in new indexes; returns the undo that swaps the previous ones back."""
        before = (self._by_name, self._routing.by_topic)

        def undo() -> None:
            self._by_name, self._routing.by_topic = before

        by_name = dict(self._by_name)
        if remove is not None:
            by_name.pop(remove, None)
        if add is not None:
            by_name[add.name] = add
        by_topic: dict[str, list[Subscription]] = {}
        for subscription in sorted(by_name.values(), key=lambda sub: sub.name):
            by_topic.setdefault(subscription.topic, []).append(subscription)
        self._routing.by_topic = {topic: tuple(subs) for topic, subs in by_topic.items()}
        self._by_name = by_name
        return undo


def _decoded(name: str, value: bytes) -> RawSubscription | None:
    try:
        return msgspec.json.decode(value, type=RawSubscription)
    except (msgspec.ValidationError, msgspec.DecodeError) as error:
        log.error("stored subscription %s is invalid and was skipped: %s", name, error)
        return None

"""The JSON shapes of the HTTP API, as msgspec structs: handlers validate and answer with these,
and `/openapi.json` is generated from the same types, so document and behaviour cannot drift."""

from __future__ import annotations

from typing import Any

import msgspec

from gateway.settings import RawSubscription


class _Shape(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    pass


class Accepted(_Shape, frozen=True):
    accepted: int
    duplicates: int


class Problem(msgspec.Struct, frozen=True):
    """RFC 9457 problem details; `field` names what is wrong, `index` the batch element."""

    type: str
    title: str
    status: int
    detail: str
    instance: str | None = None
    field: str | None = None
    index: int | None = None


class Health(_Shape, frozen=True):
    status: str
    reasons: list[str] = []


class Topic(_Shape, frozen=True):
    name: str
    retention: str


class TopicBody(_Shape, frozen=True):
    name: str | None = None
    retention: str = "24h"


class TopicList(_Shape, frozen=True):
    topics: list[Topic]


class EventPage(_Shape, frozen=True):
    """Stored events in structured JSON form, and the cursor of the next page (or null)."""

    events: list[dict[str, Any]]
    next: str | None


class SubscriptionStatus(_Shape, frozen=True):
    published: int
    acked: int
    deadlettered: int
    dropped: int
    pending: int


class Subscription(RawSubscription, frozen=True):
    status: SubscriptionStatus | None = None


class SubscriptionList(_Shape, frozen=True):
    subscriptions: list[RawSubscription]


class DeadLetterSelection(_Shape, frozen=True):
    """Either `ids` (CloudEvent ids) or `all: true`; optionally only one subscription's."""

    ids: list[str] | None = None
    all: bool = False
    subscription: str | None = None
    reason: str | None = None


class RedriveResult(_Shape, frozen=True):
    redriven: int
    skipped: int


class PurgeResult(_Shape, frozen=True):
    purged: int


class ReloadResult(_Shape, frozen=True):
    topics: int
    subscriptions: int
    pruned: int


class SubscriptionBody(RawSubscription, kw_only=True, frozen=True):
    """What PUT /v1/subscriptions/{name} takes: the spec, its name taken from the path."""

    name: str | None = None  # type: ignore[assignment]

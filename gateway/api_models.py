"""The JSON shapes of the HTTP API, as msgspec structs: handlers validate and answer with these,
and `/openapi.json` is generated from the same types, so document and behaviour cannot drift."""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec

from gateway.config.settings import MAX_NAME, MAX_TEXT, Duration, Name, RawSubscription, Url


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
    name: Name | None = None
    retention: Duration = "24h"


class TopicList(_Shape, frozen=True):
    topics: list[Topic]


class EventPage(_Shape, frozen=True):
    """Stored events in structured JSON form, and the cursor of the next page (or null)."""

    events: list[dict[str, Any]]
    next: str | None


class LoggedAttempt(_Shape, frozen=True):
    """One attempt of a delivery's log: when (RFC 3339 UTC), the HTTP status (an integer) or
    error class (`timeout`, `connect`, `egress-denied`, ...), short error text, how long it
    took, and the first 256 bytes of the response (credentials redacted) as text."""

    time: str
    status: int | str
    error: str | None
    duration_ms: int
    response: str


class EventDelivery(_Shape, frozen=True):
    """One subscription's delivery of the event; `log` holds the first attempt and the last
    20. `nextAttemptTime` is set while the delivery is pending."""

    subscription: str
    state: Literal["pending", "acked", "deadlettered", "dropped"]
    attempts: int
    next_attempt_time: str | None
    last_status: int | str | None
    last_error: str | None
    log: list[LoggedAttempt]


class EventDeliveries(_Shape, frozen=True):
    """An event (structured JSON) and its deliveries with their attempt logs."""

    event: dict[str, Any]
    deliveries: list[EventDelivery]


class ListedDelivery(_Shape, frozen=True):
    """One delivery of a subscription's listing; `publishedTime` is when its event was
    stored (RFC 3339 UTC)."""

    id: str
    source: str
    type: str
    state: Literal["pending", "acked", "deadlettered", "dropped"]
    attempts: int
    next_attempt_time: str | None
    last_status: int | str | None
    last_error: str | None
    published_time: str


class DeliveryList(_Shape, frozen=True):
    """A page of a subscription's deliveries in event order, and the cursor of the next page
    (or null)."""

    deliveries: list[ListedDelivery]
    next: str | None


class SubscriptionStatus(_Shape, frozen=True):
    """Delivery counts, and the subscription's last success and last failure (RFC 3339 UTC;
    left out until there is one). `lastStatus` and `lastError` describe the last failed
    attempt: its HTTP status, or its error kind (`timeout`, `connect`, `egress-denied`, ...),
    and a short text without credentials."""

    published: int
    acked: int
    deadlettered: int
    dropped: int
    pending: int
    last_success_time: str | None = None
    last_failure_time: str | None = None
    last_status: int | str | None = None
    last_error: str | None = None


class Subscription(RawSubscription, frozen=True):
    status: SubscriptionStatus | None = None


class SubscriptionList(_Shape, frozen=True):
    subscriptions: list[RawSubscription]


MAX_IDS = 10_000  # event ids in one redrive or purge
EventId = Annotated[str, msgspec.Meta(min_length=1, max_length=1024)]


class DeadLetterSelection(_Shape, frozen=True):
    """Either `ids` (CloudEvent ids) or `all: true`; optionally only one subscription's."""

    ids: Annotated[list[EventId], msgspec.Meta(min_length=1, max_length=MAX_IDS)] | None = None
    all: bool = False
    # Not `Name`: its pattern is documented, not enforced (a name matching no subscription
    # just selects nothing), and the document must not promise a 400 it does not give.
    subscription: Annotated[str, msgspec.Meta(min_length=1, max_length=MAX_NAME)] | None = None
    reason: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | None = None


class RedriveResult(_Shape, frozen=True):
    """`notFound` (only when there are some): the requested ids that no dead letter of
    the selection has."""

    redriven: int
    skipped: int
    not_found: list[str] = []


class PurgeResult(_Shape, frozen=True):
    """`notFound` (only when there are some): the requested ids that no dead letter of
    the selection has."""

    purged: int
    not_found: list[str] = []


class NotApplied(_Shape, frozen=True):
    """A key of the file whose change a reload could not apply, and why."""

    key: str
    reason: str


class ReloadResult(_Shape, frozen=True):
    """What a reload did: counts, what it applied (`topic/NAME`, `subscription/NAME`) and what
    it did not apply (changes to `server:`, `egress:` and `auth:` need a restart)."""

    topics: int
    subscriptions: int
    pruned: int
    applied: list[str]
    not_applied: list[NotApplied]


class SubscriptionBody(RawSubscription, kw_only=True, frozen=True):
    """What PUT /v1/subscriptions/{name} takes: the spec, its name taken from the path."""

    name: Name | None = None  # type: ignore[assignment]


# -- Pretry (POST /v1/config, POST /v1/event): Pretry's own bodies, camelCase ----------------

PRETRY_IDENTIFIER = "^[A-Za-z0-9][A-Za-z0-9_-]{0,79}$"
MAX_PRETRY_RETRIES = 100
MAX_PRETRY_HOURS = 8760.0  # a year between two attempts at most
MAX_PRETRY_INTEGRATIONS = 20


PretrySecret = Annotated[str, msgspec.Meta(max_length=4096)]


class PretryHttpConfig(_Shape, frozen=True):
    url: Url
    username: Annotated[str, msgspec.Meta(max_length=MAX_NAME * 2)] | None = None
    password: PretrySecret | None = None  # a secret: masked in every answer


class PretrySqsConfig(_Shape, frozen=True):
    url: Url  # the queue URL
    region: Annotated[str, msgspec.Meta(max_length=MAX_TEXT)] | None = None
    access_key: PretrySecret | None = None  # secrets: masked in every answer
    secret_key: PretrySecret | None = None


class PretryHttp(_Shape, frozen=True, tag_field="type", tag="HTTP"):
    """A JSON POST of the event body, with basic auth when username and password are given."""

    config: PretryHttpConfig


class PretrySqs(_Shape, frozen=True, tag_field="type", tag="SQS"):
    """A message whose body is the event body's JSON."""

    config: PretrySqsConfig


class PretryConfig(_Shape, frozen=True):
    """`retryHours` has `maxRetry` delays: hours from receipt to the first attempt, then
    between attempts."""

    identifier: Annotated[str, msgspec.Meta(pattern=PRETRY_IDENTIFIER)]
    max_retry: Annotated[int, msgspec.Meta(ge=1, le=MAX_PRETRY_RETRIES)]
    retry_hours: Annotated[
        list[Annotated[float, msgspec.Meta(ge=0, le=MAX_PRETRY_HOURS)]],
        msgspec.Meta(min_length=1, max_length=MAX_PRETRY_RETRIES),
    ]
    integrations: Annotated[
        list[PretryHttp | PretrySqs],
        msgspec.Meta(min_length=1, max_length=MAX_PRETRY_INTEGRATIONS),
    ]


class PretryConfigView(PretryConfig, frozen=True):
    """A Pretry config as stored (secrets masked), and the gateway resources it maps to."""

    topic: str
    dead_letter_topic: str
    subscriptions: list[str]


class PretryEvent(_Shape, frozen=True):
    identifier: Annotated[str, msgspec.Meta(max_length=MAX_NAME)]
    event_body: Any  # any JSON value, delivered as it is


class PretryAccepted(_Shape, frozen=True):
    accepted: int
    duplicates: int
    id: str  # the CloudEvent id the event is stored under

"""Pretry compatibility: `POST /v1/config` and `POST /v1/event` with Pretry's own bodies,
mapped onto the gateway's model (DESIGN "Interfaces"), plus `GET|DELETE /v1/config/{id}`.

Pretry takes an event its caller failed to deliver once and retries it `maxRetry` times,
`retryHours[i]` hours apart (the first counted from receipt), to every integration. For the
identifier `id`, a config becomes:

    topic          pretry.<id>         its events (retention: 24 h past the whole schedule)
    subscriptions  pretry.<id>.<n>     one per integration n (from 0): contentMode data,
                                       deliveryDelay retryHours[0], retryPolicy.schedule
                                       retryHours[1:], maxDeliveryAttempts maxRetry, and every
                                       HTTP status retried (permanentStatusCodes: []), as
                                       Pretry does; SQS errors that cannot heal are permanent
    dead letters   pretry.<id>.dead    events whose retries ran out

so Pretry's events count in the metrics and can be browsed, redriven and purged like any
other. Replacing a config keeps the topic and its events; integration n keeps its pending
deliveries (they go on under the new settings), integrations dropped from the config drop
theirs. The config itself is kept as sent under `pretry/<id>` in the store's meta table,
credentials inline: every answer masks them.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Any
from urllib.parse import urlsplit

import msgspec
from starlette.requests import Request
from starlette.responses import Response

from gateway import api_models as shapes
from gateway.admin import admin_body, check_resolved, decode_body, json_response
from gateway.config.durations import format_duration
from gateway.config.settings import (
    PRETRY_PREFIX,
    RETENTION,
    ConfigError,
    RawBasicAuth,
    RawDestination,
    RawHttpDestination,
    RawRetryPolicy,
    RawSqsDestination,
    RawSubscription,
    TopicSettings,
)
from gateway.destinations.egress import PolicyResolver
from gateway.destinations.targets import MASK
from gateway.events import STRUCTURED, IncomingEvent, parse_request
from gateway.ingress.receiver import Receiver
from gateway.openapi import Operation
from gateway.policy.deadletters import rfc3339_utc
from gateway.problems import Conflict, InvalidRequest, NotFound
from gateway.resources.subscriptions import Subscription, SubscriptionRegistry
from gateway.resources.topics import TopicRegistry
from gateway.store.lmdb.store import LmdbStore

PREFIX = PRETRY_PREFIX
EVENT_TYPE = "pretry.event"
HOUR = 3600.0
DAY = 24 * HOUR
DEAD_LETTER_RETENTION = 7 * DAY
IDENTIFIER = re.compile(shapes.PRETRY_IDENTIFIER[1:-1])  # use fullmatch
MAX_IDEMPOTENCY_KEY = 200
# Where a subscription's key paths come from in a Pretry integration.
_FIELDS = {
    "destination.http.url": "config.url",
    "destination.http.basicAuth": "config.password",
    "destination.sqs.queueUrl": "config.url",
    "destination.sqs.endpointUrl": "config.url",
    "destination.sqs.region": "config.region",
    "destination.sqs.accessKeyId": "config.accessKey",
    "destination.sqs.secretAccessKey": "config.secretKey",
}


def topic_name(identifier: str) -> str:
    return f"{PREFIX}{identifier}"


def dead_letter_topic_name(identifier: str) -> str:
    return f"{PREFIX}{identifier}.dead"


def subscription_name(identifier: str, index: int) -> str:
    return f"{PREFIX}{identifier}.{index}"


@dataclass(frozen=True, slots=True)
class Plan:
    """What one Pretry config maps to."""

    topic: TopicSettings
    dead_letter_topic: TopicSettings
    subscriptions: tuple[RawSubscription, ...]


def plan(config: shapes.PretryConfig) -> Plan:
    """The topics and subscription specs of `config`; raises InvalidRequest naming the field."""
    identifier = config.identifier
    if not IDENTIFIER.fullmatch(identifier):
        raise InvalidRequest(
            f"identifier {identifier!r}: use 1-80 letters, digits, '_' or '-'", field="identifier"
        )
    hours = config.retry_hours
    if len(hours) != config.max_retry:
        raise InvalidRequest(
            f"retryHours has {len(hours)} delays; list exactly maxRetry ({config.max_retry}),"
            " the hours before each retry",
            field="retryHours",
        )
    retention = DAY + sum(hours) * HOUR
    if not RETENTION.holds(retention):
        raise InvalidRequest(
            f"retryHours add up to {sum(hours):g} hours; the whole schedule must end within"
            f" {(RETENTION.high - DAY) / HOUR:g} hours (a topic keeps events"
            f" {RETENTION.high / DAY:g} days at most, 24 h past the schedule)",
            field="retryHours",
        )
    topic = TopicSettings(topic_name(identifier), retention)
    dead = TopicSettings(dead_letter_topic_name(identifier), DEAD_LETTER_RETENTION)
    specs = tuple(
        RawSubscription(
            name=subscription_name(identifier, index),
            topic=topic.name,
            destination=_destination(integration, f"integrations[{index}].config"),
            delivery_delay=format_duration(hours[0] * HOUR),
            retry_policy=RawRetryPolicy(
                schedule=[format_duration(hour * HOUR) for hour in hours[1:]] or None
            ),
            max_delivery_attempts=config.max_retry,
            permanent_status_codes=[],
            dead_letter_topic=dead.name,
        )
        for index, integration in enumerate(config.integrations)
    )
    return Plan(topic, dead, specs)


def _destination(integration: shapes.PretryHttp | shapes.PretrySqs, path: str) -> RawDestination:
    if isinstance(integration, shapes.PretryHttp):
        return RawDestination(http=_http(integration.config, path))
    config = integration.config
    if (config.access_key is None) != (config.secret_key is None):
        missing = "accessKey" if config.access_key is None else "secretKey"
        raise InvalidRequest(
            f"{path}: set accessKey and secretKey together", field=f"{path}.{missing}"
        )
    return RawDestination(
        sqs=RawSqsDestination(
            queue_url=config.url,
            region=config.region,
            access_key_id=config.access_key,
            secret_access_key=config.secret_key,
            endpoint_url=sqs_endpoint(config.url),
            content_mode="data",
        )
    )


def _http(config: shapes.PretryHttpConfig, path: str) -> RawHttpDestination:
    if (config.username is None) != (config.password is None):
        missing = "username" if config.username is None else "password"
        raise InvalidRequest(
            f"{path}: set username and password together", field=f"{path}.{missing}"
        )
    basic = None
    if config.username is not None:
        basic = RawBasicAuth(username=config.username, password=config.password)
    return RawHttpDestination(url=config.url, content_mode="data", basic_auth=basic)


def sqs_endpoint(queue_url: str) -> str | None:
    """An SQS-compatible server's own address for a queue URL that is not AWS's (Pretry has
    no endpoint field: its queue URLs name the server, as ElasticMQ and LocalStack's do)."""
    try:
        parts = urlsplit(queue_url)
        host = (parts.hostname or "").lower()
    except ValueError:
        return None  # the queue URL's own check says what is wrong
    if not host or host.endswith((".amazonaws.com", ".amazonaws.com.cn")):
        return None
    return f"{parts.scheme}://{parts.netloc}"


def config_field_error(error: ConfigError, index: int) -> InvalidRequest:
    """A subscription error for integration `index`, in Pretry's field names."""
    prefix = f"integrations[{index}]."
    text = str(error)
    path, _, detail = text.partition(": ")
    field = path.removeprefix(prefix)
    for ours, theirs in _FIELDS.items():
        if field.startswith(ours):
            field = theirs
            break
    return InvalidRequest(f"{prefix}{field}: {detail}", field=prefix + field)


def masked(config: shapes.PretryConfig) -> shapes.PretryConfig:
    """`config` with its credentials replaced by MASK."""
    integrations: list[shapes.PretryHttp | shapes.PretrySqs] = []
    for integration in config.integrations:
        if isinstance(integration, shapes.PretryHttp):
            secret = integration.config.password and MASK
            http = msgspec.structs.replace(integration.config, password=secret)
            integrations.append(shapes.PretryHttp(config=http))
        else:
            sqs = msgspec.structs.replace(
                integration.config,
                access_key=integration.config.access_key and MASK,
                secret_key=integration.config.secret_key and MASK,
            )
            integrations.append(shapes.PretrySqs(config=sqs))
    return msgspec.structs.replace(config, integrations=integrations)


def event_document(identifier: str, event_id: str, body: Any, now: float) -> bytes:
    """The structured CloudEvent a Pretry event is stored as: the body is its JSON data.
    (msgspec encodes integers of any size; ingress then reads them as JSON numbers, as it
    reads every published event.)"""
    return msgspec.json.encode(
        {
            "specversion": "1.0",
            "id": event_id,
            "source": f"/pretry/{identifier}",
            "type": EVENT_TYPE,
            "time": rfc3339_utc(now),
            "datacontenttype": "application/json",
            "data": body,
        }
    )


def idempotency_key(headers: Mapping[str, str]) -> str | None:
    """The caller's `Idempotency-Key`: the event id, so a repeated POST is a duplicate."""
    key = headers.get("idempotency-key")
    if key is None:
        return None
    if not 0 < len(key.strip()) <= MAX_IDEMPOTENCY_KEY:
        raise InvalidRequest(
            f"Idempotency-Key must be 1-{MAX_IDEMPOTENCY_KEY} characters", field="Idempotency-Key"
        )
    return key.strip()


class PretryApi:
    def __init__(
        self,
        store: LmdbStore,
        topics: TopicRegistry,
        subscriptions: SubscriptionRegistry,
        receiver: Receiver,
        resolver: PolicyResolver,
        wall: Callable[[], float],
    ) -> None:
        self._store = store
        self._topics = topics
        self._subscriptions = subscriptions
        self._receiver = receiver
        self._resolver = resolver
        self._wall = wall

    def operations(self) -> list[Operation]:
        one = "/v1/config/{identifier}"
        return [
            Operation(
                "POST",
                "/v1/config",
                self.put_config,
                "Pretry: create or replace an identifier's retry configuration",
                request=shapes.PretryConfig,
                responses={200: shapes.PretryConfigView, 201: shapes.PretryConfigView},
                problems=(400, 413),
                tag="pretry",
            ),
            Operation(
                "GET",
                one,
                self.get_config,
                "Pretry: an identifier's configuration (credentials masked)",
                responses={200: shapes.PretryConfigView},
                problems=(404,),
                tag="pretry",
            ),
            Operation(
                "DELETE",
                one,
                self.delete_config,
                "Pretry: delete an identifier's configuration, subscriptions and topics",
                responses={204: None},
                problems=(404, 409),
                tag="pretry",
            ),
            Operation(
                "POST",
                "/v1/event",
                self.event,
                "Pretry: hand over an event for retrying (202 once it is durable)",
                request=shapes.PretryEvent,
                responses={202: shapes.PretryAccepted},
                problems=(400, 404, 413, 503, 507),
                tag="pretry",
            ),
        ]

    # -- configuration -----------------------------------------------------------------------

    async def put_config(self, request: Request) -> Response:
        async with self._subscriptions.mutations:  # one configuration change at a time
            return await self._put_config_serialized(request)

    async def _put_config_serialized(self, request: Request) -> Response:
        config = decode_body(await admin_body(request), shapes.PretryConfig)
        mapped = plan(config)
        built = [await self._build(mapped, index) for index in range(len(mapped.subscriptions))]
        created = not self._stored(config.identifier)
        await self._topics.put(self._kept(mapped.topic))
        await self._topics.put(mapped.dead_letter_topic)
        for subscription in built:
            await self._subscriptions.put(subscription)
        for name in self._integrations(config.identifier)[len(built) :]:
            await self._subscriptions.delete(name)
        await self._save(config)
        return json_response(self._view(config), status=201 if created else 200)

    async def _build(self, mapped: Plan, index: int) -> Subscription:
        new_topics = (mapped.topic.name, mapped.dead_letter_topic.name)
        try:
            subscription = self._subscriptions.build(
                mapped.subscriptions[index], f"integrations[{index}]", new_topics
            )
        except ConfigError as error:
            raise config_field_error(error, index) from None
        path = f"integrations[{index}]"
        await check_resolved(self._resolver, subscription, path, "config.url")
        return subscription

    def _kept(self, topic: TopicSettings) -> TopicSettings:
        """A replaced config never shortens its topic's retention (accepted events stay)."""
        if not self._topics.exists(topic.name):
            return topic
        longest = max(topic.retention, self._topics.get(topic.name).retention)
        return TopicSettings(topic.name, longest)

    async def get_config(self, request: Request) -> Response:
        return json_response(self._view(self._existing(request.path_params["identifier"])))

    async def delete_config(self, request: Request) -> Response:
        async with self._subscriptions.mutations:  # one configuration change at a time
            return await self._delete_config_serialized(request)

    async def _delete_config_serialized(self, request: Request) -> Response:
        identifier = request.path_params["identifier"]
        if not self._stored(identifier):  # not `_existing`: a config no longer valid goes too
            raise NotFound(f"no Pretry configuration for identifier {identifier!r}")
        names = self._integrations(identifier)
        topics = [topic_name(identifier), dead_letter_topic_name(identifier)]
        others = sorted(
            {user for topic in topics for user in self._subscriptions.uses_topic(topic)}
            - set(names)
        )
        if others:
            raise Conflict(
                f"subscriptions {', '.join(others)} use the topics of {identifier!r}; "
                "delete or change them first",
                subscriptions=others,
            )
        for name in names:
            await self._subscriptions.delete(name)
        for topic in topics:
            if self._topics.exists(topic):
                await self._topics.delete(topic)
        await self._forget(identifier)
        return Response(status_code=204)

    def _existing(self, identifier: str) -> shapes.PretryConfig:
        config = self._load(identifier)
        if config is None:
            raise NotFound(f"no Pretry configuration for identifier {identifier!r}")
        return config

    def _integrations(self, identifier: str) -> list[str]:
        """The subscriptions of `identifier`'s integrations, in integration order."""
        pattern = re.compile(re.escape(f"{PREFIX}{identifier}.") + r"(\d+)")
        found = [
            (int(match.group(1)), subscription.name)
            for subscription in self._subscriptions.all()
            if (match := pattern.fullmatch(subscription.name))
        ]
        return [name for _, name in sorted(found)]

    def _view(self, config: shapes.PretryConfig) -> dict[str, Any]:
        document: dict[str, Any] = msgspec.to_builtins(masked(config))
        identifier = config.identifier
        document["topic"] = topic_name(identifier)
        document["deadLetterTopic"] = dead_letter_topic_name(identifier)
        document["subscriptions"] = [
            subscription_name(identifier, index) for index in range(len(config.integrations))
        ]
        return document

    # -- events ------------------------------------------------------------------------------

    async def event(self, request: Request) -> Response:
        event_id = idempotency_key(request.headers) or str(uuid.uuid4())
        result = await self._receiver.accept(request, partial(self._parse, event_id))
        body = {"accepted": result.accepted, "duplicates": result.duplicates, "id": event_id}
        return json_response(body, status=202)

    def _parse(
        self, event_id: str, headers: Mapping[str, str], body: bytes
    ) -> tuple[str, Sequence[IncomingEvent]]:
        event = decode_body(body, shapes.PretryEvent)
        if not IDENTIFIER.fullmatch(event.identifier) or self._load(event.identifier) is None:
            raise NotFound(
                f"no Pretry configuration for identifier {event.identifier!r}; "
                "POST /v1/config first",
                field="identifier",
            )
        document = event_document(event.identifier, event_id, event.event_body, self._wall())
        events = parse_request({"content-type": STRUCTURED}, document, self._receiver.limits)
        return topic_name(event.identifier), events

    # -- storage -----------------------------------------------------------------------------

    def _stored(self, identifier: str) -> bool:
        if not IDENTIFIER.fullmatch(identifier):  # no such key (nor one LMDB could hold)
            return False
        key = _key(identifier)
        return self._store.read(lambda txn: txn.get(key, db=self._store.db["meta"])) is not None

    def _load(self, identifier: str) -> shapes.PretryConfig | None:
        if not IDENTIFIER.fullmatch(identifier):
            return None
        key = _key(identifier)
        value = self._store.read(lambda txn: txn.get(key, db=self._store.db["meta"]))
        if value is None:
            return None
        try:
            return msgspec.json.decode(value, type=shapes.PretryConfig)
        except msgspec.ValidationError as error:  # saved before a range was enforced
            raise Conflict(
                f"the stored Pretry configuration {identifier!r} is no longer valid ({error});"
                " POST /v1/config to replace it"
            ) from None

    async def _save(self, config: shapes.PretryConfig) -> None:
        key, value = _key(config.identifier), msgspec.json.encode(config)
        await self._store.write(lambda txn: txn.put(key, value, db=self._store.db["meta"]))

    async def _forget(self, identifier: str) -> None:
        key = _key(identifier)
        await self._store.write(lambda txn: txn.delete(key, db=self._store.db["meta"]))


def _key(identifier: str) -> bytes:
    return b"pretry/" + identifier.encode()

"""The admin REST API under `/v1/` (DESIGN "Admin API"): JSON, camelCase, same fields as YAML.

Request bodies are decoded into the msgspec types of `gateway.api_models` (unknown fields
refused); every error is a problem body naming the field; each route is declared once as an
`Operation`, which is also its entry in `/openapi.json`.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import api_models as shapes
from gateway.declarative import ApplyResult
from gateway.durations import format_duration
from gateway.egress import EgressDenied, PolicyResolver, literal_address, url_host
from gateway.openapi import Operation, Query
from gateway.problems import Conflict, InvalidRequest, NotFound
from gateway.settings import (
    DEFAULT_TOPIC,
    ConfigError,
    RawSubscription,
    RawTopic,
    TopicSettings,
    msgspec_field,
    msgspec_path,
    topic_settings,
)
from gateway.store.lmdb import LmdbStore
from gateway.store.redrive import Selection
from gateway.subscriptions import Subscription, SubscriptionRegistry
from gateway.targets import HttpTarget, mask_secrets
from gateway.topics import TopicRegistry

S = TypeVar("S")
DIGITS = re.compile(r"[0-9]{1,19}")  # ASCII digits only: str.isdigit() accepts superscripts
MAX_PAGE = 1000
DEFAULT_PAGE = 100
PAGE_QUERY = (
    Query("limit", "page size, 1 to 1000 (default 100)", integer=True),
    Query("after", "the `next` cursor of the previous page"),
)
DEAD_LETTER_QUERY = (
    Query("subscription", "only dead letters of this subscription (dlsubscription)"),
    Query("reason", "only this dlreason: exhausted, permanent or expired"),
    Query("id", "only events with this CloudEvent id"),
)


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def decode_body(body: bytes, shape: type[S]) -> S:
    try:
        return msgspec.json.decode(body or b"{}", type=shape)
    except msgspec.ValidationError as error:
        raise InvalidRequest(msgspec_path(error), field=msgspec_field(error)) from None
    except msgspec.DecodeError as error:
        raise InvalidRequest(f"body is not valid JSON: {error}") from None


def config_error(error: ConfigError) -> InvalidRequest:
    """A settings error as a 400 naming the field (`subscription.x: ...` names `x`)."""
    text = str(error)
    path = text.split(":", 1)[0]
    field = path.split(".", 1)[1] if path.startswith(("subscription.", "topic.")) else path
    return InvalidRequest(text, field=field)


def topic_json(topic: TopicSettings) -> dict[str, Any]:
    return {"name": topic.name, "retention": format_duration(topic.retention)}


def page_limit(request: Request) -> int:
    text = request.query_params.get("limit", str(DEFAULT_PAGE))
    if not DIGITS.fullmatch(text) or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    return int(text)


def selection_from_query(request: Request) -> Selection | None:
    query = request.query_params
    if not any(name in query for name in ("subscription", "reason", "id")):
        return None
    ids = frozenset([query["id"]]) if "id" in query else None
    return Selection(ids=ids, subscription=query.get("subscription"), reason=query.get("reason"))


class TopicsApi:
    def __init__(
        self, store: LmdbStore, topics: TopicRegistry, subscriptions: SubscriptionRegistry
    ) -> None:
        self._store = store
        self._topics = topics
        self._subscriptions = subscriptions

    def operations(self) -> list[Operation]:
        topic = "/v1/topics/{name}"
        return [
            Operation(
                "GET",
                "/v1/topics",
                self.list,
                "List topics",
                responses={200: shapes.TopicList},
                problems=(),
            ),
            Operation(
                "GET",
                topic,
                self.get,
                "Get a topic",
                responses={200: shapes.Topic},
                problems=(404,),
            ),
            Operation(
                "PUT",
                topic,
                self.put,
                "Create or replace a topic",
                request=shapes.TopicBody,
                request_required=False,
                responses={200: shapes.Topic, 201: shapes.Topic},
                problems=(400,),
            ),
            Operation(
                "DELETE",
                topic,
                self.delete,
                "Delete a topic and its events",
                responses={204: None},
                problems=(404, 409),
            ),
            Operation(
                "GET",
                topic + "/events",
                self.events,
                "Browse a topic's events (dead-letter topics: filter by subscription, reason, id)",
                responses={200: shapes.EventPage},
                problems=(400, 404),
                query=PAGE_QUERY + DEAD_LETTER_QUERY,
            ),
        ]

    async def list(self, request: Request) -> Response:
        return json_response({"topics": [topic_json(topic) for topic in self._topics.all()]})

    async def get(self, request: Request) -> Response:
        return json_response(topic_json(self._topics.get(request.path_params["name"])))

    async def put(self, request: Request) -> Response:
        async with self._subscriptions.mutations:  # one configuration change at a time
            return await self._put_serialized(request)

    async def _put_serialized(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = decode_body(await request.body(), shapes.TopicBody)
        if body.name not in (None, name):
            raise InvalidRequest(f"name {body.name!r} differs from the path {name!r}", field="name")
        try:
            topic = topic_settings(RawTopic(name=name, retention=body.retention), "topic")
        except ConfigError as error:
            raise config_error(error) from None
        created = await self._topics.put(topic)
        return json_response(topic_json(topic), status=201 if created else 200)

    async def delete(self, request: Request) -> Response:
        async with self._subscriptions.mutations:  # one configuration change at a time
            return await self._delete_serialized(request)

    async def _delete_serialized(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._topics.get(name)
        if name == DEFAULT_TOPIC:
            raise Conflict("the topic 'default' always exists (POST / publishes to it)")
        users = sorted(self._subscriptions.uses_topic(name))
        if users:
            raise Conflict(
                f"topic {name!r} is used by subscriptions {', '.join(users)}; "
                "delete or change them first",
                subscriptions=users,
            )
        await self._topics.delete(name)
        return Response(status_code=204)

    async def events(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._topics.get(name)
        page = self._store.browse(
            name,
            request.query_params.get("after"),
            page_limit(request),
            selection_from_query(request),
        )
        body = b'{"events":[' + b",".join(event.payload for event in page.events) + b'],"next":'
        return Response(body + orjson.dumps(page.next) + b"}", media_type="application/json")


def subscription_json(subscription: Subscription, status: dict[str, int] | None) -> Any:
    """A subscription as users read it back: its spec, inline secrets masked."""
    document: dict[str, Any] = mask_secrets(_without_nulls(msgspec.to_builtins(subscription.spec)))
    if status is not None:
        document["status"] = status
    return document


def _without_nulls(value: Any) -> Any:
    """Unset optional fields are left out of what users read back."""
    if isinstance(value, dict):
        return {key: _without_nulls(item) for key, item in value.items() if item is not None}
    if isinstance(value, list):
        return [_without_nulls(item) for item in value]
    return value


class SubscriptionsApi:
    def __init__(
        self, store: LmdbStore, subscriptions: SubscriptionRegistry, resolver: PolicyResolver
    ) -> None:
        self._store = store
        self._subscriptions = subscriptions
        self._resolver = resolver

    def operations(self) -> list[Operation]:
        one = "/v1/subscriptions/{name}"
        return [
            Operation(
                "GET",
                "/v1/subscriptions",
                self.list,
                "List subscriptions",
                responses={200: shapes.SubscriptionList},
                problems=(),
            ),
            Operation(
                "GET",
                one,
                self.get,
                "Get a subscription and its delivery counts",
                responses={200: shapes.Subscription},
                problems=(404,),
            ),
            Operation(
                "PUT",
                one,
                self.put,
                "Create or replace a subscription",
                request=shapes.SubscriptionBody,
                responses={200: shapes.Subscription, 201: shapes.Subscription},
                problems=(400,),
            ),
            Operation(
                "DELETE",
                one,
                self.delete,
                "Delete a subscription (?force=true drops pending deliveries)",
                responses={204: None},
                problems=(404, 409),
                query=(Query("force", "true to drop pending deliveries"),),
            ),
        ]

    def status(self, name: str) -> dict[str, int]:
        counters = self._store.deliveries.counters(name)
        settled = counters["acked"] + counters["deadlettered"] + counters["dropped"]
        return {
            **{key: counters[key] for key in ("published", "acked", "deadlettered", "dropped")},
            "pending": counters["published"] - settled,
        }

    def _existing(self, name: str) -> Subscription:
        subscription = self._subscriptions.get(name)
        if subscription is None:
            raise NotFound(f"subscription {name!r} does not exist")
        return subscription

    async def list(self, request: Request) -> Response:
        return json_response(
            {"subscriptions": [subscription_json(s, None) for s in self._subscriptions.all()]}
        )

    async def get(self, request: Request) -> Response:
        subscription = self._existing(request.path_params["name"])
        return json_response(subscription_json(subscription, self.status(subscription.name)))

    async def put(self, request: Request) -> Response:
        async with self._subscriptions.mutations:  # one configuration change at a time
            return await self._put_serialized(request)

    async def _put_serialized(self, request: Request) -> Response:
        name = request.path_params["name"]
        document = decode_body(await request.body(), dict[str, Any])
        if document.setdefault("name", name) != name:
            raise InvalidRequest(f"name {document['name']!r} differs from the path", field="name")
        try:
            raw = msgspec.convert(document, RawSubscription)
            subscription = self._subscriptions.build(raw, path="subscription")
        except msgspec.ValidationError as error:
            raise InvalidRequest(msgspec_path(error), field=msgspec_field(error)) from None
        except ConfigError as error:
            raise config_error(error) from None
        await self._check_resolved(subscription)
        created = await self._subscriptions.put(subscription)
        body = subscription_json(subscription, self.status(subscription.name))
        return json_response(body, status=201 if created else 200)

    async def _check_resolved(self, subscription: Subscription) -> None:
        field = "destination.http.url"
        if not isinstance(subscription.target, HttpTarget):
            field = "destination.sqs.endpointUrl"
        await check_resolved(self._resolver, subscription, "subscription", field)

    async def delete(self, request: Request) -> Response:
        async with self._subscriptions.mutations:  # one configuration change at a time
            return await self._delete_serialized(request)

    async def _delete_serialized(self, request: Request) -> Response:
        subscription = self._existing(request.path_params["name"])
        pending = self.status(subscription.name)["pending"]
        if pending and request.query_params.get("force") != "true":
            raise Conflict(
                f"subscription {subscription.name!r} has {pending} pending deliveries; "
                "delete with ?force=true to drop them",
                pending=pending,
            )
        await self._subscriptions.delete(subscription.name)
        return Response(status_code=204)


async def check_resolved(
    resolver: PolicyResolver, subscription: Subscription, path: str, field: str
) -> None:
    """Save-time DNS check of the destination's host (S1), a 400 naming `field`; the push
    path checks again where it connects (S2)."""
    url = subscription.target.egress_url
    if url is None:
        return
    host = url_host(url)
    if literal_address(host) is None:
        try:
            await resolver.check_host(host)
        except EgressDenied as error:
            raise InvalidRequest(f"{path}.{field}: {error}", field=field) from None


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
                problems=(400, 404),
            ),
            Operation(
                "POST",
                base + ":purge",
                self.purge,
                "Delete dead letters",
                request=shapes.DeadLetterSelection,
                responses={200: shapes.PurgeResult},
                problems=(400, 404),
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

    async def redrive(self, request: Request) -> Response:
        topic = request.path_params["name"]
        self._topics.get(topic)
        selection = self._selection(await request.body())
        result = await self._store.redrive(topic, selection, self._retention_of, self._now())
        self._wake(result.woken)
        return json_response({"redriven": result.handled, "skipped": result.skipped})

    async def purge(self, request: Request) -> Response:
        topic = request.path_params["name"]
        self._topics.get(topic)
        result = await self._store.purge(topic, self._selection(await request.body()))
        return json_response({"purged": result.handled})


class ConfigApi:
    """Re-apply the configuration file (what SIGHUP and `ce-gateway reload` do)."""

    def __init__(self, reload: Callable[[], Awaitable[ApplyResult]]) -> None:
        self._reload = reload

    def operations(self) -> list[Operation]:
        return [
            Operation(
                "POST",
                "/v1/config:reload",
                self.reload,
                "Re-read the configuration file and apply it",
                responses={200: shapes.ReloadResult},
                problems=(400,),
            ),
        ]

    async def reload(self, request: Request) -> Response:
        try:
            result = await self._reload()
        except ConfigError as error:
            raise config_error(error) from None
        return json_response(
            {
                "topics": result.topics,
                "subscriptions": result.subscriptions,
                "pruned": result.pruned,
            }
        )

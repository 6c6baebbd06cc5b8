"""The admin REST API under `/v1/` (DESIGN "Admin API"): JSON, camelCase, same fields as YAML.

Request bodies are decoded into msgspec structs (unknown fields refused); every error is a
problem body naming the field.
"""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec
import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.durations import format_duration
from gateway.problems import Conflict, InvalidRequest, NotFound
from gateway.settings import (
    ConfigError,
    RawSubscription,
    RawTopic,
    TopicSettings,
    msgspec_path,
    topic_settings,
)
from gateway.store.lmdb import LmdbStore
from gateway.subscriptions import Subscription, SubscriptionRegistry
from gateway.topics import TopicRegistry

S = TypeVar("S")
MAX_PAGE = 1000
DEFAULT_PAGE = 100


class TopicBody(msgspec.Struct, rename="camel", forbid_unknown_fields=True, frozen=True):
    name: str | None = None
    retention: str = "24h"


def json_response(content: Any, status: int = 200) -> Response:
    return Response(orjson.dumps(content), status_code=status, media_type="application/json")


def decode_body(body: bytes, shape: type[S]) -> S:
    try:
        return msgspec.json.decode(body or b"{}", type=shape)
    except msgspec.ValidationError as error:
        path = msgspec_path(error)
        raise InvalidRequest(path, field=path.split(":", 1)[0]) from None
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
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    return int(text)


class TopicsApi:
    def __init__(
        self, store: LmdbStore, topics: TopicRegistry, subscriptions: SubscriptionRegistry
    ) -> None:
        self._store = store
        self._topics = topics
        self._subscriptions = subscriptions

    def routes(self) -> list[Route]:
        return [
            Route("/v1/topics", self.list, methods=["GET"]),
            Route("/v1/topics/{name}", self.get, methods=["GET"]),
            Route("/v1/topics/{name}", self.put, methods=["PUT"]),
            Route("/v1/topics/{name}", self.delete, methods=["DELETE"]),
            Route("/v1/topics/{name}/events", self.events, methods=["GET"]),
        ]

    async def list(self, request: Request) -> Response:
        return json_response({"topics": [topic_json(topic) for topic in self._topics.all()]})

    async def get(self, request: Request) -> Response:
        return json_response(topic_json(self._topics.get(request.path_params["name"])))

    async def put(self, request: Request) -> Response:
        name = request.path_params["name"]
        body = decode_body(await request.body(), TopicBody)
        if body.name not in (None, name):
            raise InvalidRequest(f"name {body.name!r} differs from the path {name!r}", field="name")
        try:
            topic = topic_settings(RawTopic(name=name, retention=body.retention), "topic")
        except ConfigError as error:
            raise config_error(error) from None
        created = await self._topics.put(topic)
        return json_response(topic_json(topic), status=201 if created else 200)

    async def delete(self, request: Request) -> Response:
        name = request.path_params["name"]
        users = self._subscriptions.uses_topic(name)
        if users:
            raise Conflict(
                f"topic {name!r} is used by subscriptions {', '.join(sorted(users))}; "
                "delete or change them first",
                subscriptions=sorted(users),
            )
        await self._topics.delete(name)
        return Response(status_code=204)

    async def events(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._topics.get(name)
        page = self._store.browse(name, request.query_params.get("after"), page_limit(request))
        body = b'{"events":[' + b",".join(event.payload for event in page.events) + b'],"next":'
        return Response(body + orjson.dumps(page.next) + b"}", media_type="application/json")


def subscription_json(subscription: Subscription, status: dict[str, int] | None) -> Any:
    document: dict[str, Any] = msgspec.to_builtins(subscription.spec)
    if status is not None:
        document["status"] = status
    return document


class SubscriptionsApi:
    def __init__(self, store: LmdbStore, subscriptions: SubscriptionRegistry) -> None:
        self._store = store
        self._subscriptions = subscriptions

    def routes(self) -> list[Route]:
        return [
            Route("/v1/subscriptions", self.list, methods=["GET"]),
            Route("/v1/subscriptions/{name}", self.get, methods=["GET"]),
            Route("/v1/subscriptions/{name}", self.put, methods=["PUT"]),
            Route("/v1/subscriptions/{name}", self.delete, methods=["DELETE"]),
        ]

    def _status(self, name: str) -> dict[str, int]:
        counters = self._store.deliveries.counters(name)
        settled = counters["acked"] + counters["deadlettered"] + counters["dropped"]
        return {**counters, "pending": counters["published"] - settled}

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
        return json_response(subscription_json(subscription, self._status(subscription.name)))

    async def put(self, request: Request) -> Response:
        name = request.path_params["name"]
        document = decode_body(await request.body(), dict[str, Any])
        if document.setdefault("name", name) != name:
            raise InvalidRequest(f"name {document['name']!r} differs from the path", field="name")
        try:
            raw = msgspec.convert(document, RawSubscription)
            subscription = self._subscriptions.build(raw, path="subscription")
        except msgspec.ValidationError as error:
            path = msgspec_path(error)
            raise InvalidRequest(path, field=path.split(":", 1)[0]) from None
        except ConfigError as error:
            raise config_error(error) from None
        created = await self._subscriptions.put(subscription)
        return json_response(subscription_json(subscription, None), status=201 if created else 200)

    async def delete(self, request: Request) -> Response:
        subscription = self._existing(request.path_params["name"])
        pending = self._status(subscription.name)["pending"]
        if pending and request.query_params.get("force") != "true":
            raise Conflict(
                f"subscription {subscription.name!r} has {pending} pending deliveries; "
                "delete with ?force=true to drop them",
                pending=pending,
            )
        await self._subscriptions.delete(subscription.name)
        return Response(status_code=204)

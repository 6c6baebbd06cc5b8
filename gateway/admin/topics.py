"""`/v1/topics`: list, read, create or replace, and delete topics, and browse a topic's events
(a dead-letter topic's by subscription, reason or id).
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway import api_models as shapes
from gateway.admin.common import (
    PAGE_QUERY,
    admin_body,
    config_error,
    decode_body,
    json_response,
    page_limit,
)
from gateway.admin.deadletters import DEAD_LETTER_QUERY, selection_from_query
from gateway.config.durations import format_duration
from gateway.config.settings import (
    DEFAULT_TOPIC,
    ConfigError,
    RawTopic,
    TopicSettings,
    topic_settings,
)
from gateway.openapi import Operation
from gateway.problems import Conflict, InvalidRequest
from gateway.resources.subscriptions import SubscriptionRegistry
from gateway.resources.topics import TopicRegistry
from gateway.store.lmdb.store import LmdbStore


def topic_json(topic: TopicSettings) -> dict[str, Any]:
    return {"name": topic.name, "retention": format_duration(topic.retention)}


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
                problems=(400, 413),
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
        body = decode_body(await admin_body(request), shapes.TopicBody)
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

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
from gateway.problems import InvalidRequest
from gateway.settings import ConfigError, RawTopic, TopicSettings, msgspec_path, topic_settings
from gateway.store.lmdb import LmdbStore
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
    text = str(error)
    return InvalidRequest(text, field=text.split(":", 1)[0])


def topic_json(topic: TopicSettings) -> dict[str, Any]:
    return {"name": topic.name, "retention": format_duration(topic.retention)}


def page_limit(request: Request) -> int:
    text = request.query_params.get("limit", str(DEFAULT_PAGE))
    if not text.isdigit() or not 1 <= int(text) <= MAX_PAGE:
        raise InvalidRequest(f"limit must be a whole number from 1 to {MAX_PAGE}", field="limit")
    return int(text)


class TopicsApi:
    def __init__(self, store: LmdbStore, topics: TopicRegistry) -> None:
        self._store = store
        self._topics = topics

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
        await self._topics.delete(request.path_params["name"])
        return Response(status_code=204)

    async def events(self, request: Request) -> Response:
        name = request.path_params["name"]
        self._topics.get(name)
        page = self._store.browse(name, request.query_params.get("after"), page_limit(request))
        body = b'{"events":[' + b",".join(event.payload for event in page.events) + b'],"next":'
        return Response(body + orjson.dumps(page.next) + b"}", media_type="application/json")

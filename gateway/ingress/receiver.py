"""Ingress: `POST /topics/{topic}/events` and `POST /` (topic `default`), per DESIGN "Ingress".

Answers 202 only once every event of the request is committed (fsync'd); a batch is all or
nothing. Steps: topic exists, ready, read the body within the limit, parse, store, answer.
`accept` is those steps for any body that becomes events (Pretry's `POST /v1/event` too).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.api_models import Accepted
from gateway.config.settings import DEFAULT_TOPIC
from gateway.events import (
    BATCH,
    DEFAULT_LIMITS,
    REQUIRED,
    STRUCTURED,
    IncomingEvent,
    Limits,
    parse_request,
)
from gateway.ingress.bodies import read_body
from gateway.openapi import Operation
from gateway.ops.health import Readiness
from gateway.ops.metrics import Metrics
from gateway.problems import NotFound, NotReady
from gateway.resources.topics import TopicRegistry
from gateway.store.base import PublishResult
from gateway.store.lmdb.store import LmdbStore

CLOUDEVENT_BODIES = {
    STRUCTURED: {"schema": {"type": "object", "required": list(REQUIRED)}},
    BATCH: {"schema": {"type": "array", "items": {"type": "object"}}},
    "*/*": {"schema": {}},  # binary mode: attributes in ce-* headers, data as the body
}
# A request's headers and body -> the topic and the events to store there.
Parse = Callable[[Mapping[str, str], bytes], tuple[str, Sequence[IncomingEvent]]]


class Receiver:
    def __init__(
        self,
        store: LmdbStore,
        topics: TopicRegistry,
        readiness: Readiness,
        now: Callable[[], float],
        max_body_size: int,
        metrics: Metrics,
        limits: Limits = DEFAULT_LIMITS,
        on_published: Callable[[str, PublishResult], None] = lambda topic, result: None,
    ) -> None:
        self._store = store
        self._topics = topics
        self._readiness = readiness
        self._now = now
        self._max_body_size = max_body_size
        self.limits = limits
        self._metrics = metrics
        self.on_published = on_published

    def operations(self) -> list[Operation]:
        problems = (400, 404, 413, 415, 503, 507)
        return [
            Operation(
                "POST",
                "/topics/{topic}/events",
                self.publish,
                "Publish CloudEvents (binary, structured or batch mode)",
                request=CLOUDEVENT_BODIES,
                responses={202: Accepted},
                problems=problems,
                tag="ingress",
            ),
            Operation(
                "POST",
                "/",
                self.publish_default,
                "Publish to the topic `default`",
                request=CLOUDEVENT_BODIES,
                responses={202: Accepted},
                problems=problems,
                tag="ingress",
            ),
        ]

    async def publish_default(self, request: Request) -> Response:
        return await self._publish(request, DEFAULT_TOPIC)

    async def publish(self, request: Request) -> Response:
        return await self._publish(request, request.path_params["topic"])

    async def _publish(self, request: Request, topic: str) -> Response:
        self._check_topic(topic)
        result = await self.accept(
            request, lambda headers, body: (topic, parse_request(headers, body, self.limits))
        )
        return Response(
            orjson.dumps({"accepted": result.accepted, "duplicates": result.duplicates}),
            status_code=202,
            media_type="application/json",
        )

    def _check_topic(self, topic: str) -> None:
        if not self._topics.exists(topic):
            raise NotFound(f"topic {topic!r} does not exist; create it first", topic=None)

    async def accept(self, request: Request, parse: Parse) -> PublishResult:
        """Store what `parse` makes of the request, durably; returns once committed."""
        started = time.perf_counter()
        try:
            if not self._readiness.accepting:
                raise NotReady("the gateway is not ready: " + ", ".join(self._readiness.reasons()))
            self._store.announce()
            try:
                body = await read_body(request, self._max_body_size)
                topic, events = parse(request.headers, body)
                self._check_topic(topic)
            except BaseException:
                self._store.withdraw()
                raise
            result = await self._store.publish(topic, events, self._now(), announced=True)
        finally:
            self._metrics.publish_duration.observe(time.perf_counter() - started)
        self._metrics.count_publish(topic, result.accepted, result.duplicates)
        self.on_published(topic, result)
        return result
